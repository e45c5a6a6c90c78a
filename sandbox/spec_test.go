package sandbox

import (
	"context"
	"maps"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/images"
	"github.com/nodecri/nodecri/runtimes"
)

func TestPodSysctls(t *testing.T) {
	defaults := map[string]string{sysctlPortStart: "0", sysctlPingGroup: "0 2147483647"}
	for _, tc := range []struct {
		name                  string
		req                   map[string]string
		ownNetNS, ports, icmp bool
		want                  map[string]string
	}{
		{"own netns", nil, true, true, true, defaults},
		{"host network", nil, false, true, true, map[string]string{}},
		{"both off", nil, true, false, false, map[string]string{}},
		{"icmp off (user namespace)", nil, true, true, false, map[string]string{sysctlPortStart: "0"}},
		{"pod sets them", map[string]string{sysctlPortStart: "80", sysctlPingGroup: "1 1", "net.core.somaxconn": "1024"}, true, true, true,
			map[string]string{sysctlPortStart: "80", sysctlPingGroup: "1 1", "net.core.somaxconn": "1024"}},
	} {
		got := podSysctls(tc.req, tc.ownNetNS, tc.ports, tc.icmp)
		if !maps.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	req := map[string]string{"kernel.shm_rmid_forced": "1"}
	podSysctls(req, true, true, true)
	if len(req) != 1 {
		t.Errorf("request's map changed: %v", req)
	}
}

func TestPauseAnnotations(t *testing.T) {
	in := specInput{id: "sb", imageName: "registry.k8s.io/pause:3.10.2", handler: &runtimes.Handler{PodAnnotations: []string{"vm/*"}},
		cfg: &runtimeapi.PodSandboxConfig{
			Metadata:     &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "ns", Uid: "u"},
			LogDirectory: "/var/log/pods/x", Annotations: map[string]string{"vm/size": "big", "other": "x"},
			Linux: &runtimeapi.LinuxPodSandboxConfig{Resources: &runtimeapi.LinuxContainerResources{
				CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 128 << 20}}}}
	a := pauseAnnotations(in)
	want := map[string]string{
		"io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-id": "sb",
		"io.kubernetes.cri.sandbox-name": "web", "io.kubernetes.cri.sandbox-namespace": "ns", "io.kubernetes.cri.sandbox-uid": "u",
		"io.kubernetes.cri.sandbox-log-directory": "/var/log/pods/x", "io.kubernetes.cri.podsandbox.image-name": "registry.k8s.io/pause:3.10.2",
		"io.kubernetes.cri.sandbox-cpu-period": "100000", "io.kubernetes.cri.sandbox-cpu-quota": "50000",
		"io.kubernetes.cri.sandbox-cpu-shares": "512", "io.kubernetes.cri.sandbox-memory": "134217728",
		"vm/size": "big",
	}
	if !maps.Equal(a, want) {
		t.Errorf("annotations\n got %v\nwant %v", a, want)
	}
	in.cfg.Linux.Resources = nil
	if _, ok := pauseAnnotations(in)["io.kubernetes.cri.sandbox-memory"]; ok {
		t.Error("sandbox resource annotations without pod resources")
	}
}

func TestWithCPUShares(t *testing.T) {
	s := &oci.Spec{}
	if err := withCPUShares(2)(context.Background(), nil, nil, s); err != nil {
		t.Fatal(err)
	}
	if *s.Linux.Resources.CPU.Shares != 2 {
		t.Errorf("shares %d", *s.Linux.Resources.CPU.Shares)
	}
}

// The whole pause spec, from containerd's default: what the pause process
// gets, compared with upstream's.
func TestPauseSpec(t *testing.T) {
	img := &images.Image{Spec: ocispec.Image{Config: ocispec.ImageConfig{Entrypoint: []string{"/pause"}, User: "65535:65535"}}}
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "web"}, Hostname: "web",
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{SupplementalGroups: []int64{4000}}}}
	opts, err := pauseSpec(specInput{id: "sb", cfg: cfg, image: img, handler: &runtimes.Handler{}, files: Files{root: "/r", state: "/s"},
		netnsPath: "/run/netns/x", unprivilegedPorts: true, unprivilegedICMP: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := namespaces.WithNamespace(context.Background(), "test")
	s, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: "sb"}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Process.Rlimits) != 0 {
		t.Errorf("rlimits %v", s.Process.Rlimits)
	}
	if !s.Root.Readonly {
		t.Error("rootfs writable")
	}
	if *s.Linux.Resources.CPU.Shares != 2 {
		t.Errorf("cpu shares %d", *s.Linux.Resources.CPU.Shares)
	}
	if slices.Contains(s.Process.User.AdditionalGids, 4000) {
		t.Errorf("pod supplemental groups on pause: %v", s.Process.User.AdditionalGids)
	}
	if s.Linux.Sysctl[sysctlPortStart] != "0" || s.Linux.Sysctl[sysctlPingGroup] != "0 2147483647" && !runningInUserNS() {
		t.Errorf("sysctls %v", s.Linux.Sysctl)
	}
	mounts := map[string]specs.Mount{}
	for _, m := range s.Mounts {
		mounts[m.Destination] = m
	}
	for _, gone := range []string{"/etc/hostname", "/etc/hosts", "/run"} {
		if _, ok := mounts[gone]; ok {
			t.Errorf("pause mounts %s", gone)
		}
	}
	strict := []string{"rbind", "ro", "nosuid", "nodev", "noexec"}
	for dst, src := range map[string]string{"/etc/resolv.conf": "/r/resolv.conf", "/dev/shm": "/s/shm"} {
		if m := mounts[dst]; m.Source != src || !slices.Equal(m.Options, strict) {
			t.Errorf("%s: %+v", dst, m)
		}
	}
}

// A pod in its own user namespace gets neither default sysctl: its network
// namespace belongs to the node's user namespace, so runc could not write
// them.
func TestPauseSpecUserNamespaceNoDefaultSysctls(t *testing.T) {
	img := &images.Image{Spec: ocispec.Image{Config: ocispec.ImageConfig{Entrypoint: []string{"/pause"}}}}
	cfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "u"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
			UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
				Uids: []*runtimeapi.IDMapping{{HostId: 200000, Length: 65536}}, Gids: []*runtimeapi.IDMapping{{HostId: 200000, Length: 65536}}}}}}}
	opts, err := pauseSpec(specInput{id: "sb", cfg: cfg, image: img, handler: &runtimes.Handler{}, files: Files{root: "/r", state: "/s"},
		netnsPath: "/run/netns/x", unprivilegedPorts: true, unprivilegedICMP: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := oci.GenerateSpec(namespaces.WithNamespace(context.Background(), "test"), nil, &containers.Container{ID: "sb"}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Linux.Sysctl) != 0 {
		t.Errorf("sysctls %v", s.Linux.Sysctl)
	}
}
