package sandbox

import metrics "github.com/docker/go-metrics"

// Metrics is the sandbox metrics namespace; the plugin registers it.
var Metrics = metrics.NewNamespace("nodecri", "sandbox", nil)

// phaseDuration times RunPodSandbox's phases: netns, cni_add,
// pause_create, pause_start, and the total.
var phaseDuration = Metrics.NewLabeledTimer("run_phase_duration", "RunPodSandbox phase durations", "phase")
