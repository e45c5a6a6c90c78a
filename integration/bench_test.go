package integration

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
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
