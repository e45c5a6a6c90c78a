package streaming

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/containerd/log"
	utilproxy "k8s.io/apimachinery/pkg/util/proxy"
	"k8s.io/apiserver/pkg/util/proxy"
	"k8s.io/streaming/pkg/httpstream/wsstream"
)

// The websocket front. cri-streaming v0.37 serves SPDY, and websocket only
// up to v4.channel.k8s.io. Current clients want more: client-go's websocket
// executor (kubectl, crictl and critest with websocket) asks for
// v5.channel.k8s.io, whose stdin-close signal v4 lacks, and port-forward
// over websocket tunnels SPDY through it (SPDY/3.1+portforward.k8s.io). As
// the kubelet does, such requests go to k8s.io/apiserver's stream
// translator and tunnelling handlers, which speak them to the client and
// SPDY to cri-streaming, here over an in-memory pipe. Everything else goes
// to cri-streaming as it is.

// innerHost names the in-memory cri-streaming server in the URLs the
// handlers dial; the pipe ignores it.
const innerHost = "cri-streaming.invalid"

type front struct {
	lib     http.Handler
	inner   *http.Transport // dials the in-memory cri-streaming server
	streams *streamsCache
}

func (f *front) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	// The routes are /exec/{token}, /attach/{token}, /portforward/{token}.
	kind, _, _ := strings.Cut(strings.TrimPrefix(req.URL.Path, "/"), "/")
	switch {
	case (kind == "exec" || kind == "attach") && wsstream.IsWebSocketRequestWithStreamCloseProtocol(req):
		opts, ok := f.streams.take(req.URL.Path)
		if !ok {
			// Unknown, used or expired: as cri-streaming answers.
			http.NotFound(w, req)
			return
		}
		// Its SPDY request to the same path consumes the token.
		proxy.NewStreamTranslatorHandler(f.innerURL(req), f.inner, 0, opts).ServeHTTP(w, req)
	case kind == "portforward" && wsstream.IsWebSocketRequestWithTunnelingProtocol(req):
		// The tunnelled SPDY is cri-streaming's own port-forward protocol:
		// the upgrade handler only relays bytes, and a bad token's 404
		// comes back as it is.
		up := utilproxy.NewUpgradeAwareHandler(f.innerURL(req), f.inner, false, true, errorResponder{})
		proxy.NewTunnelingHandler(up).ServeHTTP(w, req)
	default:
		f.lib.ServeHTTP(w, req)
	}
}

func (f *front) innerURL(req *http.Request) *url.URL {
	return &url.URL{Scheme: "http", Host: innerHost, Path: req.URL.Path}
}

// errorResponder answers a port-forward tunnel whose SPDY side could not be
// reached.
type errorResponder struct{}

func (errorResponder) Error(w http.ResponseWriter, req *http.Request, err error) {
	log.G(req.Context()).WithError(err).WithField("path", req.URL.Path).Warn("streaming: port-forward tunnel")
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

const (
	// tokenTTL is how long cri-streaming keeps a token (its cacheTTL).
	// An entry here is made just after the token, so it outlives it a
	// little: cri-streaming has the last word.
	tokenTTL = time.Minute
	// maxStreamEntries bounds the cache however fast URLs are asked for
	// (cri-streaming bounds unconsumed tokens at 1000).
	maxStreamEntries = 4096
)

// streamsCache remembers which streams each exec and attach URL asked
// for, by path (/exec/{token}): the translator must open the same ones
// towards the client and towards cri-streaming, and the CRI request that
// says so sits in cri-streaming's cache, which only its own handler reads,
// consuming it.
type streamsCache struct {
	mu     sync.Mutex
	byPath map[string]streamsEntry
	order  []string // oldest first: with one TTL, entries expire in order
	now    func() time.Time
}

type streamsEntry struct {
	opts    proxy.Options
	expires time.Time
}

func newStreamsCache() *streamsCache {
	return &streamsCache{byPath: map[string]streamsEntry{}, now: time.Now}
}

// put records the streams for a URL cri-streaming built.
func (c *streamsCache) put(rawURL string, opts proxy.Options) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return // cri-streaming built it: cannot happen
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for len(c.order) > 0 {
		e, ok := c.byPath[c.order[0]]
		if ok && now.Before(e.expires) && len(c.order) < maxStreamEntries {
			break
		}
		if ok {
			delete(c.byPath, c.order[0])
		}
		c.order = c.order[1:]
	}
	c.byPath[u.Path] = streamsEntry{opts: opts, expires: now.Add(tokenTTL)}
	c.order = append(c.order, u.Path)
}

// take returns and forgets the streams of a live URL path.
func (c *streamsCache) take(path string) (proxy.Options, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byPath[path]
	if !ok || !c.now().Before(e.expires) {
		return proxy.Options{}, false
	}
	delete(c.byPath, path)
	return e.opts, true
}
