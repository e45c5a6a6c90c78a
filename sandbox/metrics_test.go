package sandbox

import (
	"testing"

	"github.com/nodecri/nodecri/bystate/bystatetest"
)

func TestStateCollectorCountsStoreAtScrape(t *testing.T) {
	st := NewStore()
	c := StateCollector(st)
	check := func(what string, ready, notReady float64) {
		t.Helper()
		got := bystatetest.Gather(t, c, "nodecri_sandbox_pods")
		if len(got) != 2 || got["ready"] != ready || got["notready"] != notReady {
			t.Errorf("%s: %v, want ready %v notready %v", what, got, ready, notReady)
		}
	}
	check("empty store", 0, 0)
	a := &Sandbox{ID: "a", status: Status{Phase: PhaseReady}}
	st.Add(a)
	st.Add(&Sandbox{ID: "b", status: Status{Phase: PhaseReady}})
	st.Add(&Sandbox{ID: "c", status: Status{Phase: PhaseStopped}})
	check("2 ready, 1 not", 2, 1)
	// A stop or a removal shows at the next scrape.
	a.mu.Lock()
	a.status.Phase = PhaseExited
	a.mu.Unlock()
	st.Delete("b")
	check("after a stop and a removal", 0, 2)
}
