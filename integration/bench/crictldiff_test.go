package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodecri/nodecri/integration/testimages"
)

// TestCrictlDiff runs the same crictl session against bin/containerd and
// upstream containerd's own CRI (`make crictl-diff`), normalises what
// differs by nature (IDs, times, PIDs, IPs, each daemon's folder, bridge
// and network names) and writes the two transcripts and their diff to
// _output/crictl-diff/. It reports differences; it fails only when the
// session cannot run (a pod or container that does not start).
func TestCrictlDiff(t *testing.T) {
	if os.Getenv("NODECRI_CRICTL_DIFF") != "1" {
		t.Skip("set NODECRI_CRICTL_DIFF=1 to run (make crictl-diff)")
	}
	if os.Geteuid() != 0 {
		t.Skip("the daemons need root")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, binDir, bins := sideBySide(t, "crictl-diff", "crictl")
	out := filepath.Join(root, "_output", "crictl-diff")
	if err := os.RemoveAll(out); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	reg := testimages.NewRegistry(t)
	reg.Push(t, "pause", "3.10.2", testimages.Pause(t))
	reg.Push(t, "library/busybox", "1.36", testimages.Busybox(t))

	var files []string
	for i, name := range []string{"ours", "upstream"} {
		tg := startTarget(t, name, bins[name], binDir, out, i, reg)
		// One session at a time: both use host port 18080.
		rawDir := filepath.Join(out, "raw", name)
		if err := os.MkdirAll(rawDir, 0o755); err != nil {
			t.Fatal(err)
		}
		transcript := crictlSession(ctx, t, tg, filepath.Join(binDir, "crictl"), rawDir)
		f := filepath.Join(out, name+".txt")
		if err := os.WriteFile(f, []byte(transcript), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	// diff exits 1 when the files differ: that is the report, not an error.
	d, err := exec.Command("diff", "-u", "--label", "ours", "--label", "upstream", files[0], files[1]).Output()
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 1) {
		t.Fatalf("diff: %v", err)
	}
	if err := os.WriteFile(filepath.Join(out, "diff.txt"), d, 0o644); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("%s\ntranscripts: %s %s\ndiff: %s\n", d, files[0], files[1], filepath.Join(out, "diff.txt"))
}

// crictlStep is one crictl call; its stdout (JSON or an ID) or its error
// goes into the transcript under name.
type crictlStep struct {
	name string
	args []string
	// save names the variable the printed ID is kept in ("" for none);
	// such a step must succeed, or the session cannot go on.
	save string
}

// crictlSession runs the session against tg and returns its normalised
// transcript. Configs come from testdata/crictl with @ROOT@ and @CGROUP@
// filled in for this daemon.
func crictlSession(ctx context.Context, t *testing.T, tg *target, crictl, rawDir string) string {
	t.Helper()
	cfgDir := filepath.Join(tg.l.Dir, "crictl")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cgroup := "/" + filepath.Base(tg.l.Dir) + "/pod7d6c5a4b"
	tmpl, _ := filepath.Glob("testdata/crictl/*.json")
	for _, f := range tmpl {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte("@ROOT@"), []byte(tg.l.Dir))
		b = bytes.ReplaceAll(b, []byte("@CGROUP@"), []byte(cgroup))
		if err := os.WriteFile(filepath.Join(cfgDir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// What the kubelet creates before it starts containers: the log
	// folder, the termination-log files and a volume.
	podDir := filepath.Join(tg.l.Dir, "pods", "nodecri-diff_web_7d6c5a4b-0000-4000-8000-000000000001")
	for _, d := range []string{"containers/app", "containers/job", "volumes/config"} {
		if err := os.MkdirAll(filepath.Join(podDir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []string{"app", "job"} {
		if err := os.WriteFile(filepath.Join(podDir, "containers", c, "termination-log"), nil, 0o666); err != nil {
			t.Fatal(err)
		}
	}
	crictlYAML := filepath.Join(cfgDir, "crictl.yaml")
	ep := "unix://" + tg.l.Socket
	if err := os.WriteFile(crictlYAML, []byte("runtime-endpoint: "+ep+"\nimage-endpoint: "+ep+"\ntimeout: 120\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := func(name string) string { return filepath.Join(cfgDir, name) }
	const busybox = "docker.io/library/busybox:1.36"
	steps := []crictlStep{
		{name: "version", args: []string{"version"}},
		{name: "pull", args: []string{"pull", busybox}},
		{name: "pull missing image", args: []string{"pull", "docker.io/library/nosuch:1.0"}},
		{name: "inspecti", args: []string{"inspecti", "-o", "json", busybox}},
		{name: "inspecti missing image", args: []string{"inspecti", "-o", "json", "docker.io/library/nosuch:1.0"}},
		{name: "runp", args: []string{"runp", cfg("pod.json")}, save: "POD"},
		{name: "inspectp (ready)", args: []string{"inspectp", "-o", "json", "$POD"}},
		{name: "pods", args: []string{"pods", "-o", "json"}},
		{name: "images", args: []string{"images", "-o", "json"}},
		{name: "create", args: []string{"create", "$POD", cfg("container.json"), cfg("pod.json")}, save: "CTR"},
		{name: "inspect (created)", args: []string{"inspect", "-o", "json", "$CTR"}},
		{name: "start", args: []string{"start", "$CTR"}},
		{name: "inspect (running)", args: []string{"inspect", "-o", "json", "$CTR"}},
		{name: "create missing image", args: []string{"create", "--no-pull", "$POD", cfg("container-missing-image.json"), cfg("pod.json")}},
		{name: "ps (running)", args: []string{"ps", "-a", "-o", "json"}},
		{name: "stats", args: []string{"stats", "-o", "json"}},
		{name: "statsp", args: []string{"statsp", "-o", "json"}},
		// job ignores SIGTERM and exits 3 on its own within the stop
		// timeout: stop returns once it has exited, no polling needed.
		{name: "create job", args: []string{"create", "$POD", cfg("container-exit.json"), cfg("pod.json")}, save: "JOB"},
		{name: "start job", args: []string{"start", "$JOB"}},
		{name: "stop job", args: []string{"stop", "--timeout", "30", "$JOB"}},
		{name: "inspect job (exited 3)", args: []string{"inspect", "-o", "json", "$JOB"}},
		{name: "stop", args: []string{"stop", "--timeout", "30", "$CTR"}},
		{name: "inspect (exited 0)", args: []string{"inspect", "-o", "json", "$CTR"}},
		{name: "ps (exited)", args: []string{"ps", "-a", "-o", "json"}},
		{name: "start exited container", args: []string{"start", "$CTR"}},
		{name: "stopp", args: []string{"stopp", "$POD"}},
		{name: "inspectp (not ready)", args: []string{"inspectp", "-o", "json", "$POD"}},
		{name: "pods (not ready)", args: []string{"pods", "-o", "json"}},
		{name: "rm", args: []string{"rm", "$CTR", "$JOB"}},
		{name: "rmp", args: []string{"rmp", "$POD"}},
		{name: "pods (none)", args: []string{"pods", "-o", "json"}},
		{name: "ps (none)", args: []string{"ps", "-a", "-o", "json"}},
		{name: "inspect unknown", args: []string{"inspect", "-o", "json", "0123456789ab"}},
		{name: "inspectp unknown", args: []string{"inspectp", "-o", "json", "0123456789ab"}},
		{name: "stop unknown", args: []string{"stop", "0123456789ab"}},
		{name: "rm unknown", args: []string{"rm", "0123456789ab"}},
		{name: "stopp unknown", args: []string{"stopp", "0123456789ab"}},
		{name: "rmp unknown", args: []string{"rmp", "0123456789ab"}},
	}
	vars := map[string]string{}
	n := newNormaliser(tg)
	var b strings.Builder
	for i, s := range steps {
		args := []string{"--config", crictlYAML}
		for _, a := range s.args {
			if v, ok := strings.CutPrefix(a, "$"); ok {
				a = vars[v]
			}
			args = append(args, a)
		}
		cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(cctx, crictl, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		cancel()
		raw := fmt.Sprintf("$ crictl %s\nerr: %v\n%s\n%s", strings.Join(s.args, " "), err, stdout.String(), stderr.String())
		if err := os.WriteFile(filepath.Join(rawDir, fmt.Sprintf("%02d.txt", i)), []byte(raw), 0o644); err != nil {
			t.Fatal(err)
		}
		if s.save != "" {
			if err != nil {
				t.Fatalf("%s: crictl %s: %v\n%s\n%s", tg.name, strings.Join(s.args, " "), err, stderr.String(), tg.d.LogTail(30))
			}
			vars[s.save] = strings.TrimSpace(stdout.String())
			n.id(vars[s.save], "<"+strings.ToLower(s.save)+"-id>")
		}
		fmt.Fprintf(&b, "### %s: crictl %s\n", s.name, strings.Join(s.args[:min(len(s.args), 1)], " "))
		if err != nil {
			fmt.Fprintf(&b, "error: %s\n", n.errorLine(stderr.String()))
		}
		fmt.Fprintf(&b, "%s\n", n.output(stdout.Bytes(), strings.HasPrefix(s.args[0], "stats")))
	}
	return b.String()
}

// normaliser replaces what differs between any two runs, or between the
// two daemons by construction, with placeholders.
type normaliser struct {
	replace []string // old, new pairs, applied in order
}

var (
	// A 64-hex ID that is not a content digest: digests are the same on
	// both sides (same registry bytes) and worth comparing.
	hexID      = regexp.MustCompile(`(sha256:)?[0-9a-f]{64}`)
	rfc3339    = regexp.MustCompile(`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})`)
	podIP      = regexp.MustCompile(`10\.25[01]\.\d+\.\d+`)
	netnsName  = regexp.MustCompile(`cni-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	mac        = regexp.MustCompile(`\b([0-9a-f]{2}:){5}[0-9a-f]{2}\b`)
	veth       = regexp.MustCompile(`\bveth[0-9a-f]{8}\b`)
	procPID    = regexp.MustCompile(`/proc/\d+/`)
	klogPrefix = regexp.MustCompile(`^[EIWF]\d{4} [\d:.]+\s+\d+ [^\]]+\] `)
	logrusTime = regexp.MustCompile(`time="[^"]*" `)
	timeKey    = regexp.MustCompile(`(?i)^(created|started|finished)(_?at)?$|timestamp|^time$`)
	pidKey     = regexp.MustCompile(`(?i)^pid$`)
	number     = regexp.MustCompile(`^\d+$`)
)

func newNormaliser(tg *target) *normaliser {
	return &normaliser{replace: []string{
		tg.l.Dir, "<root>",
		filepath.Base(tg.l.Dir), "<root-name>",
		tg.l.Network.Name, "<cni-network>",
		tg.l.Network.Bridge, "<bridge>",
	}}
}

// id adds an ID and its short form (as crictl prints it) to replace.
func (n *normaliser) id(id, placeholder string) {
	if id == "" {
		return
	}
	n.replace = append([]string{id, placeholder}, n.replace...)
	if len(id) > 13 {
		n.replace = append(n.replace, id[:13], placeholder)
	}
}

func (n *normaliser) str(s string) string {
	for i := 0; i+1 < len(n.replace); i += 2 {
		s = strings.ReplaceAll(s, n.replace[i], n.replace[i+1])
	}
	s = hexID.ReplaceAllStringFunc(s, func(m string) string {
		if strings.HasPrefix(m, "sha256:") {
			return m
		}
		return "<id>"
	})
	s = rfc3339.ReplaceAllString(s, "<time>")
	s = podIP.ReplaceAllString(s, "<pod-ip>")
	s = netnsName.ReplaceAllString(s, "cni-<uuid>")
	s = mac.ReplaceAllString(s, "<mac>")
	s = procPID.ReplaceAllString(s, "/proc/<pid>/")
	return veth.ReplaceAllString(s, "veth<x>")
}

// errorLine is crictl's last stderr line without its log prefix.
func (n *normaliser) errorLine(stderr string) string {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	l := lines[len(lines)-1]
	l = klogPrefix.ReplaceAllString(l, "")
	l = logrusTime.ReplaceAllString(l, "")
	return n.str(l)
}

// output normalises JSON (re-indented, keys sorted, lists of objects with
// an "id" sorted) or, for other output, each line. measured (stats) also
// hides every non-zero number: they differ on every run, and whether one
// is set is what is worth comparing.
func (n *normaliser) output(b []byte, measured bool) string {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return n.str(strings.TrimSpace(string(b)))
	}
	v = n.walk("", v, measured)
	out, _ := json.MarshalIndent(v, "", "  ")
	return string(out)
}

func (n *normaliser) walk(key string, v any, measured bool) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if k == "pid" && (key == "namespace_options" || key == "options") {
				out[k] = e // a namespace mode, not a process
				continue
			}
			// Keys too: CNI results are keyed by interface name.
			out[n.str(k)] = n.walk(k, e, measured)
		}
		return out
	case []any:
		for i, e := range x {
			x[i] = n.walk(key, e, measured)
		}
		sortBy(x, "id")
		if key == "mounts" {
			// The OCI spec's mounts: the same set in another order is
			// not a difference worth reading; a different set is.
			sortBy(x, "destination")
		}
		return x
	case string:
		num := number.MatchString(x)
		switch {
		case timeKey.MatchString(key) && num && x != "0",
			timeKey.MatchString(key) && rfc3339.MatchString(x):
			return "<ts>"
		case pidKey.MatchString(key) && num && x != "0":
			return "<pid>"
		case measured && num && x != "0":
			return "<n>"
		}
		return n.str(x)
	case float64:
		switch {
		case timeKey.MatchString(key) && x != 0:
			return "<ts>"
		case pidKey.MatchString(key) && x != 0:
			return "<pid>"
		case measured && x != 0:
			return "<n>"
		}
		return x
	}
	return v
}

// sortBy orders a list whose elements are all objects with field, as the
// daemons list pods, containers and images in no set order.
func sortBy(l []any, field string) {
	keys := make([]string, len(l))
	for i, e := range l {
		m, ok := e.(map[string]any)
		if !ok {
			return
		}
		id, ok := m[field]
		if !ok {
			return
		}
		b, _ := json.Marshal(m)
		keys[i] = fmt.Sprint(id) + string(b)
	}
	idx := make([]int, len(l))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return keys[idx[a]] < keys[idx[b]] })
	sorted := make([]any, len(l))
	for i, j := range idx {
		sorted[i] = l[j]
	}
	copy(l, sorted)
}
