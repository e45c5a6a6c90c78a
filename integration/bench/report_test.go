package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// row is one metric for both daemons; Ratio is ours/upstream, so below 1
// is ours faster or smaller.
type row struct {
	Metric   string  `json:"metric"`
	Unit     string  `json:"unit"`
	Ours     float64 `json:"ours"`
	Upstream float64 `json:"upstream"`
	Ratio    float64 `json:"ratio"`
}

type machine struct {
	CPUs       int    `json:"nproc"`
	Kernel     string `json:"kernel"`
	OS         string `json:"os"`
	MemTotalMB int64  `json:"mem_total_mb"`
	// Load averages at start and end: the machine is shared, so they say
	// how noisy the run was.
	LoadStart string `json:"loadavg_start"`
	LoadEnd   string `json:"loadavg_end"`
}

type results struct {
	Date     string            `json:"date"`
	Duration string            `json:"duration"`
	Machine  machine           `json:"machine"`
	Versions map[string]string `json:"versions"`
	Notes    []string          `json:"notes"`
	Rows     []row             `json:"results"`
	start    time.Time
}

func newResults() *results {
	return &results{
		Date:     time.Now().UTC().Format(time.RFC3339),
		start:    time.Now(),
		Versions: map[string]string{"go (bench)": runtime.Version()},
		Machine: machine{
			CPUs:       runtime.NumCPU(),
			Kernel:     readTrim("/proc/sys/kernel/osrelease"),
			OS:         osName(),
			MemTotalMB: procStatusKB("/proc/meminfo", "MemTotal:") / 1024,
			LoadStart:  loadavg(),
		},
	}
}

func (r *results) add(metric, unit string, ours, upstream float64) {
	ratio := math.NaN()
	if upstream != 0 {
		ratio = ours / upstream
	}
	r.Rows = append(r.Rows, row{metric, unit, round(ours), round(upstream), round(ratio)})
}

func (r *results) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// ms adds a latency row at quantile q of each daemon's samples.
func (r *results) ms(metric string, q float64, s samples) {
	r.add(metric, "ms", quantile(s["ours"], q), quantile(s["upstream"], q))
}

// samples are durations per daemon name.
type samples map[string][]time.Duration

// quantile is the nearest-rank quantile in milliseconds (for 30 samples,
// p99 is the slowest).
func quantile(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return math.NaN()
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return float64(s[max(i, 0)].Microseconds()) / 1000
}

func mean(d []time.Duration) float64 {
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return float64(sum.Microseconds()) / 1000 / float64(len(d))
}

func round(f float64) float64 {
	if math.IsNaN(f) {
		return f
	}
	return math.Round(f*1000) / 1000
}

// table renders the rows for a terminal and for docs/benchmarks.md.
func (r *results) table() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "metric\tunit\tours\tupstream\tours/upstream\t")
	for _, x := range r.Rows {
		fmt.Fprintf(w, "%s\t%s\t%.1f\t%.1f\t%.2f\t\n", x.Metric, x.Unit, x.Ours, x.Upstream, x.Ratio)
	}
	w.Flush()
	return b.String()
}

// write saves the results as JSON; NaN (a row that could not be measured)
// becomes null.
func (r *results) write(path string) error {
	r.Duration = time.Since(r.start).Round(time.Second).String()
	r.Machine.LoadEnd = loadavg()
	type jrow struct {
		Metric   string   `json:"metric"`
		Unit     string   `json:"unit"`
		Ours     *float64 `json:"ours"`
		Upstream *float64 `json:"upstream"`
		Ratio    *float64 `json:"ratio"`
	}
	num := func(f float64) *float64 {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil
		}
		return &f
	}
	out := struct {
		*results
		Rows []jrow `json:"results"`
	}{results: r}
	for _, x := range r.Rows {
		out.Rows = append(out.Rows, jrow{x.Metric, x.Unit, num(x.Ours), num(x.Upstream), num(x.Ratio)})
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

func loadavg() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func osName() string {
	for _, line := range strings.Split(readTrim("/etc/os-release"), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return runtime.GOOS
}
