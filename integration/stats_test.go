package integration

import (
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/integration/daemon"
)

// withSamplePeriod sets stats_sample_period, so that a rate shows within
// the tests' wait.
func withSamplePeriod(p string) podOpt {
	return func(_ testing.TB, l *daemon.Layout) { l.CRI()["stats_sample_period"] = p }
}

func containerStats(t *testing.T, p *pod, id string) *runtimeapi.ContainerStats {
	t.Helper()
	r, err := p.d.Runtime.ContainerStats(ctxT(t), &runtimeapi.ContainerStatsRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("ContainerStats %s: %v", id, err)
	}
	return r.Stats
}

func listContainerStats(t *testing.T, p *pod, f *runtimeapi.ContainerStatsFilter) map[string]*runtimeapi.ContainerStats {
	t.Helper()
	r, err := p.d.Runtime.ListContainerStats(ctxT(t), &runtimeapi.ListContainerStatsRequest{Filter: f})
	if err != nil {
		t.Fatalf("ListContainerStats %v: %v", f, err)
	}
	out := map[string]*runtimeapi.ContainerStats{}
	for _, s := range r.Stats {
		out[s.GetAttributes().GetId()] = s
	}
	return out
}

// A busy loop's CPU time rises and gets a rate; memory written to the
// pod's /dev/shm (tmpfs, charged to the writer's cgroup) shows in the
// working set, and under the limit in the available bytes.
func TestStatsCPUAndMemory(t *testing.T) {
	p := newPod(t, withSamplePeriod("1s"))
	busyID := p.run(t, busybox("busy", "sh", "-c", "while :; do :; done"))

	// Just started: sampled on demand, never empty.
	first := containerStats(t, p, busyID)
	if first.GetAttributes().GetMetadata().GetName() != "busy" || first.GetCpu().GetTimestamp() == 0 ||
		first.GetMemory().GetTimestamp() == 0 || first.GetCpu().GetUsageCoreNanoSeconds() == nil {
		t.Fatalf("first stats incomplete: %v", first)
	}
	if wl := first.GetWritableLayer(); wl == nil || wl.GetFsId().GetMountpoint() == "" || wl.GetUsedBytes() == nil {
		t.Errorf("writable layer: %v", first.GetWritableLayer())
	}
	eventually(t, "CPU usage rises with a rate", func() (bool, string) {
		s := containerStats(t, p, busyID)
		c := s.GetCpu()
		return c.GetUsageCoreNanoSeconds().GetValue() > first.GetCpu().GetUsageCoreNanoSeconds().GetValue() &&
			c.GetUsageNanoCores().GetValue() > 0, c.String()
	})

	const fill, limit = 40 << 20, 256 << 20
	mem := busybox("mem", "sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=40 && touch /tmp/done && sleep 3600")
	mem.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: limit}
	memID := p.run(t, mem)
	eventually(t, "dd done", func() (bool, string) {
		r, err := p.exec(t, memID, 5, "test", "-e", "/tmp/done")
		return err == nil && r.ExitCode == 0, ""
	})
	eventually(t, "working set holds the filled tmpfs", func() (bool, string) {
		m := containerStats(t, p, memID).GetMemory()
		ws := m.GetWorkingSetBytes().GetValue()
		return ws >= fill && ws < limit && m.GetAvailableBytes() != nil && m.GetAvailableBytes().GetValue() == limit-ws &&
			m.GetUsageBytes().GetValue() >= ws, m.String()
	})

	// The pod adds its containers up, with the processes of all.
	r, err := p.d.Runtime.PodSandboxStats(ctxT(t), &runtimeapi.PodSandboxStatsRequest{PodSandboxId: p.id})
	if err != nil {
		t.Fatal(err)
	}
	lx := r.GetStats().GetLinux()
	if r.GetStats().GetAttributes().GetId() != p.id || len(lx.GetContainers()) != 2 ||
		lx.GetMemory().GetWorkingSetBytes().GetValue() < fill || lx.GetProcess().GetProcessCount().GetValue() < 3 {
		t.Errorf("pod stats: %v", r.GetStats())
	}
	if lx.GetNetwork().GetDefaultInterface().GetName() != "eth0" {
		t.Errorf("pod network: %v", lx.GetNetwork())
	}
}

// ListContainerStats filters as ListContainers does; exited containers
// and unknown IDs have no stats.
func TestStatsListFilters(t *testing.T) {
	p := newPod(t)
	a := busybox("a", "sleep", "3600")
	a.Labels = map[string]string{"tier": "front"}
	aID := p.run(t, a)
	b := busybox("b", "sleep", "3600")
	b.Labels = map[string]string{"tier": "back"}
	bID := p.run(t, b)
	doneID := p.run(t, busybox("done", "true"))
	p.waitExit(t, doneID)

	other := podConfig(p.l, "other")
	otherPod := runPod(t, p.d, other)
	r, err := p.d.Runtime.CreateContainer(ctxT(t), &runtimeapi.CreateContainerRequest{PodSandboxId: otherPod, Config: busybox("c", "sleep", "3600"), SandboxConfig: other})
	if err != nil {
		t.Fatal(err)
	}
	cID := r.ContainerId
	if _, err := p.d.Runtime.StartContainer(ctxT(t), &runtimeapi.StartContainerRequest{ContainerId: cID}); err != nil {
		t.Fatal(err)
	}

	keys := func(m map[string]*runtimeapi.ContainerStats) string {
		var ids []string
		for _, id := range []string{aID, bID, cID, doneID} {
			if m[id] != nil {
				ids = append(ids, map[string]string{aID: "a", bID: "b", cID: "c", doneID: "done"}[id])
			}
		}
		return strings.Join(ids, ",")
	}
	for _, tc := range []struct {
		name string
		f    *runtimeapi.ContainerStatsFilter
		want string
	}{
		{"nil", nil, "a,b,c"},
		{"id", &runtimeapi.ContainerStatsFilter{Id: aID}, "a"},
		{"id prefix", &runtimeapi.ContainerStatsFilter{Id: bID[:12]}, "b"},
		{"exited id", &runtimeapi.ContainerStatsFilter{Id: doneID}, ""},
		{"unknown id", &runtimeapi.ContainerStatsFilter{Id: "nope"}, ""},
		{"pod", &runtimeapi.ContainerStatsFilter{PodSandboxId: p.id}, "a,b"},
		{"pod prefix", &runtimeapi.ContainerStatsFilter{PodSandboxId: otherPod[:12]}, "c"},
		{"unknown pod", &runtimeapi.ContainerStatsFilter{PodSandboxId: "nope"}, ""},
		{"id in other pod", &runtimeapi.ContainerStatsFilter{Id: cID, PodSandboxId: p.id}, ""},
		{"labels", &runtimeapi.ContainerStatsFilter{LabelSelector: map[string]string{"tier": "back"}}, "b"},
		{"labels no match", &runtimeapi.ContainerStatsFilter{LabelSelector: map[string]string{"tier": "middle"}}, ""},
		{"pod and labels", &runtimeapi.ContainerStatsFilter{PodSandboxId: p.id, LabelSelector: map[string]string{"tier": "front"}}, "a"},
	} {
		if got := keys(listContainerStats(t, p, tc.f)); got != tc.want {
			t.Errorf("%s: got [%s], want [%s]", tc.name, got, tc.want)
		}
	}

	// The streaming twin sends the same.
	st, err := p.d.Runtime.StreamContainerStats(ctxT(t), &runtimeapi.StreamContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{PodSandboxId: p.id}})
	if err != nil {
		t.Fatal(err)
	}
	streamed := map[string]*runtimeapi.ContainerStats{}
	for {
		m, err := st.Recv()
		if err != nil {
			break
		}
		for _, s := range m.ContainerStats {
			streamed[s.GetAttributes().GetId()] = s
		}
	}
	if got := keys(streamed); got != "a,b" {
		t.Errorf("StreamContainerStats: got [%s]", got)
	}

	ps, err := p.d.Runtime.ListPodSandboxStats(ctxT(t), &runtimeapi.ListPodSandboxStatsRequest{Filter: &runtimeapi.PodSandboxStatsFilter{LabelSelector: map[string]string{"app": "other"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps.Stats) != 1 || ps.Stats[0].GetAttributes().GetId() != otherPod || len(ps.Stats[0].GetLinux().GetContainers()) != 1 {
		t.Errorf("ListPodSandboxStats by label: %v", ps.Stats)
	}

	// Single-object calls: NotFound for unknown and not running.
	for name, call := range map[string]func() error{
		"ContainerStats unknown": func() error {
			_, err := p.d.Runtime.ContainerStats(ctxT(t), &runtimeapi.ContainerStatsRequest{ContainerId: "nope"})
			return err
		},
		"ContainerStats exited": func() error {
			_, err := p.d.Runtime.ContainerStats(ctxT(t), &runtimeapi.ContainerStatsRequest{ContainerId: doneID})
			return err
		},
		"PodSandboxStats unknown": func() error {
			_, err := p.d.Runtime.PodSandboxStats(ctxT(t), &runtimeapi.PodSandboxStatsRequest{PodSandboxId: "nope"})
			return err
		},
		"PodSandboxStats stopped": func() error {
			if _, err := p.d.Runtime.StopPodSandbox(ctxT(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: otherPod}); err != nil {
				t.Fatal(err)
			}
			_, err := p.d.Runtime.PodSandboxStats(ctxT(t), &runtimeapi.PodSandboxStatsRequest{PodSandboxId: otherPod})
			return err
		},
	} {
		if c := status.Code(call()); c != codes.NotFound {
			t.Errorf("%s: code %s, want NotFound", name, c)
		}
	}
	if _, err := p.d.Runtime.ContainerStats(ctxT(t), &runtimeapi.ContainerStatsRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("ContainerStats without ID: %v, want InvalidArgument", err)
	}
	bad, err := p.d.Runtime.StreamContainerStats(ctxT(t), &runtimeapi.StreamContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{Id: "../x"}})
	if err == nil {
		_, err = bad.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("StreamContainerStats with a bad ID: %v, want InvalidArgument", err)
	}
}

// ListPodSandboxMetrics answers cAdvisor's names, described by
// ListMetricDescriptors, with values: the container's CPU and working set,
// its writable layer, and the pod's network per interface.
func TestStatsPodSandboxMetrics(t *testing.T) {
	p := newPod(t)
	id := p.run(t, busybox("m", "sleep", "3600"))
	// Some traffic out of the pod: a connection attempt to the bridge.
	gw := gateway(t, p.l.Network.Subnet)
	p.exec(t, id, 5, "wget", "-T", "2", "-q", "-O", "-", "http://"+gw+":9/")

	d, err := p.d.Runtime.ListMetricDescriptors(ctxT(t), &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	described := map[string]int{}
	for _, m := range d.Descriptors {
		described[m.Name] = len(m.LabelKeys)
	}
	for _, want := range []string{"container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "container_memory_rss",
		"container_network_receive_bytes_total", "container_network_transmit_bytes_total", "container_fs_usage_bytes"} {
		if described[want] == 0 {
			t.Errorf("ListMetricDescriptors lacks %s", want)
		}
	}

	r, err := p.d.Runtime.ListPodSandboxMetrics(ctxT(t), &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var pm *runtimeapi.PodSandboxMetrics
	for _, m := range r.PodMetrics {
		if m.PodSandboxId == p.id {
			pm = m
		}
	}
	if pm == nil || len(pm.ContainerMetrics) != 1 || pm.ContainerMetrics[0].ContainerId != id {
		t.Fatalf("pod metrics: %v", r.PodMetrics)
	}
	values := map[string]uint64{}
	check := func(ms []*runtimeapi.Metric) {
		for _, m := range ms {
			if len(m.LabelValues) != described[m.Name] {
				t.Errorf("%s: %d label values for %d keys", m.Name, len(m.LabelValues), described[m.Name])
			}
			if m.Timestamp == 0 || m.Value == nil {
				t.Errorf("%s: no timestamp or value", m.Name)
			}
			key := m.Name
			if strings.HasPrefix(m.Name, "container_network_") {
				key += "/" + m.LabelValues[len(m.LabelValues)-1]
			}
			values[key] = m.GetValue().GetValue()
		}
	}
	check(pm.Metrics)
	check(pm.ContainerMetrics[0].Metrics)
	if values["container_memory_working_set_bytes"] == 0 || values["container_fs_usage_bytes"] == 0 || values["container_processes"] == 0 {
		t.Errorf("container metrics without values: %v", values)
	}
	if _, ok := values["container_cpu_usage_seconds_total"]; !ok {
		t.Errorf("no container_cpu_usage_seconds_total: %v", values)
	}
	if values["container_network_transmit_bytes_total/eth0"] == 0 {
		t.Errorf("no transmitted bytes on eth0: %v", values)
	}

	// The streaming twin sends the same pods.
	st, err := p.d.Runtime.StreamPodSandboxMetrics(ctxT(t), &runtimeapi.StreamPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		m, err := st.Recv()
		if err != nil {
			break
		}
		n += len(m.PodSandboxMetrics)
	}
	if n != len(r.PodMetrics) {
		t.Errorf("StreamPodSandboxMetrics sent %d pods, List %d", n, len(r.PodMetrics))
	}

	// The collector's own metrics are on containerd's endpoint.
	body := scrape(t, p.l.MetricsAddress)
	if !strings.Contains(body, "nodecri_stats_collect_duration_seconds") {
		t.Errorf("metrics lack nodecri_stats_collect_duration_seconds")
	}
}

// gateway is the bridge's address: host-local's default, the subnet's first.
func gateway(t *testing.T, subnet string) string {
	_, n, err := net.ParseCIDR(subnet)
	if err != nil {
		t.Fatal(err)
	}
	ip := n.IP.To4()
	ip[3]++
	return ip.String()
}
