package sandbox

import (
	"strings"

	metrics "github.com/docker/go-metrics"
	"github.com/prometheus/client_golang/prometheus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Metrics is the sandbox metrics namespace; the plugin registers it.
var Metrics = metrics.NewNamespace("nodecri", "sandbox", nil)

// phaseDuration times RunPodSandbox's phases: netns, cni_add,
// pause_create, pause_start, and the total.
var phaseDuration = Metrics.NewLabeledTimer("run_phase_duration", "RunPodSandbox phase durations", "phase")

var podsDesc = Metrics.NewDesc("pods", "pod sandboxes by state (ready, notready)", metrics.Unit(""), "state")

// StateCollector counts st's sandboxes by state when scraped: the store is
// the truth, so no gauge has to be kept in step with it. Every state is
// reported, zeros included, so that queries see a series from the start.
// The plugin adds it to Metrics before registering the namespace.
func StateCollector(st *Store) prometheus.Collector { return stateCollector{st} }

type stateCollector struct{ store *Store }

func (stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- podsDesc }

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	n := map[runtimeapi.PodSandboxState]int{}
	for _, s := range c.store.List() {
		n[s.Status().State]++
	}
	for v, name := range runtimeapi.PodSandboxState_name {
		state := runtimeapi.PodSandboxState(v)
		ch <- prometheus.MustNewConstMetric(podsDesc, prometheus.GaugeValue, float64(n[state]), stateLabel(name))
	}
}

// stateLabel is the CRI enum's name without its prefix: SANDBOX_READY is
// ready.
func stateLabel(name string) string {
	return strings.ToLower(strings.TrimPrefix(name, "SANDBOX_"))
}
