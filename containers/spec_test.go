package containers

import (
	"context"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/pkg/oci"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/images"
)

func apply(t *testing.T, opt oci.SpecOpts) *oci.Spec {
	t.Helper()
	s := &oci.Spec{Process: &specs.Process{}, Linux: &specs.Linux{}}
	if err := opt(context.Background(), nil, nil, s); err != nil {
		t.Fatal(err)
	}
	return s
}

// The CRI's rules: command replaces the entrypoint and drops the image's
// cmd; args replace cmd; request env overrides the image's.
func TestProcessRules(t *testing.T) {
	img := &images.Image{Spec: ocispec.Image{Config: ocispec.ImageConfig{
		Entrypoint: []string{"/entry"}, Cmd: []string{"default"}, Env: []string{"A=image", "B=image"}, WorkingDir: "/work"}}}
	for _, tc := range []struct {
		cmd, args, want []string
	}{
		{nil, nil, []string{"/entry", "default"}},
		{[]string{"/bin/sh"}, nil, []string{"/bin/sh"}},
		{nil, []string{"x"}, []string{"/entry", "x"}},
		{[]string{"/bin/sh"}, []string{"-c", "y"}, []string{"/bin/sh", "-c", "y"}},
	} {
		cfg := &runtimeapi.ContainerConfig{Command: tc.cmd, Args: tc.args, Envs: []*runtimeapi.KeyValue{{Key: "B", Value: []byte("request")}}}
		s := apply(t, withProcess(cfg, img))
		if !slices.Equal(s.Process.Args, tc.want) {
			t.Errorf("command %v args %v: %v, want %v", tc.cmd, tc.args, s.Process.Args, tc.want)
		}
		if !slices.Contains(s.Process.Env, "B=request") || slices.Contains(s.Process.Env, "B=image") || !slices.Contains(s.Process.Env, "A=image") {
			t.Errorf("env %v", s.Process.Env)
		}
		if s.Process.Cwd != "/work" {
			t.Errorf("cwd %q", s.Process.Cwd)
		}
	}
}

// Resources translate for create and update alike; unified (cgroup v2
// keys) passes through for runtimes on a v2 host.
func TestResources(t *testing.T) {
	r := &runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, CpusetCpus: "0",
		MemoryLimitInBytes: 32 << 20, MemorySwapLimitInBytes: 64 << 20,
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}},
		Unified:        map[string]string{"memory.high": "30000000", "pids.max": "100"}}
	s := apply(t, withResources(r))
	res := s.Linux.Resources
	if *res.CPU.Shares != 512 || *res.CPU.Quota != 50000 || *res.CPU.Period != 100000 || res.CPU.Cpus != "0" {
		t.Errorf("cpu %+v", res.CPU)
	}
	if *res.Memory.Limit != 32<<20 || *res.Memory.Swap != 64<<20 {
		t.Errorf("memory %+v", res.Memory)
	}
	if len(res.HugepageLimits) != 1 || res.HugepageLimits[0].Pagesize != "2MB" {
		t.Errorf("hugepages %+v", res.HugepageLimits)
	}
	if res.Unified["memory.high"] != "30000000" || res.Unified["pids.max"] != "100" {
		t.Errorf("unified %v", res.Unified)
	}
}

func TestCapabilities(t *testing.T) {
	base := func() *oci.Spec {
		return &oci.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{
			Bounding: []string{"CAP_CHOWN", "CAP_KILL"}, Effective: []string{"CAP_CHOWN", "CAP_KILL"}, Permitted: []string{"CAP_CHOWN", "CAP_KILL"}}}}
	}
	s := base()
	if err := withCapabilities(&runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"net_admin"}})(context.Background(), nil, nil, s); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Process.Capabilities.Bounding, []string{"CAP_NET_ADMIN"}) {
		t.Errorf("drop ALL + add net_admin: %v", s.Process.Capabilities.Bounding)
	}
	s = base()
	withCapabilities(&runtimeapi.Capability{DropCapabilities: []string{"KILL"}})(context.Background(), nil, nil, s)
	if slices.Contains(s.Process.Capabilities.Bounding, "CAP_KILL") || !slices.Contains(s.Process.Capabilities.Bounding, "CAP_CHOWN") {
		t.Errorf("drop KILL: %v", s.Process.Capabilities.Bounding)
	}
}
