package stats

import (
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func u64(v uint64) *runtimeapi.UInt64Value { return &runtimeapi.UInt64Value{Value: v} }

// CPU is the CRI's view of a task's CPU.
func CPU(ts TaskStats) *runtimeapi.CpuUsage {
	out := &runtimeapi.CpuUsage{Timestamp: ts.Timestamp.UnixNano(), UsageCoreNanoSeconds: u64(ts.CPUUsageNanos)}
	if ts.HasRate {
		out.UsageNanoCores = u64(ts.NanoCores)
	}
	return out
}

// MemoryUsage is the CRI's view of a task's memory.
func MemoryUsage(ts TaskStats) *runtimeapi.MemoryUsage {
	m := ts.Memory
	out := &runtimeapi.MemoryUsage{
		Timestamp:       ts.Timestamp.UnixNano(),
		WorkingSetBytes: u64(m.WorkingSet),
		UsageBytes:      u64(m.Usage),
		RssBytes:        u64(m.RSS),
		PageFaults:      u64(m.PageFaults),
		MajorPageFaults: u64(m.MajorPageFaults),
	}
	if a, ok := m.Available(); ok {
		out.AvailableBytes = u64(a)
	}
	return out
}

// Process is the CRI's view of a task's process count.
func Process(ts TaskStats) *runtimeapi.ProcessUsage {
	return &runtimeapi.ProcessUsage{Timestamp: ts.Timestamp.UnixNano(), ProcessCount: u64(ts.Pids)}
}

// FS is the CRI's view of a writable layer.
func FS(u LayerUsage) *runtimeapi.FilesystemUsage {
	return &runtimeapi.FilesystemUsage{
		Timestamp:  u.Timestamp.UnixNano(),
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: u.Mountpoint},
		UsedBytes:  u64(u.UsedBytes),
		InodesUsed: u64(u.InodesUsed),
	}
}

// NetworkUsage is the CRI's view of a pod's interfaces.
func NetworkUsage(n Network) *runtimeapi.NetworkUsage {
	conv := func(it Interface) *runtimeapi.NetworkInterfaceUsage {
		return &runtimeapi.NetworkInterfaceUsage{Name: it.Name, RxBytes: u64(it.RxBytes), RxErrors: u64(it.RxErrors), TxBytes: u64(it.TxBytes), TxErrors: u64(it.TxErrors)}
	}
	out := &runtimeapi.NetworkUsage{Timestamp: n.Timestamp.UnixNano()}
	if d, ok := n.Default(); ok {
		out.DefaultInterface = conv(d)
	}
	for _, it := range n.Interfaces {
		out.Interfaces = append(out.Interfaces, conv(it))
	}
	return out
}

// The metrics ListPodSandboxMetrics reports, under cAdvisor's names so that
// the kubelet's /metrics/cadvisor keeps its series when it takes them from
// the CRI. The kubelet appends the namespace, pod and container labels.
var (
	containerLabels = []string{"id", "name", "image"}
	fsLabels        = []string{"id", "name", "image", "device"}
	networkLabels   = []string{"id", "name", "image", "interface"}
)

type metricDef struct {
	name, help string
	typ        runtimeapi.MetricType
	labels     []string
}

var (
	counter = runtimeapi.MetricType_COUNTER
	gauge   = runtimeapi.MetricType_GAUGE
)

// containerMetrics, valued from a task's stats.
var containerMetrics = []struct {
	metricDef
	value func(TaskStats) (uint64, bool)
}{
	{metricDef{"container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds (whole seconds: CRI metric values are integers).", counter, containerLabels},
		func(t TaskStats) (uint64, bool) { return t.CPUUsageNanos / uint64(time.Second), true }},
	{metricDef{"container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds (whole seconds).", counter, containerLabels},
		func(t TaskStats) (uint64, bool) { return t.CPUUserNanos / uint64(time.Second), true }},
	{metricDef{"container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds (whole seconds).", counter, containerLabels},
		func(t TaskStats) (uint64, bool) { return t.CPUSystemNanos / uint64(time.Second), true }},
	{metricDef{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", gauge, containerLabels},
		func(t TaskStats) (uint64, bool) { return t.Memory.Usage, true }},
	{metricDef{"container_memory_working_set_bytes", "Current working set in bytes.", gauge, containerLabels},
		func(t TaskStats) (uint64, bool) { return t.Memory.WorkingSet, true }},
	{metricDef{"container_memory_rss", "Size of RSS in bytes.", gauge, containerLabels},
		func(t TaskStats) (uint64, bool) { return t.Memory.RSS, true }},
	{metricDef{"container_memory_cache", "Number of bytes of page cache memory.", gauge, containerLabels},
		func(t TaskStats) (uint64, bool) { return t.Memory.Cache, true }},
	{metricDef{"container_spec_memory_limit_bytes", "Memory limit for the container.", gauge, containerLabels},
		func(t TaskStats) (uint64, bool) { return t.Memory.Limit, true }},
	{metricDef{"container_processes", "Number of processes running inside the container.", gauge, containerLabels},
		func(t TaskStats) (uint64, bool) { return t.Pids, true }},
}

var fsMetrics = []struct {
	metricDef
	value func(LayerUsage) uint64
}{
	{metricDef{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", gauge, fsLabels},
		func(u LayerUsage) uint64 { return u.UsedBytes }},
	{metricDef{"container_fs_inodes_total", "Number of inodes used by the container's writable layer.", gauge, fsLabels},
		func(u LayerUsage) uint64 { return u.InodesUsed }},
}

var networkMetrics = []struct {
	metricDef
	value func(Interface) uint64
}{
	{metricDef{"container_network_receive_bytes_total", "Cumulative count of bytes received.", counter, networkLabels},
		func(i Interface) uint64 { return i.RxBytes }},
	{metricDef{"container_network_receive_packets_total", "Cumulative count of packets received.", counter, networkLabels},
		func(i Interface) uint64 { return i.RxPackets }},
	{metricDef{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.", counter, networkLabels},
		func(i Interface) uint64 { return i.RxDropped }},
	{metricDef{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.", counter, networkLabels},
		func(i Interface) uint64 { return i.RxErrors }},
	{metricDef{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", counter, networkLabels},
		func(i Interface) uint64 { return i.TxBytes }},
	{metricDef{"container_network_transmit_packets_total", "Cumulative count of packets transmitted.", counter, networkLabels},
		func(i Interface) uint64 { return i.TxPackets }},
	{metricDef{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting.", counter, networkLabels},
		func(i Interface) uint64 { return i.TxDropped }},
	{metricDef{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.", counter, networkLabels},
		func(i Interface) uint64 { return i.TxErrors }},
}

// Descriptors lists every metric ListPodSandboxMetrics may report.
func Descriptors() []*runtimeapi.MetricDescriptor {
	var out []*runtimeapi.MetricDescriptor
	add := func(d metricDef) {
		out = append(out, &runtimeapi.MetricDescriptor{Name: d.name, Help: d.help, LabelKeys: d.labels})
	}
	for _, m := range containerMetrics {
		add(m.metricDef)
	}
	for _, m := range fsMetrics {
		add(m.metricDef)
	}
	for _, m := range networkMetrics {
		add(m.metricDef)
	}
	return out
}

// Identity labels a metric's object: its ID, CRI name and image.
type Identity struct{ ID, Name, Image string }

func metric(d metricDef, ts time.Time, v uint64, labels ...string) *runtimeapi.Metric {
	return &runtimeapi.Metric{Name: d.name, Timestamp: ts.UnixNano(), MetricType: d.typ, LabelValues: labels, Value: u64(v)}
}

// ContainerMetrics values a container's metrics; layer may be nil.
func ContainerMetrics(id Identity, ts TaskStats, layer *LayerUsage) *runtimeapi.ContainerMetrics {
	out := &runtimeapi.ContainerMetrics{ContainerId: id.ID}
	for _, m := range containerMetrics {
		if v, ok := m.value(ts); ok {
			out.Metrics = append(out.Metrics, metric(m.metricDef, ts.Timestamp, v, id.ID, id.Name, id.Image))
		}
	}
	if layer != nil {
		for _, m := range fsMetrics {
			out.Metrics = append(out.Metrics, metric(m.metricDef, layer.Timestamp, m.value(*layer), id.ID, id.Name, id.Image, layer.Mountpoint))
		}
	}
	return out
}

// PodMetrics values a pod's own metrics: its network, per interface.
func PodMetrics(id Identity, n Network) []*runtimeapi.Metric {
	var out []*runtimeapi.Metric
	for _, it := range n.Interfaces {
		for _, m := range networkMetrics {
			out = append(out, metric(m.metricDef, n.Timestamp, m.value(it), id.ID, id.Name, id.Image, it.Name))
		}
	}
	return out
}
