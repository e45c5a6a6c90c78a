package containers

import (
	metrics "github.com/docker/go-metrics"
	"github.com/prometheus/client_golang/prometheus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/bystate"
)

// Metrics is the container metrics namespace; the plugin registers it.
var Metrics = metrics.NewNamespace("nodecri", "containers", nil)

var (
	exitsTotal  = Metrics.NewLabeledCounter("exits", "container exits by reason (Completed, Error, OOMKilled)", "reason")
	opDurations = Metrics.NewLabeledTimer("operation_duration", "container create/start/stop/remove duration by runtime handler", "operation", "runtime_handler")
)

var containersDesc = Metrics.NewDesc("by_state", "containers by state (created, running, exited, unknown)", metrics.Unit(""), "state")

// StateCollector counts st's containers by state when scraped. The plugin
// adds it to Metrics before registering the namespace.
func StateCollector(st *Store) prometheus.Collector {
	return bystate.New(containersDesc, runtimeapi.ContainerState_name, "CONTAINER_", func() []runtimeapi.ContainerState {
		var states []runtimeapi.ContainerState
		for _, c := range st.List("") {
			states = append(states, c.Status().State)
		}
		return states
	})
}
