package containers

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
		if mf.GetName() != "nodecri_containers_by_state" || mf.GetType().String() != "GAUGE" {
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
	check := func(what string, created, running, exited float64) {
		t.Helper()
		got := gather(t, c)
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
