package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// wsStream connects to a streaming URL with client-go's websocket
// executor, offering v5.channel.k8s.io only: what kubectl, crictl and
// critest use with websocket, and it fails if the server lacks v5.
func wsStream(ctx context.Context, rawURL string, opts remotecommand.StreamOptions) error {
	e, err := remotecommand.NewWebSocketExecutorForProtocols(&rest.Config{}, http.MethodGet, rawURL, "v5.channel.k8s.io")
	if err != nil {
		return err
	}
	return e.StreamWithContext(ctx, opts)
}

func TestStreamingWebsocketExec(t *testing.T) {
	p := newPod(t)
	id := p.run(t, busybox("sleeper", "sleep", "1000"))
	execWS := func(t *testing.T, tty bool, stdin io.Reader, cmd ...string) (string, string, error) {
		t.Helper()
		u := execURL(t, p, &runtimeapi.ExecRequest{ContainerId: id, Cmd: cmd, Tty: tty, Stdin: stdin != nil, Stdout: true, Stderr: !tty})
		var stdout, stderr syncBuffer
		opts := remotecommand.StreamOptions{Stdin: stdin, Stdout: &stdout, Tty: tty}
		if !tty {
			opts.Stderr = &stderr
		}
		err := wsStream(ctxT(t), u, opts)
		return stdout.String(), stderr.String(), err
	}

	t.Run("NoTTY", func(t *testing.T) {
		out, errOut, err := execWS(t, false, nil, "sh", "-c", "echo hello; echo oops >&2")
		if err != nil || out != "hello\n" || errOut != "oops\n" {
			t.Errorf("exec: err %v stdout %q stderr %q", err, out, errOut)
		}
	})
	t.Run("TTY", func(t *testing.T) {
		out, _, err := execWS(t, true, nil, "sh", "-c", "echo hello; echo oops >&2; test -t 1 && echo tty")
		if err != nil || out != "hello\r\noops\r\ntty\r\n" {
			t.Errorf("tty exec: err %v stdout %q", err, out)
		}
	})
	t.Run("StdinRoundTrip", func(t *testing.T) {
		// cat ends only if the end of stdin reaches it: v5's close signal.
		in := strings.Repeat("ping 0123456789\n", 5000)
		out, _, err := execWS(t, false, strings.NewReader(in), "cat")
		if err != nil || out != in {
			t.Errorf("cat: err %v, %d bytes back of %d", err, len(out), len(in))
		}
	})
	t.Run("ExitCode", func(t *testing.T) {
		out, _, err := execWS(t, false, nil, "sh", "-c", "echo before; exit 7")
		var exit utilexec.ExitError
		if !errors.As(err, &exit) || exit.ExitStatus() != 7 || out != "before\n" {
			t.Errorf("exit 7: got %v (%T), stdout %q", err, err, out)
		}
	})
	t.Run("TokenIsSingleUse", func(t *testing.T) {
		u := execURL(t, p, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"true"}, Stdout: true})
		if err := wsStream(ctxT(t), u, remotecommand.StreamOptions{Stdout: io.Discard}); err != nil {
			t.Fatalf("first use: %v", err)
		}
		if err := wsStream(ctxT(t), u, remotecommand.StreamOptions{Stdout: io.Discard}); err == nil {
			t.Error("a used URL was accepted again over websocket")
		}
		// Used over websocket, gone for SPDY too.
		if err := stream(ctxT(t), u, remotecommand.StreamOptions{Stdout: io.Discard}); err == nil {
			t.Error("a URL used over websocket was accepted again over SPDY")
		}
		// And the other way round.
		u = execURL(t, p, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"true"}, Stdout: true})
		if err := stream(ctxT(t), u, remotecommand.StreamOptions{Stdout: io.Discard}); err != nil {
			t.Fatalf("first use over SPDY: %v", err)
		}
		if err := wsStream(ctxT(t), u, remotecommand.StreamOptions{Stdout: io.Discard}); err == nil {
			t.Error("a URL used over SPDY was accepted again over websocket")
		}
	})
}

func TestStreamingWebsocketAttach(t *testing.T) {
	p := newPod(t)
	t.Run("OutputOnly", func(t *testing.T) {
		id := p.run(t, busybox("ticker", "sh", "-c", "i=0; while [ $i -lt 20 ]; do echo tick $i; i=$((i+1)); sleep 0.1; done"))
		u := attachURL(t, p, &runtimeapi.AttachRequest{ContainerId: id, Stdout: true, Stderr: true})
		var out syncBuffer
		if err := wsStream(ctxT(t), u, remotecommand.StreamOptions{Stdout: &out, Stderr: io.Discard}); err != nil {
			t.Errorf("attach: %v", err)
		}
		if !strings.HasSuffix(out.String(), "tick 19\n") {
			t.Errorf("attached output %q does not run to the exit", out.String())
		}
	})
	t.Run("StdinOnce", func(t *testing.T) {
		cfg := busybox("cat", "cat")
		cfg.Stdin, cfg.StdinOnce = true, true
		id := p.run(t, cfg)
		u := attachURL(t, p, &runtimeapi.AttachRequest{ContainerId: id, Stdin: true, Stdout: true, Stderr: true})
		var out syncBuffer
		err := wsStream(ctxT(t), u, remotecommand.StreamOptions{Stdin: strings.NewReader("once\n"), Stdout: &out, Stderr: io.Discard})
		if err != nil || out.String() != "once\n" {
			t.Errorf("attach: %v, stdout %q", err, out.String())
		}
		if st := p.waitExit(t, id); st.ExitCode != 0 {
			t.Errorf("cat exit %d after the attacher's stdin closed", st.ExitCode)
		}
	})
}

// Port-forward over websocket tunnels SPDY (SPDY/3.1+portforward.k8s.io),
// as kubectl port-forward does first.
func TestStreamingWebsocketPortForward(t *testing.T) {
	d, l := podEnv(t)
	mustPull(t, d, "busybox:1.36")
	cfg := podConfig(l, "web")
	p := &pod{d: d, l: l, id: runPod(t, d, cfg), cfg: cfg}
	const port = 8080
	web := p.run(t, busybox("httpd", "sh", "-c", fmt.Sprintf("mkdir -p /www && echo hello-tunnel > /www/index.html && exec httpd -f -p 127.0.0.1:%d -h /www", port)))
	eventually(t, "httpd listening", func() (bool, string) {
		r, err := p.exec(t, web, 5, "wget", "-q", "-O", "/dev/null", fmt.Sprintf("http://127.0.0.1:%d/", port))
		return err == nil && r.ExitCode == 0, fmt.Sprint(err, r.GetStderr())
	})
	r, err := d.Runtime.PortForward(ctxT(t), &runtimeapi.PortForwardRequest{PodSandboxId: p.id, Port: []int32{port}})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(r.Url)
	if err != nil {
		t.Fatal(err)
	}
	// No fallback to plain SPDY: the tunnel must work.
	dialer, err := portforward.NewSPDYOverWebsocketDialer(u, &rest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	local := forwardWith(t, dialer, port)
	for i := range 3 {
		eventually(t, fmt.Sprintf("GET %d through the tunnel", i), func() (bool, string) {
			resp, err := http.Get("http://" + local + "/")
			if err != nil {
				return false, err.Error()
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return strings.TrimSpace(string(b)) == "hello-tunnel", string(b)
		})
	}

	// A used token is refused through the tunnel as over SPDY.
	if _, _, err := dialer.Dial("portforward.k8s.io"); err == nil {
		t.Error("a used port-forward URL was accepted again over the websocket tunnel")
	}
}
