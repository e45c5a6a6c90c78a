package containers

import metrics "github.com/docker/go-metrics"

// Metrics is the container metrics namespace; the plugin registers it.
var Metrics = metrics.NewNamespace("nodecri", "containers", nil)

var (
	exitsTotal  = Metrics.NewLabeledCounter("exits", "container exits by reason (Completed, Error, OOMKilled)", "reason")
	opDurations = Metrics.NewLabeledTimer("operation_duration", "container create/start/stop/remove duration by runtime handler", "operation", "runtime_handler")
)
