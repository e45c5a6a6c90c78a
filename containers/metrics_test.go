package containers

import (
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/bystate/bystatetest"
)

func TestStateCollectorCountsStoreAtScrape(t *testing.T) {
	st := NewStore()
	c := StateCollector(st)
	check := func(what string, created, running, exited float64) {
		t.Helper()
		got := bystatetest.Gather(t, c, "nodecri_containers_by_state")
		want := map[string]float64{"created": created, "running": running, "exited": exited, "unknown": 0}
		if len(got) != len(want) {
			t.Errorf("%s: %v, want %v", what, got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %v, want %v", what, got, want)
				break
			}
		}
	}
	check("empty store", 0, 0, 0)
	add := func(id, sandbox string, s runtimeapi.ContainerState) *Container {
		ctr := &Container{ID: id, SandboxID: sandbox, status: Status{State: s}}
		st.Add(ctr)
		return ctr
	}
	a := add("a", "p1", runtimeapi.ContainerState_CONTAINER_RUNNING)
	add("b", "p1", runtimeapi.ContainerState_CONTAINER_CREATED)
	add("c", "p2", runtimeapi.ContainerState_CONTAINER_RUNNING)
	check("1 created, 2 running", 1, 2, 0)
	// An exit shows at the next scrape.
	a.mu.Lock()
	a.status.State = runtimeapi.ContainerState_CONTAINER_EXITED
	a.mu.Unlock()
	check("after one exit", 1, 1, 1)
}
