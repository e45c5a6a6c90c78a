// Package streaming serves the CRI's streaming endpoints (exec, attach,
// port-forward) over HTTP. The CRI calls Exec, Attach and PortForward only
// hand out a URL; the client (the kubelet, crictl) then connects to that URL
// and speaks SPDY (or websocket) to it. The protocols, the single-use
// expiring tokens and the URL building come from k8s.io/cri-streaming;
// websocket v5 and SPDY tunnelled over websocket, which it lacks, from
// k8s.io/apiserver's translators in front of it (websocket.go). This
// package picks the address and the TLS certificate, and runs the
// listeners for the daemon's life.
package streaming

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"k8s.io/apiserver/pkg/util/proxy"

	"github.com/containerd/log"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	cristreaming "k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// Containers does the work behind exec and attach URLs;
// containers.Manager is one.
type Containers interface {
	Exec(ctx context.Context, containerID string, cmd []string, stdin io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error
	Attach(ctx context.Context, containerID string, stdin io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error
}

// Pods does the work behind port-forward URLs, in the pod's network;
// sandbox.Manager is one.
type Pods interface {
	PortForward(ctx context.Context, podSandboxID string, port int32, stream io.ReadWriteCloser) error
}

// runtime is the one runtime cri-streaming calls, made of both.
type runtime struct {
	Containers
	Pods
}

// Options are the server's settings, from the plugin's configuration.
type Options struct {
	// Address is the IP to listen on; empty means loopback.
	Address string
	// Port is the TCP port; "0" or empty picks a free one.
	Port string
	// TLS serves HTTPS; with CertFile and KeyFile both empty a self-signed
	// pair is generated at start.
	TLS               bool
	CertFile, KeyFile string
}

// Server is the running streaming server.
type Server struct {
	lib      cristreaming.Server
	http     *http.Server
	listener net.Listener
	baseURL  *url.URL
	// inner serves lib on pipe for the websocket translators.
	inner   *http.Server
	pipe    *pipeListener
	streams *streamsCache
}

// New listens on the configured address at once, so that a bad address or a
// taken port fails the plugin's start, and the URLs handed out name the port
// actually bound. Serving starts with Serve.
func New(opts Options, ctrs Containers, pods Pods) (*Server, error) {
	host := opts.Address
	if host == "" {
		host = "127.0.0.1"
	}
	port := opts.Port
	if port == "" {
		port = "0"
	}
	var tlsCfg *tls.Config
	if opts.TLS {
		cert, err := certificate(opts.CertFile, opts.KeyFile, host)
		if err != nil {
			return nil, err
		}
		tlsCfg = &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
			// SPDY and websocket both upgrade an HTTP/1.1 connection:
			// HTTP/2 has no upgrade, so it is never offered.
			NextProtos: []string{"http/1.1"},
		}
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, fmt.Errorf("streaming server: listen on %s: %w", net.JoinHostPort(host, port), err)
	}
	if tlsCfg != nil {
		l = tls.NewListener(l, tlsCfg)
	}
	base := &url.URL{Scheme: "http", Host: advertised(l.Addr().(*net.TCPAddr)), Path: "/"}
	if tlsCfg != nil {
		base.Scheme = "https"
	}

	cfg := cristreaming.DefaultConfig
	cfg.Addr = l.Addr().String()
	cfg.BaseURL = base
	cfg.TLSConfig = tlsCfg
	lib, err := cristreaming.NewServer(cfg, runtime{ctrs, pods})
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("streaming server: %w", err)
	}
	pipe := newPipeListener()
	streams := newStreamsCache()
	return &Server{
		lib:      lib,
		listener: l,
		baseURL:  base,
		http: &http.Server{
			Handler: &front{
				lib:     lib,
				inner:   &http.Transport{DialContext: pipe.DialContext},
				streams: streams,
			},
			ReadHeaderTimeout: 30 * time.Second,
			// A non-nil empty map keeps net/http from adding HTTP/2.
			TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		},
		inner:   &http.Server{Handler: lib, ReadHeaderTimeout: 30 * time.Second},
		pipe:    pipe,
		streams: streams,
	}, nil
}

// advertised is the host:port the URLs name: the bound address, or for a
// wildcard bind the node's first global unicast address of that family
// (a URL cannot name 0.0.0.0), falling back to loopback.
func advertised(a *net.TCPAddr) string {
	port := strconv.Itoa(a.Port)
	if !a.IP.IsUnspecified() {
		return net.JoinHostPort(a.IP.String(), port)
	}
	want4 := a.IP.To4() != nil
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, ad := range addrs {
			ipn, ok := ad.(*net.IPNet)
			if ok && ipn.IP.IsGlobalUnicast() && (ipn.IP.To4() != nil) == want4 {
				return net.JoinHostPort(ipn.IP.String(), port)
			}
		}
	}
	if want4 {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return net.JoinHostPort("::1", port)
}

// Serve serves until ctx ends, then closes the listener and every open
// stream. It logs the address first.
func (s *Server) Serve(ctx context.Context) error {
	log.G(ctx).WithField("address", s.listener.Addr().String()).WithField("url", s.baseURL.String()).Info("streaming server listening")
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	go func() {
		if err := s.inner.Serve(s.pipe); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.G(ctx).WithError(err).Error("streaming server: in-memory cri-streaming server stopped")
		}
	}()
	err := s.http.Serve(s.listener)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops the server and ends every open stream.
func (s *Server) Close() error {
	return errors.Join(s.http.Close(), s.inner.Close())
}

// URL is the server's base URL, e.g. http://127.0.0.1:41235/.
func (s *Server) URL() string { return s.baseURL.String() }

// GetExec registers an exec request and returns its single-use URL.
func (s *Server) GetExec(req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	resp, err := s.lib.GetExec(req)
	if err == nil {
		s.streams.put(resp.Url, proxy.Options{Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr, Tty: req.Tty})
	}
	return resp, err
}

// GetAttach registers an attach request and returns its single-use URL.
func (s *Server) GetAttach(req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	resp, err := s.lib.GetAttach(req)
	if err == nil {
		s.streams.put(resp.Url, proxy.Options{Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr, Tty: req.Tty})
	}
	return resp, err
}

// GetPortForward registers a port-forward request and returns its
// single-use URL.
func (s *Server) GetPortForward(req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	return s.lib.GetPortForward(req)
}
