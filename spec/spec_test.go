package spec

import (
	"context"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/opencontainers/runtime-spec/specs-go"
)

func apply(t *testing.T, s *oci.Spec, opts ...oci.SpecOpts) *oci.Spec {
	t.Helper()
	for _, o := range opts {
		if err := o(context.Background(), nil, nil, s); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// containerd's default spec caps open files at 1024; pod processes must
// inherit the daemon's limit instead.
func TestWithoutRlimits(t *testing.T) {
	s := apply(t, &oci.Spec{Process: &specs.Process{Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}}}}, WithoutRlimits())
	if len(s.Process.Rlimits) != 0 {
		t.Errorf("rlimits left: %v", s.Process.Rlimits)
	}
}

func cgroupMount(s *oci.Spec) *specs.Mount {
	for i := range s.Mounts {
		if s.Mounts[i].Destination == "/sys/fs/cgroup" {
			return &s.Mounts[i]
		}
	}
	return nil
}

func TestWithCgroupMount(t *testing.T) {
	s := apply(t, &oci.Spec{Linux: &specs.Linux{}}, WithCgroupMount([]string{"nsdelegate"}))
	m := cgroupMount(s)
	if m == nil || m.Type != "cgroup" || !slices.Contains(m.Options, "ro") || !slices.Contains(m.Options, "nosuid") {
		t.Fatalf("cgroup mount %+v", m)
	}
	// Without its own cgroup namespace the host's superblock options stay.
	if !slices.Contains(m.Options, "nsdelegate") {
		t.Errorf("host option dropped without a cgroup namespace: %v", m.Options)
	}

	// Privileged containers get it writable.
	s = apply(t, &oci.Spec{Linux: &specs.Linux{}, Process: &specs.Process{}}, WithCgroupMount(nil), oci.WithWriteableCgroupfs)
	if m := cgroupMount(s); slices.Contains(m.Options, "ro") || !slices.Contains(m.Options, "rw") {
		t.Errorf("privileged cgroup mount %v", m.Options)
	}

	// With a cgroup namespace the mount is its own: no host options.
	s = apply(t, &oci.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.CgroupNamespace}}}}, WithCgroupMount([]string{"nsdelegate"}))
	if m := cgroupMount(s); slices.Contains(m.Options, "nsdelegate") {
		t.Errorf("host option with a cgroup namespace: %v", m.Options)
	}

	// A mount the request put there wins.
	s = apply(t, &oci.Spec{Linux: &specs.Linux{}, Mounts: []specs.Mount{{Destination: "/sys/fs/cgroup/", Type: "bind", Source: "/x"}}}, WithCgroupMount(nil))
	if len(s.Mounts) != 1 || s.Mounts[0].Type != "bind" {
		t.Errorf("request's mount replaced: %+v", s.Mounts)
	}
}

func TestCgroupSharedOptions(t *testing.T) {
	v2 := "30 1 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n" +
		"31 30 0:27 / /sys/fs/cgroup/x rw - cgroup2 cgroup2 rw,nsdelegate\n"
	if got := cgroupSharedOptions(v2); !slices.Equal(got, []string{"nsdelegate", "memory_recursiveprot"}) {
		t.Errorf("v2: %v", got)
	}
	v1 := "30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n" +
		"34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
	if got := cgroupSharedOptions(v1); got != nil {
		t.Errorf("v1: %v", got)
	}
}

func TestWithBindMountOptions(t *testing.T) {
	s := apply(t, &oci.Spec{Mounts: []specs.Mount{{Destination: "/dev/shm", Type: "tmpfs"}}},
		WithBindMountOptions("/src", "/dev/shm", "rbind", "ro", "nosuid", "nodev", "noexec"))
	want := []string{"rbind", "ro", "nosuid", "nodev", "noexec"}
	if len(s.Mounts) != 1 || s.Mounts[0].Source != "/src" || !slices.Equal(s.Mounts[0].Options, want) {
		t.Errorf("mounts %+v", s.Mounts)
	}
}
