package integration

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/remotecommand"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestRestartAfterSIGTERMKeepsEverything(t *testing.T) { testRestart(t, false) }

func TestRestartAfterKill9KeepsEverything(t *testing.T) { testRestart(t, true) }

// A restarted daemon shows the same pods and containers with truthful
// states, logs continue, a container that exited meanwhile reports its real
// exit code, and removal then leaves nothing behind.
func testRestart(t *testing.T, crash bool) {
	d, l := podEnv(t)
	mustPull(t, d, "busybox:1.36")
	baseline := takeCensus(t, l)
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
	d2 := start(t, l)
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
	if diff := baseline.diff(takeCensus(t, l), kubeletOwned...); diff != "" {
		t.Errorf("after removal:\n%s", diff)
	}
}

func TestAttachAfterSIGTERMRestart(t *testing.T) { testAttachAfterRestart(t, false) }

func TestAttachAfterKill9Restart(t *testing.T) { testAttachAfterRestart(t, true) }

// attachment is a client attached to a container over SPDY, as kubectl
// attach is, until the container's output ends or it is detached.
type attachment struct {
	out    syncBuffer
	in     *io.PipeWriter // nil without stdin
	done   chan error
	detach context.CancelFunc
}

// attachTo attaches to id with stdin from the returned pipe when withStdin,
// stdin from stdin when it is not nil, stderr unless tty.
func attachTo(t *testing.T, p *pod, id string, tty, withStdin bool, stdin io.Reader) *attachment {
	t.Helper()
	a := &attachment{done: make(chan error, 1)}
	if withStdin && stdin == nil {
		var r *io.PipeReader
		r, a.in = io.Pipe()
		stdin = r
		t.Cleanup(func() { a.in.Close() })
	}
	u := attachURL(t, p, &runtimeapi.AttachRequest{ContainerId: id, Stdin: stdin != nil, Stdout: true, Stderr: !tty, Tty: tty})
	opts := remotecommand.StreamOptions{Stdin: stdin, Stdout: &a.out, Tty: tty}
	if !tty {
		opts.Stderr = &a.out
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	a.detach = cancel
	t.Cleanup(cancel)
	go func() { a.done <- stream(ctx, u, opts) }()
	return a
}

func (a *attachment) waitFor(t *testing.T, what, want string) {
	t.Helper()
	eventually(t, what, func() (bool, string) { return strings.Contains(a.out.String(), want), a.out.String() })
}

// A container started with stdin and a TTY can be attached to after a
// restart: what is typed reaches the same shell and its output comes back,
// and the log has what it wrote before and after. A stdin_once container
// whose stdin was never used gets it once, as without a restart; one whose
// stdin was closed before still streams its output. A container without
// stdin answers Attach with its output, as before the restart.
func testAttachAfterRestart(t *testing.T, crash bool) {
	p := newPod(t)
	shellCfg := busybox("shell", "sh")
	shellCfg.Stdin, shellCfg.Tty = true, true
	shell := p.run(t, shellCfg)
	freshCfg := busybox("fresh", "cat")
	freshCfg.Stdin, freshCfg.StdinOnce = true, true
	fresh := p.run(t, freshCfg)
	usedCfg := busybox("used", "sh", "-c", "cat; while true; do echo after-stdin; sleep 0.2; done")
	usedCfg.Stdin, usedCfg.StdinOnce = true, true
	used := p.run(t, usedCfg)
	ticker := p.run(t, busybox("ticker", "sh", "-c", "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.2; done"))

	// Before the restart: the shell keeps a variable; the used container's
	// first attacher sends a line and ends its stdin, which closes the
	// container's (stdin_once): cat ends.
	a := attachTo(t, p, shell, true, true, nil)
	fmt.Fprintf(a.in, "V=kept; echo before-$((1+1))\n")
	a.waitFor(t, "the shell's answer before the restart", "before-2")
	a.detach()
	<-a.done
	a = attachTo(t, p, used, false, true, strings.NewReader("once\n"))
	a.waitFor(t, "cat's end before the restart", "after-stdin")
	a.detach()
	<-a.done

	if crash {
		p.d.Kill()
	} else if err := p.d.Stop(); err != nil {
		t.Fatal(err)
	}
	p.d = start(t, p.l)

	// The shell: the same one (V is kept), input in, output back, and its
	// exit ends the attach.
	a = attachTo(t, p, shell, true, true, nil)
	fmt.Fprintf(a.in, "echo v-$V-$((40+2))\n")
	a.waitFor(t, "the shell's answer after the restart", "v-kept-42")
	fmt.Fprintf(a.in, "exit 3\n")
	select {
	case err := <-a.done:
		if err != nil {
			t.Errorf("attach to the recovered shell ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("attach did not end when the recovered shell exited")
	}
	st := p.waitExit(t, shell)
	if st.ExitCode != 3 {
		t.Errorf("shell exit %d, want 3", st.ExitCode)
	}
	if log := readLog(t, st.LogPath)["stdout"]; !strings.Contains(log, "before-2") || !strings.Contains(log, "v-kept-42") {
		t.Errorf("the shell's log lacks output from before or after the restart: %q", log)
	}

	// stdin_once, unused before the restart: the first attacher's stdin
	// reaches cat, and its end closes cat's.
	a = attachTo(t, p, fresh, false, true, strings.NewReader("fresh\n"))
	if err := <-a.done; err != nil || a.out.String() != "fresh\n" {
		t.Errorf("attach to the recovered stdin_once cat: %v, output %q", err, a.out.String())
	}
	if st := p.waitExit(t, fresh); st.ExitCode != 0 || readLog(t, st.LogPath)["stdout"] != "fresh\n" {
		t.Errorf("recovered cat after its stdin closed: exit %d, log %q", st.ExitCode, readLog(t, st.LogPath))
	}

	// stdin_once used before the restart: input goes nowhere, as without a
	// restart, and the output streams.
	a = attachTo(t, p, used, false, true, strings.NewReader("ignored\n"))
	a.waitFor(t, "output of the container whose stdin was closed", "after-stdin")
	a.detach()
	<-a.done
	if s := p.status(t, used); s.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container whose stdin was closed: %v after attach", s.State)
	}

	// Without stdin: output only, as before the restart.
	a = attachTo(t, p, ticker, false, false, nil)
	a.waitFor(t, "the ticker's output after the restart", "tick")
	a.detach()
	<-a.done
}
