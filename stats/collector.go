package stats

import (
	"context"
	"fmt"
	"sync"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/log"
)

// Layer names a container's writable layer: its snapshot key (the
// container ID), its snapshotter and that snapshotter's root folder.
type Layer struct {
	ID, Snapshotter, Mountpoint string
}

// LayerUsage is a writable layer's disk usage at one moment.
type LayerUsage struct {
	Timestamp             time.Time
	Mountpoint            string
	UsedBytes, InodesUsed uint64
}

// TaskStats is a task's latest sample, with its CPU rate over the previous
// sample once there is one.
type TaskStats struct {
	Sample
	NanoCores uint64
	HasRate   bool // NanoCores is known
}

// Options are the collector's sources.
type Options struct {
	// Tasks is containerd's task service: one Metrics call samples every
	// task of the namespace.
	Tasks tasks.TasksClient
	// Snapshotter returns the named snapshotter.
	Snapshotter func(name string) snapshots.Snapshotter
	// Layers lists every container's writable layer.
	Layers func() []Layer
	// SamplePeriod is the time between task samples (stats_sample_period);
	// LayerPeriod between layer usage walks (stats_collect_period).
	SamplePeriod, LayerPeriod time.Duration
}

// Collector keeps the latest samples of every task and writable layer,
// refreshed in the background, so that a list of N containers costs N map
// lookups and not N shim round trips.
type Collector struct {
	opts Options

	mu     sync.RWMutex
	tasks  map[string]TaskStats
	layers map[string]LayerUsage
}

// New returns a collector; Run starts its sampling.
func New(opts Options) *Collector {
	return &Collector{opts: opts, tasks: map[string]TaskStats{}, layers: map[string]LayerUsage{}}
}

// Run samples tasks every SamplePeriod and layers every LayerPeriod until
// ctx ends.
func (c *Collector) Run(ctx context.Context) {
	go c.every(ctx, c.opts.LayerPeriod, "layers", c.collectLayers)
	c.every(ctx, c.opts.SamplePeriod, "tasks", c.collectTasks)
}

func (c *Collector) every(ctx context.Context, period time.Duration, kind string, collect func(context.Context) error) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		start := time.Now()
		if err := collect(ctx); err != nil && ctx.Err() == nil {
			collectErrors.WithValues(kind).Inc()
			log.G(ctx).WithError(err).WithField("kind", kind).Warn("collecting stats")
		}
		collectDuration.WithValues(kind).UpdateSince(start)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// collectTasks samples every task of the namespace in one call; tasks
// absent from the answer (exited, removed) are forgotten.
func (c *Collector) collectTasks(ctx context.Context) error {
	samples, err := c.sample(ctx, nil)
	if err != nil {
		return err
	}
	tasksSampled.Set(float64(len(samples)))
	c.merge(samples, true)
	return nil
}

// sample asks containerd for the metrics of the tasks ids (all with none)
// and decodes them; a task whose metric does not decode is left out.
func (c *Collector) sample(ctx context.Context, ids []string) (map[string]Sample, error) {
	req := &tasks.MetricsRequest{}
	for _, id := range ids {
		// Filters are ORed.
		req.Filters = append(req.Filters, "id=="+id)
	}
	resp, err := c.opts.Tasks.Metrics(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("task metrics: %w", err)
	}
	out := make(map[string]Sample, len(resp.GetMetrics()))
	for _, m := range resp.GetMetrics() {
		s, err := Decode(m)
		if err != nil {
			log.G(ctx).WithError(err).Debug("task metric")
			continue
		}
		out[m.GetID()] = s
	}
	return out, nil
}

// merge files new samples, computing each task's rate against the sample
// it replaces. With all, the samples are the whole set of tasks.
func (c *Collector) merge(samples map[string]Sample, all bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := c.tasks
	if all {
		next = make(map[string]TaskStats, len(samples))
	}
	for id, s := range samples {
		ts := TaskStats{Sample: s}
		if prev, ok := c.tasks[id]; ok {
			if !s.Timestamp.After(prev.Timestamp) {
				// An older sample (a periodic one that started before an
				// on-demand one) never replaces a newer one.
				next[id] = prev
				continue
			}
			ts.NanoCores, ts.HasRate = NanoCores(prev.Sample, s), true
		}
		next[id] = ts
	}
	c.tasks = next
}

// Tasks returns the latest stats of the tasks ids. Those with no sample
// yet (a container that just started) are sampled now, in one call; a task
// that has no metrics (not running) is absent from the answer.
func (c *Collector) Tasks(ctx context.Context, ids []string) (map[string]TaskStats, error) {
	out := make(map[string]TaskStats, len(ids))
	var missing []string
	c.mu.RLock()
	for _, id := range ids {
		if ts, ok := c.tasks[id]; ok {
			out[id] = ts
		} else {
			missing = append(missing, id)
		}
	}
	c.mu.RUnlock()
	if len(missing) == 0 {
		return out, nil
	}
	start := time.Now()
	samples, err := c.sample(ctx, missing)
	collectDuration.WithValues("on_demand").UpdateSince(start)
	if err != nil {
		collectErrors.WithValues("on_demand").Inc()
		return nil, err
	}
	c.merge(samples, false)
	c.mu.RLock()
	for id, s := range samples {
		if ts, ok := c.tasks[id]; ok {
			out[id] = ts
		} else {
			// A periodic collection that started before this task did
			// replaced the set meanwhile.
			out[id] = TaskStats{Sample: s}
		}
	}
	c.mu.RUnlock()
	return out, nil
}

// collectLayers measures every container's writable layer; layers of
// removed containers are forgotten.
func (c *Collector) collectLayers(ctx context.Context) error {
	layers := c.opts.Layers()
	next := make(map[string]LayerUsage, len(layers))
	for _, l := range layers {
		u, err := c.usage(ctx, l)
		if err != nil {
			// Removed during the walk, or not made yet.
			log.G(ctx).WithError(err).WithField("container", l.ID).Debug("writable layer usage")
			continue
		}
		next[l.ID] = u
	}
	c.mu.Lock()
	c.layers = next
	c.mu.Unlock()
	return nil
}

func (c *Collector) usage(ctx context.Context, l Layer) (LayerUsage, error) {
	u, err := c.opts.Snapshotter(l.Snapshotter).Usage(ctx, l.ID)
	if err != nil {
		return LayerUsage{}, fmt.Errorf("snapshot %s usage: %w", l.ID, err)
	}
	return LayerUsage{Timestamp: time.Now(), Mountpoint: l.Mountpoint, UsedBytes: uint64(u.Size), InodesUsed: uint64(u.Inodes)}, nil
}

// WritableLayers returns the latest usage of the containers ids' writable
// layers, measuring now those not measured yet (created since the last
// walk). A container without a layer is absent.
func (c *Collector) WritableLayers(ctx context.Context, ids []string) map[string]LayerUsage {
	out := make(map[string]LayerUsage, len(ids))
	missing := map[string]bool{}
	c.mu.RLock()
	for _, id := range ids {
		if u, ok := c.layers[id]; ok {
			out[id] = u
		} else {
			missing[id] = true
		}
	}
	c.mu.RUnlock()
	if len(missing) == 0 {
		return out
	}
	measured := map[string]LayerUsage{}
	for _, l := range c.opts.Layers() {
		if !missing[l.ID] {
			continue
		}
		u, err := c.usage(ctx, l)
		if err != nil {
			log.G(ctx).WithError(err).WithField("container", l.ID).Debug("writable layer usage")
			continue
		}
		out[l.ID], measured[l.ID] = u, u
	}
	c.mu.Lock()
	for id, u := range measured {
		if _, ok := c.layers[id]; !ok {
			c.layers[id] = u
		}
	}
	c.mu.Unlock()
	return out
}

// Sum adds the stats of a pod's tasks into the pod's: counters and sizes
// add up, the timestamp is the latest, the rate is known only when every
// task's is, and there is a memory limit only when every task has one.
func Sum(all []TaskStats) TaskStats {
	var s TaskStats
	if len(all) == 0 {
		return s
	}
	s.HasRate = true
	limited := true
	for _, t := range all {
		if t.Timestamp.After(s.Timestamp) {
			s.Timestamp = t.Timestamp
		}
		s.CPUUsageNanos += t.CPUUsageNanos
		s.CPUUserNanos += t.CPUUserNanos
		s.CPUSystemNanos += t.CPUSystemNanos
		s.NanoCores += t.NanoCores
		s.HasRate = s.HasRate && t.HasRate
		m := &s.Memory
		m.Usage += t.Memory.Usage
		m.WorkingSet += t.Memory.WorkingSet
		m.RSS += t.Memory.RSS
		m.Cache += t.Memory.Cache
		m.PageFaults += t.Memory.PageFaults
		m.MajorPageFaults += t.Memory.MajorPageFaults
		m.Limit += t.Memory.Limit
		limited = limited && t.Memory.Limit != 0
		s.Pids += t.Pids
	}
	if !limited {
		s.Memory.Limit = 0
	}
	if !s.HasRate {
		s.NanoCores = 0
	}
	return s
}
