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
