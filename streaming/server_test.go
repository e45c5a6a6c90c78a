package streaming

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// noRuntime is never reached: these tests do not upgrade a connection.
type noRuntime struct{}

func (noRuntime) Exec(context.Context, string, []string, io.Reader, io.WriteCloser, io.WriteCloser, bool, <-chan remotecommand.TerminalSize) error {
	panic("unexpected")
}

func (noRuntime) Attach(context.Context, string, io.Reader, io.WriteCloser, io.WriteCloser, bool, <-chan remotecommand.TerminalSize) error {
	panic("unexpected")
}

func (noRuntime) PortForward(context.Context, string, int32, io.ReadWriteCloser) error {
	panic("unexpected")
}

func serve(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := New(opts, noRuntime{}, noRuntime{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

func TestURLsNameTheBoundPort(t *testing.T) {
	s := serve(t, Options{})
	r, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "abc", Cmd: []string{"true"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.Url, s.URL()+"exec/") || strings.Contains(s.URL(), ":0/") || !strings.HasPrefix(s.URL(), "http://127.0.0.1:") {
		t.Errorf("exec URL %q, base %q", r.Url, s.URL())
	}
	// A plain request consumes the token; the next one finds none.
	for i, want := range []int{http.StatusBadRequest, http.StatusNotFound} {
		resp, err := http.Post(r.Url, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("request %d: HTTP %d, want %d", i, resp.StatusCode, want)
		}
	}
}

func TestSelfSignedTLS(t *testing.T) {
	s := serve(t, Options{TLS: true})
	r, err := s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "abc"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.Url, "https://127.0.0.1:") {
		t.Fatalf("URL %q", r.Url)
	}
	// Pinning the served certificate verifies it (loopback is in its SANs).
	conn, err := tls.Dial("tcp", strings.TrimPrefix(strings.TrimSuffix(s.URL(), "/"), "https://"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	cert := conn.ConnectionState().PeerCertificates[0]
	if p := conn.ConnectionState().NegotiatedProtocol; p == "h2" {
		t.Errorf("negotiated %q: HTTP/2 cannot upgrade to SPDY", p)
	}
	conn.Close()
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get(r.Url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func TestBadAddressFails(t *testing.T) {
	if _, err := New(Options{Address: "192.0.2.1", Port: "0"}, noRuntime{}, noRuntime{}); err == nil {
		t.Error("listening on an address the node does not have succeeded")
	}
	if _, err := New(Options{TLS: true, CertFile: "/nonexistent.crt", KeyFile: "/nonexistent.key"}, noRuntime{}, noRuntime{}); err == nil {
		t.Error("missing certificate files accepted")
	}
}
