package stats

import metrics "github.com/docker/go-metrics"

// Metrics is the stats collector's metrics namespace; the plugin registers it.
var Metrics = metrics.NewNamespace("nodecri", "stats", nil)

var (
	// collectDuration times one collection: "tasks" (one Metrics call for
	// every task), "on_demand" (tasks with no sample yet), "layers"
	// (snapshot usage of every container).
	collectDuration = Metrics.NewLabeledTimer("collect_duration", "stats collection duration by kind (tasks, on_demand, layers)", "kind")
	collectErrors   = Metrics.NewLabeledCounter("collect_errors", "failed stats collections by kind", "kind")
	tasksSampled    = Metrics.NewGauge("tasks_sampled", "tasks in the latest periodic collection", metrics.Unit(""))
)
