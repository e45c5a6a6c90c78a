package images

import metrics "github.com/docker/go-metrics"

// Metrics is the image service's metrics namespace; the plugin registers it.
var Metrics = metrics.NewNamespace("nodecri", "images", nil)

var (
	pullsTotal    = Metrics.NewLabeledCounter("pulls", "image pulls by result (success, failure)", "result")
	pullBytes     = Metrics.NewCounter("pull_bytes", "bytes received from registries while pulling")
	pullsInFlight = Metrics.NewGauge("pulls_in_flight", "image pulls in progress (shared pulls count once)", metrics.Unit(""))
	pullDuration  = Metrics.NewLabeledTimer("pull_duration", "image pull duration by result", "result")
)
