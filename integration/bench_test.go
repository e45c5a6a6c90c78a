package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/integration/daemon"
)

// BenchmarkRunPodSandbox times RunPodSandbox to Ready on a bridge network,
// one pod at a time (stop and remove are outside the timer), and reports
// p50/p99: `go test -run XXX -bench RunPodSandbox -benchtime 20x ./integration/`.
func BenchmarkRunPodSandbox(b *testing.B) { benchRunPod(b, false) }

// BenchmarkRunPodSandboxHostNetwork is the pause container alone.
func BenchmarkRunPodSandboxHostNetwork(b *testing.B) { benchRunPod(b, true) }

func benchRunPod(b *testing.B, hostNet bool) {
	d, l := podEnv(b, withLogLevel("info"))
	ctx := ctxT(b)
	// Warm: the sandbox image is pulled by the first pod.
	warm, err := d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig(l, "warm")})
	if err != nil {
		b.Fatal(err)
	}
	d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: warm.PodSandboxId})
	d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: warm.PodSandboxId})

	samples := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		cfg := podConfig(l, fmt.Sprintf("bench%d", i))
		if hostNet {
			cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}
		}
		start := time.Now()
		r, err := d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		samples = append(samples, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: r.PodSandboxId})
		d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: r.PodSandboxId})
		b.StartTimer()
	}
	report(b, samples)
	phases(b, scrape(b, l.MetricsAddress))
}

// phases prints the mean of each RunPodSandbox phase from the daemon's
// own histograms, to show where the time goes.
func phases(b *testing.B, metrics string) {
	sums, counts := map[string]float64{}, map[string]float64{}
	for _, line := range strings.Split(metrics, "\n") {
		for suffix, m := range map[string]map[string]float64{"_sum": sums, "_count": counts} {
			prefix := "nodecri_sandbox_run_phase_duration_seconds" + suffix + `{phase="`
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				name, val, _ := strings.Cut(rest, `"} `)
				v, _ := strconv.ParseFloat(val, 64)
				m[name] = v
			}
		}
		if rest, ok := strings.CutPrefix(line, `nodecri_cni_operation_duration_seconds_sum{operation="`); ok {
			name, val, _ := strings.Cut(rest, `"} `)
			v, _ := strconv.ParseFloat(val, 64)
			sums["cni_"+name+"(all)"] = v
		}
	}
	for name, sum := range sums {
		if c := counts[name]; c > 0 {
			b.Logf("phase %-14s mean %.1f ms", name, sum/c*1000)
		}
	}
}

func report(b *testing.B, samples []time.Duration) {
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	p := func(q float64) float64 {
		return float64(samples[int(q*float64(len(samples)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(p(0.5), "p50-ms")
	b.ReportMetric(p(0.99), "p99-ms")
}

// BenchmarkRecovery times a daemon's restart after kill -9 with many pods
// present (NODECRI_RECOVERY_PODS, default 200, each with a running
// container, host network): from exec to the CRI answering ("serving"),
// and to ListPodSandbox and ListContainers showing every pod Ready and
// every container running ("recovered"):
// `go test -run XXX -bench Recovery -benchtime 3x -timeout 30m ./integration/`.
func BenchmarkRecovery(b *testing.B) {
	n := 200
	if v, err := strconv.Atoi(os.Getenv("NODECRI_RECOVERY_PODS")); err == nil && v > 0 {
		n = v
	}
	d, l := podEnv(b, withLogLevel("info"))
	// Growing to 200 pods takes minutes on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	b.Cleanup(cancel)
	if _, err := d.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox:1.36"}}); err != nil {
		b.Fatal(err)
	}
	var eg errgroup.Group
	eg.SetLimit(8)
	for i := range n {
		eg.Go(func() error {
			cfg := podConfig(l, fmt.Sprintf("recover%d", i))
			cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}
			r, err := d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
			if err != nil {
				return err
			}
			cc := busybox("sleeper", "sleep", "3600")
			cc.LogPath = "sleeper.log"
			c, err := d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: r.PodSandboxId, Config: cc, SandboxConfig: cfg})
			if err != nil {
				return err
			}
			_, err = d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId})
			return err
		})
	}
	if err := eg.Wait(); err != nil {
		b.Fatal(err)
	}
	serving := make([]time.Duration, 0, b.N)
	recovered := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		checkOneShimPerPod(b, d)
		d.Kill()
		start := time.Now()
		d2, err := daemon.Start(ctx, binary, l)
		if err != nil {
			b.Fatal(err)
		}
		serving = append(serving, time.Since(start))
		b.Cleanup(func() { daemon.Teardown(b, d2) })
		pods, err := d2.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}})
		if err != nil {
			b.Fatal(err)
		}
		ctrs, err := d2.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}})
		if err != nil {
			b.Fatal(err)
		}
		recovered = append(recovered, time.Since(start))
		if len(pods.Items) != n || len(ctrs.Containers) != n {
			b.Fatalf("after restart: %d ready pods, %d running containers, want %d", len(pods.Items), len(ctrs.Containers), n)
		}
		d = d2
	}
	b.StopTimer()
	sort.Slice(serving, func(i, j int) bool { return serving[i] < serving[j] })
	sort.Slice(recovered, func(i, j int) bool { return recovered[i] < recovered[j] })
	b.ReportMetric(float64(serving[len(serving)/2].Milliseconds()), "serving-p50-ms")
	b.ReportMetric(float64(recovered[len(recovered)/2].Milliseconds()), "recovered-p50-ms")
	b.ReportMetric(float64(n), "pods")
}

// checkOneShimPerPod checks that each pod's containers run under its
// pause's shim (containerd groups a pod's tasks into one shim): a task
// that landed in a second shim would leave the pause's shim unreachable
// after a restart.
func checkOneShimPerPod(b *testing.B, d *daemon.Daemon) {
	ctx := ctxT(b)
	ppid := func(pid float64) string {
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", int(pid)))
		for _, line := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(line, "PPid:"); ok {
				return strings.TrimSpace(v)
			}
		}
		return "?"
	}
	ctrs, err := d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range ctrs.Containers {
		cs, err := d.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.Id, Verbose: true})
		if err != nil {
			b.Fatal(err)
		}
		ps, err := d.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: c.PodSandboxId, Verbose: true})
		if err != nil {
			b.Fatal(err)
		}
		var ci, pi struct{ Pid float64 }
		json.Unmarshal([]byte(cs.Info["info"]), &ci)
		json.Unmarshal([]byte(ps.Info["info"]), &pi)
		if a, p := ppid(ci.Pid), ppid(pi.Pid); a != p {
			b.Errorf("pod %.12s: container %.12s under shim %s, pause under shim %s", c.PodSandboxId, c.Id, a, p)
		}
	}
}
