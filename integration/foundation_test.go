package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/integration/daemon"
)

// containerdVersion is the containerd go.mod pins.
func containerdVersion(t *testing.T) string {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/containerd/containerd/v2").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func TestVersion(t *testing.T) {
	d := start(t, newLayout(t, false))
	v, err := d.Runtime.Version(ctxT(t), &runtimeapi.VersionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if v.RuntimeName != "containerd" || v.RuntimeApiVersion != "v1" || v.RuntimeVersion != containerdVersion(t) || v.Version != "0.1.0" {
		t.Errorf("Version = %+v", v)
	}
}

// Exactly one CRI plugin is loaded: ours (with its two section plugins,
// io.containerd.cri.v1 runtime and images), and none of upstream's.
func TestOnlyOurCRIPlugin(t *testing.T) {
	d := start(t, newLayout(t, false))
	out, err := exec.Command(filepath.Join(binDir, "ctr"), "--address", d.Layout.Socket, "plugins", "ls").CombinedOutput()
	if err != nil {
		t.Fatalf("ctr plugins ls: %v\n%s", err, out)
	}
	var cri []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		if f[0] == "io.containerd.cri.v1" && f[1] != "runtime" && f[1] != "images" ||
			f[0] == "io.containerd.podsandbox.controller.v1" {
			t.Errorf("upstream CRI plugin loaded: %s", line)
		}
		if f[0] == "io.containerd.cri.v1" && f[len(f)-1] != "ok" {
			t.Errorf("cri section plugin not ok: %s", line)
		}
		if f[0]+"."+f[1] == daemon.CRISection { // TYPE and ID columns
			cri = append(cri, line)
			if f[len(f)-1] != "ok" {
				t.Errorf("cri plugin not ok: %s", line)
			}
		}
	}
	if len(cri) != 1 {
		t.Errorf("want exactly one %s plugin, got %d:\n%s", daemon.CRISection, len(cri), out)
	}
}

func condition(st *runtimeapi.StatusResponse, typ string) *runtimeapi.RuntimeCondition {
	for _, c := range st.GetStatus().GetConditions() {
		if c.Type == typ {
			return c
		}
	}
	return nil
}

func networkReady(t *testing.T, d *daemon.Daemon) (bool, string) {
	st, err := d.Runtime.Status(ctxT(t), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	c := condition(st, runtimeapi.NetworkReady)
	if c == nil {
		t.Fatal("no NetworkReady condition")
	}
	return c.Status, c.Reason + ": " + c.Message
}

func TestStatusFollowsCNIConfig(t *testing.T) {
	l := newLayout(t, false)
	d := start(t, l)

	st, err := d.Runtime.Status(ctxT(t), &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if c := condition(st, runtimeapi.RuntimeReady); c == nil || !c.Status {
		t.Errorf("RuntimeReady = %v", c)
	}
	if c := condition(st, runtimeapi.NetworkReady); c == nil || c.Status || c.Reason != "NetworkPluginNotReady" || c.Message == "" {
		t.Errorf("NetworkReady with no CNI config = %v, want false with reason and message", c)
	}

	if err := l.WriteConflist(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "NetworkReady after a conflist was written", func() (bool, string) { return networkReady(t, d) })
	if err := os.Remove(l.ConflistPath()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "NetworkReady false after the conflist was removed", func() (bool, string) {
		ok, msg := networkReady(t, d)
		return !ok, msg
	})
}

// A conflist naming a plugin that is not installed is not readiness.
func TestStatusReportsMissingPluginBinary(t *testing.T) {
	l := newLayout(t, false)
	os.MkdirAll(l.CNIConfDir, 0o755)
	conf := `{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"nodecri-no-such-plugin"}]}`
	if err := os.WriteFile(filepath.Join(l.CNIConfDir, "10-x.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	d := start(t, l)
	ok, msg := networkReady(t, d)
	if ok || !strings.Contains(msg, "nodecri-no-such-plugin") {
		t.Errorf("NetworkReady = %v (%s), want false naming the missing plugin", ok, msg)
	}
}

func TestStatusRuntimeHandlersAndInfo(t *testing.T) {
	l := newLayout(t, false)
	d := start(t, l)
	st, err := d.Runtime.Status(ctxT(t), &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	handlers := map[string]*runtimeapi.RuntimeHandlerFeatures{}
	for _, h := range st.RuntimeHandlers {
		handlers[h.Name] = h.Features
	}
	for _, name := range []string{"", "runc", "runc-debian"} {
		if _, ok := handlers[name]; !ok {
			t.Errorf("runtime handler %q not reported: %v", name, st.RuntimeHandlers)
		}
	}
	// make deps' runc (v1.5) supports both on this kernel; the default
	// handler is runc.
	for _, name := range []string{"", "runc"} {
		if f := handlers[name]; f == nil || !f.RecursiveReadOnlyMounts || !f.UserNamespaces {
			t.Errorf("handler %q features = %v, want rro and userns", name, f)
		}
	}
	// Debian's runc 1.1 has no idmapped mounts: no user namespaces.
	if f := handlers["runc-debian"]; f == nil || f.UserNamespaces {
		t.Errorf("runc-debian (runc 1.1) reported %v", f)
	}
	if !st.GetFeatures().GetSupplementalGroupsPolicy() {
		t.Error("supplemental groups policy not reported")
	}

	var cfg struct {
		StateDir    string `json:"stateDir"`
		RootDir     string `json:"rootDir"`
		SandboxImg  string `json:"sandboxImage"`
		MaxDownload int    `json:"maxConcurrentDownloads"`
		CNI         struct {
			ConfDir string `json:"confDir"`
		} `json:"cni"`
	}
	if err := json.Unmarshal([]byte(st.Info["config"]), &cfg); err != nil {
		t.Fatalf("info[config] is not JSON: %v: %q", err, st.Info["config"])
	}
	if want := filepath.Join(l.Dir, "state", daemon.CRISection); cfg.StateDir != want {
		t.Errorf("stateDir = %q, want %q", cfg.StateDir, want)
	}
	if cfg.SandboxImg != "registry.k8s.io/pause:3.10.2" || cfg.MaxDownload != 3 || cfg.CNI.ConfDir != l.CNIConfDir {
		t.Errorf("effective config not shown: %+v", cfg)
	}
}

func TestRuntimeConfigAndUpdate(t *testing.T) {
	d := start(t, newLayout(t, false))
	rc, err := d.Runtime.RuntimeConfig(ctxT(t), &runtimeapi.RuntimeConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if rc.GetLinux().GetCgroupDriver() != runtimeapi.CgroupDriver_CGROUPFS {
		t.Errorf("cgroup driver = %v", rc.GetLinux().GetCgroupDriver())
	}
	bad := &runtimeapi.UpdateRuntimeConfigRequest{RuntimeConfig: &runtimeapi.RuntimeConfig{
		NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "../../etc/passwd"}}}
	if _, err := d.Runtime.UpdateRuntimeConfig(ctxT(t), bad); status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad pod CIDR: %v, want InvalidArgument", err)
	}
}

// The kubelet's pod CIDR is rendered through conf_template into a network.
func TestConfTemplateFromPodCIDR(t *testing.T) {
	l := newLayout(t, false)
	tmpl := filepath.Join(l.Dir, "cni-template.json")
	body := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"k8s-pod-network","plugins":[{"type":"bridge","bridge":%q,
"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"{{.PodCIDR}}"}]]}}]}`, l.Network.Bridge, l.IPAMDir())
	if err := os.WriteFile(tmpl, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	l.CRI()["cni"].(map[string]any)["conf_template"] = tmpl
	d := start(t, l)
	if ok, _ := networkReady(t, d); ok {
		t.Fatal("ready before any pod CIDR")
	}
	req := &runtimeapi.UpdateRuntimeConfigRequest{RuntimeConfig: &runtimeapi.RuntimeConfig{
		NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: l.Network.Subnet}}}
	if _, err := d.Runtime.UpdateRuntimeConfig(ctxT(t), req); err != nil {
		t.Fatal(err)
	}
	if ok, msg := networkReady(t, d); !ok {
		t.Fatalf("not ready after UpdateRuntimeConfig with conf_template: %s", msg)
	}
	b, err := os.ReadFile(filepath.Join(l.CNIConfDir, "10-containerd-net.conflist"))
	if err != nil || !strings.Contains(string(b), l.Network.Subnet) {
		t.Errorf("rendered conflist: %v %s", err, b)
	}
}

func TestImageFsInfo(t *testing.T) {
	l := newLayout(t, false)
	l.CRI()["stats_collect_period"] = 1
	d := start(t, l)
	root := filepath.Join(l.Dir, "root", "io.containerd.snapshotter.v1.overlayfs")
	usage := func() *runtimeapi.FilesystemUsage {
		r, err := d.Images.ImageFsInfo(ctxT(t), &runtimeapi.ImageFsInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.ImageFilesystems) != 1 {
			t.Fatalf("ImageFsInfo = %v", r)
		}
		return r.ImageFilesystems[0]
	}
	before := usage()
	if before.FsId.Mountpoint != root || before.Timestamp == 0 {
		t.Errorf("ImageFsInfo = %v, want mountpoint %s", before, root)
	}

	// Make a snapshot in the k8s.io namespace and put 4 MiB and 10 files
	// in it: the usage must follow within a collection period or two.
	ctr := func(args ...string) string {
		out, err := exec.Command(filepath.Join(binDir, "ctr"), append([]string{"--address", l.Socket, "-n", "k8s.io"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ctr %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	mounts := ctr("snapshots", "prepare", "--mounts", "it-usage", "")
	m := regexp.MustCompile(`(/\S+/snapshots/\d+/fs)`).FindString(mounts)
	if m == "" {
		t.Fatalf("no snapshot path in %q", mounts)
	}
	if err := os.WriteFile(filepath.Join(m, "blob"), make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		os.WriteFile(filepath.Join(m, "f"+strconv.Itoa(i)), []byte("x"), 0o644)
	}
	eventually(t, "usage grows by the 4 MiB and 11 inodes written", func() (bool, string) {
		u := usage()
		return u.UsedBytes.Value >= before.UsedBytes.Value+4<<20 && u.InodesUsed.Value >= before.InodesUsed.Value+11,
			fmt.Sprintf("bytes %d inodes %d", u.UsedBytes.Value, u.InodesUsed.Value)
	})
	ctr("snapshots", "rm", "it-usage")
	eventually(t, "usage shrinks after the snapshot is removed", func() (bool, string) {
		u := usage()
		return u.UsedBytes.Value < before.UsedBytes.Value+4<<20, fmt.Sprintf("bytes %d", u.UsedBytes.Value)
	})
}

// RPCs of later work answer Unimplemented, never a fake success.
func TestUnimplementedRPCs(t *testing.T) {
	d := start(t, newLayout(t, false))
	ctx := ctxT(t)
	_, err1 := d.Runtime.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{})
	for i, err := range []error{err1} {
		if status.Code(err) != codes.Unimplemented {
			t.Errorf("call %d: %v, want Unimplemented", i, err)
		}
	}
}

func TestMetricsEndpoint(t *testing.T) {
	l := newLayout(t, true)
	d := start(t, l)
	ctx := ctxT(t)
	for range 3 {
		if _, err := d.Runtime.Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	d.Runtime.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{})
	d.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: "nosuchcontainer"})
	body := scrape(t, l.MetricsAddress)
	// The harness's readiness probe calls Version too, so at least 4.
	re := regexp.MustCompile(`nodecri_cri_requests_total\{code="OK",method="Version"\} (\d+)`)
	m := re.FindStringSubmatch(body)
	if n, _ := strconv.Atoi(safe(m, 1)); n < 4 {
		t.Errorf("Version counter = %q, want >= 4", safe(m, 1))
	}
	for _, want := range []string{
		`nodecri_cri_requests_total{code="Unimplemented",method="CheckpointContainer"} 1`,
		`nodecri_cri_requests_total{code="NotFound",method="ContainerStatus"} 1`,
		`nodecri_cri_request_duration_seconds_bucket{code="OK",method="Version",le=`,
		`nodecri_cri_request_duration_seconds_count{code="Unimplemented",method="CheckpointContainer"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func safe(m []string, i int) string {
	if len(m) > i {
		return m[i]
	}
	return ""
}

// Two daemons on different roots share nothing: network readiness, pod
// CIDR and state folders are each their own.
func TestSecondInstanceIsIsolated(t *testing.T) {
	la, lb := newLayout(t, false), newLayout(t, false)
	if err := la.WriteConflist(); err != nil {
		t.Fatal(err)
	}
	a, b := start(t, la), start(t, lb)
	req := &runtimeapi.UpdateRuntimeConfigRequest{RuntimeConfig: &runtimeapi.RuntimeConfig{
		NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "10.99.0.0/24"}}}
	if _, err := a.Runtime.UpdateRuntimeConfig(ctxT(t), req); err != nil {
		t.Fatal(err)
	}
	if ok, msg := networkReady(t, a); !ok {
		t.Errorf("A not network-ready: %s", msg)
	}
	if ok, _ := networkReady(t, b); ok {
		t.Error("B network-ready from A's conflist")
	}
	info := func(d *daemon.Daemon) string {
		st, err := d.Runtime.Status(ctxT(t), &runtimeapi.StatusRequest{Verbose: true})
		if err != nil {
			t.Fatal(err)
		}
		return st.Info["config"]
	}
	ia, ib := info(a), info(b)
	if !strings.Contains(ia, "10.99.0.0/24") || strings.Contains(ib, "10.99.0.0/24") {
		t.Errorf("pod CIDR leaked or lost:\nA: %s\nB: %s", ia, ib)
	}
	if !strings.Contains(ia, la.Dir) || !strings.Contains(ib, lb.Dir) || strings.Contains(ib, la.Dir) {
		t.Errorf("state folders not separate:\nA: %s\nB: %s", ia, ib)
	}
}

// A bad value stops the daemon (our plugin is required) with a log line
// naming key and value.
func TestBadConfigStopsDaemonNamingKey(t *testing.T) {
	for _, tc := range []struct {
		name  string
		set   func(cri map[string]any)
		key   string
		value string
	}{
		{"unknown default runtime", func(c map[string]any) {
			c["containerd"].(map[string]any)["default_runtime_name"] = "nope"
		}, "containerd.default_runtime_name", `\"nope\"`},
		{"negative size", func(c map[string]any) { c["max_concurrent_downloads"] = -2 }, "max_concurrent_downloads", "-2"},
		{"bad duration", func(c map[string]any) { c["image_pull_progress_timeout"] = "soon" }, "image_pull_progress_timeout", `\"soon\"`},
		{"missing runtime_type", func(c map[string]any) {
			c["containerd"].(map[string]any)["runtimes"].(map[string]any)["kata"] = map[string]any{"runtime_path": "/x"}
		}, "containerd.runtimes.kata.runtime_type", `\"\"`},
		{"removed 1.x key", func(c map[string]any) { c["systemd_cgroup"] = true }, "systemd_cgroup", "SystemdCgroup"},
		{"unknown snapshotter", func(c map[string]any) {
			c["containerd"].(map[string]any)["snapshotter"] = "nosuchfs"
		}, "snapshotter", `\"nosuchfs\"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLayout(t, false)
			tc.set(l.CRI())
			err, out := daemon.RunToExit(ctxT(t), binary, l, 30*time.Second)
			if err == nil {
				t.Fatalf("daemon exited 0 on a bad config:\n%s", out)
			}
			var line string
			for _, ln := range strings.Split(out, "\n") {
				if strings.Contains(ln, "invalid cri config") {
					line = ln
					break
				}
			}
			if !strings.Contains(line, tc.key) || !strings.Contains(line, tc.value) {
				t.Errorf("no log line naming %s and %s; output:\n%s", tc.key, tc.value, lastLines(out, 15))
			}
		})
	}
}

// `containerd config dump` shows the three sections, 2.x's layout, with
// the defaults filled in.
func TestConfigDumpShowsDefaults(t *testing.T) {
	l := newLayout(t, false)
	if err := l.WriteConfig(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "--config", l.ConfigPath(), "config", "dump").CombinedOutput()
	if err != nil {
		t.Fatalf("config dump: %v\n%s", err, out)
	}
	for _, want := range []string{
		"[plugins.'" + daemon.CRISection + "']",
		"stream_idle_timeout = '4h0m0s'",
		"[plugins.'io.containerd.cri.v1.images'.pinned_images]",
		"sandbox = 'registry.k8s.io/pause:3.10.2'",
		"max_container_log_line_size = 16384",
		"stats_collect_period = 10",
		"snapshotter = 'overlayfs'",
		"[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]",
		"[plugins.'io.containerd.cri.v1.images'.registry]",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("config dump lacks %s", want)
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// scrape returns what containerd's metrics endpoint serves.
func scrape(t testing.TB, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/v1/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
