package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/integration/daemon"
	"github.com/nodecri/nodecri/integration/testimages"
)

const (
	sandboxImage = "registry.k8s.io/pause:3.10.2"
	busyboxImage = "docker.io/library/busybox:1.36"
	// rpcTimeout is generous: 50 pods at once on 2 shared cores are slow,
	// and a benchmark should report slowness, not fail on it.
	rpcTimeout = 2 * time.Minute
	// inFlight bounds the untimed population and teardown work.
	inFlight = 8
)

// sideBySide finds the repository, its bin/ and the two daemons, ours and
// upstream's, and checks that they, runc and the other named companions in
// bin/ are there: `make <target>` builds them.
func sideBySide(t *testing.T, target string, companions ...string) (root, binDir string, bins map[string]string) {
	t.Helper()
	root, _ = filepath.Abs("../..")
	binDir = filepath.Join(root, "bin")
	bins = map[string]string{
		"ours":     filepath.Join(binDir, "containerd"),
		"upstream": filepath.Join(root, "_output", "upstream", "bin", "containerd"),
	}
	need := []string{bins["ours"], bins["upstream"], filepath.Join(binDir, "runc")}
	for _, c := range companions {
		need = append(need, filepath.Join(binDir, c))
	}
	for _, b := range need {
		if _, err := os.Stat(b); err != nil {
			t.Fatalf("%s missing: run `make %s` (deps, build, hack/upstream.sh)", b, target)
		}
	}
	return root, binDir, bins
}

// target is one daemon under test with its layout.
type target struct {
	name   string
	binary string
	d      *daemon.Daemon
	l      *daemon.Layout
}

// startTarget lays out and starts binary on a folder, socket and CNI
// network of its own, images mirrored to reg, with runc from bin/ as the
// only handler so that both daemons run the same runtime. At the end the
// daemon fixture tears it down (pods, daemon, leftovers, cgroups, bridge)
// and keeps the daemon's log in logDir.
func startTarget(t *testing.T, name, binary, binDir, logDir string, index int, reg *testimages.Registry) *target {
	t.Helper()
	// CNI state is host-wide: each daemon gets its own bridge, subnet and
	// host-local dataDir (in its folder). A /22 holds the 500-pod case even
	// on a bridge network.
	id := os.Getpid() % 60
	l := daemon.NewTestLayout(t, daemon.TestOptions{
		Prefix: "nodecri-bench-" + name + "-",
		BinDir: binDir,
		Network: daemon.Network{
			Name:   fmt.Sprintf("nodecri-bench-%s-%d", name, id),
			Bridge: fmt.Sprintf("ncbench%d%c", id, name[0]),
			Subnet: fmt.Sprintf("10.%d.%d.0/22", 250+index, 4*id),
		},
		LogCopy: filepath.Join(logDir, name+".log"),
	})
	l.LogLevel = "info"
	cri := l.CRI()
	runtimes := cri["containerd"].(map[string]any)["runtimes"].(map[string]any)
	for h := range runtimes {
		if h != "runc" {
			delete(runtimes, h)
		}
	}
	hosts := filepath.Join(l.Dir, "certs.d")
	// Every registry critest names, for `critest -benchmark`.
	testimages.WriteHostsDir(t, hosts, reg.Addr, testimages.CritestMirrors...)
	cri["registry"] = map[string]any{"config_path": hosts}
	cri["sandbox_image"] = sandboxImage
	if name == "upstream" {
		l.Config = upstreamConfig(l)
	}
	if err := l.WriteConflist(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := daemon.Start(ctx, binary, l)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	tg := &target{name: name, binary: binary, d: d, l: l}
	// tg.d: the restart measurement replaces the first daemon.
	t.Cleanup(func() { daemon.Teardown(t, tg.d) })
	if err := tg.waitReady(ctx); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, d.LogTail(30))
	}
	return tg
}

// upstreamConfig is containerd v2.4's own CRI configured as ours is: the
// same servers, root, state and plugins off (kept from the layout), and
// the same runtime, CNI and registry settings, which upstream splits
// between its runtime and images plugins.
func upstreamConfig(l *daemon.Layout) map[string]any {
	ours := l.CRI()
	plugins := map[string]any{}
	for k, v := range l.Config["plugins"].(map[string]any) {
		if k != daemon.CRISection {
			plugins[k] = v
		}
	}
	plugins["io.containerd.cri.v1.runtime"] = map[string]any{
		"restrict_oom_score_adj": ours["restrict_oom_score_adj"],
		"cdi_spec_dirs":          ours["cdi_spec_dirs"],
		"containerd":             ours["containerd"],
		"cni":                    ours["cni"],
	}
	plugins["io.containerd.cri.v1.images"] = map[string]any{
		"pinned_images": map[string]any{"sandbox": sandboxImage},
		"registry":      ours["registry"],
	}
	cfg := map[string]any{}
	for k, v := range l.Config {
		cfg[k] = v
	}
	cfg["plugins"] = plugins
	return cfg
}

// waitReady waits for RuntimeReady and NetworkReady: measuring before the
// conflist is loaded would time errors.
func (tg *target) waitReady(ctx context.Context) error {
	var last string
	var ready int
	for {
		st, err := tg.d.Runtime.Status(ctx, &runtimeapi.StatusRequest{})
		if err == nil {
			ready, last = 0, ""
			for _, c := range st.GetStatus().GetConditions() {
				// Upstream adds a deprecation-warnings condition; only
				// these two say the daemon can run pods.
				if c.Type == runtimeapi.RuntimeReady || c.Type == runtimeapi.NetworkReady {
					if c.Status {
						ready++
					}
					last += fmt.Sprintf("%s=%v(%s) ", c.Type, c.Status, c.Message)
				}
			}
			if ready == 2 {
				return nil
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: %s", last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// podConfig is a pod in its own cgroup under a parent named after the
// daemon's folder, so the cgroups can be removed at the end.
func (tg *target) podConfig(name string, hostNet bool) *runtimeapi.PodSandboxConfig {
	uid := fmt.Sprintf("%s-%d", name, time.Now().UnixNano())
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "nodecri-bench", Uid: uid},
		Hostname:     name,
		LogDirectory: filepath.Join(tg.l.Dir, "pods", uid),
		Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "/" + filepath.Base(tg.l.Dir) + "/pod" + uid},
	}
	if hostNet {
		// As the kubelet does: no hostname for a pod in the node's UTS
		// namespace (upstream's runc refuses one there).
		cfg.Hostname = ""
		cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}
	}
	return cfg
}

// podWithContainer runs a pod and a busybox `sleep 3600` in it, as the
// kubelet starts a one-container pod.
func (tg *target) podWithContainer(ctx context.Context, name string, hostNet bool) error {
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	cfg := tg.podConfig(name, hostNet)
	p, err := tg.d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		return fmt.Errorf("RunPodSandbox %s: %w", name, err)
	}
	c, err := tg.d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId:  p.PodSandboxId,
		SandboxConfig: cfg,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "sleep"},
			Image:    &runtimeapi.ImageSpec{Image: busyboxImage},
			Command:  []string{"sleep", "3600"},
			LogPath:  "sleep.log",
			Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}}},
		},
	})
	if err != nil {
		return fmt.Errorf("CreateContainer in %s: %w", name, err)
	}
	if _, err := tg.d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		return fmt.Errorf("StartContainer in %s: %w", name, err)
	}
	return nil
}

// populate grows the daemon to n pods, each with a container, untimed.
func (tg *target) populate(ctx context.Context, prefix string, from, n int, hostNet bool) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(inFlight)
	for i := from; i < n; i++ {
		g.Go(func() error { return tg.podWithContainer(ctx, fmt.Sprintf("%s-%d", prefix, i), hostNet) })
	}
	return g.Wait()
}

// removeAll stops and removes every pod (daemon.RemoveAll).
func (tg *target) removeAll(ctx context.Context) error { return tg.d.RemoveAll(ctx) }

// rssMB is the daemon's resident set (VmRSS), in MB.
func (tg *target) rssMB() float64 {
	kb := procStatusKB(fmt.Sprintf("/proc/%d/status", tg.d.PID()), "VmRSS:")
	return float64(kb) / 1024
}

// procStatusKB reads a "Key:   123 kB" line of a /proc status-like file.
func procStatusKB(path, key string) int64 {
	b, _ := os.ReadFile(path)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
