package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/integration/daemon"
)

// The two measurements made with cri-tools' own clients, as an operator or
// a CI job would take them: `crictl runp` to Ready, and `critest
// -benchmark`.

const (
	crictlRuns = 20 // `crictl runp` samples per daemon
	// critestRuns of critestSamples each: every critest lifecycle
	// benchmark (pods, containers, images, image listing) runs
	// critestSamples times, one at a time, per run. Two runs per daemon in
	// the order ours, upstream, upstream, ours put drift on a shared
	// machine on both alike; a run takes about a minute on 2 busy cores.
	critestRuns    = 2
	critestSamples = 10
	// critestTimeout bounds one daemon's critest run; ginkgo gets a minute
	// less so that it still writes its report.
	critestTimeout = 10 * time.Minute
)

// critestContainerImage is what critest's container benchmarks run
// (framework.DefaultLinuxContainerImage); it is pulled before critest
// starts, so that no sample pays for the first pull.
const critestContainerImage = "registry.k8s.io/e2e-test-images/busybox:1.29-2"

// crictlRunp times `crictl runp pod.json` to its exit, which is when
// RunPodSandbox has returned and the pod is Ready: the RPC plus crictl's
// own start, as an operator sees it. Same bridge pod config as
// runPodSandbox, written as crictl reads it (the CRI message as JSON);
// each pod is stopped and removed, untimed, before the next sample.
func crictlRunp(ctx context.Context, t *testing.T, targets []*target, res *results, crictl string) {
	run := samples{}
	for i := range crictlRuns {
		for _, tg := range interleave(targets, i) {
			dir := filepath.Join(tg.l.Dir, "crictl-runp")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			cfg, err := json.Marshal(tg.podConfig(fmt.Sprintf("crictl-runp-%d", i), false))
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, fmt.Sprintf("pod-%d.json", i))
			if err := os.WriteFile(file, cfg, 0o644); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			out, err := tg.crictl(ctx, crictl, "runp", file)
			run[tg.name] = append(run[tg.name], time.Since(start))
			if err != nil {
				t.Fatalf("%s: crictl runp: %v", tg.name, err)
			}
			id := strings.TrimSpace(out)
			if i == 0 {
				// Once, that crictl's return means Ready.
				out, err := tg.crictl(ctx, crictl, "inspectp", "-o", "json", id)
				var st struct {
					Status struct{ State string } `json:"status"`
				}
				if err == nil {
					err = json.Unmarshal([]byte(out), &st)
				}
				if err == nil && st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY.String() {
					err = fmt.Errorf("pod %s is %q after crictl runp returned", id, st.Status.State)
				}
				if err != nil {
					t.Fatalf("%s: crictl inspectp: %v", tg.name, err)
				}
			}
			rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
			_, err = tg.d.Runtime.StopPodSandbox(rctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
			if err == nil {
				_, err = tg.d.Runtime.RemovePodSandbox(rctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
			}
			cancel()
			if err != nil {
				t.Fatalf("%s: stop/remove after crictl runp: %v", tg.name, err)
			}
		}
	}
	res.ms(fmt.Sprintf("crictl runp to Ready p50 (bridge, N=%d)", crictlRuns), 0.5, run)
	res.ms(fmt.Sprintf("crictl runp to Ready p99 (bridge, N=%d)", crictlRuns), 0.99, run)
}

// crictl runs bin/crictl against the target's socket and returns its
// stdout. /dev/null as its config keeps the host's /etc/crictl.yaml out.
func (tg *target) crictl(ctx context.Context, crictl string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	ep := "unix://" + tg.l.Socket
	args = append([]string{"--config", os.DevNull, "-r", ep, "-i", ep, "-t", rpcTimeout.String()}, args...)
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, crictl, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("crictl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.String(), nil
}

// critestParams is critest's -benchmarking-params-file (YAML, as
// framework.BenchmarkingParamsType reads it). The timeouts are generous:
// critest's results manager panics when no sample arrives within the
// container (and pod) timeout, and the pod+container spec asserts its
// one sample is under podContainerStartBenchmarkTimeoutSeconds; on 2
// shared cores a benchmark should report slowness, not fail on it.
func critestParams() string {
	return fmt.Sprintf(`containersNumber: %[1]d
containersNumberParallel: 1
containerBenchmarkTimeoutSeconds: 300
podsNumber: %[1]d
podsNumberParallel: 1
podBenchmarkTimeoutSeconds: 300
imagesNumber: %[1]d
imagesNumberParallel: 1
imageBenchmarkTimeoutSeconds: 300
podContainerStartBenchmarkTimeoutSeconds: 120
`, critestSamples)
}

// critestFiles are the results files critest writes to
// -benchmarking-output-dir, each with its operations in the order critest
// runs them and the row name of each.
var critestFiles = []struct {
	file string
	ops  [][2]string
}{
	{"pod_benchmark_data.json", [][2]string{
		{"CreatePod", "RunPodSandbox"}, {"StatusPod", "PodSandboxStatus"}, {"StopPod", "StopPodSandbox"}, {"RemovePod", "RemovePodSandbox"}}},
	{"container_benchmark_data.json", [][2]string{
		{"CreateContainer", "CreateContainer (with ImageStatus)"}, {"StartContainer", "StartContainer"}, {"StatusContainer", "ContainerStatus"},
		{"StopContainer", "StopContainer"}, {"RemoveContainer", "RemoveContainer"}}},
	{"image_lifecycle_benchmark_data.json", [][2]string{{"PullImage", "PullImage"}, {"StatusImage", "ImageStatus"}, {"RemoveImage", "RemoveImage"}}},
	{"image_listing_benchmark_data.json", [][2]string{{"ListImages", "ListImages"}}},
}

// critestBench runs `critest -benchmark` against each daemon, one after
// the other, critestRuns times, and adds a row per operation (p50 of all
// its samples) and the pod+container-from-scratch figure (one sample a
// run). A spec that fails on a daemon is a
// note; the test fails only when critest cannot run at all.
func critestBench(ctx context.Context, t *testing.T, targets []*target, res *results, binDir, out string) {
	params := filepath.Join(out, "critest-params.yaml")
	if err := os.WriteFile(params, []byte(critestParams()), 0o644); err != nil {
		t.Fatal(err)
	}
	type opRow struct{ file, op string }
	got := map[opRow]samples{}
	scratch := samples{}
	for _, tg := range targets {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		_, err := tg.d.Images.PullImage(pctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: critestContainerImage}})
		cancel()
		if err != nil {
			t.Fatalf("%s: pull %s: %v", tg.name, critestContainerImage, err)
		}
	}
	for r := range critestRuns {
		for _, tg := range interleave(targets, r) {
			dir := filepath.Join(out, fmt.Sprintf("critest-%s-%d", tg.name, r+1))
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			runCritestBench(ctx, t, tg, binDir, dir, params)
			t.Logf("%s: critest -benchmark run %d took %s (%s)", tg.name, r+1, time.Since(start).Round(time.Second), dir)
			// A spec cut short leaves its pod; the next measurements
			// count pods.
			teardown(ctx, t, tg)

			specs, err := readGinkgoReport(filepath.Join(dir, "report.json"))
			if err != nil {
				t.Fatalf("%s: critest wrote no report (%v); its output is in %s", tg.name, err, filepath.Join(dir, "critest.log"))
			}
			for _, s := range specs {
				if s.State != "passed" && s.State != "skipped" {
					res.note("critest -benchmark run %d on %s: %q %s: %s", r+1, tg.name, s.LeafNodeText, s.State, firstLine(s.Failure.Message))
				}
				for _, e := range s.ReportEntries {
					scratch[tg.name] = append(scratch[tg.name], e.durations("create PodSandbox and container")...)
				}
			}
			for _, f := range critestFiles {
				set, err := readLifecycle(filepath.Join(dir, f.file))
				if err != nil {
					res.note("critest -benchmark run %d on %s: no %s: %v", r+1, tg.name, f.file, err)
					continue
				}
				for _, dp := range set.Datapoints {
					for i, ns := range dp.OperationsDurationsNs {
						if i >= len(set.OperationsNames) {
							break
						}
						k := opRow{f.file, set.OperationsNames[i]}
						if got[k] == nil {
							got[k] = samples{}
						}
						got[k][tg.name] = append(got[k][tg.name], time.Duration(ns))
					}
				}
			}
		}
	}
	for _, f := range critestFiles {
		for _, op := range f.ops {
			s := got[opRow{f.file, op[0]}]
			res.ms(fmt.Sprintf("critest: %s p50 (N=%d|%d)", op[1], len(s["ours"]), len(s["upstream"])), 0.5, s)
		}
	}
	// One sample a run (after one warm-up): indicative only.
	res.add(fmt.Sprintf("critest: pod+container from scratch, mean of %d|%d", len(scratch["ours"]), len(scratch["upstream"])), "ms", mean(scratch["ours"]), mean(scratch["upstream"]))
}

// runCritestBench runs bin/critest -benchmark against tg, its output in
// dir/critest.log (daemon.RunCritest).
func runCritestBench(ctx context.Context, t *testing.T, tg *target, binDir, dir, params string) {
	ep := "unix://" + tg.l.Socket
	// No -parallel: above 1 critest execs the ginkgo CLI, and the
	// benchmarks are meant one at a time.
	timedOut := daemon.RunCritest(ctx, t, daemon.Critest{
		Binary: filepath.Join(binDir, "critest"),
		Dir:    dir,
		Args: []string{
			"-benchmark",
			"-runtime-endpoint=" + ep,
			"-image-endpoint=" + ep,
			"-benchmarking-params-file=" + params,
			"-benchmarking-output-dir=" + dir,
			"-ginkgo.json-report=" + filepath.Join(dir, "report.json"),
			"-ginkgo.timeout=" + (critestTimeout - time.Minute).String(),
			"-ginkgo.no-color",
		},
		Timeout: critestTimeout,
	})
	if timedOut {
		t.Logf("%s: critest still running after %s: killed", tg.name, critestTimeout)
	}
}

// lifecycleSet is what critest's pkg/benchmark writes per benchmark
// (LifecycleBenchmarksResultsSet): per sample, one duration per operation.
type lifecycleSet struct {
	OperationsNames []string `json:"operationsNames"`
	Datapoints      []struct {
		OperationsDurationsNs []int64 `json:"operationsDurationsNs"`
	} `json:"datapoints"`
}

func readLifecycle(path string) (*lifecycleSet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s lifecycleSet
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &s, nil
}

// ginkgoSpec is the part of a spec in ginkgo's JSON report used here.
type ginkgoSpec struct {
	LeafNodeText string
	State        string
	Failure      struct{ Message string }
	// ReportEntries carry gmeasure experiments (the pod+container spec's).
	ReportEntries []reportEntry
}

type reportEntry struct {
	Name  string
	Value struct{ AsJSON string }
}

// durations are the samples of the experiment measurement named name, if
// the entry is a gmeasure experiment holding one.
func (e reportEntry) durations(name string) []time.Duration {
	var exp struct {
		Measurements []struct {
			Name      string
			Durations []time.Duration
		}
	}
	if json.Unmarshal([]byte(e.Value.AsJSON), &exp) != nil {
		return nil
	}
	for _, m := range exp.Measurements {
		if m.Name == name {
			return m.Durations
		}
	}
	return nil
}

// readGinkgoReport reads the specs of a -ginkgo.json-report file (a list
// of suite reports).
func readGinkgoReport(path string) ([]ginkgoSpec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var suites []struct{ SpecReports []ginkgoSpec }
	if err := json.Unmarshal(b, &suites); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var specs []ginkgoSpec
	for _, s := range suites {
		for _, sp := range s.SpecReports {
			// Suite-level nodes (BeforeSuite...) have no leaf text.
			if sp.LeafNodeText != "" || sp.State != "passed" {
				specs = append(specs, sp)
			}
		}
	}
	return specs, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
