// Package spec holds the OCI spec options sandboxes and containers share,
// each small and named, in containerd's oci.SpecOpts style.
package spec

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// OwnOOMScoreAdj is this process's oom_score_adj: without CAP_SYS_RESOURCE
// no child may go lower.
func OwnOOMScoreAdj() (int, error) {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// WithOOMScoreAdj sets the process's oom_score_adj; with restrict
// (restrict_oom_score_adj) a value below the daemon's own is raised to it,
// or runc fails to start the process at all.
func WithOOMScoreAdj(adj int, restrict bool) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if restrict {
			own, err := OwnOOMScoreAdj()
			if err != nil {
				return fmt.Errorf("read own oom_score_adj: %w", err)
			}
			if adj < own {
				adj = own
			}
		}
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		s.Process.OOMScoreAdj = &adj
		return nil
	}
}

// WithBindMount mounts src at dst, replacing any mount already at dst.
func WithBindMount(src, dst string, readonly bool) oci.SpecOpts {
	opts := []string{"rbind", "rprivate"}
	if readonly {
		opts = append(opts, "ro")
	} else {
		opts = append(opts, "rw")
	}
	return WithBindMountOptions(src, dst, opts...)
}

// WithBindMountOptions mounts src at dst with exactly opts, replacing any
// mount already at dst.
func WithBindMountOptions(src, dst string, opts ...string) oci.SpecOpts {
	return oci.Compose(
		oci.WithoutMounts(dst),
		oci.WithMounts([]specs.Mount{{Source: src, Destination: dst, Type: "bind", Options: opts}}),
	)
}

// WithCgroupsPath puts the process in parent's cgroup, under its own ID,
// in the form the cgroup driver expects.
func WithCgroupsPath(parent, id string, systemd bool) oci.SpecOpts {
	if systemd {
		// slice:prefix:name, as runc's systemd driver expects.
		slice := filepath.Base(parent)
		if slice == "" || slice == "/" || slice == "." {
			slice = "system.slice"
		}
		return oci.WithCgroup(slice + ":cri-containerd:" + id)
	}
	if parent == "" {
		parent = "/k8s.io"
	}
	return oci.WithCgroup(filepath.Join(parent, id))
}

// WithSysctls sets namespaced sysctls.
func WithSysctls(sysctls map[string]string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if len(sysctls) == 0 {
			return nil
		}
		if s.Linux == nil {
			s.Linux = &specs.Linux{}
		}
		if s.Linux.Sysctl == nil {
			s.Linux.Sysctl = map[string]string{}
		}
		for k, v := range sysctls {
			s.Linux.Sysctl[k] = v
		}
		return nil
	}
}

// WithNamespacePath joins the namespace at path, or the host's when path
// is empty.
func WithNamespacePath(t specs.LinuxNamespaceType, path string) oci.SpecOpts {
	if path == "" {
		return oci.WithHostNamespace(t)
	}
	return oci.WithLinuxNamespace(specs.LinuxNamespace{Type: t, Path: path})
}

// WithSeccomp applies a CRI seccomp profile: RuntimeDefault is
// containerd's default profile, Localhost a profile file on the node,
// Unconfined (or none given) no filter. Privileged processes are never
// filtered.
func WithSeccomp(p *runtimeapi.SecurityProfile, privileged bool) (oci.SpecOpts, error) {
	if privileged || p == nil {
		return nil, nil
	}
	switch p.ProfileType {
	case runtimeapi.SecurityProfile_Unconfined:
		return nil, nil
	case runtimeapi.SecurityProfile_RuntimeDefault:
		return seccomp.WithDefaultProfile(), nil
	case runtimeapi.SecurityProfile_Localhost:
		if !filepath.IsAbs(p.LocalhostRef) {
			return nil, fmt.Errorf("seccomp localhost profile %q must be an absolute path", p.LocalhostRef)
		}
		return seccomp.WithProfile(p.LocalhostRef), nil
	}
	return nil, fmt.Errorf("unknown seccomp profile type %v", p.ProfileType)
}

// WithSupplementalGroups adds numeric supplemental groups to the process.
func WithSupplementalGroups(gids []int64) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if len(gids) == 0 {
			return nil
		}
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		for _, g := range gids {
			s.Process.User.AdditionalGids = append(s.Process.User.AdditionalGids, uint32(g))
		}
		return nil
	}
}

// WithSysfsBind replaces the sysfs mount with a read-only bind of the
// node's /sys: a process in a user namespace cannot mount sysfs for a
// network namespace it does not own (the pod's, created by us).
func WithSysfsBind() oci.SpecOpts {
	return oci.Compose(
		oci.WithoutMounts("/sys"),
		oci.WithMounts([]specs.Mount{{Source: "/sys", Destination: "/sys", Type: "bind",
			Options: []string{"rbind", "rprivate", "ro", "nosuid", "noexec", "nodev"}}}),
	)
}

// WithDevice exposes the host device at host as container, with cgroup
// permissions perms ("rwm").
func WithDevice(host, container, perms string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		dev, err := oci.DeviceFromPath(host)
		if err != nil {
			return fmt.Errorf("device %s: %w", host, err)
		}
		dev.Path = container
		if s.Linux == nil {
			s.Linux = &specs.Linux{}
		}
		s.Linux.Devices = append(s.Linux.Devices, *dev)
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		major, minor := dev.Major, dev.Minor
		s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{
			Allow: true, Type: dev.Type, Major: &major, Minor: &minor, Access: perms})
		return nil
	}
}

// WithOCIVersionAtMost writes the spec at version max when the runtime
// takes nothing newer (max "" changes nothing).
func WithOCIVersionAtMost(max string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if max != "" && semverLess(max, s.Version) {
			s.Version = max
		}
		return nil
	}
}

// semverLess compares "major.minor.patch[-suffix]" numerically.
func semverLess(a, b string) bool {
	pa, pb := versionParts(a), versionParts(b)
	for i := range pa {
		if pa[i] != pb[i] {
			return pa[i] < pb[i]
		}
	}
	return false
}

func versionParts(v string) [3]int {
	var out [3]int
	v, _, _ = strings.Cut(v, "-")
	for i, p := range strings.SplitN(v, ".", 3) {
		out[i], _ = strconv.Atoi(p)
	}
	return out
}

// WithoutRlimits drops the rlimits of containerd's default spec
// (RLIMIT_NOFILE 1024:1024): pod processes inherit the daemon's limits,
// as with upstream's CRI.
func WithoutRlimits() oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process != nil {
			s.Process.Rlimits = nil
		}
		return nil
	}
}

// WithCgroupMount mounts the cgroup filesystem read-only at /sys/fs/cgroup
// (oci.WithPrivileged later makes it writable), unless a mount is there
// already. hostOpts are the host's cgroup2 super options a container
// without its own cgroup namespace must keep, since the superblock is
// shared (see CgroupSharedOptions).
func WithCgroupMount(hostOpts []string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		for _, m := range s.Mounts {
			if filepath.Clean(m.Destination) == "/sys/fs/cgroup" {
				return nil
			}
		}
		opts := []string{"nosuid", "noexec", "nodev", "relatime", "ro"}
		hasNS := s.Linux != nil && slices.ContainsFunc(s.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
			return ns.Type == specs.CgroupNamespace
		})
		if !hasNS {
			opts = append(opts, hostOpts...)
		}
		s.Mounts = append(s.Mounts, specs.Mount{Source: "cgroup", Destination: "/sys/fs/cgroup", Type: "cgroup", Options: opts})
		return nil
	}
}

// CgroupUnified says whether the host runs cgroup v2 alone (a cgroup2
// filesystem at /sys/fs/cgroup).
var CgroupUnified = sync.OnceValue(func() bool {
	var st unix.Statfs_t
	return unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
})

// CgroupSharedOptions are the super options of the host's cgroup2 mount at
// /sys/fs/cgroup that a new mount of the same superblock would otherwise
// strip (nsdelegate, memory_recursiveprot); none on a cgroup v1 host.
func CgroupSharedOptions() []string {
	if !CgroupUnified() {
		return nil
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	return cgroupSharedOptions(string(b))
}

func cgroupSharedOptions(mountinfo string) []string {
	var out []string
	for line := range strings.SplitSeq(mountinfo, "\n") {
		// "id parent maj:min root mountpoint opts [optional...] - fstype source superopts"
		pre, post, ok := strings.Cut(line, " - ")
		f := strings.Fields(pre)
		if !ok || len(f) < 5 || f[4] != "/sys/fs/cgroup" {
			continue
		}
		pf := strings.Fields(post)
		if len(pf) < 3 || pf[0] != "cgroup2" {
			continue
		}
		out = nil
		for o := range strings.SplitSeq(pf[2], ",") {
			if o == "nsdelegate" || o == "memory_recursiveprot" {
				out = append(out, o)
			}
		}
	}
	return out
}

var (
	swapOnce  sync.Once
	swapAvail bool
)

// SwapAvailable says whether the host's memory cgroup can limit swap
// (cgroup v1 memory.memsw.* exist only with swap accounting on; v2 has
// memory.swap.max below the root). Where it cannot, a swap limit in the
// spec makes runc fail, so none is set.
func SwapAvailable() bool {
	swapOnce.Do(func() {
		p := "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"
		if CgroupUnified() {
			b, err := os.ReadFile("/proc/self/cgroup")
			if err != nil {
				return
			}
			// v2 only: the one line is "0::/path".
			_, self, _ := strings.Cut(strings.TrimSpace(string(b)), "::")
			p = filepath.Join("/sys/fs/cgroup", self, "memory.swap.max")
		}
		_, err := os.Stat(p)
		swapAvail = err == nil
	})
	return swapAvail
}
