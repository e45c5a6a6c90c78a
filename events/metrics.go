package events

import metrics "github.com/docker/go-metrics"

// Metrics is the events metrics namespace; the plugin registers it.
var Metrics = metrics.NewNamespace("nodecri", "events", nil)

// subscribersDropped counts GetContainerEvents subscribers dropped for
// falling SubscriberBuffer events behind
// (nodecri_events_subscribers_dropped_total).
var subscribersDropped = Metrics.NewCounter("subscribers_dropped", "container event subscribers dropped for falling too far behind (their stream ended ResourceExhausted)")
