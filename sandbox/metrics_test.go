package sandbox

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// gather scrapes c through a pedantic registry, which also checks that
// what it collects matches what it describes.
func gather(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "nodecri_sandbox_pods" || mf.GetType().String() != "GAUGE" {
			t.Fatalf("unexpected family %s %s", mf.GetName(), mf.GetType())
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	return out
}

func TestStateCollectorCountsStoreAtScrape(t *testing.T) {
	st := NewStore()
	c := StateCollector(st)
	check := func(what string, ready, notReady float64) {
		t.Helper()
		got := gather(t, c)
		if len(got) != 2 || got["ready"] != ready || got["notready"] != notReady {
			t.Errorf("%s: %v, want ready %v notready %v", what, got, ready, notReady)
		}
	}
	check("empty store", 0, 0)
	a := &Sandbox{ID: "a", state: runtimeapi.PodSandboxState_SANDBOX_READY}
	st.Add(a)
	st.Add(&Sandbox{ID: "b", state: runtimeapi.PodSandboxState_SANDBOX_READY})
	st.Add(&Sandbox{ID: "c", state: runtimeapi.PodSandboxState_SANDBOX_NOTREADY})
	check("2 ready, 1 not", 2, 1)
	// A stop or a removal shows at the next scrape.
	a.mu.Lock()
	a.state = runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	a.mu.Unlock()
	st.Delete("b")
	check("after a stop and a removal", 0, 2)
}
