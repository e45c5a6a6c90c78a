package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/integration/daemon"
)

// usage is what a leaking daemon grows: memory, goroutines, open files.
type usage struct {
	rssKB, goroutines, fds int
}

func (u usage) String() string {
	return fmt.Sprintf("RSS %d kB, %d goroutines, %d fds", u.rssKB, u.goroutines, u.fds)
}

var goroutinesRe = regexp.MustCompile(`(?m)^go_goroutines (\d+)`)

func daemonUsage(t *testing.T, d *daemon.Daemon) usage {
	t.Helper()
	var u usage
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.PID()))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			u.rssKB, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.PID()))
	if err != nil {
		t.Fatal(err)
	}
	u.fds = len(fds)
	m := goroutinesRe.FindStringSubmatch(scrape(t, d.Layout.MetricsAddress))
	if m == nil {
		t.Fatal("metrics endpoint has no go_goroutines")
	}
	u.goroutines, _ = strconv.Atoi(m[1])
	if u.rssKB == 0 || u.goroutines == 0 {
		t.Fatalf("could not read the daemon's usage: %v", u)
	}
	return u
}

// TestChurn runs pod + container through create, start, stop and remove
// NODECRI_CHURN_N times (make test: a short run, make churn: 500), then
// checks that the daemon did not grow and the host holds nothing new.
func TestChurn(t *testing.T) {
	n := 30
	if s := os.Getenv("NODECRI_CHURN_N"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("NODECRI_CHURN_N=%q is not a positive count", s)
		}
		n = v
	}
	// Info: debug logging of every call would dominate the loop.
	d, l := podEnv(t, withLogLevel("info"))
	mustPull(t, d, "busybox:1.36")

	cycle := func(i int) {
		t.Helper()
		cfg := podConfig(l, fmt.Sprintf("churn-%d", i))
		id := runPod(t, d, cfg)
		p := &pod{d: d, l: l, id: id, cfg: cfg}
		// A shell that ends on SIGTERM, so each stop is the graceful path.
		cid := p.run(t, busybox("c", "sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"))
		if _, err := d.Runtime.StopContainer(ctxT(t), &runtimeapi.StopContainerRequest{ContainerId: cid, Timeout: 10}); err != nil {
			t.Fatalf("iteration %d: StopContainer: %v", i, err)
		}
		if _, err := d.Runtime.RemoveContainer(ctxT(t), &runtimeapi.RemoveContainerRequest{ContainerId: cid}); err != nil {
			t.Fatalf("iteration %d: RemoveContainer: %v", i, err)
		}
		stopRemove(t, d, id)
		// The kubelet removes the pod's log folder and cgroup parent; so
		// do we.
		os.RemoveAll(cfg.LogDirectory)
		daemon.RemoveCgroups(filepath.Base(l.Dir))
	}

	// Warm up caches, pools and lazily started goroutines before the
	// baseline.
	const warmup = 5
	for i := range warmup {
		cycle(-1 - i)
	}
	time.Sleep(3 * time.Second)
	base, baseHost := daemonUsage(t, d), takeCensus(t, l)

	start := time.Now()
	for i := range n {
		cycle(i)
	}
	elapsed := time.Since(start)

	// Let exits, shim disconnects and deferred cleanups finish: there is
	// no event for "the daemon is idle", so wait a bounded while for the
	// numbers to come back.
	within := func(u usage) bool { return u.goroutines <= base.goroutines+20 && u.fds <= base.fds+10 }
	var after usage
	for deadline := time.Now().Add(15 * time.Second); ; {
		time.Sleep(time.Second)
		after = daemonUsage(t, d)
		if within(after) || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("%d iterations in %v, %v per pod+container cycle", n, elapsed.Round(time.Millisecond), (elapsed / time.Duration(n)).Round(time.Millisecond))
	t.Logf("before: %v", base)
	t.Logf("after:  %v", after)
	if after.rssKB > base.rssKB*115/100 {
		t.Errorf("RSS grew from %d kB to %d kB, more than 15%%", base.rssKB, after.rssKB)
	}
	if !within(after) {
		t.Errorf("goroutines %d -> %d (at most +20), fds %d -> %d (at most +10)", base.goroutines, after.goroutines, base.fds, after.fds)
	}
	if diff := baseHost.diff(takeCensus(t, l)); diff != "" {
		t.Errorf("after %d cycles the host holds:\n%s", n, diff)
	}
}
