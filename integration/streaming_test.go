package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	utilexec "k8s.io/client-go/util/exec"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/integration/daemon"
)

// syncBuffer is a buffer a stream writes to while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// sizeQueue hands client-go the terminal sizes sent on it; closed, it ends.
type sizeQueue chan remotecommand.TerminalSize

func (q sizeQueue) Next() *remotecommand.TerminalSize {
	s, ok := <-q
	if !ok {
		return nil
	}
	return &s
}

// stream connects to a streaming URL over SPDY, as the kubelet's clients
// (kubectl through the API server, crictl) do.
func stream(ctx context.Context, rawURL string, opts remotecommand.StreamOptions) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	e, err := remotecommand.NewSPDYExecutor(&rest.Config{}, http.MethodPost, u)
	if err != nil {
		return err
	}
	return e.StreamWithContext(ctx, opts)
}

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

// transport is how a client reaches the streaming server: the streaming
// tests run their cases over each.
type transport struct {
	name string
	// stream runs an exec or attach session on a URL.
	stream func(ctx context.Context, rawURL string, opts remotecommand.StreamOptions) error
	// dialer opens port-forward sessions on a URL.
	dialer func(t *testing.T, rawURL string) httpstream.Dialer
}

var (
	spdyTransport = transport{name: "SPDY", stream: stream, dialer: spdyDialer}
	// Port-forward over websocket tunnels SPDY (SPDY/3.1+portforward.k8s.io),
	// as kubectl port-forward does first; no fallback to plain SPDY: the
	// tunnel must work.
	wsTransport = transport{name: "Websocket", stream: wsStream, dialer: func(t *testing.T, rawURL string) httpstream.Dialer {
		t.Helper()
		u, err := url.Parse(rawURL)
		if err != nil {
			t.Fatal(err)
		}
		dialer, err := portforward.NewSPDYOverWebsocketDialer(u, &rest.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return dialer
	}}
	transports = []transport{spdyTransport, wsTransport}
)

// other is the transport that is not tr.
func (tr transport) other() transport {
	if tr.name == spdyTransport.name {
		return wsTransport
	}
	return spdyTransport
}

// ctrName is a container name of its own for a case run over tr, in a
// pod that runs the case over each transport.
func (tr transport) ctrName(name string) string { return name + "-" + strings.ToLower(tr.name) }

// forEachTransport runs each case as a subtest per transport:
// TestX/SPDY/Case, TestX/Websocket/Case.
func forEachTransport(t *testing.T, cases []streamCase) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) { c.run(t, tr) })
			}
		})
	}
}

// streamCase is one streaming test case, run over a transport.
type streamCase struct {
	name string
	run  func(t *testing.T, tr transport)
}

func execURL(t *testing.T, p *pod, req *runtimeapi.ExecRequest) string {
	t.Helper()
	r, err := p.d.Runtime.Exec(ctxT(t), req)
	if err != nil {
		t.Fatalf("Exec %v: %v", req.Cmd, err)
	}
	if !strings.HasPrefix(r.Url, "http://127.0.0.1:") {
		t.Errorf("streaming URL %q is not on loopback", r.Url)
	}
	return r.Url
}

// execStream runs cmd through Exec and a stream over tr, returning stdout,
// stderr and the stream's error.
func execStream(t *testing.T, tr transport, p *pod, id string, tty bool, stdin io.Reader, cmd ...string) (string, string, error) {
	t.Helper()
	u := execURL(t, p, &runtimeapi.ExecRequest{ContainerId: id, Cmd: cmd, Tty: tty, Stdin: stdin != nil, Stdout: true, Stderr: !tty})
	var stdout, stderr syncBuffer
	opts := remotecommand.StreamOptions{Stdin: stdin, Stdout: &stdout, Tty: tty}
	if !tty {
		opts.Stderr = &stderr
	}
	err := tr.stream(ctxT(t), u, opts)
	return stdout.String(), stderr.String(), err
}

func TestStreamingExec(t *testing.T) {
	p := newPod(t)
	id := p.run(t, busybox("sleeper", "sleep", "1000"))

	forEachTransport(t, []streamCase{
		{"NoTTY", func(t *testing.T, tr transport) {
			out, errOut, err := execStream(t, tr, p, id, false, nil, "sh", "-c", "echo hello; echo oops >&2")
			if err != nil || out != "hello\n" || errOut != "oops\n" {
				t.Errorf("exec: err %v stdout %q stderr %q", err, out, errOut)
			}
		}},
		{"TTY", func(t *testing.T, tr transport) {
			// A terminal turns \n into \r\n, and carries stderr on stdout.
			out, _, err := execStream(t, tr, p, id, true, nil, "sh", "-c", "echo hello; echo oops >&2; test -t 1 && echo tty")
			if err != nil || out != "hello\r\noops\r\ntty\r\n" {
				t.Errorf("tty exec: err %v stdout %q", err, out)
			}
		}},
		{"StdinRoundTrip", func(t *testing.T, tr transport) {
			// 80 kB: more than a pipe holds. cat ends only if the end of
			// stdin reaches it (websocket: v5's close signal).
			in := strings.Repeat("ping 0123456789\n", 5000)
			out, _, err := execStream(t, tr, p, id, false, strings.NewReader(in), "cat")
			if err != nil || out != in {
				t.Errorf("cat: err %v, %d bytes back of %d", err, len(out), len(in))
			}
		}},
		{"Resize", func(t *testing.T, tr transport) {
			sizes := make(sizeQueue, 2)
			sizes <- remotecommand.TerminalSize{Width: 20, Height: 10}
			defer close(sizes)
			u := execURL(t, p, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-c", "stty size; sleep 1.5; stty size"}, Stdout: true, Tty: true})
			var out syncBuffer
			go func() {
				// Resized once the first size is printed, while it sleeps.
				for !strings.Contains(out.String(), "\n") {
					time.Sleep(10 * time.Millisecond)
				}
				sizes <- remotecommand.TerminalSize{Width: 123, Height: 45}
			}()
			// The first size applies from the start; the second while it runs.
			err := tr.stream(ctxT(t), u, remotecommand.StreamOptions{Stdout: &out, Tty: true, TerminalSizeQueue: sizes})
			if err != nil || out.String() != "10 20\r\n45 123\r\n" {
				t.Errorf("stty size: err %v stdout %q", err, out.String())
			}
		}},
		{"StdinOnly", func(t *testing.T, tr transport) {
			// No output stream: the result shows in the container instead.
			file := "/tmp/in-" + tr.name
			u := execURL(t, p, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-c", "cat > " + file}, Stdin: true})
			if err := tr.stream(ctxT(t), u, remotecommand.StreamOptions{Stdin: strings.NewReader("kept\n")}); err != nil {
				t.Fatal(err)
			}
			if got := p.mustExec(t, id, "cat", file); got != "kept\n" {
				t.Errorf("stdin-only exec wrote %q", got)
			}
		}},
		{"ExitCode", func(t *testing.T, tr transport) {
			out, _, err := execStream(t, tr, p, id, false, nil, "sh", "-c", "echo before; exit 7")
			var exit utilexec.ExitError
			if !errors.As(err, &exit) || exit.ExitStatus() != 7 {
				t.Errorf("exit 7: got %v (%T)", err, err)
			}
			if out != "before\n" {
				t.Errorf("output before a failing exit: %q", out)
			}
		}},
		{"TokenIsSingleUse", func(t *testing.T, tr transport) {
			u := execURL(t, p, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"true"}, Stdout: true})
			if err := tr.stream(ctxT(t), u, remotecommand.StreamOptions{Stdout: io.Discard}); err != nil {
				t.Fatalf("first use: %v", err)
			}
			if err := tr.stream(ctxT(t), u, remotecommand.StreamOptions{Stdout: io.Discard}); err == nil {
				t.Error("a used URL was accepted again")
			}
			// Used over one transport, gone for the other too.
			if err := tr.other().stream(ctxT(t), u, remotecommand.StreamOptions{Stdout: io.Discard}); err == nil {
				t.Errorf("a URL used over %s was accepted again over %s", tr.name, tr.other().name)
			}
		}},
	})

	t.Run("UsedTokenIsNotFound", func(t *testing.T) {
		u := execURL(t, p, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"true"}, Stdout: true})
		if err := stream(ctxT(t), u, remotecommand.StreamOptions{Stdout: io.Discard}); err != nil {
			t.Fatalf("first use: %v", err)
		}
		resp, err := http.Post(u, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("used token: HTTP %d, want 404", resp.StatusCode)
		}
		bogus := u[:strings.LastIndex(u, "/")+1] + "AAAAAAAA"
		if resp, err := http.Post(bogus, "", nil); err != nil || resp.StatusCode != http.StatusNotFound {
			t.Errorf("unknown token: %v %v", resp.StatusCode, err)
		}
	})
	t.Run("WebsocketV4", func(t *testing.T) {
		// Older websocket clients still get cri-streaming's own v4.
		u := execURL(t, p, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-c", "echo ws; exit 4"}, Stdout: true, Stderr: true})
		e, err := remotecommand.NewWebSocketExecutorForProtocols(&rest.Config{}, http.MethodGet, u, "v4.channel.k8s.io")
		if err != nil {
			t.Fatal(err)
		}
		var out syncBuffer
		err = e.StreamWithContext(ctxT(t), remotecommand.StreamOptions{Stdout: &out, Stderr: io.Discard})
		var exit utilexec.ExitError
		if !errors.As(err, &exit) || exit.ExitStatus() != 4 || out.String() != "ws\n" {
			t.Errorf("websocket v4 exec: %v, stdout %q", err, out.String())
		}
	})
	t.Run("Errors", func(t *testing.T) {
		ctx := ctxT(t)
		exited := p.run(t, busybox("done", "true"))
		p.waitExit(t, exited)
		for _, c := range []struct {
			req  *runtimeapi.ExecRequest
			code codes.Code
		}{
			{&runtimeapi.ExecRequest{ContainerId: id, Stdout: true}, codes.InvalidArgument},                                   // no cmd
			{&runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"true"}}, codes.InvalidArgument},                          // no stream
			{&runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"true"}, Tty: true, Stderr: true}, codes.InvalidArgument}, // tty+stderr
			{&runtimeapi.ExecRequest{ContainerId: strings.Repeat("f", 64), Cmd: []string{"true"}, Stdout: true}, codes.NotFound},
			{&runtimeapi.ExecRequest{ContainerId: exited, Cmd: []string{"true"}, Stdout: true}, codes.FailedPrecondition},
		} {
			if _, err := p.d.Runtime.Exec(ctx, c.req); status.Code(err) != c.code {
				t.Errorf("Exec %+v: %v, want %v", c.req, err, c.code)
			}
		}
		if _, err := p.d.Runtime.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: exited, Stdout: true}); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("Attach to an exited container: %v", err)
		}
		if _, err := p.d.Runtime.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: strings.Repeat("f", 64)}); status.Code(err) != codes.NotFound {
			t.Errorf("PortForward to an unknown pod: %v", err)
		}
	})
}

// With enable_tls_streaming and no key pair the URLs are https, served
// with a generated certificate.
func TestStreamingTLS(t *testing.T) {
	p := newPod(t, func(_ testing.TB, l *daemon.Layout) { l.CRI()["enable_tls_streaming"] = true })
	id := p.run(t, busybox("sleeper", "sleep", "1000"))
	r, err := p.d.Runtime.Exec(ctxT(t), &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"echo", "secret"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.Url, "https://127.0.0.1:") {
		t.Fatalf("URL %q is not https on loopback", r.Url)
	}
	u, _ := url.Parse(r.Url)
	// Self-signed: nothing to verify it against.
	e, err := remotecommand.NewSPDYExecutor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{Insecure: true}}, http.MethodPost, u)
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	if err := e.StreamWithContext(ctxT(t), remotecommand.StreamOptions{Stdout: &out}); err != nil || out.String() != "secret\n" {
		t.Errorf("exec over TLS: %v, stdout %q", err, out.String())
	}
	// Websocket v5 over TLS: the translator behind the TLS listener.
	r, err = p.d.Runtime.Exec(ctxT(t), &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"cat"}, Stdin: true, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	ws, err := remotecommand.NewWebSocketExecutorForProtocols(&rest.Config{TLSClientConfig: rest.TLSClientConfig{Insecure: true}}, http.MethodGet, r.Url, "v5.channel.k8s.io")
	if err != nil {
		t.Fatal(err)
	}
	var wsOut syncBuffer
	if err := ws.StreamWithContext(ctxT(t), remotecommand.StreamOptions{Stdin: strings.NewReader("over wss\n"), Stdout: &wsOut}); err != nil || wsOut.String() != "over wss\n" {
		t.Errorf("websocket v5 exec over TLS: %v, stdout %q", err, wsOut.String())
	}
}

// crictl is the other client operators use: exec over SPDY with stdin; a
// streaming exec's exit code shows in its error (crictl itself exits 1).
func TestStreamingCrictl(t *testing.T) {
	p := newPod(t)
	id := p.run(t, busybox("sleeper", "sleep", "1000"))
	crictl := func(stdin string, args ...string) (string, string, error) {
		cmd := exec.Command(binDir+"/crictl", append([]string{"--runtime-endpoint", "unix://" + p.l.Socket}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	if out, errOut, err := crictl("via crictl\n", "exec", "-i", id, "cat"); err != nil || out != "via crictl\n" {
		t.Errorf("crictl exec -i cat: %v, stdout %q, stderr %q", err, out, errOut)
	}
	out, errOut, err := crictl("", "exec", id, "sh", "-c", "echo out; exit 5")
	if err == nil || out != "out\n" || !strings.Contains(errOut, "exit code 5") {
		t.Errorf("crictl exec of exit 5: %v, stdout %q, stderr %q", err, out, errOut)
	}
}

func attachURL(t *testing.T, p *pod, req *runtimeapi.AttachRequest) string {
	t.Helper()
	r, err := p.d.Runtime.Attach(ctxT(t), req)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	return r.Url
}

func TestStreamingAttach(t *testing.T) {
	// One pod for both transports: container names carry the transport's.
	p := newPod(t)

	forEachTransport(t, []streamCase{
		{"TTYShell", func(t *testing.T, tr transport) {
			cfg := busybox(tr.ctrName("shell"), "sh")
			cfg.Stdin, cfg.Tty = true, true
			id := p.run(t, cfg)
			u := attachURL(t, p, &runtimeapi.AttachRequest{ContainerId: id, Stdin: true, Stdout: true, Tty: true})
			inR, inW := io.Pipe()
			var out syncBuffer
			done := make(chan error, 1)
			go func() {
				done <- tr.stream(ctxT(t), u, remotecommand.StreamOptions{Stdin: inR, Stdout: &out, Tty: true})
			}()
			// The echo of the typed line holds "$((40+2))", not its value.
			fmt.Fprintf(inW, "echo attached-$((40+2))\n")
			eventually(t, "attached output", func() (bool, string) {
				return strings.Contains(out.String(), "attached-42"), out.String()
			})
			fmt.Fprintf(inW, "exit 3\n")
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("attach ended with %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("attach did not end when the container exited")
			}
			inW.Close()
			st := p.waitExit(t, id)
			if st.ExitCode != 3 {
				t.Errorf("shell exit %d, want 3", st.ExitCode)
			}
			if log := readLog(t, st.LogPath)["stdout"]; !strings.Contains(log, "attached-42") {
				t.Errorf("the log missed what the attacher saw: %q", log)
			}
		}},
		{"StdinOnce", func(t *testing.T, tr transport) {
			cfg := busybox(tr.ctrName("cat"), "cat")
			cfg.Stdin, cfg.StdinOnce = true, true
			id := p.run(t, cfg)
			u := attachURL(t, p, &runtimeapi.AttachRequest{ContainerId: id, Stdin: true, Stdout: true, Stderr: true})
			var out, errOut syncBuffer
			err := tr.stream(ctxT(t), u, remotecommand.StreamOptions{Stdin: strings.NewReader("once\n"), Stdout: &out, Stderr: &errOut})
			if err != nil || out.String() != "once\n" {
				t.Errorf("attach: %v, stdout %q", err, out.String())
			}
			// The first attacher's stdin ending closed the container's: cat ends.
			if st := p.waitExit(t, id); st.ExitCode != 0 || readLog(t, st.LogPath)["stdout"] != "once\n" {
				t.Errorf("after stdin closed: exit %d, log %q", st.ExitCode, readLog(t, st.LogPath))
			}
		}},
		{"OutputOnly", func(t *testing.T, tr transport) {
			id := p.run(t, busybox(tr.ctrName("ticker"), "sh", "-c", "i=0; while [ $i -lt 20 ]; do echo tick $i; i=$((i+1)); sleep 0.1; done"))
			u := attachURL(t, p, &runtimeapi.AttachRequest{ContainerId: id, Stdout: true, Stderr: true})
			var out syncBuffer
			if err := tr.stream(ctxT(t), u, remotecommand.StreamOptions{Stdout: &out, Stderr: io.Discard}); err != nil {
				t.Errorf("attach: %v", err)
			}
			// Attached after start: the end of the output, up to the exit.
			if !strings.HasSuffix(out.String(), "tick 19\n") {
				t.Errorf("attached output %q does not run to the exit", out.String())
			}
		}},
	})
}

func TestStreamingPortForward(t *testing.T) {
	d, l := podEnv(t)
	mustPull(t, d, "busybox:1.36")
	var cases []streamCase
	for _, hostNet := range []bool{false, true} {
		cases = append(cases, streamCase{map[bool]string{false: "PodNetwork", true: "HostNetwork"}[hostNet], func(t *testing.T, tr transport) {
			cfg := podConfig(l, "web")
			port := int32(8080)
			if hostNet {
				cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}
				port = freePort(t)
			}
			p := &pod{d: d, l: l, id: runPod(t, d, cfg), cfg: cfg}
			// Listening on loopback only: reachable through port-forward, not
			// the pod IP.
			web := p.run(t, busybox("httpd", "sh", "-c", fmt.Sprintf("mkdir -p /www && echo hello-forward > /www/index.html && exec httpd -f -p 127.0.0.1:%d -h /www", port)))
			// client-go gives up the whole session on a refused connection:
			// wait until the server listens.
			eventually(t, "httpd listening", func() (bool, string) {
				r, err := p.exec(t, web, 5, "wget", "-q", "-O", "/dev/null", fmt.Sprintf("http://127.0.0.1:%d/", port))
				return err == nil && r.ExitCode == 0, fmt.Sprint(err, r.GetStderr())
			})
			r, err := d.Runtime.PortForward(ctxT(t), &runtimeapi.PortForwardRequest{PodSandboxId: p.id, Port: []int32{port}})
			if err != nil {
				t.Fatal(err)
			}
			dialer := tr.dialer(t, r.Url)
			local := forwardWith(t, dialer, port)
			for i := range 3 { // several connections over one forwarding session
				eventually(t, fmt.Sprintf("GET %d through the forward", i), func() (bool, string) {
					resp, err := http.Get("http://" + local + "/")
					if err != nil {
						return false, err.Error()
					}
					defer resp.Body.Close()
					b, _ := io.ReadAll(resp.Body)
					return strings.TrimSpace(string(b)) == "hello-forward", string(b)
				})
			}
			// The token is single-use.
			if _, _, err := dialer.Dial("portforward.k8s.io"); err == nil {
				t.Errorf("a used port-forward URL was accepted again over %s", tr.name)
			}
		}})
	}
	forEachTransport(t, cases)
}

// spdyDialer opens port-forward sessions on the URL over SPDY.
func spdyDialer(t *testing.T, rawURL string) httpstream.Dialer {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	rt, upgrader, err := spdy.RoundTripperFor(&rest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return spdy.NewDialer(upgrader, &http.Client{Transport: rt}, http.MethodPost, u)
}

// forwardWith starts client-go's port-forwarder with the dialer and
// returns the local address forwarding to port; it stops with the test.
func forwardWith(t *testing.T, dialer httpstream.Dialer, port int32) string {
	t.Helper()
	stop, ready := make(chan struct{}), make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- fw.ForwardPorts() }()
	t.Cleanup(func() { close(stop) })
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("port-forward: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("port-forward not ready after 10s")
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) != 1 {
		t.Fatalf("forwarded ports %v: %v", ports, err)
	}
	return fmt.Sprintf("127.0.0.1:%d", ports[0].Local)
}
