package images

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// errNoProgress is the cause a pull is cancelled with when the registry
// sends nothing for image_pull_progress_timeout.
var errNoProgress = errors.New("no progress")

// progress watches one pull's HTTP traffic. The timer runs only while a
// request is open: a pull busy unpacking is not stalled, and a slow pull
// that keeps receiving bytes is never cut. Every byte read restarts it.
type progress struct {
	timeout time.Duration
	onStall func(error)
	bytes   func(n int) // metrics

	mu     sync.Mutex
	active int
	timer  *time.Timer
	done   bool
}

func newProgress(timeout time.Duration, onStall func(error), bytes func(int)) *progress {
	p := &progress{timeout: timeout, onStall: onStall, bytes: bytes}
	if timeout > 0 {
		p.timer = time.AfterFunc(timeout, p.fire)
		p.timer.Stop()
	}
	return p
}

func (p *progress) fire() {
	p.mu.Lock()
	stalled := p.active > 0 && !p.done
	p.mu.Unlock()
	if stalled {
		p.onStall(fmt.Errorf("%w: no bytes received from the registry for %s (image_pull_progress_timeout)", errNoProgress, p.timeout))
	}
}

func (p *progress) begin() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.active++
	if p.timer != nil && p.active == 1 {
		p.timer.Reset(p.timeout)
	}
}

func (p *progress) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.active--
	if p.timer != nil && p.active == 0 {
		p.timer.Stop()
	}
}

func (p *progress) advance(n int) {
	if n <= 0 {
		return
	}
	p.bytes(n)
	if p.timer == nil {
		return
	}
	p.mu.Lock()
	if p.active > 0 {
		p.timer.Reset(p.timeout)
	}
	p.mu.Unlock()
}

func (p *progress) stop() {
	p.mu.Lock()
	p.done = true
	if p.timer != nil {
		p.timer.Stop()
	}
	p.mu.Unlock()
}

// transport counts a request as open from its start until its body is
// closed, and every body byte as progress. It also carries a registry
// bearer token, which containerd's authorizer has no slot for.
type transport struct {
	base  http.RoundTripper
	p     *progress
	token func(host string) string
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if tok := t.token(req.URL.Host); tok != "" && req.Header.Get("Authorization") == "" {
		req = req.Clone(req.Context())
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	t.p.begin()
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		t.p.end()
		return nil, err
	}
	resp.Body = &progressBody{ReadCloser: resp.Body, p: t.p}
	return resp, nil
}

type progressBody struct {
	io.ReadCloser
	p    *progress
	once sync.Once
}

func (b *progressBody) Read(buf []byte) (int, error) {
	n, err := b.ReadCloser.Read(buf)
	b.p.advance(n)
	return n, err
}

func (b *progressBody) Close() error {
	b.once.Do(b.p.end)
	return b.ReadCloser.Close()
}
