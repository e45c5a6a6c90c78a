package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The test fixture: every test that runs a daemon (the integration tests,
// critest, the benchmarks) lays it out with NewTestLayout and starts it
// with StartTest, so that all of them are torn down alike, in this order:
//
//  1. each daemon (Teardown): the log tail when the test failed, then its
//     pods stopped and removed, then the daemon stopped by PID;
//  2. the folder: what the daemons could not remove (runtime containers,
//     shims, mounts), the pod cgroups named after the folder, the bridge,
//     a copy of the log if asked for, and the folder itself, kept for
//     inspection when the test failed or NODECRI_KEEP is set.
//
// t.Cleanup runs last-registered first, and a daemon is started after its
// folder is made, so step 1 always precedes step 2.

// TestOptions describe a test's daemon folder.
type TestOptions struct {
	// Prefix names the temporary folder ("nodecri-it-").
	Prefix string
	// BinDir holds runc, the shim and ctr.
	BinDir string
	// MetricsAddress is host:port, "" for no metrics endpoint.
	MetricsAddress string
	// Network is the pod network; CNI state is host-wide, so it must be
	// the test's own.
	Network Network
	// LogCopy, if set, receives a copy of the daemon's log at the end,
	// whether the test passed or not.
	LogCopy string
}

// NewTestLayout makes a temporary folder for a test's daemon and lays it
// out (nothing is written yet); the folder's part of the teardown is
// registered with t.
func NewTestLayout(t testing.TB, o TestOptions) *Layout {
	t.Helper()
	dir, err := os.MkdirTemp("", o.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	// Traversable, as /var/lib/containerd is: root of a pod's user
	// namespace is not root on the host and must reach the bundle.
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	l := NewLayout(dir, o.BinDir, o.MetricsAddress, o.Network)
	t.Cleanup(func() { cleanFolder(t, l, o.LogCopy) })
	return l
}

// StartTest starts binary on l (see Start) and registers its Teardown.
func StartTest(t testing.TB, binary string, l *Layout) *Daemon {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := Start(ctx, binary, l)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Teardown(t, d) })
	return d
}

// Teardown is a daemon's part of the test teardown: it shows the log's
// tail when the test failed, removes every pod the test left (shims,
// containers and their iptables rules outlive containerd, and a leftover
// hostPort rule would capture a later test's port) and stops the daemon
// by PID. A daemon that has exited is only reaped.
func Teardown(t testing.TB, d *Daemon) {
	if t.Failed() {
		t.Logf("--- %s (tail) ---\n%s", d.LogPath, d.LogTail(30))
	}
	select {
	case <-d.Exited():
	default:
		// A bound for hundreds of pods on a loaded machine.
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		if err := d.RemoveAll(ctx); err != nil {
			t.Errorf("removing leftover pods: %v", err)
		}
	}
	if err := d.Stop(); err != nil {
		t.Errorf("stopping daemon (pid %d): %v", d.PID(), err)
	}
}

// removeInFlight bounds the stops and removals RemoveAll runs at once.
const removeInFlight = 8

// RemoveAll stops and removes every pod. Running containers are stopped
// first with a zero timeout: a `sleep` as PID 1 ignores SIGTERM, and
// upstream's daemon (benchmarked side by side) is driven the same way.
// It goes on past a failure, and returns all of them.
func (d *Daemon) RemoveAll(ctx context.Context) error {
	cs, err := d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	var errs []error
	collect := func(g *errgroup.Group) {
		if err := g.Wait(); err != nil {
			errs = append(errs, err)
		}
	}
	var g errgroup.Group
	g.SetLimit(removeInFlight)
	for _, c := range cs.Containers {
		if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			g.Go(func() error {
				if _, err := d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: c.Id}); err != nil {
					return fmt.Errorf("stop container %s: %w", c.Id, err)
				}
				return nil
			})
		}
	}
	collect(&g)
	ps, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list pods: %w", err))...)
	}
	var pg errgroup.Group
	pg.SetLimit(removeInFlight)
	for _, p := range ps.Items {
		pg.Go(func() error {
			// RemovePodSandbox stops a running pod itself; StopPodSandbox
			// first is the kubelet's order, and upstream's.
			_, serr := d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id})
			if _, err := d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
				return fmt.Errorf("remove pod %s (%s): %w (stop: %v)", p.Id, p.GetMetadata().GetName(), err, serr)
			}
			return nil
		})
	}
	collect(&pg)
	return errors.Join(errs...)
}

// cleanFolder is the folder's part of the teardown, after every daemon on
// it has been torn down.
func cleanFolder(t testing.TB, l *Layout, logCopy string) {
	Sweep(t, l)
	RemoveCgroups(filepath.Base(l.Dir))
	// The bridge plugin creates the bridge and never deletes it.
	if _, err := os.Stat("/sys/class/net/" + l.Network.Bridge); err == nil {
		if b, err := exec.Command("ip", "link", "delete", l.Network.Bridge).CombinedOutput(); err != nil {
			t.Logf("ip link delete %s: %v: %s", l.Network.Bridge, err, b)
		}
	}
	if logCopy != "" {
		if b, err := os.ReadFile(filepath.Join(l.Dir, "containerd.log")); err == nil {
			_ = os.WriteFile(logCopy, b, 0o644)
		}
	}
	if t.Failed() || os.Getenv("NODECRI_KEEP") != "" {
		t.Logf("daemon folder kept for inspection: %s", l.Dir)
		return
	}
	RemoveUnlessMounted(t, l.Dir)
}

// Sweep ends what the daemons on l left behind when they could not remove
// their pods: the containers in the runtime roots, the shims serving l's
// socket (found by their -address) and the mounts below its folder.
func Sweep(t testing.TB, l *Layout) {
	for _, rt := range runtimes(l.Config) {
		// The shim keeps one runtime root per containerd namespace.
		namespaces, _ := filepath.Glob(filepath.Join(rt.root, "*"))
		for _, ns := range namespaces {
			out, _ := exec.Command(rt.binary, "--root", ns, "list", "-q").Output()
			for _, id := range strings.Fields(string(out)) {
				b, err := exec.Command(rt.binary, "--root", ns, "delete", "--force", id).CombinedOutput()
				t.Logf("leftover container %s deleted: %v %s", id, err, bytes.TrimSpace(b))
			}
		}
	}
	for _, pid := range Shims(l) {
		t.Logf("leftover shim %d killed: %v", pid, syscall.Kill(pid, syscall.SIGKILL))
	}
	mounts := MountsBelow(l.Dir)
	for i := len(mounts) - 1; i >= 0; i-- { // innermost first
		t.Logf("leftover mount %s detached: %v", mounts[i], syscall.Unmount(mounts[i], syscall.MNT_DETACH))
	}
}

type runtime struct{ binary, root string }

// runtimes finds the OCI runtimes of a config tree, ours or upstream's
// (which keeps them in its io.containerd.cri.v1.runtime section).
func runtimes(cfg map[string]any) []runtime {
	var out []runtime
	plugins, _ := cfg["plugins"].(map[string]any)
	for _, section := range plugins {
		s, _ := section.(map[string]any)
		c, _ := s["containerd"].(map[string]any)
		rts, _ := c["runtimes"].(map[string]any)
		for _, rt := range rts {
			r, _ := rt.(map[string]any)
			opts, _ := r["options"].(map[string]any)
			bin, _ := opts["BinaryName"].(string)
			root, _ := opts["Root"].(string)
			if bin != "" && root != "" {
				out = append(out, runtime{bin, root})
			}
		}
	}
	return out
}

// Shims are the PIDs of the shims serving l's daemon.
func Shims(l *Layout) []int {
	var pids []int
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range cmdlines {
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte("\x00-address\x00"+l.Socket+"\x00")) {
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// RemoveUnlessMounted removes dir unless something is still mounted below
// it (a container or a spec cut short), which RemoveAll would descend into.
func RemoveUnlessMounted(t testing.TB, dir string) {
	if mounts := MountsBelow(dir); len(mounts) > 0 {
		t.Logf("%s kept: %s is still mounted", dir, mounts[0])
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Logf("removing %s: %v", dir, err)
	}
}

// RemoveCgroups removes the (empty) pod cgroup parents named after a
// daemon's folder, in every hierarchy, children first: the tests' pods use
// /<folder name>/pod<uid> as their cgroup parent.
func RemoveCgroups(name string) {
	roots, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", name))
	for _, root := range roots {
		RemoveCgroupTree(root)
		os.Remove(root)
	}
}

// RemoveCgroupTree removes the (empty) cgroups below root, children first.
func RemoveCgroupTree(root string) {
	var dirs []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && p != root {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		os.Remove(dirs[i])
	}
}
