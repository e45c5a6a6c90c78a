package validate

import (
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestUpdatePodSandboxResources(t *testing.T) {
	req := func(r *runtimeapi.LinuxContainerResources) *runtimeapi.UpdatePodSandboxResourcesRequest {
		return &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: "abc", Overhead: r, Resources: r}
	}
	good := []*runtimeapi.LinuxContainerResources{
		nil,
		{},
		{CpuPeriod: 100000, CpuQuota: -1, CpuShares: 1024, MemoryLimitInBytes: 1 << 30, MemorySwapLimitInBytes: -1,
			OomScoreAdj: -998, CpusetCpus: "0-3,5", CpusetMems: "0",
			HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}},
			Unified:        map[string]string{"memory.high": "max"}},
	}
	for i, r := range good {
		if err := Request(req(r)); err != nil {
			t.Errorf("good %d refused: %v", i, err)
		}
	}
	bad := []*runtimeapi.LinuxContainerResources{
		{CpuPeriod: -1},
		{CpuQuota: -2},
		{CpuShares: -5},
		{MemoryLimitInBytes: -1},
		{MemorySwapLimitInBytes: -2},
		{OomScoreAdj: 1001},
		{CpusetCpus: "0;rm"},
		{CpusetMems: "a"},
		{HugepageLimits: []*runtimeapi.HugepageLimit{{Limit: 1}}},
		{Unified: map[string]string{"../memory.max": "1"}},
	}
	for i, r := range bad {
		if err := Request(req(r)); !errdefs.IsInvalidArgument(err) {
			t.Errorf("bad %d (%v): got %v, want InvalidArgument", i, r, err)
		}
	}
	if err := Request(&runtimeapi.UpdatePodSandboxResourcesRequest{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("no pod_sandbox_id: got %v, want InvalidArgument", err)
	}
}
