// Package bystate counts a store's objects by state for Prometheus when
// scraped: the store is the truth, so no gauge has to be kept in step with
// it. Every state of the CRI enum is reported, zeros included, so that
// queries see a series from the start.
package bystate

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector is a prometheus.Collector of one gauge labelled "state".
type Collector[S ~int32] struct {
	desc   *prometheus.Desc
	names  map[int32]string
	prefix string
	states func() []S
}

// New counts the states returned by states at each scrape, under desc.
// names is the CRI enum's name map; a state's label is its name without
// prefix, lower case: CONTAINER_RUNNING is running.
func New[S ~int32](desc *prometheus.Desc, names map[int32]string, prefix string, states func() []S) *Collector[S] {
	return &Collector[S]{desc: desc, names: names, prefix: prefix, states: states}
}

func (c *Collector[S]) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *Collector[S]) Collect(ch chan<- prometheus.Metric) {
	n := map[S]int{}
	for _, s := range c.states() {
		n[s]++
	}
	for v, name := range c.names {
		label := strings.ToLower(strings.TrimPrefix(name, c.prefix))
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n[S(v)]), label)
	}
}
