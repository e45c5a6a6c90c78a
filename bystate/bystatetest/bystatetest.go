// Package bystatetest scrapes a bystate collector in tests.
package bystatetest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Gather scrapes c through a pedantic registry, which also checks that
// what it collects matches what it describes, and returns the gauge
// family's values by state label. Any other family fails the test.
func Gather(t testing.TB, c prometheus.Collector, family string) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != family || mf.GetType().String() != "GAUGE" {
			t.Fatalf("unexpected family %s %s", mf.GetName(), mf.GetType())
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	return out
}
