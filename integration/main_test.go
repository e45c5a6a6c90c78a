// Package integration tests the real bin/containerd: each test starts the
// daemon on a private root with runc and Debian's CNI plugins and talks CRI
// over its socket.
package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

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

// newLayout gives a test its own daemon folder and pod network (see
// daemon.NewTestLayout): CNI state is host-wide, so bridge, subnet and IPAM
// folder are unique per instance.
func newLayout(t testing.TB, metrics bool) *daemon.Layout {
	t.Helper()
	n := int(instances.Add(1))
	id := (os.Getpid()*16 + n) % 4000
	addr := ""
	if metrics {
		addr = freeAddr(t)
	}
	return daemon.NewTestLayout(t, daemon.TestOptions{
		Prefix:         "nodecri-it-",
		BinDir:         binDir,
		MetricsAddress: addr,
		Network: daemon.Network{
			Name:   fmt.Sprintf("nodecri-it-%d", id),
			Bridge: fmt.Sprintf("ncit%d", id),
			Subnet: fmt.Sprintf("10.%d.%d.0/24", 200+id/250, id%250),
		},
	})
}

// start runs bin/containerd on l and tears it down when the test ends,
// failed or not (daemon.StartTest).
func start(t testing.TB, l *daemon.Layout) *daemon.Daemon {
	t.Helper()
	return daemon.StartTest(t, binary, l)
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
