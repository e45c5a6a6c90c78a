package sandbox

import (
	"path"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/images"
	"github.com/nodecri/nodecri/runtimes"
	"github.com/nodecri/nodecri/spec"
)

// Annotations the CRI defines for runtimes to see what a container is.
const (
	AnnotationContainerType = "io.kubernetes.cri.container-type"
	AnnotationSandboxID     = "io.kubernetes.cri.sandbox-id"
	AnnotationSandboxName   = "io.kubernetes.cri.sandbox-name"
	AnnotationSandboxNS     = "io.kubernetes.cri.sandbox-namespace"
	AnnotationSandboxUID    = "io.kubernetes.cri.sandbox-uid"
	AnnotationSandboxLogDir = "io.kubernetes.cri.sandbox-log-directory"
	AnnotationImageName     = "io.kubernetes.cri.image-name"
	ContainerTypeSandbox    = "sandbox"
)

// pauseOOMScoreAdj keeps the pause process, which holds the pod's
// namespaces, among the last the kernel's OOM killer picks.
const pauseOOMScoreAdj = -998

// specInput is what the pause container's spec is made from.
type specInput struct {
	id          string
	cfg         *runtimeapi.PodSandboxConfig
	image       *images.Image
	imageName   string
	handler     *runtimes.Handler
	files       Files
	netnsPath   string // "" for the host network
	restrictOOM bool
}

// pauseSpec lists the options that make the pause container's spec, each
// small and named.
func pauseSpec(in specInput) ([]oci.SpecOpts, error) {
	sc := in.cfg.GetLinux().GetSecurityContext()
	nsOpts := sc.GetNamespaceOptions()
	hostIPC := nsOpts.GetIpc() == runtimeapi.NamespaceMode_NODE
	opts := []oci.SpecOpts{
		withImageProcess(in.image),
		oci.WithHostname(in.cfg.GetHostname()),
		spec.WithNamespacePath(specs.NetworkNamespace, in.netnsPath),
		withPodNamespaces(nsOpts),
		withUserNamespace(nsOpts.GetUsernsOptions()),
		spec.WithBindMount(in.files.Hostname(), "/etc/hostname", true),
		spec.WithBindMount(in.files.Hosts(), "/etc/hosts", true),
		spec.WithBindMount(in.files.ResolvConf(), "/etc/resolv.conf", true),
		spec.WithCgroupsPath(in.cfg.GetLinux().GetCgroupParent(), in.id, in.handler.SystemdCgroup()),
		spec.WithSysctls(in.cfg.GetLinux().GetSysctls()),
		spec.WithOOMScoreAdj(pauseOOMScoreAdj, in.restrictOOM),
		oci.WithAnnotations(pauseAnnotations(in)),
		oci.WithoutRunMount,
		spec.WithOCIVersionAtMost(in.handler.Features.SpecVersion),
	}
	if hostIPC {
		opts = append(opts, spec.WithBindMount("/dev/shm", "/dev/shm", false))
	} else {
		opts = append(opts, spec.WithBindMount(in.files.Shm(), "/dev/shm", false))
	}
	// A host-network pod shares the node's UTS namespace too.
	opts = append(opts, withHostUTSIfHostNetwork(nsOpts))
	if u := userOpt(sc, in.image); u != nil {
		opts = append(opts, u)
	}
	if sc.GetReadonlyRootfs() {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	if sc.GetPrivileged() {
		// Containers of a privileged pod may be privileged: nothing masked.
		opts = append(opts, oci.WithMaskedPaths(nil), oci.WithReadonlyPaths(nil))
	}
	sec, err := spec.WithSeccomp(sc.GetSeccomp(), sc.GetPrivileged())
	if err != nil {
		return nil, err
	}
	if sec != nil {
		opts = append(opts, sec)
	}
	return opts, nil
}

// withImageProcess runs the image's entrypoint and command with its env.
func withImageProcess(img *images.Image) oci.SpecOpts {
	c := img.Spec.Config
	args := append(append([]string{}, c.Entrypoint...), c.Cmd...)
	opts := []oci.SpecOpts{oci.WithProcessArgs(args...), oci.WithEnv(c.Env)}
	if c.WorkingDir != "" {
		opts = append(opts, oci.WithProcessCwd(c.WorkingDir))
	}
	return oci.Compose(opts...)
}

// withPodNamespaces gives the pod its own or the node's IPC, UTS and PID
// namespaces.
func withPodNamespaces(ns *runtimeapi.NamespaceOption) oci.SpecOpts {
	var opts []oci.SpecOpts
	if ns.GetIpc() == runtimeapi.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.IPCNamespace))
	}
	if ns.GetPid() == runtimeapi.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.PIDNamespace))
	}
	return oci.Compose(opts...)
}

// withUserNamespace gives the pod its own user namespace with the
// kubelet's ID mappings (mode POD); NODE keeps the node's.
func withUserNamespace(u *runtimeapi.UserNamespace) oci.SpecOpts {
	uids, gids := idMappings(u)
	if uids == nil {
		return oci.Compose()
	}
	return oci.Compose(oci.WithUserNamespace(uids, gids), spec.WithSysfsBind())
}

// idMappings converts the CRI's mappings; nil unless the pod has its own
// user namespace.
func idMappings(u *runtimeapi.UserNamespace) (uids, gids []specs.LinuxIDMapping) {
	// No options means the node's user namespace (mode POD is the zero
	// value, so the mode alone cannot tell).
	if u == nil || u.GetMode() != runtimeapi.NamespaceMode_POD {
		return nil, nil
	}
	conv := func(in []*runtimeapi.IDMapping) []specs.LinuxIDMapping {
		out := make([]specs.LinuxIDMapping, 0, len(in))
		for _, m := range in {
			out = append(out, specs.LinuxIDMapping{ContainerID: m.ContainerId, HostID: m.HostId, Size: m.Length})
		}
		return out
	}
	return conv(u.Uids), conv(u.Gids)
}

func withHostUTSIfHostNetwork(ns *runtimeapi.NamespaceOption) oci.SpecOpts {
	if ns.GetNetwork() == runtimeapi.NamespaceMode_NODE {
		return oci.Compose(oci.WithHostNamespace(specs.UTSNamespace), oci.WithHostname(""))
	}
	return oci.Compose()
}

// userOpt runs pause as the pod's run_as_user/group, else as the image's
// numeric user; a named image user needs no lookup for pause.
func userOpt(sc *runtimeapi.LinuxSandboxSecurityContext, img *images.Image) oci.SpecOpts {
	uid, gid := -1, -1
	if u, g, ok := numericUser(img.Spec.Config.User); ok {
		uid, gid = u, g
	}
	if sc.GetRunAsUser() != nil {
		uid = int(sc.GetRunAsUser().GetValue())
	}
	if sc.GetRunAsGroup() != nil {
		gid = int(sc.GetRunAsGroup().GetValue())
	}
	if uid < 0 {
		return nil
	}
	if gid < 0 {
		gid = 0
	}
	groups := sc.GetSupplementalGroups()
	return oci.Compose(oci.WithUIDGID(uint32(uid), uint32(gid)), spec.WithSupplementalGroups(groups))
}

func numericUser(user string) (uid, gid int, ok bool) {
	if user == "" {
		return 0, 0, false
	}
	u, g, hasGroup := strings.Cut(user, ":")
	uid, err := strconv.Atoi(u)
	if err != nil {
		return 0, 0, false
	}
	gid = 0
	if hasGroup {
		if gid, err = strconv.Atoi(g); err != nil {
			return 0, 0, false
		}
	}
	return uid, gid, true
}

// pauseAnnotations tell the runtime what this container is; the handler's
// pod_annotations let matching pod annotations through.
func pauseAnnotations(in specInput) map[string]string {
	m := in.cfg.GetMetadata()
	a := map[string]string{
		AnnotationContainerType: ContainerTypeSandbox,
		AnnotationSandboxID:     in.id,
		AnnotationSandboxName:   m.GetName(),
		AnnotationSandboxNS:     m.GetNamespace(),
		AnnotationSandboxUID:    m.GetUid(),
		AnnotationSandboxLogDir: in.cfg.GetLogDirectory(),
		AnnotationImageName:     in.imageName,
	}
	for k, v := range in.cfg.GetAnnotations() {
		if matchesAny(in.handler.PodAnnotations, k) {
			a[k] = v
		}
	}
	return a
}

// matchesAny matches annotation keys against the handler's glob patterns.
func matchesAny(patterns []string, key string) bool {
	for _, p := range patterns {
		if ok, err := path.Match(p, key); err == nil && ok {
			return true
		}
	}
	return false
}
