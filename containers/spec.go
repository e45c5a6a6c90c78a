package containers

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cap"
	"github.com/containerd/containerd/v2/pkg/cdi"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/images"
	"github.com/nodecri/nodecri/runtimes"
	"github.com/nodecri/nodecri/sandbox"
	"github.com/nodecri/nodecri/spec"
)

// Annotations the CRI defines for a container.
const (
	annotationContainerName = "io.kubernetes.cri.container-name"
	containerTypeContainer  = "container"
)

// specInput is what a container's spec is made from.
type specInput struct {
	id       string
	cfg      *runtimeapi.ContainerConfig
	sandbox  *sandbox.Sandbox
	pausePid uint32
	// targetPid is the running init of the container whose PID namespace
	// a TARGET namespace mode joins (kubectl debug --target).
	targetPid uint32
	files     sandbox.Files
	image     *images.Image
	imageRef  string
	// imageName names the containerd image record created from.
	imageName   string
	handler     *runtimes.Handler
	restrictOOM bool
	enableCDI   bool
	// hugepages are the request's limits the hugetlb policy lets through.
	hugepages []specs.LinuxHugepageLimit
	// mounts are the request's, image volumes already turned into binds.
	mounts []*runtimeapi.Mount
}

// containerSpec lists the options that make a container's spec.
func containerSpec(in specInput) ([]oci.SpecOpts, error) {
	lc := in.cfg.GetLinux()
	sc := lc.GetSecurityContext()
	opts := []oci.SpecOpts{
		oci.WithoutRunMount,
		spec.WithoutRlimits(),
		// PATH for images that set none (containerd's default spec has no
		// env), then HOSTNAME; the image's and request's env override both.
		oci.WithDefaultPathEnv,
		withHostnameEnv(in.sandbox.Config.GetHostname()),
		withProcess(in.cfg, in.image),
		withPodNamespaces(in.sandbox, in.pausePid, in.targetPid, sc.GetNamespaceOptions()),
		withCgroupNamespace(spec.CgroupUnified(), sc.GetPrivileged()),
		withPodFiles(in.cfg, in.files, in.sandbox),
		withCRIMounts(in.mounts),
		// After the request's mounts (one at /sys/fs/cgroup wins), before
		// withSecurity (privileged makes it writable).
		spec.WithCgroupMount(spec.CgroupSharedOptions()),
		withDevices(in.cfg.GetDevices()),
		spec.WithCgroupsPath(in.sandbox.Config.GetLinux().GetCgroupParent(), in.id, in.handler.SystemdCgroup()),
		withResources(lc.GetResources(), in.hugepages),
		oci.WithAnnotations(annotations(in)),
		withSecurity(sc),
		withUser(sc, in.image),
		spec.WithOCIVersionAtMost(in.handler.Features.SpecVersion),
	}
	if adj := lc.GetResources().GetOomScoreAdj(); adj != 0 {
		opts = append(opts, spec.WithOOMScoreAdj(int(adj), in.restrictOOM))
	}
	if in.cfg.GetTty() {
		opts = append(opts, oci.WithTTY)
	}
	sec, err := spec.WithSeccomp(sc.GetSeccomp(), sc.GetPrivileged())
	if err != nil {
		return nil, err
	}
	if sec != nil {
		opts = append(opts, sec)
	}
	// Last: CDI edits (env, mounts, hooks, devices) must not be reset by
	// any later option.
	if devs := in.cfg.GetCDIDevices(); len(devs) > 0 {
		if !in.enableCDI {
			return nil, fmt.Errorf("CDI devices requested but enable_cdi is off")
		}
		names := make([]string, 0, len(devs))
		for _, d := range devs {
			names = append(names, d.Name)
		}
		opts = append(opts, cdi.WithCDIDevices(names...))
	}
	return opts, nil
}

// withProcess applies the CRI's rules against the image: command replaces
// the entrypoint (and then the image's cmd is dropped), args replace cmd;
// env is the image's, overridden by the request's.
func withProcess(cfg *runtimeapi.ContainerConfig, img *images.Image) oci.SpecOpts {
	ic := img.Spec.Config
	entrypoint, cmd := ic.Entrypoint, ic.Cmd
	if len(cfg.Command) > 0 {
		entrypoint, cmd = cfg.Command, nil
	}
	if len(cfg.Args) > 0 {
		cmd = cfg.Args
	}
	args := append(append([]string{}, entrypoint...), cmd...)
	env := mergeEnv(ic.Env, cfg.Envs)
	cwd := cfg.WorkingDir
	if cwd == "" {
		cwd = ic.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	return oci.Compose(oci.WithProcessArgs(args...), oci.WithEnv(env), oci.WithProcessCwd(cwd))
}

// withHostnameEnv sets HOSTNAME to the pod's hostname (the node's when
// the pod names none), as upstream does; the image's and the request's
// env, applied after, override it.
func withHostnameEnv(hostname string) oci.SpecOpts {
	return func(ctx context.Context, cl oci.Client, c *containers.Container, s *oci.Spec) error {
		if hostname == "" {
			h, err := os.Hostname()
			if err != nil {
				return fmt.Errorf("node hostname: %w", err)
			}
			hostname = h
		}
		return oci.WithEnv([]string{"HOSTNAME=" + hostname})(ctx, cl, c, s)
	}
}

// withCgroupNamespace gives a container its own cgroup namespace on a
// cgroup v2 host, so that /sys/fs/cgroup shows its own cgroup only; not on
// v1 or for privileged containers, as upstream.
func withCgroupNamespace(unified, privileged bool) oci.SpecOpts {
	if !unified || privileged {
		return oci.Compose()
	}
	return oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.CgroupNamespace})
}

// mergeEnv overrides the image's variables with the request's, keeping
// each name once (getenv takes the first of duplicates) and in order.
func mergeEnv(image []string, request []*runtimeapi.KeyValue) []string {
	out := make([]string, 0, len(image)+len(request))
	at := map[string]int{}
	set := func(k, kv string) {
		if i, ok := at[k]; ok {
			out[i] = kv
			return
		}
		at[k] = len(out)
		out = append(out, kv)
	}
	for _, kv := range image {
		k, _, _ := strings.Cut(kv, "=")
		set(k, kv)
	}
	for _, kv := range request {
		set(kv.Key, kv.Key+"="+string(kv.Value))
	}
	return out
}

// withPodNamespaces joins the pause container's network, IPC and UTS
// namespaces (or the node's), and the PID namespace the request asks for.
func withPodNamespaces(sb *sandbox.Sandbox, pausePid, targetPid uint32, ns *runtimeapi.NamespaceOption) oci.SpecOpts {
	podNS := sb.Config.GetLinux().GetSecurityContext().GetNamespaceOptions()
	path := func(kind string) string { return fmt.Sprintf("/proc/%d/ns/%s", pausePid, kind) }
	join := func(t specs.LinuxNamespaceType, kind string, host bool) oci.SpecOpts {
		if host {
			return oci.WithHostNamespace(t)
		}
		return oci.WithLinuxNamespace(specs.LinuxNamespace{Type: t, Path: path(kind)})
	}
	opts := []oci.SpecOpts{
		join(specs.NetworkNamespace, "net", podNS.GetNetwork() == runtimeapi.NamespaceMode_NODE),
		join(specs.IPCNamespace, "ipc", podNS.GetIpc() == runtimeapi.NamespaceMode_NODE),
		join(specs.UTSNamespace, "uts", podNS.GetNetwork() == runtimeapi.NamespaceMode_NODE),
	}
	switch ns.GetPid() {
	case runtimeapi.NamespaceMode_POD:
		opts = append(opts, join(specs.PIDNamespace, "pid", podNS.GetPid() == runtimeapi.NamespaceMode_NODE))
	case runtimeapi.NamespaceMode_NODE:
		opts = append(opts, oci.WithHostNamespace(specs.PIDNamespace))
	case runtimeapi.NamespaceMode_TARGET:
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.PIDNamespace, Path: fmt.Sprintf("/proc/%d/ns/pid", targetPid)}))
	}
	if u := podNS.GetUsernsOptions(); u != nil && u.GetMode() == runtimeapi.NamespaceMode_POD {
		uids, gids := mappings(u)
		opts = append(opts, oci.WithUserNamespace(uids, gids),
			oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.UserNamespace, Path: path("user")}),
			spec.WithSysfsBind())
	}
	return oci.Compose(opts...)
}

func mappings(u *runtimeapi.UserNamespace) (uids, gids []specs.LinuxIDMapping) {
	for _, m := range u.Uids {
		uids = append(uids, specs.LinuxIDMapping{ContainerID: m.ContainerId, HostID: m.HostId, Size: m.Length})
	}
	for _, m := range u.Gids {
		gids = append(gids, specs.LinuxIDMapping{ContainerID: m.ContainerId, HostID: m.HostId, Size: m.Length})
	}
	return uids, gids
}

// withPodFiles mounts the pod's hostname, hosts, resolv.conf and /dev/shm,
// unless the request mounts something at those paths itself.
func withPodFiles(cfg *runtimeapi.ContainerConfig, f sandbox.Files, sb *sandbox.Sandbox) oci.SpecOpts {
	taken := map[string]bool{}
	for _, m := range cfg.GetMounts() {
		taken[filepath.Clean(m.ContainerPath)] = true
	}
	ro := cfg.GetLinux().GetSecurityContext().GetReadonlyRootfs()
	var opts []oci.SpecOpts
	for dst, src := range map[string]string{"/etc/hostname": f.Hostname(), "/etc/hosts": f.Hosts(), "/etc/resolv.conf": f.ResolvConf()} {
		if !taken[dst] {
			opts = append(opts, spec.WithBindMount(src, dst, ro))
		}
	}
	if !taken["/dev/shm"] {
		shm := f.Shm()
		if sb.Config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetIpc() == runtimeapi.NamespaceMode_NODE {
			shm = "/dev/shm"
		}
		opts = append(opts, spec.WithBindMount(shm, "/dev/shm", false))
	}
	return oci.Compose(opts...)
}

// withCRIMounts adds the request's volumes with their propagation and
// read-only modes (recursive read-only as "rro").
func withCRIMounts(mounts []*runtimeapi.Mount) oci.SpecOpts {
	return func(ctx context.Context, cl oci.Client, c *containers.Container, s *oci.Spec) error {
		for _, m := range mounts {
			dst := filepath.Clean(m.ContainerPath)
			opts := []string{"rbind"}
			switch m.Propagation {
			case runtimeapi.MountPropagation_PROPAGATION_PRIVATE:
				opts = append(opts, "rprivate")
			case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
				opts = append(opts, "rslave")
			case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
				opts = append(opts, "rshared")
				s.Linux.RootfsPropagation = "rshared"
			}
			switch {
			case m.RecursiveReadOnly:
				opts = append(opts, "rro")
			case m.Readonly:
				opts = append(opts, "ro")
			default:
				opts = append(opts, "rw")
			}
			if err := oci.WithoutMounts(dst)(ctx, cl, c, s); err != nil {
				return err
			}
			s.Mounts = append(s.Mounts, specs.Mount{Source: m.HostPath, Destination: dst, Type: "bind", Options: opts})
		}
		return nil
	}
}

// withDevices exposes host devices at the requested paths.
func withDevices(devs []*runtimeapi.Device) oci.SpecOpts {
	return func(ctx context.Context, cl oci.Client, c *containers.Container, s *oci.Spec) error {
		for _, d := range devs {
			perms := d.Permissions
			if perms == "" {
				perms = "rwm"
			}
			if err := spec.WithDevice(d.HostPath, d.ContainerPath, perms)(ctx, cl, c, s); err != nil {
				return err
			}
		}
		return nil
	}
}

// withResources sets CPU and memory limits, the unified (cgroup v2) keys
// and the hugepage limits the hugetlb policy let through.
func withResources(r *runtimeapi.LinuxContainerResources, hugepages []specs.LinuxHugepageLimit) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if r == nil {
			return nil
		}
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		s.Linux.Resources.CPU, s.Linux.Resources.Memory = toOCIResources(r, spec.SwapAvailable())
		s.Linux.Resources.HugepageLimits = hugepages
		if len(r.Unified) > 0 {
			s.Linux.Resources.Unified = r.Unified
		}
		return nil
	}
}

// EffectiveResources are the resources as applied, for status: with the
// swap limit a memory limit implies (see toOCIResources).
func EffectiveResources(r *runtimeapi.LinuxContainerResources) *runtimeapi.LinuxContainerResources {
	return effectiveResources(r, spec.SwapAvailable())
}

func effectiveResources(r *runtimeapi.LinuxContainerResources, swap bool) *runtimeapi.LinuxContainerResources {
	if r == nil || !swap || r.MemoryLimitInBytes <= 0 || r.MemorySwapLimitInBytes != 0 {
		return r
	}
	out := proto.Clone(r).(*runtimeapi.LinuxContainerResources)
	out.MemorySwapLimitInBytes = r.MemoryLimitInBytes
	return out
}

// toOCIResources converts CPU and memory; a memory limit without a swap
// limit gets swap equal to it (no swapping), as upstream, where the host
// can limit swap (swap) at all.
func toOCIResources(r *runtimeapi.LinuxContainerResources, swap bool) (*specs.LinuxCPU, *specs.LinuxMemory) {
	r = effectiveResources(r, swap)
	cpu := &specs.LinuxCPU{Cpus: r.CpusetCpus, Mems: r.CpusetMems}
	if r.CpuShares > 0 {
		v := uint64(r.CpuShares)
		cpu.Shares = &v
	}
	if r.CpuQuota != 0 {
		v := r.CpuQuota
		cpu.Quota = &v
	}
	if r.CpuPeriod > 0 {
		v := uint64(r.CpuPeriod)
		cpu.Period = &v
	}
	mem := &specs.LinuxMemory{}
	if r.MemoryLimitInBytes > 0 {
		v := r.MemoryLimitInBytes
		mem.Limit = &v
	}
	if r.MemorySwapLimitInBytes != 0 && swap {
		v := r.MemorySwapLimitInBytes
		mem.Swap = &v
	}
	return cpu, mem
}

// mergeResources applies an UpdateContainerResources to the resources in
// force, as the kubelet expects: a field left zero keeps its value (the
// CPU and memory managers send only cpuset_cpus or cpuset_mems), unified
// keys are merged, and hugepage limits are replaced when any are given.
func mergeResources(cur, upd *runtimeapi.LinuxContainerResources) *runtimeapi.LinuxContainerResources {
	if cur == nil {
		return proto.Clone(upd).(*runtimeapi.LinuxContainerResources)
	}
	out := proto.Clone(cur).(*runtimeapi.LinuxContainerResources)
	setInt := func(dst *int64, v int64) {
		if v != 0 {
			*dst = v
		}
	}
	setInt(&out.CpuPeriod, upd.CpuPeriod)
	setInt(&out.CpuQuota, upd.CpuQuota)
	setInt(&out.CpuShares, upd.CpuShares)
	setInt(&out.MemoryLimitInBytes, upd.MemoryLimitInBytes)
	setInt(&out.MemorySwapLimitInBytes, upd.MemorySwapLimitInBytes)
	setInt(&out.OomScoreAdj, upd.OomScoreAdj)
	if upd.CpusetCpus != "" {
		out.CpusetCpus = upd.CpusetCpus
	}
	if upd.CpusetMems != "" {
		out.CpusetMems = upd.CpusetMems
	}
	if len(upd.HugepageLimits) > 0 {
		out.HugepageLimits = upd.HugepageLimits
	}
	if len(upd.Unified) > 0 {
		if out.Unified == nil {
			out.Unified = map[string]string{}
		}
		for k, v := range upd.Unified {
			out.Unified[k] = v
		}
	}
	return out
}

// withSecurity applies privileged mode, capabilities, no_new_privs, masked
// and read-only paths and a read-only rootfs.
func withSecurity(sc *runtimeapi.LinuxContainerSecurityContext) oci.SpecOpts {
	var opts []oci.SpecOpts
	if sc.GetPrivileged() {
		opts = append(opts, oci.WithPrivileged, oci.WithAllDevicesAllowed, oci.WithHostDevices,
			oci.WithMaskedPaths(nil), oci.WithReadonlyPaths(nil))
	} else {
		if c := sc.GetCapabilities(); c != nil {
			opts = append(opts, withCapabilities(c))
		}
		// Only the request's lists, never containerd's defaults: the
		// kubelet sends the default lists for procMount Default and empty
		// ones (which arrive as absent) for Unmasked.
		opts = append(opts, oci.WithMaskedPaths(sc.GetMaskedPaths()), oci.WithReadonlyPaths(sc.GetReadonlyPaths()))
	}
	// containerd's default spec sets no_new_privileges; the CRI's false
	// must clear it, or setuid binaries stop working.
	if sc.GetNoNewPrivs() {
		opts = append(opts, oci.WithNoNewPrivileges)
	} else {
		opts = append(opts, oci.WithNewPrivileges)
	}
	if sc.GetReadonlyRootfs() {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	return oci.Compose(opts...)
}

// withCapabilities drops, then adds; "ALL" means every capability.
func withCapabilities(c *runtimeapi.Capability) oci.SpecOpts {
	norm := func(in []string) (out []string, all bool) {
		for _, v := range in {
			v = strings.ToUpper(v)
			if v == "ALL" {
				all = true
				continue
			}
			if !strings.HasPrefix(v, "CAP_") {
				v = "CAP_" + v
			}
			out = append(out, v)
		}
		return out, all
	}
	add, addAll := norm(c.AddCapabilities)
	drop, dropAll := norm(c.DropCapabilities)
	var opts []oci.SpecOpts
	if dropAll {
		opts = append(opts, oci.WithCapabilities(nil))
	} else if len(drop) > 0 {
		opts = append(opts, oci.WithDroppedCapabilities(drop))
	}
	if addAll {
		all, err := cap.Current()
		if err == nil {
			add = all
		}
	}
	if len(add) > 0 {
		opts = append(opts, oci.WithAddedCapabilities(add))
	}
	return oci.Compose(opts...)
}

// withUser runs the process as the requested user, else the image's; a
// name and supplemental groups are resolved in the image's /etc/passwd and
// /etc/group.
func withUser(sc *runtimeapi.LinuxContainerSecurityContext, img *images.Image) oci.SpecOpts {
	var opts []oci.SpecOpts
	userstr := img.Spec.Config.User
	switch {
	case sc.GetRunAsUsername() != "":
		userstr = sc.GetRunAsUsername()
		opts = append(opts, oci.WithUsername(userstr))
	case sc.GetRunAsUser() != nil:
		userstr = fmt.Sprint(sc.GetRunAsUser().GetValue())
		opts = append(opts, oci.WithUserID(uint32(sc.GetRunAsUser().GetValue())))
	case userstr != "":
		opts = append(opts, oci.WithUser(userstr))
	default:
		userstr = "0"
	}
	if g := sc.GetRunAsGroup(); g != nil {
		opts = append(opts, withGID(uint32(g.GetValue())))
	}
	user, _, _ := strings.Cut(userstr, ":")
	if sc.GetSupplementalGroupsPolicy() != runtimeapi.SupplementalGroupsPolicy_Strict {
		opts = append(opts, oci.WithAdditionalGIDs(user))
	}
	opts = append(opts, spec.WithSupplementalGroups(sc.GetSupplementalGroups()))
	return oci.Compose(opts...)
}

func withGID(gid uint32) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		s.Process.User.GID = gid
		return nil
	}
}

// annotations tell the runtime what the container is; the handler's
// container_annotations let matching ones through.
func annotations(in specInput) map[string]string {
	md := in.sandbox.Config.GetMetadata()
	a := map[string]string{
		sandbox.AnnotationContainerType: containerTypeContainer,
		sandbox.AnnotationSandboxID:     in.sandbox.ID,
		sandbox.AnnotationSandboxName:   md.GetName(),
		sandbox.AnnotationSandboxNS:     md.GetNamespace(),
		sandbox.AnnotationSandboxUID:    md.GetUid(),
		annotationContainerName:         in.cfg.GetMetadata().GetName(),
		sandbox.AnnotationImageName:     imageName(in),
	}
	// The pod's annotations the handler lets through reach its containers
	// too, as upstream; the container's own win.
	passThrough(a, in.sandbox.Config.GetAnnotations(), in.handler.PodAnnotations)
	passThrough(a, in.cfg.GetAnnotations(), in.handler.ContainerAnnotations)
	return a
}

// imageName is the image as the user wrote it (the kubelet creates from
// the image ID and passes the pod spec's name apart), else the name of
// the image record the container was created from.
func imageName(in specInput) string {
	if n := in.cfg.GetImage().GetUserSpecifiedImage(); n != "" {
		return n
	}
	if in.imageName != "" {
		return in.imageName
	}
	return in.imageRef
}

// passThrough copies the annotations whose keys match one of patterns.
func passThrough(dst, src map[string]string, patterns []string) {
	for k, v := range src {
		for _, p := range patterns {
			if ok, _ := path.Match(p, k); ok {
				dst[k] = v
				break
			}
		}
	}
}
