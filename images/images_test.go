package images

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

func hex64(c byte) string { return strings.Repeat(string(c), 64) }

func TestStoreNamesAndLookups(t *testing.T) {
	s := NewStore()
	id1, id2 := "sha256:"+hex64('1'), "sha256:"+"12"+hex64('2')[2:]
	m1 := digest.Digest("sha256:" + hex64('a'))
	s.Put("docker.io/library/busybox:1.36", m1, Image{ID: id1})
	s.Put("docker.io/library/busybox:latest", m1, Image{ID: id1})
	s.Put("example.com/mirror/busybox:v1", m1, Image{ID: id1})
	s.Put(id1, m1, Image{ID: id1})
	s.Put("docker.io/library/other:1", "sha256:"+digest.Digest(hex64('b')), Image{ID: id2})

	img, err := s.Resolve("busybox:1.36")
	if err != nil || img.ID != id1 {
		t.Fatalf("by short name: %v %v", img.ID, err)
	}
	if got := img.RepoTags(); !slices.Equal(got, []string{"docker.io/library/busybox:1.36", "docker.io/library/busybox:latest", "example.com/mirror/busybox:v1"}) {
		t.Errorf("RepoTags = %v", got)
	}
	if got := img.RepoDigests(); !slices.Equal(got, []string{"docker.io/library/busybox@" + m1.String(), "example.com/mirror/busybox@" + m1.String()}) {
		t.Errorf("RepoDigests = %v", got)
	}
	for _, ref := range []string{id1, strings.TrimPrefix(id1, "sha256:"), "111111", "busybox", "docker.io/library/busybox:latest"} {
		if img, err := s.Resolve(ref); err != nil || img.ID != id1 {
			t.Errorf("Resolve(%q) = %v, %v", ref, img.ID, err)
		}
	}
	if _, err := s.Resolve("1"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("ambiguous prefix: %v", err)
	}
	if _, err := s.Resolve("nosuch"); !errdefs.IsNotFound(err) {
		t.Errorf("unknown: %v", err)
	}

	// A tag moving to another image leaves the first.
	s.Put("docker.io/library/busybox:latest", "sha256:"+digest.Digest(hex64('b')), Image{ID: id2})
	if img, _ := s.Get(id1); slices.Contains(img.RepoTags(), "docker.io/library/busybox:latest") {
		t.Error("moved tag still on the old image")
	}
	// An image with no names left is gone.
	for _, n := range []string{"docker.io/library/busybox:1.36", "example.com/mirror/busybox:v1", id1} {
		s.DeleteRef(n)
	}
	if _, ok := s.Get(id1); ok {
		t.Error("nameless image still listed")
	}
	if n := len(s.List()); n != 1 {
		t.Errorf("List has %d images", n)
	}
}

func TestCredentials(t *testing.T) {
	c := &Credentials{Auth: "dTpw"} // u:p
	if err := c.Validate(); err != nil || c.Username != "u" || c.Password != "p" {
		t.Errorf("auth decode: %+v %v", c, err)
	}
	if err := (&Credentials{Auth: "!!"}).Validate(); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad auth: %v", err)
	}
	scoped := &Credentials{Username: "u", Password: "p", ServerAddress: "https://index.docker.io/v1/"}
	if u, _, _ := scoped.forHost("registry-1.docker.io"); u != "u" {
		t.Error("docker hub credentials not used for registry-1.docker.io")
	}
	if u, _, _ := scoped.forHost("evil.example.com"); u != "" {
		t.Error("scoped credentials sent to another host")
	}
	if _, secret, _ := (&Credentials{IdentityToken: "tok"}).forHost("x"); secret != "tok" {
		t.Error("identity token not used as the secret")
	}
	if (*Credentials)(nil).key() != "" || (&Credentials{Password: "a"}).key() == (&Credentials{Password: "b"}).key() {
		t.Error("credential keys do not tell pulls apart")
	}
}

// The watchdog fires only while a request is open and receives nothing.
func TestProgressWatchdog(t *testing.T) {
	var fired atomic.Int32
	var bytes atomic.Int64
	p := newProgress(100*time.Millisecond, func(err error) {
		if errors.Is(err, errNoProgress) {
			fired.Add(1)
		}
	}, func(n int) { bytes.Add(int64(n)) })
	defer p.stop()

	time.Sleep(200 * time.Millisecond) // idle: no request open
	if fired.Load() != 0 {
		t.Fatal("fired with no request open")
	}
	p.begin()
	for range 6 { // slow but moving
		time.Sleep(50 * time.Millisecond)
		p.advance(10)
	}
	if fired.Load() != 0 {
		t.Fatal("fired while bytes kept arriving")
	}
	time.Sleep(250 * time.Millisecond) // stalled
	if fired.Load() == 0 {
		t.Fatal("did not fire on a stall")
	}
	if bytes.Load() != 60 {
		t.Errorf("counted %d bytes", bytes.Load())
	}
}

func TestTransportCountsBodiesAndAddsToken(t *testing.T) {
	var gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		io.WriteString(w, "hello")
	}))
	defer srv.Close()
	var n atomic.Int64
	p := newProgress(0, func(error) {}, func(b int) { n.Add(int64(b)) })
	c := &http.Client{Transport: &transport{base: http.DefaultTransport, p: p,
		token: (&Credentials{RegistryToken: "rt"}).registryToken}}
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	if n.Load() != 5 || gotAuth != "Bearer rt" || p.active != 0 {
		t.Errorf("bytes %d auth %q active %d", n.Load(), gotAuth, p.active)
	}
}
