package containers

import (
	"strings"

	metrics "github.com/docker/go-metrics"
	"github.com/prometheus/client_golang/prometheus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Metrics is the container metrics namespace; the plugin registers it.
var Metrics = metrics.NewNamespace("nodecri", "containers", nil)

var (
	exitsTotal  = Metrics.NewLabeledCounter("exits", "container exits by reason (Completed, Error, OOMKilled)", "reason")
	opDurations = Metrics.NewLabeledTimer("operation_duration", "container create/start/stop/remove duration by runtime handler", "operation", "runtime_handler")
)

var containersDesc = Metrics.NewDesc("by_state", "containers by state (created, running, exited, unknown)", metrics.Unit(""), "state")

// StateCollector counts st's containers by state when scraped: the store
// is the truth, so no gauge has to be kept in step with it. Every state is
// reported, zeros included, so that queries see a series from the start.
// The plugin adds it to Metrics before registering the namespace.
func StateCollector(st *Store) prometheus.Collector { return stateCollector{st} }

type stateCollector struct{ store *Store }

func (stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- containersDesc }

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	n := map[runtimeapi.ContainerState]int{}
	for _, ctr := range c.store.List("") {
		n[ctr.Status().State]++
	}
	for v, name := range runtimeapi.ContainerState_name {
		state := runtimeapi.ContainerState(v)
		ch <- prometheus.MustNewConstMetric(containersDesc, prometheus.GaugeValue, float64(n[state]), stateLabel(name))
	}
}

// stateLabel is the CRI enum's name without its prefix: CONTAINER_RUNNING
// is running.
func stateLabel(name string) string {
	return strings.ToLower(strings.TrimPrefix(name, "CONTAINER_"))
}
