package containers

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/pkg/oci"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/images"
	"github.com/nodecri/nodecri/runtimes"
	"github.com/nodecri/nodecri/sandbox"
	"github.com/nodecri/nodecri/spec"
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
	huge := []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 << 20}}
	s := apply(t, withResources(r, huge))
	res := s.Linux.Resources
	if *res.CPU.Shares != 512 || *res.CPU.Quota != 50000 || *res.CPU.Period != 100000 || res.CPU.Cpus != "0" {
		t.Errorf("cpu %+v", res.CPU)
	}
	if *res.Memory.Limit != 32<<20 || spec.SwapAvailable() && *res.Memory.Swap != 64<<20 {
		t.Errorf("memory %+v", res.Memory)
	}
	if len(res.HugepageLimits) != 1 || res.HugepageLimits[0].Pagesize != "2MB" {
		t.Errorf("hugepages %+v", res.HugepageLimits)
	}
	if res.Unified["memory.high"] != "30000000" || res.Unified["pids.max"] != "100" {
		t.Errorf("unified %v", res.Unified)
	}
}

// The spec's hugepage limits are the policy's, never the request's as
// sent: the kubelet's zero limits must not reach runc where it cannot
// apply them.
func TestResourcesHugepagesFromPolicy(t *testing.T) {
	r := &runtimeapi.LinuxContainerResources{CpuShares: 2,
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}}}
	if s := apply(t, withResources(r, nil)); len(s.Linux.Resources.HugepageLimits) != 0 {
		t.Errorf("hugepages reached the spec: %+v", s.Linux.Resources.HugepageLimits)
	}
}

// UpdateContainerResources as the kubelet sends it: the CPU manager sends
// cpuset_cpus alone, which must not clear the limits set at create; an in
// place resize sends every field.
func TestMergeResources(t *testing.T) {
	created := &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512,
		MemoryLimitInBytes: 64 << 20, OomScoreAdj: 999,
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}},
		Unified:        map[string]string{"memory.high": "1000000"}}
	got := mergeResources(created, &runtimeapi.LinuxContainerResources{CpusetCpus: "0"})
	if got.CpusetCpus != "0" || got.CpuQuota != 50000 || got.CpuShares != 512 || got.MemoryLimitInBytes != 64<<20 ||
		len(got.HugepageLimits) != 1 || got.Unified["memory.high"] != "1000000" {
		t.Errorf("cpuset-only update: %v", got)
	}
	got = mergeResources(created, &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 100000, CpuShares: 1024,
		MemoryLimitInBytes: 128 << 20, Unified: map[string]string{"memory.max": "134217728"}})
	if got.CpuQuota != 100000 || got.CpuShares != 1024 || got.MemoryLimitInBytes != 128<<20 ||
		got.Unified["memory.high"] != "1000000" || got.Unified["memory.max"] != "134217728" {
		t.Errorf("resize: %v", got)
	}
	if created.CpuQuota != 50000 || len(created.Unified) != 1 {
		t.Errorf("merge changed the resources in force: %v", created)
	}
	if got := mergeResources(nil, &runtimeapi.LinuxContainerResources{CpuShares: 2}); got.CpuShares != 2 {
		t.Errorf("no resources at create: %v", got)
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

// HOSTNAME is the pod's hostname; the image's or the request's env wins.
func TestHostnameEnv(t *testing.T) {
	img := &images.Image{}
	s := apply(t, oci.Compose(withHostnameEnv("web-0"), withProcess(&runtimeapi.ContainerConfig{}, img)))
	if !slices.Contains(s.Process.Env, "HOSTNAME=web-0") {
		t.Errorf("env %v", s.Process.Env)
	}
	cfg := &runtimeapi.ContainerConfig{Envs: []*runtimeapi.KeyValue{{Key: "HOSTNAME", Value: []byte("mine")}}}
	s = apply(t, oci.Compose(withHostnameEnv("web-0"), withProcess(cfg, img)))
	if !slices.Contains(s.Process.Env, "HOSTNAME=mine") || slices.Contains(s.Process.Env, "HOSTNAME=web-0") {
		t.Errorf("request's HOSTNAME not kept: %v", s.Process.Env)
	}
	// PATH comes first, as upstream, also for images without one.
	s = apply(t, oci.Compose(oci.WithDefaultPathEnv, withHostnameEnv("web-0"), withProcess(&runtimeapi.ContainerConfig{}, img)))
	if len(s.Process.Env) != 2 || !strings.HasPrefix(s.Process.Env[0], "PATH=/usr/local/sbin:") || s.Process.Env[1] != "HOSTNAME=web-0" {
		t.Errorf("env of an image without PATH: %v", s.Process.Env)
	}
	host, _ := os.Hostname()
	s = apply(t, withHostnameEnv(""))
	if !slices.Contains(s.Process.Env, "HOSTNAME="+host) {
		t.Errorf("no pod hostname: env %v, want the node's %q", s.Process.Env, host)
	}
}

func TestCgroupNamespace(t *testing.T) {
	has := func(s *oci.Spec) bool {
		return slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.CgroupNamespace })
	}
	if !has(apply(t, withCgroupNamespace(true, false))) {
		t.Error("cgroup v2: no cgroup namespace")
	}
	if has(apply(t, withCgroupNamespace(true, true))) || has(apply(t, withCgroupNamespace(false, false))) {
		t.Error("cgroup namespace for a privileged container or on cgroup v1")
	}
}

// Masked and read-only paths are the request's only: none given (the
// kubelet's procMount Unmasked) means none, not containerd's defaults.
func TestMaskedPathsFromRequestOnly(t *testing.T) {
	base := func() *oci.Spec {
		return &oci.Spec{Process: &specs.Process{}, Linux: &specs.Linux{MaskedPaths: []string{"/proc/kcore"}, ReadonlyPaths: []string{"/proc/sys"}}}
	}
	run := func(sc *runtimeapi.LinuxContainerSecurityContext) *oci.Spec {
		s := base()
		if err := withSecurity(sc)(context.Background(), nil, nil, s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := run(&runtimeapi.LinuxContainerSecurityContext{}); len(s.Linux.MaskedPaths) != 0 || len(s.Linux.ReadonlyPaths) != 0 {
		t.Errorf("none requested: masked %v readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	s := run(&runtimeapi.LinuxContainerSecurityContext{MaskedPaths: []string{"/proc/keys"}, ReadonlyPaths: []string{"/proc/bus"}})
	if !slices.Equal(s.Linux.MaskedPaths, []string{"/proc/keys"}) || !slices.Equal(s.Linux.ReadonlyPaths, []string{"/proc/bus"}) {
		t.Errorf("requested: masked %v readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
}

// A memory limit without a swap limit means no swap, where the host can
// limit swap; where it cannot, no swap limit is set at all.
func TestSwapFollowsMemoryLimit(t *testing.T) {
	r := &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20}
	if _, mem := toOCIResources(r, true); mem.Swap == nil || *mem.Swap != 64<<20 {
		t.Errorf("swap accounting on: swap %v", mem.Swap)
	}
	if _, mem := toOCIResources(r, false); mem.Swap != nil {
		t.Errorf("swap accounting off: swap %v", *mem.Swap)
	}
	if _, mem := toOCIResources(&runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, MemorySwapLimitInBytes: -1}, true); *mem.Swap != -1 {
		t.Errorf("requested unlimited swap: %v", *mem.Swap)
	}
	if _, mem := toOCIResources(&runtimeapi.LinuxContainerResources{CpuShares: 2}, true); mem.Swap != nil || mem.Limit != nil {
		t.Errorf("no memory limit: %+v", mem)
	}
	// Status reports the same, without changing the request's record.
	if e := effectiveResources(r, true); e.MemorySwapLimitInBytes != 64<<20 || r.MemorySwapLimitInBytes != 0 {
		t.Errorf("effective swap %d, request %d", e.MemorySwapLimitInBytes, r.MemorySwapLimitInBytes)
	}
	if e := effectiveResources(r, false); e.MemorySwapLimitInBytes != 0 {
		t.Errorf("effective swap without accounting %d", e.MemorySwapLimitInBytes)
	}
}

func TestAnnotations(t *testing.T) {
	in := specInput{
		sandbox: &sandbox.Sandbox{ID: "sb", Config: &runtimeapi.PodSandboxConfig{
			Metadata:    &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "ns", Uid: "u"},
			Annotations: map[string]string{"pod.example/vm": "big", "pod.example/other": "x"}}},
		cfg: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
			Image:       &runtimeapi.ImageSpec{Image: "sha256:abc", UserSpecifiedImage: "busybox:1.36"},
			Annotations: map[string]string{"ctr.example/gpu": "1", "pod.example/vm": "small"}},
		imageRef: "sha256:abc", imageName: "docker.io/library/busybox:1.36",
		handler: &runtimes.Handler{PodAnnotations: []string{"pod.example/vm"}, ContainerAnnotations: []string{"ctr.example/*", "pod.example/*"}},
	}
	a := annotations(in)
	for k, want := range map[string]string{
		"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": "sb",
		"io.kubernetes.cri.sandbox-name": "web", "io.kubernetes.cri.sandbox-namespace": "ns", "io.kubernetes.cri.sandbox-uid": "u",
		"io.kubernetes.cri.container-name": "app", "io.kubernetes.cri.image-name": "busybox:1.36",
		"ctr.example/gpu": "1", "pod.example/vm": "small",
	} {
		if a[k] != want {
			t.Errorf("%s = %q, want %q", k, a[k], want)
		}
	}
	if _, ok := a["pod.example/other"]; ok {
		t.Error("pod annotation not allowed by pod_annotations passed through")
	}
	in.cfg.Image.UserSpecifiedImage = ""
	if got := annotations(in)["io.kubernetes.cri.image-name"]; got != "docker.io/library/busybox:1.36" {
		t.Errorf("image-name without a user-specified image = %q", got)
	}
	in.handler.ContainerAnnotations = nil
	if got := annotations(in)["pod.example/vm"]; got != "big" {
		t.Errorf("pod annotation through pod_annotations = %q", got)
	}
}
