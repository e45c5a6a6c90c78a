package sandbox

import (
	"context"
	"maps"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/containerd/v2/core/containers"
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
	// AnnotationSandboxImageName is the pause image, on the pause only.
	AnnotationSandboxImageName = "io.kubernetes.cri.podsandbox.image-name"
	// The pod's overhead plus its containers' resources, as the kubelet
	// sums them: VM runtimes size the VM from them.
	AnnotationSandboxCPUPeriod = "io.kubernetes.cri.sandbox-cpu-period"
	AnnotationSandboxCPUQuota  = "io.kubernetes.cri.sandbox-cpu-quota"
	AnnotationSandboxCPUShares = "io.kubernetes.cri.sandbox-cpu-shares"
	AnnotationSandboxMemory    = "io.kubernetes.cri.sandbox-memory"
	ContainerTypeSandbox       = "sandbox"
)

// pauseCPUShares is the pause process's weight: it only sleeps, so the
// minimum cgroup v1 accepts, as upstream.
const pauseCPUShares = 2

// Sysctls a pod in its own network namespace gets unless it sets them
// (enable_unprivileged_ports, enable_unprivileged_icmp).
const (
	sysctlPortStart = "net.ipv4.ip_unprivileged_port_start"
	sysctlPingGroup = "net.ipv4.ping_group_range"
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
	// unprivilegedPorts and unprivilegedICMP are enable_unprivileged_ports
	// and enable_unprivileged_icmp.
	unprivilegedPorts bool
	unprivilegedICMP  bool
}

// pauseSpec lists the options that make the pause container's spec, each
// small and named.
func pauseSpec(in specInput) ([]oci.SpecOpts, error) {
	sc := in.cfg.GetLinux().GetSecurityContext()
	nsOpts := sc.GetNamespaceOptions()
	hostIPC := nsOpts.GetIpc() == runtimeapi.NamespaceMode_NODE
	shm := in.files.Shm()
	if hostIPC {
		shm = "/dev/shm"
	}
	ownUserNS, _ := idMappings(nsOpts.GetUsernsOptions())
	// Not for a pod in its own user namespace: its network namespace
	// belongs to the node's, whose sysctls the pod's root cannot write
	// (upstream creates it in the pod's user namespace instead).
	sysctls := podSysctls(in.cfg.GetLinux().GetSysctls(), in.netnsPath != "",
		in.unprivilegedPorts && ownUserNS == nil, in.unprivilegedICMP && ownUserNS == nil && !runningInUserNS())
	opts := []oci.SpecOpts{
		withImageProcess(in.image),
		spec.WithoutRlimits(),
		oci.WithHostname(in.cfg.GetHostname()),
		spec.WithNamespacePath(specs.NetworkNamespace, in.netnsPath),
		withPodNamespaces(nsOpts),
		withUserNamespace(nsOpts.GetUsernsOptions()),
		// Pause reads no file: resolv.conf is there for VM runtimes that
		// set up the guest's DNS from it. nosuid,nodev,noexec also let
		// the remount succeed in a user namespace.
		spec.WithBindMountOptions(in.files.ResolvConf(), "/etc/resolv.conf", "rbind", "ro", "nosuid", "nodev", "noexec"),
		spec.WithBindMountOptions(shm, "/dev/shm", "rbind", "ro", "nosuid", "nodev", "noexec"),
		oci.WithRootFSReadonly(),
		spec.WithCgroupsPath(in.cfg.GetLinux().GetCgroupParent(), in.id, in.handler.SystemdCgroup()),
		withCPUShares(pauseCPUShares),
		spec.WithSysctls(sysctls),
		spec.WithOOMScoreAdj(pauseOOMScoreAdj, in.restrictOOM),
		oci.WithAnnotations(pauseAnnotations(in)),
		oci.WithoutRunMount,
		spec.WithOCIVersionAtMost(in.handler.Features.SpecVersion),
	}
	// A host-network pod shares the node's UTS namespace too.
	opts = append(opts, withHostUTSIfHostNetwork(nsOpts))
	if u := userOpt(sc, in.image); u != nil {
		opts = append(opts, u)
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
	// The pod's supplemental groups are its containers'; pause needs none.
	return oci.WithUIDGID(uint32(uid), uint32(gid))
}

// withCPUShares sets the process's CPU weight.
func withCPUShares(shares uint64) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Linux == nil {
			s.Linux = &specs.Linux{}
		}
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		if s.Linux.Resources.CPU == nil {
			s.Linux.Resources.CPU = &specs.LinuxCPU{}
		}
		s.Linux.Resources.CPU.Shares = &shares
		return nil
	}
}

// podSysctls are the pod's sysctls plus, for a pod with its own network
// namespace, unprivileged ports and ping unless the pod sets them itself.
// ping_group_range is left alone in a user namespace, whose group range
// the kernel would refuse.
func podSysctls(req map[string]string, ownNetNS, ports, icmp bool) map[string]string {
	out := maps.Clone(req)
	if out == nil {
		out = map[string]string{}
	}
	if !ownNetNS {
		return out
	}
	if _, set := out[sysctlPortStart]; ports && !set {
		out[sysctlPortStart] = "0"
	}
	if _, set := out[sysctlPingGroup]; icmp && !set {
		out[sysctlPingGroup] = "0 2147483647"
	}
	return out
}

// runningInUserNS says whether the daemon itself runs in a user namespace
// (its uid_map is not the whole range).
var runningInUserNS = sync.OnceValue(func() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
})

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
		AnnotationContainerType:    ContainerTypeSandbox,
		AnnotationSandboxID:        in.id,
		AnnotationSandboxName:      m.GetName(),
		AnnotationSandboxNS:        m.GetNamespace(),
		AnnotationSandboxUID:       m.GetUid(),
		AnnotationSandboxLogDir:    in.cfg.GetLogDirectory(),
		AnnotationSandboxImageName: in.imageName,
	}
	if r := in.cfg.GetLinux().GetResources(); r != nil {
		a[AnnotationSandboxCPUPeriod] = strconv.FormatInt(r.CpuPeriod, 10)
		a[AnnotationSandboxCPUQuota] = strconv.FormatInt(r.CpuQuota, 10)
		a[AnnotationSandboxCPUShares] = strconv.FormatInt(r.CpuShares, 10)
		a[AnnotationSandboxMemory] = strconv.FormatInt(r.MemoryLimitInBytes, 10)
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
