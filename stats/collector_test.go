package stats

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"google.golang.org/grpc"
)

// fakeTasks is containerd's task service at its Metrics boundary: each
// task's CPU counter advances by one second per call.
type fakeTasks struct {
	tasks.TasksClient
	t *testing.T

	mu      sync.Mutex
	running []string
	calls   [][]string // filters of each call
	now     time.Time
	cpu     uint64
}

func (f *fakeTasks) Metrics(_ context.Context, req *tasks.MetricsRequest, _ ...grpc.CallOption) (*tasks.MetricsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, req.Filters)
	f.now = f.now.Add(time.Second)
	f.cpu += 1e9
	var out tasks.MetricsResponse
	for _, id := range f.running {
		if len(req.Filters) > 0 && !slices.Contains(req.Filters, "id=="+id) {
			continue
		}
		out.Metrics = append(out.Metrics, taskMetric(f.t, id, f.now, &v2.Metrics{CPU: &v2.CPUStat{UsageUsec: f.cpu / 1000}}))
	}
	return &out, nil
}

func (f *fakeTasks) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func TestCollectorOneCallPerPeriodAndOnDemand(t *testing.T) {
	ctx := context.Background()
	f := &fakeTasks{t: t, running: []string{"a", "b", "c"}, now: at}
	c := New(Options{Tasks: f})

	// A period: one call for every task, no filter.
	if err := c.collectTasks(ctx); err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 1 || len(f.calls[0]) != 0 {
		t.Fatalf("calls %v", f.calls)
	}
	// Listing sampled tasks costs no call.
	got, err := c.Tasks(ctx, []string{"a", "b", "c"})
	if err != nil || len(got) != 3 || f.callCount() != 1 {
		t.Fatalf("got %v, err %v, %d calls", got, err, f.callCount())
	}
	if got["a"].HasRate {
		t.Error("a rate from one sample")
	}

	// A task started since: sampled on demand, alone, in one call; an
	// unknown one (not running) is absent, not an error.
	f.running = append(f.running, "d")
	got, err = c.Tasks(ctx, []string{"a", "d", "gone"})
	if err != nil || len(got) != 2 || got["d"].Timestamp.IsZero() {
		t.Fatalf("got %v, err %v", got, err)
	}
	if last := f.calls[len(f.calls)-1]; strings.Join(last, ",") != "id==d,id==gone" {
		t.Errorf("on-demand filters %v", last)
	}

	// The next period gives rates: one core (1 s of CPU per second).
	if err := c.collectTasks(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ = c.Tasks(ctx, []string{"a", "d"})
	if !got["a"].HasRate || got["a"].NanoCores != 1e9 {
		t.Errorf("a: %+v", got["a"])
	}
	if !got["d"].HasRate || got["d"].NanoCores != 1e9 {
		t.Errorf("d: %+v", got["d"])
	}

	// A task that exited is forgotten at the next period.
	f.running = []string{"a"}
	if err := c.collectTasks(ctx); err != nil {
		t.Fatal(err)
	}
	n := f.callCount()
	got, _ = c.Tasks(ctx, []string{"b"})
	if len(got) != 0 || f.callCount() != n+1 {
		t.Errorf("exited task: %v after %d calls", got, f.callCount()-n)
	}
}
