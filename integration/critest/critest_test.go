// Package critest runs cri-tools' critest against bin/containerd, offline,
// and compares the outcome with expected-pass.txt: `make critest`.
//
// TestCritest is skipped unless NODECRI_CRITEST=1, so `make test` does not
// run it. It builds a stand-in for every image critest pulls, serves them
// from a registry in this process that every registry critest names is
// mirrored to, starts the daemon on a root of its own with the layout's
// runtime handlers (runc from `make deps` the default), runs bin/critest
// with -parallel 2 and writes _output/critest/: results.json (every spec:
// name, state, failure message), summary.txt (failures grouped by reason,
// counts last), passed.txt, junit.xml, critest.log and containerd.log.
//
// It fails when a spec listed in expected-pass.txt did not pass, naming
// it; specs that pass without being listed are reported as a hint. Other
// failures are the to-do list, not test failures.
//
// Environment:
//
//	NODECRI_CRITEST_WEBSOCKET=1  the websocket pass: only the Streaming specs, with
//	                             exec, attach and port-forward over websocket instead
//	                             of SPDY, judged against expected-pass-websocket.txt,
//	                             results in _output/critest-websocket/
//	NODECRI_CRITEST_ARGS="..."   more critest flags (-ginkgo.focus=..., -runtime-handler=NAME);
//	                             the expected-pass list is then only reported
//
// `make critest` runs the full pass, then the websocket pass.
package critest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nodecri/nodecri/integration/daemon"
	"github.com/nodecri/nodecri/integration/testimages"
)

// critestTimeout is ginkgo's suite timeout (a run takes 2-4 minutes
// here): at it, ginkgo interrupts the specs still running and writes its
// report. A minute later the harness kills what is left.
const critestTimeout = 20 * time.Minute

// websocketFocus selects the specs the websocket flags change: the
// Streaming describe (exec, attach, port-forward).
const websocketFocus = `\[k8s\.io\] Streaming `

func TestCritest(t *testing.T) {
	if os.Getenv("NODECRI_CRITEST") != "1" {
		t.Skip("set NODECRI_CRITEST=1 (or run `make critest`) to run cri-tools' critest")
	}
	if os.Geteuid() != 0 {
		t.Fatal("critest needs root: the daemon runs containers")
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	binDir := filepath.Join(repo, "bin")
	for _, b := range []string{"containerd", "runc", "containerd-shim-runc-v2", "critest", "ginkgo"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			t.Fatalf("%v: run `make critest`, which builds it", err)
		}
	}
	websocket := os.Getenv("NODECRI_CRITEST_WEBSOCKET") == "1"
	extra := strings.Fields(os.Getenv("NODECRI_CRITEST_ARGS"))
	out, expected := filepath.Join(repo, "_output", "critest"), "expected-pass.txt"
	if websocket {
		out, expected = filepath.Join(repo, "_output", "critest-websocket"), "expected-pass-websocket.txt"
	}
	if err := os.RemoveAll(out); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}

	reg := testimages.NewRegistry(t)
	reg.PushAll(t, testimages.Critest(t))
	d := startDaemon(t, binDir, reg, out)

	args := []string{
		"-runtime-endpoint=unix://" + d.Layout.Socket,
		"-image-endpoint=unix://" + d.Layout.Socket,
		// ginkgo aborts on -parallel 1; above 1 critest execs the ginkgo CLI.
		"-parallel=2",
		"-ginkgo.junit-report=" + filepath.Join(out, "junit.xml"),
		"-ginkgo.timeout=" + critestTimeout.String(),
		"-ginkgo.no-color",
	}
	if websocket {
		args = append(args, "-websocket-exec", "-websocket-attach", "-websocket-portforward")
		if len(extra) == 0 {
			args = append(args, "-ginkgo.focus="+websocketFocus)
		}
	}
	args = append(args, extra...)

	r := &report{Critest: critestVersion(binDir), Args: args, Started: time.Now().UTC()}
	runCritest(t, binDir, out, args)
	r.Duration = time.Since(r.Started).Round(time.Second).String()

	junit, err := os.ReadFile(filepath.Join(out, "junit.xml"))
	if err != nil {
		t.Fatalf("no JUnit report from critest (%v); its output is in %s", err, filepath.Join(out, "critest.log"))
	}
	if r.Specs, r.Setup, err = parseJUnit(junit); err != nil {
		t.Fatal(err)
	}
	r.count()
	if err := r.write(out); err != nil {
		t.Fatal(err)
	}

	for _, s := range r.Setup {
		t.Logf("suite node failed: %s: %s", s.Name, reason(s.Message))
	}
	// One line a failed spec, grouped by reason; summary.txt has the rest.
	for _, g := range byReason(r.Specs) {
		t.Logf("%d failed: %s\n  %s", len(g.Specs), g.Reason, strings.Join(g.Specs, "\n  "))
	}
	specs := r.Specs
	if lost := lostSpecs(specs, expected); len(lost) > 0 && len(lost) <= maxRerun && len(extra) == 0 {
		// On 2 busy cores a spec can time out once; run the lost ones
		// again, once. A spec that passes then is reported as flaky, and
		// still fails the run if it fails again.
		t.Logf("re-running %d lost spec(s) once:\n  %s", len(lost), strings.Join(lost, "\n  "))
		// The lost specs' focus replaces the websocket pass's.
		rerun := slices.DeleteFunc(slices.Clone(args), func(a string) bool { return a == "-ginkgo.focus="+websocketFocus })
		rerun = append(rerun, "-ginkgo.focus="+focusRegexp(lost),
			"-ginkgo.junit-report="+filepath.Join(out, "junit-rerun.xml"))
		runCritest(t, binDir, out, rerun)
		if b, err := os.ReadFile(filepath.Join(out, "junit-rerun.xml")); err == nil {
			if again, _, err := parseJUnit(b); err == nil {
				specs = mergeRerun(t, specs, again)
			}
		}
	}
	compareExpected(t, specs, expected, len(extra) > 0, out)
	t.Logf("critest %s took %s; results in %s", r.Critest, r.Duration, out)
	t.Log(r.countsLine())
}

// startDaemon runs bin/containerd on a folder of its own with a pod
// network, every registry critest names mirrored to reg, and the layout's
// runtime handlers. The daemon fixture tears it down at the end, also when
// the test fails; the daemon's log is copied to out.
func startDaemon(t *testing.T, binDir string, reg *testimages.Registry, out string) *daemon.Daemon {
	t.Helper()
	// One fixed network: critest binds fixed host ports (12000-12003), so
	// two runs cannot share a machine anyway.
	l := daemon.NewTestLayout(t, daemon.TestOptions{
		Prefix:  "nodecri-critest-",
		BinDir:  binDir,
		Network: daemon.Network{Name: "nodecri-critest", Bridge: "nccritest0", Subnet: "10.216.0.0/24"},
		LogCopy: filepath.Join(out, "containerd.log"),
	})
	if err := l.WriteConflist(); err != nil {
		t.Fatal(err)
	}
	hosts := filepath.Join(l.Dir, "certs.d")
	testimages.WriteHostsDir(t, hosts, reg.Addr, testimages.CritestMirrors...)
	l.CRI()["registry"] = map[string]any{"config_path": hosts}
	return daemon.StartTest(t, filepath.Join(binDir, "containerd"), l)
}

// runCritest runs bin/critest with args, its output going to critest.log
// in out (daemon.RunCritest).
func runCritest(t *testing.T, binDir, out string, args []string) {
	t.Helper()
	c := daemon.Critest{Binary: filepath.Join(binDir, "critest"), Dir: out, Args: args, Timeout: critestTimeout + time.Minute}
	if daemon.RunCritest(context.Background(), t, c) {
		t.Errorf("critest still running after %s: killed", c.Timeout)
	}
}

// maxRerun bounds the re-run: more lost specs than this is a regression,
// not a flake.
const maxRerun = 5

// lostSpecs are the specs listed in the expected file that did not pass.
func lostSpecs(specs []spec, expectedFile string) []string {
	expected, err := readList(expectedFile)
	if err != nil {
		return nil
	}
	passed := map[string]bool{}
	for _, s := range specs {
		if s.State == "passed" {
			passed[s.Name] = true
		}
	}
	var lost []string
	for _, name := range expected {
		if !passed[name] {
			lost = append(lost, name)
		}
	}
	return lost
}

// focusRegexp matches exactly the named specs.
func focusRegexp(names []string) string {
	quoted := make([]string, 0, len(names))
	for _, n := range names {
		// The junit name ends with ginkgo's decorators ("[Serial]"), which
		// are not part of the text the focus is matched against.
		n = strings.TrimSuffix(n, " [Serial]")
		quoted = append(quoted, regexp.QuoteMeta(n))
	}
	return strings.Join(quoted, "|")
}

// mergeRerun takes the re-run's outcome for the specs it ran, logging
// each one that passed the second time as flaky.
func mergeRerun(t *testing.T, first, again []spec) []spec {
	byName := map[string]spec{}
	for _, s := range again {
		byName[s.Name] = s
	}
	out := make([]spec, 0, len(first))
	for _, s := range first {
		if a, ok := byName[s.Name]; ok && a.State != "skipped" {
			if s.State != "passed" && a.State == "passed" {
				t.Logf("FLAKY: %s: failed, then passed on the re-run (%s)", s.Name, reason(s.Message))
			}
			s = a
		}
		out = append(out, s)
	}
	return out
}

// critestVersion asks bin/critest for its version ("critest version: v1.36.0").
func critestVersion(binDir string) string {
	b, _ := exec.Command(filepath.Join(binDir, "critest"), "-version").Output()
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "critest version: "); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// compareExpected fails the test for every spec of the expected file
// (expected-pass.txt, or expected-pass-websocket.txt) that did not pass,
// and names the specs that pass without being listed. With informational
// set (a focused or otherwise changed run), lost specs are only reported.
func compareExpected(t *testing.T, specs []spec, expectedFile string, informational bool, out string) {
	t.Helper()
	expected, err := readList(expectedFile)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]spec{}
	for _, s := range specs {
		states[s.Name] = s
	}
	report := t.Errorf
	if informational {
		report = t.Logf
		t.Log("NODECRI_CRITEST_ARGS is set: the expected-pass list is not enforced")
	}
	for _, name := range expected {
		s, ok := states[name]
		switch {
		case !ok:
			report("lost: %s: not run", name)
		case s.State != "passed":
			report("lost: %s: %s: %s", name, s.State, reason(s.Message))
		}
	}
	var added []string
	for _, s := range specs {
		if s.State == "passed" && !slices.Contains(expected, s.Name) {
			added = append(added, s.Name)
		}
	}
	if len(added) > 0 {
		t.Logf("%d specs pass that %s does not list; add them (cp %s integration/critest/%s):\n  %s",
			len(added), expectedFile, filepath.Join(out, "passed.txt"), expectedFile, strings.Join(added, "\n  "))
	}
}
