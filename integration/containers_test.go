package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/integration/daemon"
	"github.com/nodecri/nodecri/integration/testimages"
	"github.com/nodecri/nodecri/logs"
)

// pod is a running sandbox for container tests.
type pod struct {
	d   *daemon.Daemon
	l   *daemon.Layout
	id  string
	cfg *runtimeapi.PodSandboxConfig
}

func newPod(t *testing.T, opts ...podOpt) *pod {
	t.Helper()
	d, l := podEnv(t, opts...)
	mustPull(t, d, "busybox:1.36")
	cfg := podConfig(l, "ctr")
	return &pod{d: d, l: l, id: runPod(t, d, cfg), cfg: cfg}
}

// busybox is a container in its own PID namespace, as the kubelet asks
// unless the pod shares its process namespace (a nil option means POD).
func busybox(name string, cmd ...string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: "busybox:1.36"},
		Command:  cmd,
		LogPath:  name + ".log",
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}}},
	}
}

func (p *pod) create(t *testing.T, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	r, err := p.d.Runtime.CreateContainer(ctxT(t), &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: cfg, SandboxConfig: p.cfg})
	if err != nil {
		t.Fatalf("CreateContainer %s: %v", cfg.Metadata.Name, err)
	}
	return r.ContainerId
}

func (p *pod) run(t *testing.T, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	id := p.create(t, cfg)
	if _, err := p.d.Runtime.StartContainer(ctxT(t), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer %s: %v", cfg.Metadata.Name, err)
	}
	return id
}

func (p *pod) status(t *testing.T, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	r, err := p.d.Runtime.ContainerStatus(ctxT(t), &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("ContainerStatus: %v", err)
	}
	return r.Status
}

func (p *pod) waitExit(t *testing.T, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	var st *runtimeapi.ContainerStatus
	eventually(t, "container exited", func() (bool, string) {
		st = p.status(t, id)
		return st.State == runtimeapi.ContainerState_CONTAINER_EXITED, st.State.String()
	})
	return st
}

func (p *pod) exec(t *testing.T, id string, timeout int64, cmd ...string) (*runtimeapi.ExecSyncResponse, error) {
	t.Helper()
	return p.d.Runtime.ExecSync(ctxT(t), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: timeout})
}

func (p *pod) mustExec(t *testing.T, id string, cmd ...string) string {
	t.Helper()
	r, err := p.exec(t, id, 10, cmd...)
	if err != nil || r.ExitCode != 0 {
		t.Fatalf("exec %v: %v exit %d stderr %s", cmd, err, r.GetExitCode(), r.GetStderr())
	}
	return string(r.Stdout)
}

// readLog parses a container's CRI log into per-stream content.
func readLog(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line == "" {
			continue
		}
		_, stream, partial, content, err := logs.Parse([]byte(line))
		if err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out[stream] += string(content)
		if !partial {
			out[stream] += "\n"
		}
	}
	return out
}

func TestLogsInCRIFormat(t *testing.T) {
	p := newPod(t, func(_ testing.TB, l *daemon.Layout) { l.CRI()["max_container_log_line_size"] = 1000 })
	long := strings.Repeat("x", 2500)
	id := p.run(t, busybox("logger", "sh", "-c", "echo out; echo err >&2; echo "+long+"; echo done"))
	st := p.waitExit(t, id)
	if st.ExitCode != 0 || st.Reason != "Completed" {
		t.Errorf("exit %d reason %q", st.ExitCode, st.Reason)
	}
	if want := filepath.Join(p.cfg.LogDirectory, "logger.log"); st.LogPath != want {
		t.Errorf("log path %q, want %q", st.LogPath, want)
	}
	got := readLog(t, st.LogPath)
	if got["stdout"] != "out\n"+long+"\ndone\n" || got["stderr"] != "err\n" {
		t.Errorf("log content: %q", got)
	}
	raw, _ := os.ReadFile(st.LogPath)
	if n := strings.Count(string(raw), " stdout P "); n != 2 {
		t.Errorf("a 2500-byte line with a 1000-byte limit gave %d partial entries, want 2:\n%.300s", n, raw)
	}
}

func TestExitCodesAndOOM(t *testing.T) {
	p := newPod(t)
	fail := p.run(t, busybox("fail", "sh", "-c", "exit 3"))
	if st := p.waitExit(t, fail); st.ExitCode != 3 || st.Reason != "Error" || st.FinishedAt < st.StartedAt {
		t.Errorf("exit 3: %+v", st)
	}
	hog := busybox("hog", "sh", "-c", "tail /dev/zero")
	hog.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 32 << 20}
	id := p.run(t, hog)
	if st := p.waitExit(t, id); st.Reason != "OOMKilled" || st.ExitCode != 137 {
		t.Errorf("over 32 MiB: exit %d reason %q", st.ExitCode, st.Reason)
	}
}

func TestStopTimeoutKillsIgnoringProcess(t *testing.T) {
	p := newPod(t)
	// PID 1 without a handler ignores SIGTERM.
	id := p.run(t, busybox("stubborn", "sleep", "1000"))
	begin := time.Now()
	if _, err := p.d.Runtime.StopContainer(ctxT(t), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 2}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took < 2*time.Second {
		t.Errorf("stopped after %s, before the 2s timeout", took)
	}
	if st := p.status(t, id); st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 {
		t.Errorf("after stop: %v exit %d", st.State, st.ExitCode)
	}
	// A container that handles SIGTERM stops at once.
	quick := p.run(t, busybox("polite", "sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"))
	begin = time.Now()
	if _, err := p.d.Runtime.StopContainer(ctxT(t), &runtimeapi.StopContainerRequest{ContainerId: quick, Timeout: 10}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("SIGTERM-handling container took %s to stop", took)
	}
	if st := p.status(t, quick); st.ExitCode != 0 || st.StopSignal != runtimeapi.Signal_SIGNAL_SIGTERM {
		t.Errorf("polite stop: exit %d signal %v", st.ExitCode, st.StopSignal)
	}
}

func TestExecSync(t *testing.T) {
	p := newPod(t)
	id := p.run(t, busybox("sleeper", "sleep", "1000"))
	r, err := p.exec(t, id, 5, "sh", "-c", "echo hi; echo oops >&2; exit 7")
	if err != nil || string(r.Stdout) != "hi\n" || string(r.Stderr) != "oops\n" || r.ExitCode != 7 {
		t.Fatalf("exec: %v %+v", err, r)
	}
	for _, cmd := range [][]string{{"sleep", "10"}, {"sh", "-c", "sleep 100 & sleep 10"}} {
		begin := time.Now()
		_, err := p.exec(t, id, 1, cmd...)
		took := time.Since(begin)
		if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("exec %v with 1s timeout: %v, want DeadlineExceeded", cmd, err)
		}
		if took > 2*time.Second {
			t.Errorf("exec %v with 1s timeout returned after %s", cmd, took)
		}
	}
}

func TestHTTPServerOnPodIPAndHostPort(t *testing.T) {
	d, l := podEnv(t)
	mustPull(t, d, "busybox:1.36")
	hostPort := freePort(t)
	cfg := podConfig(l, "web")
	cfg.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 8080, HostPort: hostPort}}
	p := &pod{d: d, l: l, id: runPod(t, d, cfg), cfg: cfg}
	p.run(t, busybox("httpd", "sh", "-c", "mkdir -p /www && echo hello-nodecri > /www/index.html && exec httpd -f -p 8080 -h /www"))
	st, _ := podStatus(t, d, p.id)
	for _, url := range []string{"http://" + st.Network.Ip + ":8080/", fmt.Sprintf("http://127.0.0.1:%d/", hostPort)} {
		eventually(t, "GET "+url, func() (bool, string) {
			resp, err := http.Get(url)
			if err != nil {
				return false, err.Error()
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return strings.TrimSpace(string(b)) == "hello-nodecri", string(b)
		})
	}
}

func freePort(t *testing.T) int32 {
	addr := freeAddr(t)
	var port int32
	fmt.Sscanf(addr[strings.LastIndex(addr, ":")+1:], "%d", &port)
	return port
}

func TestSecurityContext(t *testing.T) {
	p := newPod(t)
	cfg := busybox("secure", "sleep", "1000")
	cfg.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
		NamespaceOptions:   &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		RunAsUser:          &runtimeapi.Int64Value{Value: 1234},
		RunAsGroup:         &runtimeapi.Int64Value{Value: 5678},
		SupplementalGroups: []int64{4000, 4001},
		ReadonlyRootfs:     true,
		Capabilities:       &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_BIND_SERVICE"}},
		NoNewPrivs:         true,
		// The kubelet's lists for procMount Default.
		MaskedPaths:   defaultMaskedPaths,
		ReadonlyPaths: defaultReadonlyPaths,
	}}
	id := p.run(t, cfg)
	if got := strings.TrimSpace(p.mustExec(t, id, "id")); !strings.HasPrefix(got, "uid=1234 gid=5678") || !strings.Contains(got, "4000") || !strings.Contains(got, "4001") {
		t.Errorf("id = %q", got)
	}
	if r, _ := p.exec(t, id, 5, "touch", "/written"); r == nil || r.ExitCode == 0 {
		t.Error("wrote to a read-only rootfs")
	}
	statusFile := p.mustExec(t, id, "cat", "/proc/self/status")
	// CAP_NET_BIND_SERVICE is bit 10: the bounding set is exactly it.
	if !strings.Contains(statusFile, "CapBnd:\t0000000000000400") || !strings.Contains(statusFile, "NoNewPrivs:\t1") {
		t.Errorf("capabilities / no_new_privs not applied:\n%s", statusFile)
	}
	// /proc/keys is among the default masked paths (and exists on this kernel).
	if n := strings.TrimSpace(p.mustExec(t, id, "sh", "-c", "wc -c < /proc/keys")); n != "0" {
		t.Errorf("/proc/keys not masked: %s bytes", n)
	}
	st := p.status(t, id)
	if u := st.User.GetLinux(); u.GetUid() != 1234 || u.GetGid() != 5678 {
		t.Errorf("status user = %v", u)
	}
}

// The kubelet's default masked and read-only paths (procMount Default).
var (
	defaultMaskedPaths = []string{"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"}
	defaultReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// What a workload sees of its environment, as with upstream's CRI: its
// pod's hostname in HOSTNAME, the daemon's open-file limit, its own cgroup
// limits read-only under /sys/fs/cgroup, no swap beyond its memory limit,
// unprivileged ports and ping, no /run tmpfs, and /proc unmasked when the
// kubelet asks for procMount Unmasked (no lists).
func TestContainerEnvironmentAsUpstream(t *testing.T) {
	p := newPod(t)
	cfg := busybox("env", "sleep", "1000")
	const limit = 64 << 20
	cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: limit}
	id := p.run(t, cfg)

	if env := p.mustExec(t, id, "env"); !strings.Contains(env, "HOSTNAME="+p.cfg.Hostname+"\n") {
		t.Errorf("HOSTNAME is not the pod's %q:\n%s", p.cfg.Hostname, env)
	}
	if hn := strings.TrimSpace(p.mustExec(t, id, "cat", "/etc/hostname")); hn != p.cfg.Hostname {
		t.Errorf("/etc/hostname = %q", hn)
	}

	daemonLimits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", p.d.PID()))
	if err != nil {
		t.Fatal(err)
	}
	if want, got := openFiles(string(daemonLimits)), openFiles(p.mustExec(t, id, "cat", "/proc/self/limits")); got != want {
		t.Errorf("open files limit %q, want the daemon's %q", got, want)
	}

	// cgroup v1 here: the container's own memory cgroup, read-only.
	if got := strings.TrimSpace(p.mustExec(t, id, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")); got != fmt.Sprint(limit) {
		t.Errorf("memory.limit_in_bytes in the container = %q, want %d", got, limit)
	}
	if r, _ := p.exec(t, id, 5, "sh", "-c", "echo 1 > /sys/fs/cgroup/memory/memory.limit_in_bytes"); r == nil || r.ExitCode == 0 {
		t.Error("/sys/fs/cgroup is writable in an unprivileged container")
	}
	for _, m := range daemon.ParseMountinfo(p.mustExec(t, id, "cat", "/proc/self/mountinfo")) {
		if m.Point == "/run" || m.Point == "/proc/kcore" || m.Point == "/proc/sys" {
			t.Errorf("unexpected mount at %s: %s", m.Point, m.Line)
		}
	}

	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"); err == nil {
		if got := strings.TrimSpace(p.mustExec(t, id, "cat", "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")); got != fmt.Sprint(limit) {
			t.Errorf("memory.memsw.limit_in_bytes = %q, want the memory limit %d", got, limit)
		}
		if got := p.status(t, id).GetResources().GetLinux().GetMemorySwapLimitInBytes(); got != limit {
			t.Errorf("status memorySwapLimitInBytes = %d, want %d", got, limit)
		}
	}

	for file, want := range map[string]string{
		"/proc/sys/net/ipv4/ip_unprivileged_port_start": "0",
		"/proc/sys/net/ipv4/ping_group_range":           "0\t2147483647",
	} {
		if got := strings.TrimSpace(p.mustExec(t, id, "cat", file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
}

func openFiles(limits string) string {
	for _, line := range strings.Split(limits, "\n") {
		if strings.HasPrefix(line, "Max open files") {
			return strings.Join(strings.Fields(line)[3:5], " ")
		}
	}
	return ""
}

func TestCrunHandler(t *testing.T) {
	if !daemon.CrunUsable() {
		t.Skip("Debian's crun 1.8 refuses this host's hybrid cgroup layout (a controller on the v2 hierarchy); runc-debian is the second handler here")
	}
	testSecondHandler(t, "crun")
}

// Debian's runc 1.1 as a second handler: its options reach the shim, and
// specs are written at the spec version it takes.
func TestRuncDebianHandler(t *testing.T) { testSecondHandler(t, "runc-debian") }

func testSecondHandler(t *testing.T, handler string) {
	d, l := podEnv(t)
	mustPull(t, d, "busybox:1.36")
	cfg := podConfig(l, handler+"pod")
	r, err := d.Runtime.RunPodSandbox(ctxT(t), &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
	if err != nil {
		t.Fatalf("RunPodSandbox with %s: %v", handler, err)
	}
	p := &pod{d: d, l: l, id: r.PodSandboxId, cfg: cfg}
	id := p.run(t, busybox("c", "sh", "-c", "echo from-"+handler))
	if st := p.waitExit(t, id); st.ExitCode != 0 || readLog(t, st.LogPath)["stdout"] != "from-"+handler+"\n" {
		t.Errorf("%s container: %+v", handler, st)
	}
	ps, _ := podStatus(t, d, p.id)
	if ps.RuntimeHandler != handler {
		t.Errorf("runtime handler %q", ps.RuntimeHandler)
	}
	// The pause process was started by this handler's runtime, under its root.
	if _, err := os.Stat(filepath.Join(l.Dir, handler, "k8s.io", p.id)); err != nil {
		t.Errorf("pause not run by %s (no state under its Root): %v", handler, err)
	}
}

func TestFailedCreateLeavesNothing(t *testing.T) {
	p := newPod(t)
	before := takeCensus(t, p.l)
	cfg := busybox("baddev", "true")
	cfg.Devices = []*runtimeapi.Device{{HostPath: "/dev/nodecri-no-such-device", ContainerPath: "/dev/x", Permissions: "rw"}}
	if _, err := p.d.Runtime.CreateContainer(ctxT(t), &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: cfg}); err == nil {
		t.Fatal("CreateContainer with a missing device succeeded")
	}
	if diff := before.diff(takeCensus(t, p.l), kubeletOwned...); diff != "" {
		t.Errorf("failed create left:\n%s", diff)
	}
	if _, err := p.d.Runtime.CreateContainer(ctxT(t), &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "noimg"}, Image: &runtimeapi.ImageSpec{Image: "docker.io/library/nosuch:1"}}}); status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("missing image: %v, want NotFound naming it", err)
	}
}

func TestUnknownAndRepeatedContainerCalls(t *testing.T) {
	p := newPod(t)
	unknown := strings.Repeat("cd", 32)
	ctx := ctxT(t)
	calls := map[string]error{}
	_, calls["status"] = p.d.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: unknown})
	_, calls["start"] = p.d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: unknown})
	_, calls["update"] = p.d.Runtime.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: unknown, Linux: &runtimeapi.LinuxContainerResources{}})
	_, calls["exec"] = p.d.Runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: unknown, Cmd: []string{"true"}})
	_, calls["reopen"] = p.d.Runtime.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: unknown})
	for name, err := range calls {
		if status.Code(err) != codes.NotFound {
			t.Errorf("%s on unknown ID: %v, want NotFound", name, err)
		}
	}
	id := p.run(t, busybox("twice", "sleep", "1000"))
	for range 2 {
		if _, err := p.d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id}); err != nil {
			t.Errorf("stop: %v", err)
		}
		if _, err := p.d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Errorf("remove: %v", err)
		}
	}
	for _, id := range []string{unknown} {
		if _, err := p.d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id}); err != nil {
			t.Errorf("stop unknown: %v", err)
		}
		if _, err := p.d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Errorf("remove unknown: %v", err)
		}
	}
}

// Stopping and removing the pod takes its containers with it.
func TestPodTeardownTakesContainers(t *testing.T) {
	p := newPod(t)
	before := takeCensus(t, p.l)
	id := p.run(t, busybox("inpod", "sleep", "1000"))
	if _, err := p.d.Runtime.StopPodSandbox(ctxT(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id}); err != nil {
		t.Fatal(err)
	}
	if st := p.status(t, id); st.State != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("container %v after StopPodSandbox", st.State)
	}
	if _, err := p.d.Runtime.RemovePodSandbox(ctxT(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id}); err != nil {
		t.Fatal(err)
	}
	list, _ := p.d.Runtime.ListContainers(ctxT(t), &runtimeapi.ListContainersRequest{})
	if len(list.Containers) != 0 {
		t.Errorf("containers left: %v", list.Containers)
	}
	after := takeCensus(t, p.l)
	// The pod itself was counted in before.
	for _, kind := range []string{"containers", "tasks", "snapshots"} {
		if after.count(kind) != before.count(kind)-1 {
			t.Errorf("after pod removal: %s %v (before, with the pod: %v)", kind, after[kind], before[kind])
		}
	}
}

// A CDI device from a spec in cdi_spec_dirs appears in the container, with
// its environment edits.
func TestCDIDevice(t *testing.T) {
	p := newPod(t)
	dir := filepath.Join(p.l.Dir, "cdi")
	os.MkdirAll(dir, 0o755)
	spec := `{"cdiVersion":"0.6.0","kind":"nodecri.test/device","devices":[{"name":"one","containerEdits":{
"env":["NODECRI_CDI=one"],"deviceNodes":[{"path":"/dev/nodecri-cdi","hostPath":"/dev/null"}]}}]}`
	if err := os.WriteFile(filepath.Join(dir, "nodecri-test.json"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := busybox("cdi", "sleep", "1000")
	cfg.CDIDevices = []*runtimeapi.CDIDevice{{Name: "nodecri.test/device=one"}}
	id := p.run(t, cfg)
	if env := p.mustExec(t, id, "env"); !strings.Contains(env, "NODECRI_CDI=one") {
		t.Errorf("CDI env edit missing:\n%s", env)
	}
	if out := p.mustExec(t, id, "ls", "-l", "/dev/nodecri-cdi"); !strings.HasPrefix(out, "c") {
		t.Errorf("CDI device node missing or not a char device: %q", out)
	}
	bad := busybox("cdi-unknown", "true")
	bad.CDIDevices = []*runtimeapi.CDIDevice{{Name: "nodecri.test/device=nosuch"}}
	if _, err := p.d.Runtime.CreateContainer(ctxT(t), &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: bad}); err == nil {
		t.Error("an unknown CDI device was accepted")
	}
}

// An image mounted as a volume (Mount.image) is read-only in the
// container, and removing the container unmounts it and drops its view.
func TestImageVolume(t *testing.T) {
	reg := testimages.NewRegistry(t)
	reg.Push(t, "pause", "3.10.2", testimages.Pause(t))
	reg.Push(t, "library/busybox", "1.36", testimages.Busybox(t))
	reg.Push(t, "library/data", "1", testimages.Build(t, v1.Config{}, []testimages.File{{Path: "data/hello", Mode: 0o644, Content: []byte("from-image-volume\n")}}))
	l := newLayout(t, false)
	withRegistry(t, l, reg)
	l.WriteConflist()
	d := start(t, l)
	mustPull(t, d, "busybox:1.36")
	mustPull(t, d, "data:1")
	cfg := podConfig(l, "imgvol")
	p := &pod{d: d, l: l, id: runPod(t, d, cfg), cfg: cfg}
	before := takeCensus(t, l)

	c := busybox("reader", "sleep", "1000")
	c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/vol", Image: &runtimeapi.ImageSpec{Image: "data:1"}}}
	id := p.run(t, c)
	if got := p.mustExec(t, id, "cat", "/vol/data/hello"); got != "from-image-volume\n" {
		t.Errorf("image volume content %q", got)
	}
	if r, _ := p.exec(t, id, 5, "touch", "/vol/x"); r == nil || r.ExitCode == 0 {
		t.Error("image volume is writable")
	}
	if _, err := d.Runtime.RemoveContainer(ctxT(t), &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	for _, m := range daemon.Mounts() {
		if strings.Contains(m.Line, id+"-imgvol-") {
			t.Errorf("image volume still mounted after RemoveContainer: %s", m.Point)
		}
	}
	if diff := before.diff(takeCensus(t, l), kubeletOwned...); diff != "" {
		t.Errorf("after removal:\n%s", diff)
	}
	if strings.Contains(ctrSnapshots(t, l), id) {
		t.Error("image volume view left behind")
	}
}

func ctrSnapshots(t *testing.T, l *daemon.Layout) string {
	out, err := exec.Command(filepath.Join(binDir, "ctr"), "--address", l.Socket, "-n", "k8s.io", "snapshots", "ls").Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestStatusAsOperatorsReadIt checks the status fields that differed from
// upstream containerd's CRI (make crictl-diff) and that users read: the
// image name the user wrote, containerd's record in verbose info
// (`crictl inspect | jq .info.runtimeSpec`), no pid once the process is
// gone, and no pod IP once the network is torn down.
func TestStatusAsOperatorsReadIt(t *testing.T) {
	p := newPod(t)
	imageID := mustPull(t, p.d, "busybox:1.36")
	// As the kubelet creates containers: from the image ID, with the name
	// from the pod spec alongside.
	cfg := busybox("app", "sleep", "3600")
	cfg.Image = &runtimeapi.ImageSpec{Image: imageID, UserSpecifiedImage: "busybox:1.36"}
	id := p.run(t, cfg)

	list, err := p.d.Runtime.ListContainers(ctxT(t), &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{Id: id}})
	if err != nil || len(list.Containers) != 1 {
		t.Fatalf("ListContainers: %v %v", list, err)
	}
	if got := list.Containers[0].GetImage().GetUserSpecifiedImage(); got != "busybox:1.36" {
		t.Errorf("ListContainers image.userSpecifiedImage = %q, want busybox:1.36", got)
	}

	info := p.verboseInfo(t, id)
	pid, _ := info["pid"].(float64)
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", int(pid))); pid == 0 || err != nil {
		t.Errorf("running container: info.pid = %v (%v)", info["pid"], err)
	}
	spec, _ := info["runtimeSpec"].(map[string]any)
	linux, _ := spec["linux"].(map[string]any)
	if cg, _ := linux["cgroupsPath"].(string); !strings.HasPrefix(cg, p.cfg.Linux.CgroupParent) {
		t.Errorf("info.runtimeSpec.linux.cgroupsPath = %q, want under %s", cg, p.cfg.Linux.CgroupParent)
	}
	if info["runtimeType"] != "io.containerd.runc.v2" || info["snapshotKey"] != id || info["snapshotter"] == "" {
		t.Errorf("info runtimeType %v snapshotter %v snapshotKey %v", info["runtimeType"], info["snapshotter"], info["snapshotKey"])
	}
	if _, err := p.d.Runtime.StopContainer(ctxT(t), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 0}); err != nil {
		t.Fatal(err)
	}
	if info := p.verboseInfo(t, id); info["pid"] != float64(0) {
		t.Errorf("exited container: info.pid = %v, want 0", info["pid"])
	}

	st, pinfo := podStatus(t, p.d, p.id)
	pspec, _ := pinfo["runtimeSpec"].(map[string]any)
	if pspec == nil || pinfo["pid"] == float64(0) || st.GetNetwork().GetIp() == "" {
		t.Errorf("ready pod: runtimeSpec %v, pid %v, ip %q", pspec != nil, pinfo["pid"], st.GetNetwork().GetIp())
	}
	if _, err := p.d.Runtime.StopPodSandbox(ctxT(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id}); err != nil {
		t.Fatal(err)
	}
	// The address went back to IPAM with the network: another pod may
	// have it now.
	st, pinfo = podStatus(t, p.d, p.id)
	if st.GetNetwork().GetIp() != "" || pinfo["pid"] != float64(0) {
		t.Errorf("stopped pod: ip %q, pid %v; want none", st.GetNetwork().GetIp(), pinfo["pid"])
	}
}

func (p *pod) verboseInfo(t *testing.T, id string) map[string]any {
	t.Helper()
	r, err := p.d.Runtime.ContainerStatus(ctxT(t), &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatalf("ContainerStatus: %v", err)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(r.Info["info"]), &info); err != nil {
		t.Fatalf("verbose info: %v", err)
	}
	return info
}

// A debug container with a TARGET PID namespace sees the processes of the
// container it targets (kubectl debug --target); a target that is not
// running, or does not exist, is refused before anything is made.
func TestDebugContainerSharesTargetPIDNamespace(t *testing.T) {
	p := newPod(t)
	target := p.run(t, busybox("app", "sleep", "3601"))
	debug := func(name, targetID string) *runtimeapi.ContainerConfig {
		c := busybox(name, "sleep", "3600")
		c.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: targetID}
		return c
	}
	dbg := p.run(t, debug("debugger", target))
	if out := p.mustExec(t, dbg, "ps", "-o", "args"); !strings.Contains(out, "sleep 3601") {
		t.Errorf("the debug container does not see its target's processes:\n%s", out)
	}
	if out := p.mustExec(t, target, "ps", "-o", "args"); !strings.Contains(out, "sleep 3600") {
		t.Errorf("the target does not see the debug container's processes:\n%s", out)
	}

	idle := p.create(t, busybox("idle", "sleep", "1"))
	before, _ := p.d.Runtime.ListContainers(ctxT(t), &runtimeapi.ListContainersRequest{})
	for targetID, want := range map[string]codes.Code{idle: codes.FailedPrecondition, strings.Repeat("ab", 32): codes.NotFound} {
		_, err := p.d.Runtime.CreateContainer(ctxT(t), &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: debug("refused", targetID), SandboxConfig: p.cfg})
		if status.Code(err) != want {
			t.Errorf("target %.12s: %v, want %v", targetID, err, want)
		}
	}
	if after, _ := p.d.Runtime.ListContainers(ctxT(t), &runtimeapi.ListContainersRequest{}); len(after.Containers) != len(before.Containers) {
		t.Errorf("refused creates left containers: %d before, %d after", len(before.Containers), len(after.Containers))
	}
}
