package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/integration/daemon"
	"github.com/nodecri/nodecri/integration/testimages"
)

var (
	pluginOnce sync.Once
	pluginDir  string
	pluginErr  error
)

// testPluginDir builds integration/cniplugin (a chained plugin that can be
// slow or fail) once per run.
func testPluginDir(t testing.TB) string {
	pluginOnce.Do(func() {
		pluginDir, pluginErr = os.MkdirTemp("", "nodecri-cniplugin-")
		if pluginErr == nil {
			out, err := exec.Command("go", "build", "-o", filepath.Join(pluginDir, "nodecri-test"), "./cniplugin").CombinedOutput()
			if err != nil {
				pluginErr = fmt.Errorf("build cniplugin: %v\n%s", err, out)
			}
		}
	})
	if pluginErr != nil {
		t.Fatal(pluginErr)
	}
	return pluginDir
}

// podOpt adjusts a pod test's daemon layout before it starts.
type podOpt func(t testing.TB, l *daemon.Layout)

// withChainedPlugin appends a nodecri-test plugin (slow or failing) to the
// pod network, behind the real bridge and IPAM.
func withChainedPlugin(conf map[string]any) podOpt {
	return func(t testing.TB, l *daemon.Layout) {
		l.ExtraPlugins = append(l.ExtraPlugins, conf)
		c := l.CRI()["cni"].(map[string]any)
		c["bin_dirs"] = append(append([]string{}, l.CNIBinDirs...), testPluginDir(t))
	}
}

// withLogLevel sets the daemon's log level (benchmarks: info).
func withLogLevel(level string) podOpt {
	return func(_ testing.TB, l *daemon.Layout) { l.LogLevel = level }
}

// podEnv starts a daemon with a pod network and a registry holding the
// sandbox image and busybox.
func podEnv(t testing.TB, opts ...podOpt) (*daemon.Daemon, *daemon.Layout) {
	t.Helper()
	reg := testimages.NewRegistry(t)
	reg.Push(t, "pause", "3.10.2", testimages.Pause(t))
	reg.Push(t, "library/busybox", "1.36", testimages.Busybox(t))
	l := newLayout(t, true)
	withRegistry(t, l, reg)
	for _, o := range opts {
		o(t, l)
	}
	if err := l.WriteConflist(); err != nil {
		t.Fatal(err)
	}
	return start(t, l), l
}

func uid() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// podConfig is a pod in its own cgroup under a parent of this test run.
func podConfig(l *daemon.Layout, name string) *runtimeapi.PodSandboxConfig {
	u := uid()
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "nodecri-it", Uid: u},
		Hostname:     name,
		LogDirectory: filepath.Join(l.Dir, "pods", u),
		Labels:       map[string]string{"app": name},
		Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: filepath.Join("/", filepath.Base(l.Dir), "pod"+u)},
	}
}

func runPod(t *testing.T, d *daemon.Daemon, cfg *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	r, err := d.Runtime.RunPodSandbox(ctxT(t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox %s: %v", cfg.Metadata.Name, err)
	}
	return r.PodSandboxId
}

func podStatus(t *testing.T, d *daemon.Daemon, id string) (*runtimeapi.PodSandboxStatus, map[string]any) {
	t.Helper()
	r, err := d.Runtime.PodSandboxStatus(ctxT(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		t.Fatalf("PodSandboxStatus: %v", err)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(r.Info["info"]), &info); err != nil {
		t.Fatalf("verbose info: %v", err)
	}
	return r.Status, info
}

func stopRemove(t *testing.T, d *daemon.Daemon, id string) {
	t.Helper()
	if _, err := d.Runtime.StopPodSandbox(ctxT(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if _, err := d.Runtime.RemovePodSandbox(ctxT(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
}

func TestPodGetsReachableIP(t *testing.T) {
	d, l := podEnv(t)
	cfg := podConfig(l, "web")
	cfg.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"10.0.0.10"}, Searches: []string{"svc.cluster.local"}, Options: []string{"ndots:5"}}
	id := runPod(t, d, cfg)
	st, info := podStatus(t, d, id)
	if st.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("state %v", st.State)
	}
	_, subnet, _ := net.ParseCIDR(l.Network.Subnet)
	ip := net.ParseIP(st.GetNetwork().GetIp())
	if ip == nil || !subnet.Contains(ip) {
		t.Fatalf("pod IP %q not in %s", st.GetNetwork().GetIp(), l.Network.Subnet)
	}
	if out, err := exec.Command("ping", "-c", "1", "-W", "2", ip.String()).CombinedOutput(); err != nil {
		t.Errorf("pod IP %s not reachable from the host: %v\n%s", ip, err, out)
	}
	netnsPath, _ := info["netNamespace"].(string)
	out, err := exec.Command("nsenter", "--net="+netnsPath, "ip", "-4", "-o", "addr", "show", "eth0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), ip.String()+"/") {
		t.Errorf("pod IP not on eth0 in the pod's netns %s: %v %s", netnsPath, err, out)
	}
	// The pause process lives in that namespace, with the pod's files.
	pid := int(info["pid"].(float64))
	if same(t, fmt.Sprintf("/proc/%d/ns/net", pid), "/proc/self/ns/net") {
		t.Error("pause is in the host's network namespace")
	}
	resolv, _ := os.ReadFile(fmt.Sprintf("/proc/%d/root/etc/resolv.conf", pid))
	for _, want := range []string{"nameserver 10.0.0.10", "search svc.cluster.local", "options ndots:5"} {
		if !strings.Contains(string(resolv), want) {
			t.Errorf("pause resolv.conf lacks %q:\n%s", want, resolv)
		}
	}
	host, err := exec.Command("nsenter", "-t", fmt.Sprint(pid), "-u", "hostname").Output()
	if err != nil || strings.TrimSpace(string(host)) != "web" {
		t.Errorf("pause hostname = %q, %v", host, err)
	}
	// Pause mounts only resolv.conf and /dev/shm (as upstream); containers
	// get /etc/hostname (TestContainerEnvironmentAsUpstream).
	stopRemove(t, d, id)
}

func same(t *testing.T, a, b string) bool {
	la, err1 := os.Readlink(a)
	lb, err2 := os.Readlink(b)
	if err1 != nil || err2 != nil {
		t.Fatalf("readlink: %v %v", err1, err2)
	}
	return la == lb
}

func TestHostNetworkPod(t *testing.T) {
	d, l := podEnv(t)
	cfg := podConfig(l, "hostnet")
	cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}
	id := runPod(t, d, cfg)
	st, info := podStatus(t, d, id)
	if st.State != runtimeapi.PodSandboxState_SANDBOX_READY || info["netNamespace"] != "" {
		t.Fatalf("host-network pod: state %v netns %v", st.State, info["netNamespace"])
	}
	pid := int(info["pid"].(float64))
	if !same(t, fmt.Sprintf("/proc/%d/ns/net", pid), "/proc/self/ns/net") {
		t.Error("host-network pause is not in the host's network namespace")
	}
	stopRemove(t, d, id)
}

func TestDuplicateNameRefusedUntilRemoved(t *testing.T) {
	d, l := podEnv(t)
	cfg := podConfig(l, "dup")
	id := runPod(t, d, cfg)
	_, err := d.Runtime.RunPodSandbox(ctxT(t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if status.Code(err) != codes.AlreadyExists || !strings.Contains(err.Error(), id) {
		t.Fatalf("second RunPodSandbox: %v, want AlreadyExists naming %s", err, id)
	}
	stopRemove(t, d, id)
	id2 := runPod(t, d, cfg)
	if id2 == id {
		t.Error("a removed sandbox's ID came back")
	}
	stopRemove(t, d, id2)
}

func TestStopRemoveIdempotent(t *testing.T) {
	d, l := podEnv(t)
	id := runPod(t, d, podConfig(l, "twice"))
	stopRemove(t, d, id)
	stopRemove(t, d, id) // again: still success
	unknown := strings.Repeat("ab", 32)
	stopRemove(t, d, unknown)
	if _, err := d.Runtime.PodSandboxStatus(ctxT(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: unknown}); status.Code(err) != codes.NotFound {
		t.Errorf("status of unknown sandbox: %v, want NotFound", err)
	}
	for _, bad := range []string{"../../etc", ""} {
		if _, err := d.Runtime.StopPodSandbox(ctxT(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: bad}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("StopPodSandbox(%q): %v, want InvalidArgument", bad, err)
		}
	}
	if _, err := d.Runtime.RunPodSandbox(ctxT(t), &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "../x", Namespace: "n", Uid: "u"}}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("path in name: %v, want InvalidArgument", err)
	}
	if _, err := d.Runtime.RunPodSandbox(ctxT(t), &runtimeapi.RunPodSandboxRequest{Config: podConfig(l, "x"), RuntimeHandler: "nosuch"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("unknown runtime handler: %v, want InvalidArgument", err)
	}
}

func TestTwentyConcurrentPodsThenNothingLeft(t *testing.T) {
	d, l := podEnv(t)
	before := takeCensus(t, l)
	const n = 20
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := d.Runtime.RunPodSandbox(ctxT(t), &runtimeapi.RunPodSandboxRequest{Config: podConfig(l, fmt.Sprintf("p%d", i))})
			if err == nil {
				ids[i] = r.PodSandboxId
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	ips := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("pod %d: %v", i, errs[i])
		}
		st, _ := podStatus(t, d, ids[i])
		if st.State != runtimeapi.PodSandboxState_SANDBOX_READY || st.Network.Ip == "" || ips[st.Network.Ip] {
			t.Errorf("pod %d: state %v ip %q (duplicate: %v)", i, st.State, st.Network.Ip, ips[st.Network.Ip])
		}
		ips[st.Network.Ip] = true
	}
	during := takeCensus(t, l)
	for _, kind := range []string{"ipam", "veths", "tasks"} {
		if during.count(kind) != before.count(kind)+n {
			t.Errorf("with %d pods: %d %s (before %d)", n, during.count(kind), kind, before.count(kind))
		}
	}
	list, err := d.Runtime.ListPodSandbox(ctxT(t), &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}})
	if err != nil || len(list.Items) != n {
		t.Errorf("ListPodSandbox(ready) = %d items, %v", len(list.Items), err)
	}
	sel, _ := d.Runtime.ListPodSandbox(ctxT(t), &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "p7"}}})
	if len(sel.Items) != 1 || sel.Items[0].Id != ids[7] {
		t.Errorf("label selector: %v", sel.Items)
	}
	pre, _ := d.Runtime.ListPodSandbox(ctxT(t), &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{Id: ids[3][:12]}})
	if len(pre.Items) != 1 || pre.Items[0].Id != ids[3] {
		t.Errorf("ID prefix filter: %v", pre.Items)
	}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stopRemove(t, d, ids[i])
		}()
	}
	wg.Wait()
	if diff := before.diff(takeCensus(t, l), kubeletOwned...); diff != "" {
		t.Errorf("after stop and remove:\n%s", diff)
	}
}

func TestFailingCNILeavesNothing(t *testing.T) {
	d, l := podEnv(t, withChainedPlugin(map[string]any{"type": "nodecri-test", "failAdd": true}))
	before := takeCensus(t, l)
	_, err := d.Runtime.RunPodSandbox(ctxT(t), &runtimeapi.RunPodSandboxRequest{Config: podConfig(l, "cnifail")})
	if err == nil || !strings.Contains(err.Error(), "injected ADD failure") {
		t.Fatalf("RunPodSandbox with a failing CNI plugin: %v", err)
	}
	if diff := before.diff(takeCensus(t, l), kubeletOwned...); diff != "" {
		t.Errorf("a failed RunPodSandbox left:\n%s", diff)
	}
	list, _ := d.Runtime.ListPodSandbox(ctxT(t), &runtimeapi.ListPodSandboxRequest{})
	if len(list.Items) != 0 {
		t.Errorf("failed sandbox listed: %v", list.Items)
	}
}

func TestUnpullableSandboxImageFailsCleanly(t *testing.T) {
	reg := testimages.NewRegistry(t) // holds no pause image
	l := newLayout(t, false)
	withRegistry(t, l, reg)
	l.CRI()["sandbox_image"] = "registry.k8s.io/pause:nosuch"
	l.WriteConflist()
	d := start(t, l)
	before := takeCensus(t, l)
	_, err := d.Runtime.RunPodSandbox(ctxT(t), &runtimeapi.RunPodSandboxRequest{Config: podConfig(l, "noimage")})
	if err == nil || !strings.Contains(err.Error(), "pause:nosuch") {
		t.Fatalf("RunPodSandbox without its image: %v", err)
	}
	if diff := before.diff(takeCensus(t, l), kubeletOwned...); diff != "" {
		t.Errorf("left:\n%s", diff)
	}
}

// A kubelet call that times out is retried with the same name: the retry
// gets the sandbox the first call made.
func TestRetryAfterTimeoutGetsTheSamePod(t *testing.T) {
	d, l := podEnv(t, withChainedPlugin(map[string]any{"type": "nodecri-test", "sleep": "2s"}))
	cfg := podConfig(l, "slow")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, err := d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("first call: %v, want DeadlineExceeded", err)
	}
	id := runPod(t, d, cfg)
	list, _ := d.Runtime.ListPodSandbox(ctxT(t), &runtimeapi.ListPodSandboxRequest{})
	if len(list.Items) != 1 || list.Items[0].Id != id {
		t.Fatalf("after the retry: %d sandboxes %v, want exactly %s", len(list.Items), list.Items, id)
	}
	// Once handed out, the name is taken.
	if _, err := d.Runtime.RunPodSandbox(ctxT(t), &runtimeapi.RunPodSandboxRequest{Config: cfg}); status.Code(err) != codes.AlreadyExists {
		t.Errorf("third call: %v, want AlreadyExists", err)
	}
	stopRemove(t, d, id)
}

func TestUserNamespacePod(t *testing.T) {
	d, l := podEnv(t)
	cfg := podConfig(l, "userns")
	const hostBase = 200000
	cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
		UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD,
			Uids: []*runtimeapi.IDMapping{{ContainerId: 0, HostId: hostBase, Length: 65536}},
			Gids: []*runtimeapi.IDMapping{{ContainerId: 0, HostId: hostBase, Length: 65536}}},
	}}
	id := runPod(t, d, cfg)
	_, info := podStatus(t, d, id)
	pid := int(info["pid"].(float64))
	uidMap, _ := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", pid))
	if f := strings.Fields(string(uidMap)); len(f) != 3 || f[0] != "0" || f[1] != fmt.Sprint(hostBase) || f[2] != "65536" {
		t.Errorf("pause uid_map = %q", uidMap)
	}
	// The pause image runs as 65535 inside: 200000+65535 on the host.
	st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if !strings.Contains(string(st), fmt.Sprintf("Uid:\t%d", hostBase+65535)) {
		t.Errorf("pause host uid not mapped:\n%s", st)
	}
	stopRemove(t, d, id)
}
