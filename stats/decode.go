// Package stats samples the resource usage of the CRI's containers and pods:
// CPU, memory and process counts from containerd's task metrics (cgroup v1
// or v2, whichever the shim reports), writable-layer usage from the
// snapshotter, and pod network counters from the pod's network namespace.
// Sampling runs in the background so that a stats request costs a lookup.
package stats

import (
	"fmt"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/typeurl/v2"
)

// Sample is one task's usage at one moment, whatever the cgroup version.
type Sample struct {
	Timestamp time.Time
	// CPUUsageNanos is cumulative CPU time; user and system split it where
	// the cgroup reports them.
	CPUUsageNanos, CPUUserNanos, CPUSystemNanos uint64
	Memory                                      Memory
	// Pids is the number of processes (tasks) in the cgroup.
	Pids uint64
}

// Memory is a cgroup's memory accounting, in bytes except the fault counts.
type Memory struct {
	Usage uint64
	// WorkingSet is usage minus inactive file pages, the kubelet's and
	// cAdvisor's measure of what cannot be reclaimed cheaply (what eviction
	// looks at).
	WorkingSet      uint64
	RSS             uint64
	Cache           uint64
	PageFaults      uint64
	MajorPageFaults uint64
	// Limit is 0 when the cgroup has none.
	Limit uint64
}

// Available is what is left under the limit, as the kubelet counts it
// (limit minus working set); ok is false without a limit.
func (m Memory) Available() (uint64, bool) {
	if m.Limit == 0 {
		return 0, false
	}
	if m.WorkingSet >= m.Limit {
		return 0, true
	}
	return m.Limit - m.WorkingSet, true
}

// unlimited: cgroup v1 reports "no limit" as the largest page-aligned
// int64 (and v2's "max" comes back as MaxUint64); anything this large is no
// limit at all.
const unlimited = 1 << 62

// Decode turns one containerd task metric into a Sample.
func Decode(m *types.Metric) (Sample, error) {
	if m.GetData() == nil {
		return Sample{}, fmt.Errorf("metric of task %s has no data", m.GetID())
	}
	v, err := typeurl.UnmarshalAny(m.GetData())
	if err != nil {
		return Sample{}, fmt.Errorf("decode metric of task %s: %w", m.GetID(), err)
	}
	var s Sample
	switch d := v.(type) {
	case *v1.Metrics:
		s = fromV1(d)
	case *v2.Metrics:
		s = fromV2(d)
	default:
		return Sample{}, fmt.Errorf("metric of task %s: unknown type %s", m.GetID(), m.GetData().GetTypeUrl())
	}
	s.Timestamp = time.Now()
	if ts := m.GetTimestamp(); ts != nil {
		s.Timestamp = ts.AsTime()
	}
	return s, nil
}

func fromV1(d *v1.Metrics) Sample {
	var s Sample
	if u := d.GetCPU().GetUsage(); u != nil {
		s.CPUUsageNanos, s.CPUUserNanos, s.CPUSystemNanos = u.GetTotal(), u.GetUser(), u.GetKernel()
	}
	if m := d.GetMemory(); m != nil {
		usage := m.GetUsage().GetUsage()
		s.Memory = Memory{
			Usage:           usage,
			WorkingSet:      workingSet(usage, m.GetTotalInactiveFile()),
			RSS:             m.GetTotalRSS(),
			Cache:           m.GetTotalCache(),
			PageFaults:      m.GetTotalPgFault(),
			MajorPageFaults: m.GetTotalPgMajFault(),
			Limit:           limit(m.GetUsage().GetLimit()),
		}
	}
	s.Pids = d.GetPids().GetCurrent()
	return s
}

func fromV2(d *v2.Metrics) Sample {
	var s Sample
	if c := d.GetCPU(); c != nil {
		s.CPUUsageNanos = c.GetUsageUsec() * 1000
		s.CPUUserNanos = c.GetUserUsec() * 1000
		s.CPUSystemNanos = c.GetSystemUsec() * 1000
	}
	if m := d.GetMemory(); m != nil {
		s.Memory = Memory{
			Usage:           m.GetUsage(),
			WorkingSet:      workingSet(m.GetUsage(), m.GetInactiveFile()),
			RSS:             m.GetAnon(),
			Cache:           m.GetFile(),
			PageFaults:      m.GetPgfault(),
			MajorPageFaults: m.GetPgmajfault(),
			Limit:           limit(m.GetUsageLimit()),
		}
	}
	s.Pids = d.GetPids().GetCurrent()
	return s
}

func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile >= usage {
		return 0
	}
	return usage - inactiveFile
}

func limit(l uint64) uint64 {
	if l >= unlimited {
		return 0
	}
	return l
}

// NanoCores is the CPU rate between two samples of one task, in
// nanoseconds of CPU per second (1e9 is one full core); 0 when the samples
// do not allow it (same moment, or a counter that went back).
func NanoCores(prev, cur Sample) uint64 {
	dt := cur.Timestamp.Sub(prev.Timestamp)
	if dt <= 0 || cur.CPUUsageNanos < prev.CPUUsageNanos {
		return 0
	}
	return uint64(float64(cur.CPUUsageNanos-prev.CPUUsageNanos) / dt.Seconds())
}
