// Package testimages gives integration tests real OCI images without
// internet: an image builder (busybox and pause made from this host's
// binaries), an OCI registry served inside the test process, and the
// hosts.toml files that point containerd at it.
package testimages

import (
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry is an OCI distribution registry on 127.0.0.1 over plain HTTP,
// with hooks to count blob downloads and to slow or stall them.
type Registry struct {
	// Addr is "127.0.0.1:PORT".
	Addr string

	srv     *httptest.Server
	handler http.Handler
	// closed is closed before the server shuts down, so that stalled
	// responses let go and the shutdown does not wait on them forever.
	closed chan struct{}

	user, pass string

	mu        sync.Mutex
	blobGets  map[string]int
	behaviour BlobBehaviour
}

// Option configures a Registry.
type Option func(*Registry)

// WithBasicAuth makes every /v2/ request without these credentials answer
// 401 with a Basic challenge. Push uses the credentials itself.
func WithBasicAuth(user, pass string) Option {
	return func(r *Registry) { r.user, r.pass = user, pass }
}

// BlobBehaviour shapes GET blob responses. Headers, Content-Length
// included, are always those of the whole blob: only the body is held back.
type BlobBehaviour struct {
	// StallAfter > 0: send this many bytes of each blob body, flush, then
	// hang until the client goes away or the registry closes. A blob no
	// larger than StallAfter stalls one byte short of its end, so a stalled
	// response never delivers the whole body.
	StallAfter int64
	// ChunkSize > 0 with ChunkDelay > 0: send the body in chunks of
	// ChunkSize bytes, flushing each and sleeping ChunkDelay between them.
	ChunkSize  int
	ChunkDelay time.Duration
}

func (b BlobBehaviour) chunked() bool { return b.ChunkSize > 0 && b.ChunkDelay > 0 }

// NewRegistry starts a registry on 127.0.0.1:0; it is closed in t.Cleanup.
func NewRegistry(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	r := &Registry{
		closed:   make(chan struct{}),
		blobGets: map[string]int{},
		// The registry logs every request to stderr by default.
		handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))),
	}
	for _, o := range opts {
		o(r)
	}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	r.Addr = r.srv.Listener.Addr().String()
	t.Cleanup(func() {
		close(r.closed)
		r.srv.Close()
	})
	return r
}

// serve is the middleware around go-containerregistry's registry.
func (r *Registry) serve(w http.ResponseWriter, req *http.Request) {
	if r.user != "" && strings.HasPrefix(req.URL.Path, "/v2") {
		user, pass, ok := req.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(user), []byte(r.user)) != 1 ||
			subtle.ConstantTimeCompare([]byte(pass), []byte(r.pass)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="nodecri-testimages"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
	}
	if digest, ok := blobGet(req); ok {
		r.mu.Lock()
		r.blobGets[digest]++
		b := r.behaviour
		r.mu.Unlock()
		if b.StallAfter > 0 || b.chunked() {
			w = &shapedWriter{ResponseWriter: w, b: b, ctx: req.Context(), closed: r.closed}
		}
	}
	r.handler.ServeHTTP(w, req)
}

// blobGet reports whether req is GET /v2/<repo>/blobs/<digest>, and the digest.
func blobGet(req *http.Request) (string, bool) {
	if req.Method != http.MethodGet {
		return "", false
	}
	elem := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	// v2, at least one repo component, blobs, digest
	if len(elem) < 4 || elem[0] != "v2" || elem[len(elem)-2] != "blobs" {
		return "", false
	}
	return elem[len(elem)-1], true
}

// BlobGets counts GET requests for /v2/<any repo>/blobs/<digest> so far;
// HEAD requests and requests refused by basic auth are not counted.
func (r *Registry) BlobGets(digest string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobGets[digest]
}

// ResetCounts sets every BlobGets count back to zero.
func (r *Registry) ResetCounts() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.blobGets)
}

// SetBlobBehaviour applies b to GET blob responses that start from now on;
// the zero value serves blobs normally again.
func (r *Registry) SetBlobBehaviour(b BlobBehaviour) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.behaviour = b
}

// Push writes img's blobs and manifest as repo:tag and returns the
// manifest digest ("sha256:...").
func (r *Registry) Push(t testing.TB, repo, tag string, img v1.Image) string {
	t.Helper()
	ref, err := name.NewTag(r.Addr+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatalf("testimages: push %s:%s: %v", repo, tag, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := remote.Write(ref, img, r.RemoteOptions(ctx)...); err != nil {
		t.Fatalf("testimages: push %s: %v", ref, err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatalf("testimages: push %s: manifest digest: %v", ref, err)
	}
	return digest.String()
}

// RemoteOptions are go-containerregistry remote options for talking to
// this registry with ctx, with its credentials when it has any.
func (r *Registry) RemoteOptions(ctx context.Context) []remote.Option {
	auth := authn.Anonymous
	if r.user != "" {
		auth = &authn.Basic{Username: r.user, Password: r.pass}
	}
	return []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth)}
}

var errStalled = errors.New("testimages: blob response stalled")

// shapedWriter holds back a blob body as its BlobBehaviour says. The
// registry sets Content-Length before writing, so the client sees the real
// size; a body cut short makes net/http close the connection afterwards.
type shapedWriter struct {
	http.ResponseWriter
	b      BlobBehaviour
	ctx    context.Context
	closed <-chan struct{}

	wroteHeader bool
	passthrough bool  // not a successful blob body: leave it alone
	limit       int64 // bytes to send before stalling, when StallAfter > 0
	sent        int64
	inChunk     int // bytes of the current chunk already sent
}

func (w *shapedWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	w.wroteHeader = true
	if code != http.StatusOK && code != http.StatusPartialContent {
		w.passthrough = true
	}
	if w.b.StallAfter > 0 {
		w.limit = w.b.StallAfter
		if n, err := strconv.ParseInt(w.Header().Get("Content-Length"), 10, 64); err == nil && n <= w.limit {
			w.limit = max(n-1, 0)
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *shapedWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.passthrough {
		return w.ResponseWriter.Write(p)
	}
	written := 0
	for len(p) > 0 {
		n := len(p)
		if w.b.StallAfter > 0 {
			if w.sent >= w.limit {
				w.flush()
				w.wait(-1)
				return written, errStalled
			}
			n = int(min(int64(n), w.limit-w.sent))
		}
		if w.b.chunked() {
			if w.inChunk == w.b.ChunkSize {
				if !w.wait(w.b.ChunkDelay) {
					return written, errStalled
				}
				w.inChunk = 0
			}
			n = min(n, w.b.ChunkSize-w.inChunk)
		}
		m, err := w.ResponseWriter.Write(p[:n])
		written += m
		w.sent += int64(m)
		w.inChunk += m
		if err != nil {
			return written, err
		}
		if w.b.chunked() {
			w.flush()
		}
		p = p[m:]
	}
	return written, nil
}

// wait sleeps for d (forever when d < 0) and reports false if the client
// went away or the registry closed first.
func (w *shapedWriter) wait(d time.Duration) bool {
	var timeout <-chan time.Time
	if d >= 0 {
		timer := time.NewTimer(d)
		defer timer.Stop()
		timeout = timer.C
	}
	select {
	case <-timeout:
		return true
	case <-w.ctx.Done():
	case <-w.closed:
	}
	return false
}

func (w *shapedWriter) flush() {
	// An error means the client is gone; the next write or wait notices.
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *shapedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
