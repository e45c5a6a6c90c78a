package stats

import (
	"math"
	"os"
	"strings"
	"testing"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var at = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// fixture wraps a metrics JSON from testdata as the shim sends it: a
// typeurl Any in a task metric. The cgroup v1 fixtures are recorded with
// `ctr tasks metrics --format json` from runc containers on this host; the
// v2 one is composed (this host's v2 hierarchy has no controllers).
func fixture(t *testing.T, file string, into proto.Message) *types.Metric {
	t.Helper()
	b, err := os.ReadFile("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	if err := protojson.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return taskMetric(t, "task", at, into)
}

func taskMetric(t *testing.T, id string, ts time.Time, m proto.Message) *types.Metric {
	t.Helper()
	a, err := typeurl.MarshalAnyToProto(m)
	if err != nil {
		t.Fatal(err)
	}
	return &types.Metric{ID: id, Timestamp: timestamppb.New(ts), Data: a}
}

func decode(t *testing.T, m *types.Metric) Sample {
	t.Helper()
	s, err := Decode(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDecodeCgroup1BusyLoop(t *testing.T) {
	s := decode(t, fixture(t, "cgroup1-busyloop.json", &v1.Metrics{}))
	want := Sample{
		Timestamp:     at,
		CPUUsageNanos: 1745372687, CPUUserNanos: 1660000000, CPUSystemNanos: 80000000,
		// 20 MiB written to /dev/shm: shmem is cache, on the anon LRU, so
		// all of it is working set. No limit (v1's "unlimited" value).
		Memory: Memory{Usage: 21348352, WorkingSet: 21348352, RSS: 135168, Cache: 20971520, PageFaults: 1280},
		Pids:   1,
	}
	if s != want {
		t.Errorf("got  %+v\nwant %+v", s, want)
	}
	if _, ok := s.Memory.Available(); ok {
		t.Error("available bytes without a limit")
	}
}

func TestDecodeCgroup1LimitAndPageCache(t *testing.T) {
	s := decode(t, fixture(t, "cgroup1-limit-pagecache.json", &v1.Metrics{}))
	m := s.Memory
	// 16 MiB written to a file: inactive file cache, not working set.
	if m.Usage != 25956352 || m.WorkingSet != 25956352-16777216 || m.Limit != 128<<20 || m.Cache != 25165824 {
		t.Errorf("memory %+v", m)
	}
	if a, ok := m.Available(); !ok || a != 128<<20-m.WorkingSet {
		t.Errorf("available %d %v", a, ok)
	}
}

func TestDecodeCgroup2(t *testing.T) {
	var d v2.Metrics
	s := decode(t, fixture(t, "cgroup2-limit.json", &d))
	want := Sample{
		Timestamp:     at,
		CPUUsageNanos: 2500000000, CPUUserNanos: 2000000000, CPUSystemNanos: 500000000,
		Memory: Memory{Usage: 63700992, WorkingSet: 63700992 - 12582912, RSS: 41943040, Cache: 20971520,
			PageFaults: 12000, MajorPageFaults: 7, Limit: 256 << 20},
		Pids: 3,
	}
	if s != want {
		t.Errorf("got  %+v\nwant %+v", s, want)
	}
	// memory.max "max" comes back as MaxUint64: no limit.
	d.Memory.UsageLimit = math.MaxUint64
	if s := decode(t, taskMetric(t, "task", at, &d)); s.Memory.Limit != 0 {
		t.Errorf("limit %d for max", s.Memory.Limit)
	}
	// More inactive file than usage (the counters are read one by one):
	// no working set rather than a wrapped-around one.
	d.Memory.InactiveFile = d.Memory.Usage + 1
	if s := decode(t, taskMetric(t, "task", at, &d)); s.Memory.WorkingSet != 0 {
		t.Errorf("working set %d", s.Memory.WorkingSet)
	}
}

func TestDecodeRejectsUnknownAndEmpty(t *testing.T) {
	if _, err := Decode(&types.Metric{ID: "x"}); err == nil {
		t.Error("no data decoded")
	}
	if _, err := Decode(taskMetric(t, "x", at, timestamppb.New(at))); err == nil || !strings.Contains(err.Error(), "unknown type") {
		t.Errorf("foreign type: %v", err)
	}
}

func TestNanoCores(t *testing.T) {
	prev := Sample{Timestamp: at, CPUUsageNanos: 1e9}
	for _, tc := range []struct {
		cur  Sample
		want uint64
	}{
		{Sample{Timestamp: at.Add(2 * time.Second), CPUUsageNanos: 2e9}, 5e8}, // half a core
		{Sample{Timestamp: at.Add(time.Second), CPUUsageNanos: 3e9}, 2e9},     // two cores
		{Sample{Timestamp: at, CPUUsageNanos: 2e9}, 0},                        // same moment
		{Sample{Timestamp: at.Add(time.Second), CPUUsageNanos: 0}, 0},         // counter reset
	} {
		if got := NanoCores(prev, tc.cur); got != tc.want {
			t.Errorf("%+v: %d, want %d", tc.cur, got, tc.want)
		}
	}
}

func TestSum(t *testing.T) {
	a := TaskStats{Sample: Sample{Timestamp: at, CPUUsageNanos: 10, Memory: Memory{Usage: 100, WorkingSet: 80, Limit: 1000}, Pids: 1}, NanoCores: 5, HasRate: true}
	b := TaskStats{Sample: Sample{Timestamp: at.Add(time.Second), CPUUsageNanos: 20, Memory: Memory{Usage: 200, WorkingSet: 150, Limit: 2000}, Pids: 2}, NanoCores: 7, HasRate: true}
	s := Sum([]TaskStats{a, b})
	if s.Timestamp != b.Timestamp || s.CPUUsageNanos != 30 || s.NanoCores != 12 || !s.HasRate ||
		s.Memory.Usage != 300 || s.Memory.WorkingSet != 230 || s.Memory.Limit != 3000 || s.Pids != 3 {
		t.Errorf("sum %+v", s)
	}
	// One task without a rate or a limit: the pod has neither.
	b.HasRate, b.NanoCores, b.Memory.Limit = false, 0, 0
	if s := Sum([]TaskStats{a, b}); s.HasRate || s.NanoCores != 0 || s.Memory.Limit != 0 {
		t.Errorf("sum %+v", s)
	}
}

func TestParseNetDev(t *testing.T) {
	const dev = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 2048093    1520    1    2    0     0          0         0    98231     870    3    4    0     0       0          0
`
	ifs, err := parseNetDev(strings.NewReader(dev))
	if err != nil {
		t.Fatal(err)
	}
	want := Interface{Name: "eth0", RxBytes: 2048093, RxPackets: 1520, RxErrors: 1, RxDropped: 2, TxBytes: 98231, TxPackets: 870, TxErrors: 3, TxDropped: 4}
	if len(ifs) != 2 || ifs[1] != want || ifs[0].Name != "lo" {
		t.Errorf("got %+v", ifs)
	}
	if d, ok := (Network{Interfaces: ifs}).Default(); !ok || d.Name != "eth0" {
		t.Errorf("default %+v", d)
	}
	if _, err := parseNetDev(strings.NewReader("h\nh\n  eth0: 1 2 3\n")); err == nil {
		t.Error("short line accepted")
	}
}
