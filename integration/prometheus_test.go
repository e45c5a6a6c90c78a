package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestPrometheusScrapesOurSeries runs a real Prometheus (Debian's, which
// `make deps` puts in bin/) against the daemon's metrics endpoint and reads
// our series back through PromQL, as an operator's dashboard would; then
// lints the endpoint's output with promtool.
func TestPrometheusScrapesOurSeries(t *testing.T) {
	promBin, promtool := filepath.Join(binDir, "prometheus"), filepath.Join(binDir, "promtool")
	for _, b := range []string{promBin, promtool} {
		if _, err := os.Stat(b); err != nil {
			t.Skipf("%s missing: `make deps` installs prometheus and promtool into bin/", b)
		}
	}
	p := newPod(t)
	p.run(t, busybox("sleeper", "sleep", "3600"))
	done := p.run(t, busybox("done", "true"))
	p.waitExit(t, done)

	t.Run("promtool", func(t *testing.T) { promtoolCheck(t, promtool, scrape(t, p.l.MetricsAddress)) })

	prom := startPrometheus(t, promBin, p.l.MetricsAddress)
	prom.waitUp(t)

	// Everything above happened before the first scrape, so the first
	// scrape holds the final values.
	prom.expect(t, `nodecri_cri_requests_total{method="RunPodSandbox",code="OK"}`, 1)
	prom.expect(t, `sum(nodecri_cri_requests_total{method="StartContainer"})`, 2)
	prom.expect(t, `nodecri_cri_request_duration_seconds_count{method="RunPodSandbox",code="OK"}`, 1)
	for _, phase := range []string{"netns", "cni_add", "pause_create", "pause_start", "total"} {
		prom.expect(t, `nodecri_sandbox_run_phase_duration_seconds_count{phase="`+phase+`"}`, 1)
	}
	// The whole RunPodSandbox took at least as long as any of its phases.
	prom.expect(t, `count(nodecri_sandbox_run_phase_duration_seconds_sum{phase="total"} >= ignoring(phase) group_right
		nodecri_sandbox_run_phase_duration_seconds_sum{phase!="total"})`, 4)
	prom.expect(t, `nodecri_sandbox_pods{state="ready"}`, 1)
	prom.expect(t, `nodecri_sandbox_pods{state="notready"}`, 0)
	prom.expect(t, `nodecri_containers_by_state{state="running"}`, 1)
	prom.expect(t, `nodecri_containers_by_state{state="exited"}`, 1)
	prom.expect(t, `nodecri_containers_by_state{state="created"}`, 0)
	prom.expect(t, `nodecri_containers_exits_total{reason="Completed"}`, 1)
	prom.expect(t, `sum(nodecri_containers_operation_duration_seconds_count{operation="start",runtime_handler="runc"})`, 2)
	prom.expect(t, `nodecri_cni_operations_total{operation="add"}`, 1)
	prom.expect(t, `nodecri_images_pulls_total{result="success"}`, 2) // busybox, and pause for the sandbox

	// The state gauges are counted at scrape time: stopping the pod shows
	// at a later scrape, with no event feeding the metric.
	if _, err := p.d.Runtime.StopPodSandbox(ctxT(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id}); err != nil {
		t.Fatal(err)
	}
	prom.waitFor(t, `nodecri_sandbox_pods{state="notready"}`, 1)
	prom.expect(t, `nodecri_sandbox_pods{state="ready"}`, 0)
	prom.expect(t, `nodecri_containers_by_state{state="exited"}`, 2)
	prom.expect(t, `nodecri_cni_operations_total{operation="del"}`, 1)
}

// promtoolCheck lints the endpoint's output. Our series must be clean;
// containerd's own and the Go runtime's are not ours to rename (some
// upstream counters lack the _total suffix), so their findings are only
// logged. The input must parse, whoever's series it holds.
func promtoolCheck(t *testing.T, promtool, body string) {
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("promtool: %v", err)
	}
	if strings.Contains(string(out), "error while linting") {
		t.Fatalf("promtool cannot parse the endpoint's output: %s", out)
	}
	var ours, theirs []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		switch {
		case line == "":
		case strings.HasPrefix(line, "nodecri_"):
			ours = append(ours, line)
		default:
			theirs = append(theirs, line)
		}
	}
	if len(ours) > 0 {
		t.Errorf("promtool check metrics on our series:\n%s", strings.Join(ours, "\n"))
	}
	if len(theirs) > 0 {
		t.Logf("promtool findings on containerd's series (not ours, not asserted):\n%s", strings.Join(theirs, "\n"))
	}
	if !strings.Contains(body, "nodecri_sandbox_pods{") {
		t.Errorf("endpoint output lacks our series; promtool checked:\n%s", lastLines(body, 20))
	}
}

// promServer is a Prometheus server of the test's own: its own port, data
// folder and config, stopped by PID when the test ends.
type promServer struct {
	addr string
	log  string
}

func startPrometheus(t *testing.T, bin, target string) *promServer {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: nodecri
    metrics_path: /v1/metrics
    static_configs:
      - targets: [%q]
`, target), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &promServer{addr: freeAddr(t), log: filepath.Join(dir, "prometheus.log")}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin,
		"--config.file="+cfg,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+p.addr,
		"--log.level=warn",
	)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Registered after t.TempDir, so it runs first: the data folder is
	// removed only once Prometheus is gone.
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("--- prometheus log (tail) ---\n%s", lastLines(string(b), 30))
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	return p
}

// query runs an instant PromQL query and returns its vector's samples.
func (p *promServer) query(q string) ([]float64, error) {
	resp, err := http.Get("http://" + p.addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("query %s: HTTP %s: %w", q, resp.Status, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", q, r.Error)
	}
	if r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: result type %s, want vector", q, r.Data.ResultType)
	}
	var out []float64
	for _, s := range r.Data.Result {
		str, _ := s.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: sample %v: %w", q, s.Value, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// one runs q, which must give exactly one sample.
func (p *promServer) one(q string) (float64, error) {
	vs, err := p.query(q)
	if err != nil {
		return 0, err
	}
	if len(vs) != 1 {
		return 0, fmt.Errorf("query %s: %d samples %v, want one", q, len(vs), vs)
	}
	return vs[0], nil
}

func (p *promServer) expect(t *testing.T, q string, want float64) {
	t.Helper()
	got, err := p.one(q)
	if err != nil {
		t.Error(err)
		return
	}
	if got != want {
		t.Errorf("%s = %v, want %v", q, got, want)
	}
}

// promDeadline bounds the harness's waits on Prometheus (its start-up and
// scrapes every second), generous for a loaded machine; it is not an
// assertion about speed.
const promDeadline = 60 * time.Second

// waitFor polls Prometheus's API until q gives want: the test waits for a
// scrape of an outside process, there is no event to wait on.
func (p *promServer) waitFor(t *testing.T, q string, want float64) {
	t.Helper()
	deadline := time.Now().Add(promDeadline)
	for {
		got, err := p.one(q)
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s = %v (%v), want %v", promDeadline, q, got, err, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitUp waits until Prometheus has scraped the daemon successfully.
func (p *promServer) waitUp(t *testing.T) {
	t.Helper()
	p.waitFor(t, `up{job="nodecri"}`, 1)
}
