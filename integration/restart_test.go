package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/integration/daemon"
)

func TestRestartAfterSIGTERMKeepsEverything(t *testing.T) { testRestart(t, false) }

func TestRestartAfterKill9KeepsEverything(t *testing.T) { testRestart(t, true) }

// A restarted daemon shows the same pods and containers with truthful
// states, logs continue, a container that exited meanwhile reports its real
// exit code, and removal then leaves nothing behind.
func testRestart(t *testing.T, crash bool) {
	d, l := podEnv(t)
	mustPull(t, d, "busybox:1.36")
	baseline := countHost(t, l)
	cfg := podConfig(l, "survivor")
	p := &pod{d: d, l: l, id: runPod(t, d, cfg), cfg: cfg}
	ticker := p.run(t, busybox("ticker", "sh", "-c", "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.1; done"))
	quitter := p.run(t, busybox("quitter", "sh", "-c", "sleep 1; exit 7"))

	if crash {
		d.Kill()
	} else if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the quitter exits while the daemon is down
	restartedAt := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d2, err := daemon.Start(ctx, binary, l)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopDaemon(t, d2) })
	p.d = d2

	st, _ := podStatus(t, d2, p.id)
	if st.State != runtimeapi.PodSandboxState_SANDBOX_READY || st.Network.Ip == "" {
		t.Errorf("pod after restart: %v ip %q", st.State, st.Network.Ip)
	}
	if s := p.status(t, ticker); s.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("ticker after restart: %v", s.State)
	}
	// The quitter exited while the daemon was down: containerd deleted its
	// task while booting; the shim re-sends its exit once containerd
	// serves, so the real code and time replace the interim "Unknown".
	// The shim retries for about 15 s.
	eventuallyWithin(t, 20*time.Second, "the quitter's real exit code after the restart", func() (bool, string) {
		q := p.status(t, quitter)
		return q.State == runtimeapi.ContainerState_CONTAINER_EXITED && q.ExitCode == 7,
			fmt.Sprintf("%v exit %d reason %q", q.State, q.ExitCode, q.Reason)
	})
	if q := p.status(t, quitter); q.Reason != "Error" || time.Unix(0, q.FinishedAt).After(restartedAt) {
		t.Errorf("quitter: reason %q, finished %v, restarted %v", q.Reason, time.Unix(0, q.FinishedAt), restartedAt)
	}
	// The log goes on after the restart.
	logPath := p.status(t, ticker).LogPath
	before := strings.Count(readLog(t, logPath)["stdout"], "tick")
	eventually(t, "ticker keeps logging after the restart", func() (bool, string) {
		n := strings.Count(readLog(t, logPath)["stdout"], "tick")
		return n > before+5, ""
	})
	// The name is held by the recovered pod: a RunPodSandbox retry under
	// it (its first call may have been cut by the restart) is handed it.
	if r, err := d2.Runtime.RunPodSandbox(ctxT(t), &runtimeapi.RunPodSandboxRequest{Config: cfg}); err != nil || r.PodSandboxId != p.id {
		t.Errorf("RunPodSandbox under the recovered pod's name: %v %v, want %s", r, err, p.id)
	}
	stopRemove(t, d2, p.id)
	if after := countHost(t, l); after != baseline {
		t.Errorf("after removal: %+v, want %+v", after, baseline)
	}
}
