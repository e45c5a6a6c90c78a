// Package integration tests the real bin/containerd: each test starts the
// daemon on a private root with runc and Debian's CNI plugins and talks CRI
// over its socket.
package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/integration/daemon"
)

var (
	binary string // bin/containerd
	binDir string // bin/, with runc, the shim, ctr, crictl
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("integration: skipped, the daemon needs root (run `sudo make test`)")
		os.Exit(0)
	}
	binDir, _ = filepath.Abs("../bin")
	binary = filepath.Join(binDir, "containerd")
	for _, b := range []string{binary, filepath.Join(binDir, "runc"), filepath.Join(binDir, "containerd-shim-runc-v2"), filepath.Join(binDir, "ctr")} {
		if _, err := os.Stat(b); err != nil {
			fmt.Printf("integration: %s missing: run `make deps build` (or `make test`)\n", b)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

var instances atomic.Int32

// newLayout gives a test its own daemon folder and pod network: CNI state
// is host-wide, so bridge, subnet and IPAM folder are unique per instance.
func newLayout(t testing.TB, metrics bool) *daemon.Layout {
	t.Helper()
	n := int(instances.Add(1))
	id := (os.Getpid()*16 + n) % 4000
	dir, err := os.MkdirTemp("", "nodecri-it-")
	if err != nil {
		t.Fatal(err)
	}
	// Traversable, as /var/lib/containerd is: root of a pod's user
	// namespace is not root on the host and must reach the bundle.
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	bridge := fmt.Sprintf("ncit%d", id)
	t.Cleanup(func() {
		removeCgroups(filepath.Base(dir))
		// The bridge plugin makes the bridge and never deletes it; the
		// daemon's cleanup has removed every pod (and veth) by now.
		exec.Command("ip", "link", "delete", bridge).Run()
		if t.Failed() || os.Getenv("NODECRI_KEEP") != "" {
			t.Logf("daemon folder kept for inspection: %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	addr := ""
	if metrics {
		addr = freeAddr(t)
	}
	return daemon.NewLayout(dir, binDir, addr, daemon.Network{
		Name:   fmt.Sprintf("nodecri-it-%d", id),
		Bridge: bridge,
		Subnet: fmt.Sprintf("10.%d.%d.0/24", 200+id/250, id%250),
	})
}

// start runs the daemon on l and stops it by PID when the test ends,
// failed or not.
func start(t testing.TB, l *daemon.Layout) *daemon.Daemon {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d, err := daemon.Start(ctx, binary, l)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopDaemon(t, d) })
	return d
}

// stopDaemon removes every pod the test left, then stops the daemon by
// PID: shims, containers and their iptables rules outlive containerd, and
// a leftover hostPort rule would capture a later test's port.
func stopDaemon(t testing.TB, d *daemon.Daemon) {
	if t.Failed() {
		t.Logf("--- %s (tail) ---\n%s", d.LogPath, d.LogTail(30))
	}
	select {
	case <-d.Exited():
	default:
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if list, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err == nil {
			for _, sb := range list.Items {
				if _, err := d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
					t.Errorf("removing leftover pod %s: %v", sb.Id, err)
				}
			}
		}
	}
	if err := d.Stop(); err != nil {
		t.Errorf("stopping daemon: %v", err)
	}
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually waits up to 5 s for cond, the readiness budget the CRI gives.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	eventuallyWithin(t, 5*time.Second, what, cond)
}

// eventuallyWithin is eventually with a longer wait, for what depends on
// another process's retries.
func eventuallyWithin(t *testing.T, wait time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s (last: %s)", wait, what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// removeCgroups removes the (empty) pod cgroup parents a test's pods used,
// named after its daemon folder, in every hierarchy.
func removeCgroups(name string) {
	roots, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", name))
	for _, root := range roots {
		removeCgroupTree(root)
		os.Remove(root)
	}
}

// removeCgroupTree removes the (empty) cgroups below root, children first.
func removeCgroupTree(root string) {
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
