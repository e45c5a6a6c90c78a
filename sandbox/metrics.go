package sandbox

import (
	metrics "github.com/docker/go-metrics"
	"github.com/prometheus/client_golang/prometheus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/bystate"
)

// Metrics is the sandbox metrics namespace; the plugin registers it.
var Metrics = metrics.NewNamespace("nodecri", "sandbox", nil)

// phaseDuration times RunPodSandbox's phases: netns, cni_add,
// pause_create, pause_start, and the total.
var phaseDuration = Metrics.NewLabeledTimer("run_phase_duration", "RunPodSandbox phase durations", "phase")

var podsDesc = Metrics.NewDesc("pods", "pod sandboxes by state (ready, notready)", metrics.Unit(""), "state")

// StateCollector counts st's sandboxes by state when scraped. The plugin
// adds it to Metrics before registering the namespace.
func StateCollector(st *Store) prometheus.Collector {
	return bystate.New(podsDesc, runtimeapi.PodSandboxState_name, "SANDBOX_", func() []runtimeapi.PodSandboxState {
		var states []runtimeapi.PodSandboxState
		for _, s := range st.List() {
			states = append(states, s.Status().State())
		}
		return states
	})
}
