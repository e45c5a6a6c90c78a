package validate

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func cidrReq(s string) *runtimeapi.UpdateRuntimeConfigRequest {
	return &runtimeapi.UpdateRuntimeConfigRequest{RuntimeConfig: &runtimeapi.RuntimeConfig{
		NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: s}}}
}

func TestPodCIDR(t *testing.T) {
	for _, ok := range []string{"", "10.1.0.0/24", "10.1.0.0/24,fd00::/64", " 10.1.0.0/24 , fd00::/64 "} {
		if err := Request(cidrReq(ok)); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"banana", "10.1.0.0", "10.1.0.0/24,../etc", "10.0.0.0/8,10.1.0.0/16,fd00::/64"} {
		err := Request(cidrReq(bad))
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("%q: got %v, want InvalidArgument", bad, err)
		}
	}
	if got := PodCIDRs(" a ,, b"); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("PodCIDRs split = %q", got)
	}
}

func TestID(t *testing.T) {
	for _, ok := range []string{"0123abcdef", "notexist", "Not-Exist_1.0"} {
		if err := ID("pod_sandbox_id", ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "..", "../../etc", "a/b", "a\x00b", strings.Repeat("a", 129)} {
		if err := ID("pod_sandbox_id", bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%q: got %v, want InvalidArgument", bad, err)
		}
	}
}

func TestStatsRequests(t *testing.T) {
	for _, ok := range []any{
		&runtimeapi.ContainerStatsRequest{ContainerId: "abc"},
		&runtimeapi.ListContainerStatsRequest{},
		&runtimeapi.ListContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{Id: "abc", PodSandboxId: "def"}},
		&runtimeapi.StreamPodSandboxStatsRequest{},
		&runtimeapi.PodSandboxStatsRequest{PodSandboxId: "abc"},
	} {
		if err := Request(ok); err != nil {
			t.Errorf("%v refused: %v", ok, err)
		}
	}
	for _, bad := range []any{
		&runtimeapi.ContainerStatsRequest{},
		&runtimeapi.PodSandboxStatsRequest{PodSandboxId: "../x"},
		&runtimeapi.ListContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{PodSandboxId: "a/b"}},
		&runtimeapi.StreamContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{Id: ".."}},
		&runtimeapi.ListPodSandboxStatsRequest{Filter: &runtimeapi.PodSandboxStatsFilter{Id: "a b"}},
	} {
		if err := Request(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%v: got %v, want InvalidArgument", bad, err)
		}
	}
}

// Each change makes an accepted request one the validator must refuse.
func TestRefusedBeforeAnythingIsMade(t *testing.T) {
	mb := strings.Repeat("x", 1<<20)
	big := map[string]string{}
	for i := range 50000 {
		big[strings.Repeat("k", 8)+string(rune('a'+i%26))+strings.Repeat("v", i%7)+string(rune(i))] = "value"
	}
	pods := map[string]func(c *runtimeapi.PodSandboxConfig){
		"hostname newline":  func(c *runtimeapi.PodSandboxConfig) { c.Hostname = "a\nb" },
		"name with CNI arg": func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Name = "p;IP=10.0.0.7" },
		"uid with space":    func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Uid = "u 1" },
		"hostname 65":       func(c *runtimeapi.PodSandboxConfig) { c.Hostname = strings.Repeat("h", 65) },
		"dns option space":  func(c *runtimeapi.PodSandboxConfig) { c.DnsConfig = &runtimeapi.DNSConfig{Options: []string{"a b"}} },
		"annotation 1 MB":   func(c *runtimeapi.PodSandboxConfig) { c.Annotations = map[string]string{"a": mb} },
		"labels":            func(c *runtimeapi.PodSandboxConfig) { c.Labels = big },
		"empty label key":   func(c *runtimeapi.PodSandboxConfig) { c.Labels = map[string]string{"": "x"} },
		"seccomp type": func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Seccomp: &runtimeapi.SecurityProfile{ProfileType: 9}}
		},
		"seccomp relative": func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "p.json"}}
		},
		"log directory long": func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = "/" + strings.Repeat("d", 4096) },
	}
	for name, change := range pods {
		req := validSandbox()
		change(req.Config)
		if err := Request(req); !errdefs.IsInvalidArgument(err) {
			t.Errorf("pod %s: %v, want InvalidArgument", name, err)
		}
	}
	ctrs := map[string]func(c *runtimeapi.ContainerConfig){
		"log path dot": func(c *runtimeapi.ContainerConfig) { c.LogPath = "." },
		"pid mode 99":  func(c *runtimeapi.ContainerConfig) { c.Linux = linux(&runtimeapi.NamespaceOption{Pid: 99}) },
		"ipc mode 99":  func(c *runtimeapi.ContainerConfig) { c.Linux = linux(&runtimeapi.NamespaceOption{Ipc: 99}) },
		"target no ID": func(c *runtimeapi.ContainerConfig) {
			c.Linux = linux(&runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET})
		},
		"target path": func(c *runtimeapi.ContainerConfig) {
			c.Linux = linux(&runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "../1"})
		},
		"target host pid": func(c *runtimeapi.ContainerConfig) {
			c.Linux = linux(&runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "1"})
		},
		"target self": func(c *runtimeapi.ContainerConfig) {
			c.Linux = linux(&runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "self"})
		},
		"argument 1 MB":   func(c *runtimeapi.ContainerConfig) { c.Args = []string{mb} },
		"argv 3 MB":       func(c *runtimeapi.ContainerConfig) { c.Args = slicesRepeat(strings.Repeat("a", 100<<10), 30) },
		"argument NUL":    func(c *runtimeapi.ContainerConfig) { c.Command = []string{"a\x00b"} },
		"env value NUL":   func(c *runtimeapi.ContainerConfig) { c.Envs = []*runtimeapi.KeyValue{{Key: "A", Value: []byte{0}}} },
		"env 1 MB":        func(c *runtimeapi.ContainerConfig) { c.Envs = []*runtimeapi.KeyValue{{Key: "A", Value: []byte(mb)}} },
		"annotation 1 MB": func(c *runtimeapi.ContainerConfig) { c.Annotations = map[string]string{"a": mb} },
		"groups policy": func(c *runtimeapi.ContainerConfig) {
			c.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{SupplementalGroupsPolicy: 5}}
		},
		"apparmor type": func(c *runtimeapi.ContainerConfig) {
			c.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{Apparmor: &runtimeapi.SecurityProfile{ProfileType: 7}}}
		},
		"attempt": func(c *runtimeapi.ContainerConfig) { c.Metadata.Attempt = 1 << 30 },
	}
	for name, change := range ctrs {
		req := validContainer()
		change(req.Config)
		if err := Request(req); !errdefs.IsInvalidArgument(err) {
			t.Errorf("container %s: %v, want InvalidArgument", name, err)
		}
	}
	ok := validContainer()
	ok.Config.Linux = linux(&runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: strings.Repeat("ab", 32)})
	ok.Config.Args = []string{strings.Repeat("a", 100<<10)}
	if err := Request(ok); err != nil {
		t.Errorf("valid container refused: %v", err)
	}
	if err := Request(&runtimeapi.ExecSyncRequest{ContainerId: "c", Cmd: []string{mb}}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("ExecSync with a 1 MB argument: %v", err)
	}
	if err := Exec(&runtimeapi.ExecRequest{ContainerId: "c", Cmd: []string{mb}, Stdout: true}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Exec with a 1 MB argument: %v", err)
	}
}

func linux(ns *runtimeapi.NamespaceOption) *runtimeapi.LinuxContainerConfig {
	return &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: ns}}
}

func slicesRepeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}
