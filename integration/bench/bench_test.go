// Package bench measures bin/containerd against upstream containerd's own
// CRI, built at the version go.mod pins (hack/upstream.sh), with the same
// workload in one run on one machine: `make bench`. The workload is its own
// CRI calls, `crictl runp` and `critest -benchmark` (tools_test.go). It
// reports; it never asserts a timing. TestBench fails only when the
// workload cannot run.
package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/integration/testimages"
)

const (
	sequentialRuns = 30   // RunPodSandbox samples per daemon
	scalePods      = 100  // pods for RSS and the first list measurement
	listCalls      = 20   // List* samples per daemon and pod count
	memoryMarginMB = 4096 // left free on a shared machine when scaling up
)

// concurrency is pods started at once, and rounds of it per daemon, so
// that even one pod at a time gives a p50 worth the name.
var concurrency = []struct{ pods, rounds int }{{1, 10}, {20, 2}, {50, 1}}

func TestBench(t *testing.T) {
	if os.Getenv("NODECRI_BENCH") != "1" {
		t.Skip("set NODECRI_BENCH=1 to run (make bench)")
	}
	if os.Geteuid() != 0 {
		t.Skip("the daemons need root")
	}
	// A SIGTERM or ^C ends the workload but not the test binary, so that
	// the cleanups still remove the pods and stop both daemons.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, binDir, bins := sideBySide(t, "bench", "containerd-shim-runc-v2", "crictl", "critest")
	out := filepath.Join(root, "_output", "bench")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}

	res := newResults()
	// Whatever was measured is reported, also when a later stage fails.
	defer func() {
		fmt.Printf("\n%s", res.table())
		for _, n := range res.Notes {
			fmt.Println("note:", n)
		}
		if err := res.write(filepath.Join(out, "results.json")); err != nil {
			t.Error(err)
		}
		fmt.Println("results:", filepath.Join(out, "results.json"))
	}()

	reg := testimages.NewRegistry(t)
	reg.Push(t, "pause", "3.10.2", testimages.Pause(t))
	reg.Push(t, "library/busybox", "1.36", testimages.Busybox(t))
	reg.PushAll(t, testimages.Critest(t))
	targets := []*target{
		startTarget(t, "ours", bins["ours"], binDir, out, 0, reg),
		startTarget(t, "upstream", bins["upstream"], binDir, out, 1, reg),
	}
	for _, tg := range targets {
		v, err := tg.d.Runtime.Version(ctx, &runtimeapi.VersionRequest{})
		if err != nil {
			t.Fatal(err)
		}
		res.Versions[tg.name] = v.RuntimeName + " " + v.RuntimeVersion
		warm(ctx, t, tg)
	}
	res.Versions["runc"] = version(1, filepath.Join(binDir, "runc"), "--version")
	res.Versions["shim"] = version(2, filepath.Join(binDir, "containerd-shim-runc-v2"), "-v")
	res.Versions["nodecri (git)"] = version(1, "git", "-C", root, "describe", "--always", "--dirty")

	time.Sleep(2 * time.Second) // let the warm-up's garbage be collected
	res.add("daemon RSS idle (images pulled)", "MB", targets[0].rssMB(), targets[1].rssMB())
	runPodSandbox(ctx, t, targets, res)
	crictlRunp(ctx, t, targets, res, filepath.Join(binDir, "crictl"))
	podStart(ctx, t, targets, res)
	// Before scale, which leaves its pods running with NODECRI_BENCH_SMALL.
	critestBench(ctx, t, targets, res, binDir, out)
	scale(ctx, t, targets, res)
}

// warm pulls both images and runs one pod with a container, so that no
// measurement pays for the first pull, the bridge's creation or a cold
// page cache.
func warm(ctx context.Context, t *testing.T, tg *target) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for _, ref := range []string{sandboxImage, busyboxImage} {
		if _, err := tg.d.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
			t.Fatalf("%s: pull %s: %v", tg.name, ref, err)
		}
	}
	if err := tg.podWithContainer(ctx, "warm", false); err != nil {
		t.Fatalf("%s: %v", tg.name, err)
	}
	if err := tg.removeAll(ctx); err != nil {
		t.Fatalf("%s: %v", tg.name, err)
	}
}

// interleave alternates which daemon goes first, so drift on a shared
// machine and any order effect fall on both alike.
func interleave(targets []*target, i int) []*target {
	if i%2 == 0 {
		return targets
	}
	return []*target{targets[1], targets[0]}
}

// runPodSandbox times RunPodSandbox to Ready one pod at a time on the
// bridge network, then its StopPodSandbox and RemovePodSandbox apart.
func runPodSandbox(ctx context.Context, t *testing.T, targets []*target, res *results) {
	run, stop, remove := samples{}, samples{}, samples{}
	for i := range sequentialRuns {
		for _, tg := range interleave(targets, i) {
			ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
			rt := tg.d.Runtime
			cfg := tg.podConfig(fmt.Sprintf("runp-%d", i), false)
			start := time.Now()
			p, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
			run[tg.name] = append(run[tg.name], time.Since(start))
			if err != nil {
				cancel()
				t.Fatalf("%s: RunPodSandbox: %v", tg.name, err)
			}
			start = time.Now()
			_, err = rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.PodSandboxId})
			stop[tg.name] = append(stop[tg.name], time.Since(start))
			if err == nil {
				start = time.Now()
				_, err = rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.PodSandboxId})
				remove[tg.name] = append(remove[tg.name], time.Since(start))
			}
			cancel()
			if err != nil {
				t.Fatalf("%s: stop/remove: %v", tg.name, err)
			}
		}
	}
	res.ms(fmt.Sprintf("RunPodSandbox p50 (bridge, N=%d)", sequentialRuns), 0.5, run)
	res.ms(fmt.Sprintf("RunPodSandbox p99 (bridge, N=%d)", sequentialRuns), 0.99, run)
	res.ms("StopPodSandbox p50", 0.5, stop)
	res.ms("RemovePodSandbox p50", 0.5, remove)
}

// podStart times RunPodSandbox + CreateContainer + StartContainer of each
// of n pods started at once, and the wall time until all are running.
func podStart(ctx context.Context, t *testing.T, targets []*target, res *results) {
	for _, c := range concurrency {
		total, wall := samples{}, samples{}
		for r := range c.rounds {
			for _, tg := range interleave(targets, r) {
				var mu sync.Mutex
				var wg sync.WaitGroup
				errs := make([]error, c.pods)
				start := time.Now()
				for i := range c.pods {
					wg.Go(func() {
						s := time.Now()
						errs[i] = tg.podWithContainer(ctx, fmt.Sprintf("start%d-%d-%d", c.pods, r, i), false)
						mu.Lock()
						total[tg.name] = append(total[tg.name], time.Since(s))
						mu.Unlock()
					})
				}
				wg.Wait()
				wall[tg.name] = append(wall[tg.name], time.Since(start))
				teardown(ctx, t, tg)
				for _, err := range errs {
					if err != nil {
						t.Fatalf("%s, %d pods at once: %v", tg.name, c.pods, err)
					}
				}
			}
		}
		what := fmt.Sprintf("pod+container start, %d at once", c.pods)
		if c.pods == 1 {
			what = fmt.Sprintf("pod+container start, 1 at a time (N=%d)", c.rounds)
		}
		res.ms(what+": p50", 0.5, total)
		res.ms(what+": p99", 0.99, total)
		if c.pods > 1 {
			res.add(fmt.Sprintf("%s: wall (mean of %d)", what, c.rounds), "ms", mean(wall["ours"]), mean(wall["upstream"]))
		}
	}
}

func teardown(ctx context.Context, t *testing.T, tg *target) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := tg.removeAll(ctx); err != nil {
		t.Fatalf("%s: teardown: %v", tg.name, err)
	}
}

// scale measures the daemons' RSS with scalePods pods and ListPodSandbox
// and ListContainers with scalePods, then 500 pods when the machine's free
// memory allows both daemons to hold them. Pods use the host network (the
// list and memory figures are about the daemon, and it saves 1000 veths);
// each has one running busybox container.
func scale(ctx context.Context, t *testing.T, targets []*target, res *results) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	avail0 := procStatusKB("/proc/meminfo", "MemAvailable:") / 1024
	var took time.Duration
	for _, tg := range targets {
		start := time.Now()
		if err := tg.populate(ctx, "scale", 0, scalePods, true); err != nil {
			t.Fatalf("%s: %v", tg.name, err)
		}
		took += time.Since(start)
		t.Logf("%s: %d host-network pods with a container in %s", tg.name, scalePods, time.Since(start).Round(time.Millisecond))
	}
	time.Sleep(2 * time.Second)
	res.add(fmt.Sprintf("daemon RSS, %d pods (host network, 1 container each)", scalePods), "MB", targets[0].rssMB(), targets[1].rssMB())
	lists(ctx, t, targets, res, scalePods)
	restart(ctx, t, targets, res, scalePods)

	// What the first pods cost the machine, whoever holds it (shims,
	// pause, sleep, daemon), decides whether 2×500 fit.
	perPodMB := float64(avail0-procStatusKB("/proc/meminfo", "MemAvailable:")/1024) / float64(2*scalePods)
	const big = 500
	need := perPodMB * 2 * (big - scalePods)
	res.note("scale pods use the host network; %.1f MB of machine memory per pod (all processes)", perPodMB)
	if os.Getenv("NODECRI_BENCH_SMALL") != "" {
		res.note("%d-pod case skipped: NODECRI_BENCH_SMALL is set", big)
		return
	}
	if avail := procStatusKB("/proc/meminfo", "MemAvailable:") / 1024; float64(avail)-need < memoryMarginMB {
		res.note("%d-pod case skipped: 2×%d more pods need about %.0f MB, %d MB available", big, big-scalePods, need, avail)
		return
	}
	// Growing to 500 and tearing down took about 16 times the first 100
	// pods here (the work grows with the pods already there); skip rather
	// than hit go test's timeout and lose the report.
	if deadline, ok := t.Deadline(); ok && time.Until(deadline) < 16*took+5*time.Minute {
		res.note("%d-pod case skipped: about %s needed, %s left before the test timeout", big, (16 * took).Round(time.Minute), time.Until(deadline).Round(time.Minute))
		return
	}
	grow, remove := map[string]time.Duration{}, map[string]time.Duration{}
	for _, tg := range targets {
		start := time.Now()
		if err := tg.populate(ctx, "scale", scalePods, big, true); err != nil {
			t.Fatalf("%s: %v", tg.name, err)
		}
		grow[tg.name] = time.Since(start)
	}
	time.Sleep(2 * time.Second)
	res.add(fmt.Sprintf("daemon RSS, %d pods (host network, 1 container each)", big), "MB", targets[0].rssMB(), targets[1].rssMB())
	lists(ctx, t, targets, res, big)
	for _, tg := range targets {
		start := time.Now()
		teardown(ctx, t, tg)
		remove[tg.name] = time.Since(start)
	}
	// One sample each, one daemon after the other: indicative only.
	res.add(fmt.Sprintf("grow %d→%d pods, %d in flight: wall (1 sample)", scalePods, big, inFlight), "s",
		grow["ours"].Seconds(), grow["upstream"].Seconds())
	res.add(fmt.Sprintf("remove %d pods, %d in flight: wall (1 sample)", big, inFlight), "s",
		remove["ours"].Seconds(), remove["upstream"].Seconds())
}

// lists times ListPodSandbox and ListContainers with no filter, as the
// kubelet's relist does, checking each sees all n pods.
func lists(ctx context.Context, t *testing.T, targets []*target, res *results, n int) {
	pods, ctrs := samples{}, samples{}
	for i := range listCalls {
		for _, tg := range interleave(targets, i) {
			ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
			start := time.Now()
			p, err := tg.d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
			pods[tg.name] = append(pods[tg.name], time.Since(start))
			if err == nil && len(p.Items) != n {
				err = fmt.Errorf("ListPodSandbox: %d pods, want %d", len(p.Items), n)
			}
			if err == nil {
				start = time.Now()
				var c *runtimeapi.ListContainersResponse
				c, err = tg.d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
				ctrs[tg.name] = append(ctrs[tg.name], time.Since(start))
				if err == nil && len(c.Containers) != n {
					err = fmt.Errorf("ListContainers: %d containers, want %d", len(c.Containers), n)
				}
			}
			cancel()
			if err != nil {
				t.Fatalf("%s: %v", tg.name, err)
			}
		}
	}
	res.ms(fmt.Sprintf("ListPodSandbox p50, %d pods", n), 0.5, pods)
	res.ms(fmt.Sprintf("ListContainers p50, %d containers", n), 0.5, ctrs)
}

// version is the first lines of a command's output on one line (the
// shim prints its name and its version on two).
func version(lines int, bin string, args ...string) string {
	out, _ := exec.Command(bin, args...).CombinedOutput()
	l := strings.SplitN(strings.TrimSpace(string(out)), "\n", lines+1)
	return strings.Join(strings.Fields(strings.Join(l[:min(lines, len(l))], " ")), " ")
}
