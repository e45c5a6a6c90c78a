package critest

import (
	"cmp"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// spec is one critest spec's outcome, as results.json lists it.
type spec struct {
	Name    string  `json:"name"`
	State   string  `json:"state"` // passed, failed or skipped
	Message string  `json:"message,omitempty"`
	Seconds float64 `json:"seconds"`
}

// report is results.json.
type report struct {
	Critest  string    `json:"critest"`
	Args     []string  `json:"args"`
	Started  time.Time `json:"started"`
	Duration string    `json:"duration"`
	Passed   int       `json:"passed"`
	Failed   int       `json:"failed"`
	Skipped  int       `json:"skipped"`
	Specs    []spec    `json:"specs"`
	// Setup lists failed suite-level nodes (BeforeSuite and the like),
	// which are not specs but can fail every spec behind them.
	Setup []spec `json:"setup,omitempty"`
}

// The parts of ginkgo v2's JUnit report we read.
type junitCase struct {
	Name    string  `xml:"name,attr"`
	Status  string  `xml:"status,attr"`
	Time    float64 `xml:"time,attr"`
	Skipped *struct {
		Message string `xml:"message,attr"`
	} `xml:"skipped"`
	Failure *struct {
		Message string `xml:"message,attr"`
		Type    string `xml:"type,attr"`
	} `xml:"failure"`
	Error *struct {
		Message string `xml:"message,attr"`
		Type    string `xml:"type,attr"`
	} `xml:"error"`
}

// parseJUnit reads ginkgo's JUnit report into specs (the [It] nodes, by
// full text) and failed suite-level nodes, both sorted by name. Ginkgo's
// states other than passed, skipped and pending (failed, timedout,
// interrupted, aborted, panicked) are failures.
func parseJUnit(b []byte) (specs, setup []spec, err error) {
	var doc struct {
		Suites []struct {
			Cases []junitCase `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		return nil, nil, fmt.Errorf("parse JUnit report: %w", err)
	}
	for _, suite := range doc.Suites {
		for _, c := range suite.Cases {
			s := spec{Name: c.Name, Seconds: c.Time}
			switch c.Status {
			case "passed":
				s.State = "passed"
			case "skipped", "pending":
				s.State = "skipped"
				if c.Skipped != nil {
					s.Message = c.Skipped.Message
				}
			default:
				s.State = "failed"
				if c.Failure != nil {
					s.Message = c.Failure.Message
				} else if c.Error != nil {
					s.Message = c.Error.Type + ": " + c.Error.Message
				}
				if c.Status != "failed" {
					s.Message = c.Status + ": " + s.Message
				}
			}
			if name, ok := strings.CutPrefix(c.Name, "[It] "); ok {
				s.Name = name
				specs = append(specs, s)
			} else if s.State == "failed" {
				setup = append(setup, s)
			}
		}
	}
	byName := func(a, b spec) int { return strings.Compare(a.Name, b.Name) }
	slices.SortFunc(specs, byName)
	slices.SortFunc(setup, byName)
	return specs, setup, nil
}

// What differs between runs in a message: UUIDs (critest's pod UIDs and
// names), long hex strings (IDs, digests) and durations.
var (
	ids       = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32,}`)
	durations = regexp.MustCompile(`\b[0-9]+\.[0-9]+s\b`)
)

// reason is the part of a failure message that names its cause, for
// grouping: the gRPC status when there is one ("code = Unimplemented
// desc = ..."), else the first line (with the next one when it ends in a
// colon, as gomega's "Expected ...  Got:" does), with IDs and durations
// replaced.
func reason(msg string) string {
	if _, rpc, ok := strings.Cut(msg, "rpc error: "); ok {
		msg = rpc
	}
	line, rest, _ := strings.Cut(strings.TrimSpace(msg), "\n")
	if strings.HasSuffix(line, ":") {
		next, _, _ := strings.Cut(strings.TrimSpace(rest), "\n")
		line += " " + next
	}
	line = durations.ReplaceAllString(ids.ReplaceAllString(line, "<id>"), "<t>")
	if len(line) > 160 {
		line = line[:160] + "…"
	}
	return line
}

type group struct {
	Reason string
	Specs  []string
}

// byReason groups failed specs by reason, largest group first.
func byReason(specs []spec) []group {
	index := map[string]int{}
	var groups []group
	for _, s := range specs {
		if s.State != "failed" {
			continue
		}
		r := reason(s.Message)
		i, ok := index[r]
		if !ok {
			i = len(groups)
			index[r] = i
			groups = append(groups, group{Reason: r})
		}
		groups[i].Specs = append(groups[i].Specs, s.Name)
	}
	slices.SortStableFunc(groups, func(a, b group) int { return cmp.Compare(len(b.Specs), len(a.Specs)) })
	return groups
}

func (r *report) count() {
	r.Passed, r.Failed, r.Skipped = 0, 0, 0
	for _, s := range r.Specs {
		switch s.State {
		case "passed":
			r.Passed++
		case "failed":
			r.Failed++
		default:
			r.Skipped++
		}
	}
}

func (r *report) countsLine() string {
	return fmt.Sprintf("%d passed, %d failed, %d skipped", r.Passed, r.Failed, r.Skipped)
}

// write puts results.json, summary.txt (counts last) and passed.txt (the
// names that passed, in expected-pass.txt's format) into dir.
func (r *report) write(dir string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}

	var sum, passed strings.Builder
	fmt.Fprintf(&sum, "critest %s, started %s, took %s\nargs: %s\n", r.Critest, r.Started.Format(time.RFC3339), r.Duration, strings.Join(r.Args, " "))
	for _, s := range r.Setup {
		fmt.Fprintf(&sum, "\nsuite node failed: %s: %s\n", s.Name, reason(s.Message))
	}
	section := func(title string, lines []string) {
		if len(lines) > 0 {
			fmt.Fprintf(&sum, "\n%s (%d):\n  %s\n", title, len(lines), strings.Join(lines, "\n  "))
		}
	}
	var reasons, failed, skipped, ok []string
	for _, g := range byReason(r.Specs) {
		reasons = append(reasons, fmt.Sprintf("%3d  %s", len(g.Specs), g.Reason))
	}
	for _, s := range r.Specs {
		switch s.State {
		case "passed":
			ok = append(ok, s.Name)
			fmt.Fprintln(&passed, s.Name)
		case "failed":
			failed = append(failed, s.Name+"\n      "+reason(s.Message))
		default:
			skipped = append(skipped, s.Name+"\n      "+reason(s.Message))
		}
	}
	section("Failures by reason", reasons)
	section("Failed", failed)
	section("Skipped", skipped)
	section("Passed", ok)
	fmt.Fprintf(&sum, "\n%s\n", r.countsLine())
	if err := os.WriteFile(filepath.Join(dir, "summary.txt"), []byte(sum.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "passed.txt"), []byte(passed.String()), 0o644)
}

// readList reads a list of spec names, one a line; blank lines and lines
// starting with # are skipped.
func readList(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			names = append(names, line)
		}
	}
	return names, nil
}

func TestParseJUnit(t *testing.T) {
	const doc = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="4"><testsuite name="CRI validation" tests="4">
<testcase name="[SynchronizedBeforeSuite]" classname="CRI validation" status="passed" time="0.1"></testcase>
<testcase name="[It] [sig-node] Image Manager should pull [Conformance]" classname="CRI validation" status="passed" time="1.5"></testcase>
<testcase name="[It] [sig-node] PodSandbox should run" classname="CRI validation" status="failed" time="0.2"><failure message="failed to create PodSandbox: rpc error: code = Unimplemented desc = method RunPodSandbox not implemented&#xA;Unexpected error:" type="failed">details</failure></testcase>
<testcase name="[It] [sig-node] Container should stop" classname="CRI validation" status="timedout" time="60"><failure message="A spec timeout occurred" type="timedout"></failure></testcase>
<testcase name="[It] [sig-node] AppArmor should load" classname="CRI validation" status="skipped" time="0"><skipped message="skipped - no AppArmor"></skipped></testcase>
</testsuite></testsuites>`
	specs, setup, err := parseJUnit([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := []spec{
		{Name: "[sig-node] AppArmor should load", State: "skipped", Message: "skipped - no AppArmor"},
		{Name: "[sig-node] Container should stop", State: "failed", Message: "timedout: A spec timeout occurred", Seconds: 60},
		{Name: "[sig-node] Image Manager should pull [Conformance]", State: "passed", Seconds: 1.5},
		{Name: "[sig-node] PodSandbox should run", State: "failed", Message: "failed to create PodSandbox: rpc error: code = Unimplemented desc = method RunPodSandbox not implemented\nUnexpected error:", Seconds: 0.2},
	}
	if !slices.Equal(specs, want) || len(setup) != 0 {
		t.Fatalf("parseJUnit:\n got %+v, setup %+v\nwant %+v", specs, setup, want)
	}
	if got := reason(specs[3].Message); got != "code = Unimplemented desc = method RunPodSandbox not implemented" {
		t.Errorf("reason = %q", got)
	}
	r := report{Specs: specs}
	r.count()
	if got := r.countsLine(); got != "1 passed, 2 failed, 1 skipped" {
		t.Errorf("counts = %q", got)
	}
	if g := byReason(specs); len(g) != 2 || len(g[0].Specs) != 1 {
		t.Errorf("byReason = %+v", g)
	}
	for msg, want := range map[string]string{
		"Expected an error to have occurred.  Got:\n    <nil>: nil":                                 "Expected an error to have occurred.  Got: <nil>: nil",
		`x: rpc error: code = NotFound desc = pod "b0bb9fbd-827b-4fc2-80b9-c09b0b5a79e0" not found`: `code = NotFound desc = pod "<id>" not found`,
		"Timed out after 60.001s.\nExpected":                                                        "Timed out after <t>.",
	} {
		if got := reason(msg); got != want {
			t.Errorf("reason(%q) = %q, want %q", msg, got, want)
		}
	}
}

func TestRerunHelpers(t *testing.T) {
	re := regexp.MustCompile(focusRegexp([]string{"[k8s.io] Image Manager should pull (tag) [Serial]", "a.b"}))
	if !re.MatchString("[k8s.io] Image Manager should pull (tag)") || !re.MatchString("a.b") || re.MatchString("axb") {
		t.Errorf("focus %q", re)
	}
	first := []spec{{Name: "x", State: "failed", Message: "timedout"}, {Name: "y", State: "passed"}}
	got := mergeRerun(t, first, []spec{{Name: "x", State: "passed"}})
	if got[0].State != "passed" || got[1].State != "passed" {
		t.Errorf("merged %+v", got)
	}
}
