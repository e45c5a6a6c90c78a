package testimages

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// blobImage is an image whose one layer is 256 KiB of noise, so that its
// blob stays about that large after gzip.
func blobImage(t *testing.T) (img v1.Image, layerDigest string, layerSize int64) {
	t.Helper()
	noise := make([]byte, 256<<10)
	rand.NewChaCha8([32]byte{1}).Read(noise)
	img = Build(t, v1.Config{Cmd: []string{"/noise"}}, []File{{Path: "noise", Content: noise}})
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	d, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	size, err := layers[0].Size()
	if err != nil {
		t.Fatal(err)
	}
	return img, d.String(), size
}

func getBlob(ctx context.Context, t *testing.T, method string, r *Registry, repo, dgst string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+r.Addr+"/v2/"+repo+"/blobs/"+dgst, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s blob: %v", method, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s blob: %s", method, resp.Status)
	}
	return resp
}

func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestBasicAuth(t *testing.T) {
	r := NewRegistry(t, WithBasicAuth("alice", "s3cret"))
	for _, tc := range []struct {
		user, pass string
		want       int
	}{{"", "", 401}, {"alice", "wrong", 401}, {"bob", "s3cret", 401}, {"alice", "s3cret", 200}} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+r.Addr+"/v2/", nil)
		if tc.user != "" {
			req.SetBasicAuth(tc.user, tc.pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET /v2/ as %q:%q: %s, want %d", tc.user, tc.pass, resp.Status, tc.want)
		}
		if tc.want == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Basic realm="`) {
			t.Errorf("401 with WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
		}
	}

	img, _, _ := blobImage(t)
	digest := r.Push(t, "private/noise", "v1", img)
	pull(t, r, "private/noise", "v1", digest)

	ref, _ := name.NewTag(r.Addr+"/private/noise:v1", name.Insecure)
	if _, err := remote.Image(ref, remote.WithContext(t.Context()), remote.WithAuth(authn.Anonymous)); err == nil {
		t.Error("anonymous pull succeeded")
	}
}

func TestBlobGets(t *testing.T) {
	r := NewRegistry(t)
	img, layer, size := blobImage(t)
	r.Push(t, "test/noise", "v1", img)
	if n := r.BlobGets(layer); n != 0 {
		t.Fatalf("BlobGets after push = %d, want 0", n)
	}

	getBlob(t.Context(), t, http.MethodHead, r, "test/noise", layer).Body.Close()
	if n := r.BlobGets(layer); n != 0 {
		t.Fatalf("BlobGets after HEAD = %d, want 0", n)
	}
	resp := getBlob(t.Context(), t, http.MethodGet, r, "test/noise", layer)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || int64(len(body)) != size || sha256Digest(body) != layer {
		t.Fatalf("GET blob: %d bytes, err %v; want %d bytes of %s", len(body), err, size, layer)
	}
	// Blobs are shared across repositories, as in a real registry.
	getBlob(t.Context(), t, http.MethodGet, r, "other/repo", layer).Body.Close()
	if n := r.BlobGets(layer); n != 2 {
		t.Fatalf("BlobGets after two GETs = %d, want 2", n)
	}
	r.ResetCounts()
	if n := r.BlobGets(layer); n != 0 {
		t.Fatalf("BlobGets after ResetCounts = %d, want 0", n)
	}
}

// readStalled GETs the blob with a client timeout and returns how many body
// bytes came before it gave up.
func readStalled(t *testing.T, r *Registry, layer string, size int64, timeout time.Duration) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	start := time.Now()
	resp := getBlob(ctx, t, http.MethodGet, r, "test/noise", layer)
	defer resp.Body.Close()
	if resp.ContentLength != size {
		t.Errorf("stalled response has Content-Length %d, want %d", resp.ContentLength, size)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil {
		t.Fatalf("stalled body ended without error after %d bytes", n)
	}
	if elapsed := time.Since(start); elapsed < timeout-50*time.Millisecond {
		t.Fatalf("stalled body gave up after %s (%v), want the client's %s timeout", elapsed, err, timeout)
	}
	return n
}

func TestStallAfter(t *testing.T) {
	r := NewRegistry(t)
	img, layer, size := blobImage(t)
	r.Push(t, "test/noise", "v1", img)

	r.SetBlobBehaviour(BlobBehaviour{StallAfter: 1000})
	if n := readStalled(t, r, layer, size, time.Second); n != 1000 {
		t.Errorf("stalled after %d bytes, want 1000", n)
	}
	// Never the whole body, even when StallAfter exceeds it.
	r.SetBlobBehaviour(BlobBehaviour{StallAfter: size + 10})
	if n := readStalled(t, r, layer, size, 300*time.Millisecond); n != size-1 {
		t.Errorf("stalled after %d bytes, want %d", n, size-1)
	}

	r.SetBlobBehaviour(BlobBehaviour{})
	resp := getBlob(t.Context(), t, http.MethodGet, r, "test/noise", layer)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || sha256Digest(body) != layer {
		t.Fatalf("GET after clearing the behaviour: %d bytes, %v", len(body), err)
	}
}

// TestStallEndsOnClose checks that closing the registry frees a stalled
// response whose client would wait much longer, so tests cannot hang.
func TestStallEndsOnClose(t *testing.T) {
	bodyErr := make(chan error, 1)
	start := time.Now()
	t.Run("stall", func(t *testing.T) {
		r := NewRegistry(t)
		img, layer, _ := blobImage(t)
		r.Push(t, "test/noise", "v1", img)
		r.SetBlobBehaviour(BlobBehaviour{StallAfter: 100})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp := getBlob(ctx, t, http.MethodGet, r, "test/noise", layer)
		if _, err := io.ReadFull(resp.Body, make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
		go func() {
			defer cancel()
			_, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			bodyErr <- err
		}()
		// Returning runs the cleanup that closes the registry.
	})
	select {
	case err := <-bodyErr:
		if err == nil {
			t.Error("stalled body completed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stalled body still open 5 s after the registry closed")
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("closing a registry with a stalled response took %s", elapsed)
	}
}

func TestChunkDelay(t *testing.T) {
	r := NewRegistry(t)
	img, layer, size := blobImage(t)
	digest := r.Push(t, "test/noise", "v1", img)

	const chunk, delay = 64 << 10, 50 * time.Millisecond
	r.SetBlobBehaviour(BlobBehaviour{ChunkSize: chunk, ChunkDelay: delay})
	start := time.Now()
	resp := getBlob(t.Context(), t, http.MethodGet, r, "test/noise", layer)
	if resp.ContentLength != size {
		t.Errorf("chunked response has Content-Length %d, want %d", resp.ContentLength, size)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	elapsed := time.Since(start)
	if err != nil || sha256Digest(body) != layer {
		t.Fatalf("chunked GET: %d bytes, %v", len(body), err)
	}
	delays := (size+chunk-1)/chunk - 1
	if elapsed < time.Duration(delays)*delay {
		t.Errorf("%d bytes in %d-byte chunks took %s, want at least %d delays of %s", size, chunk, elapsed, delays, delay)
	}

	// go-containerregistry's client checks sizes and digests on the way.
	layers, err := pull(t, r, "test/noise", "v1", digest).Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatalf("slow pull: %v", err)
	}
}

// TestWriteHostsDir checks the files with containerd's own resolver: names
// under the mirrored registries and the registry's own address resolve to
// what was pushed, over plain HTTP.
func TestWriteHostsDir(t *testing.T) {
	r := NewRegistry(t)
	img, layer, size := blobImage(t)
	busybox := r.Push(t, "library/busybox", "latest", img)
	pause := r.Push(t, "pause", "3.10.2", img)

	dir := t.TempDir()
	WriteHostsDir(t, dir, r.Addr, "docker.io", "registry.k8s.io")
	for _, host := range []string{"docker.io", "registry.k8s.io", r.Addr} {
		b, err := os.ReadFile(filepath.Join(dir, host, "hosts.toml"))
		if err != nil {
			t.Fatal(err)
		}
		url := "http://" + r.Addr
		if !strings.Contains(string(b), `server = "`+url+`"`) || !strings.Contains(string(b), `[host."`+url+`"]`) {
			t.Errorf("%s/hosts.toml:\n%s", host, b)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "docker.io")); len(entries) != 1 {
		t.Errorf("docker.io holds %d entries, want hosts.toml only", len(entries))
	}

	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: config.ConfigureHosts(t.Context(), config.HostOptions{HostDir: config.HostDirFromRoot(dir)}),
	})
	for ref, want := range map[string]string{
		"docker.io/library/busybox:latest": busybox,
		"registry.k8s.io/pause:3.10.2":     pause,
		r.Addr + "/pause:3.10.2":           pause,
	} {
		_, desc, err := resolver.Resolve(t.Context(), ref)
		if err != nil {
			t.Errorf("resolve %s: %v", ref, err)
			continue
		}
		if desc.Digest.String() != want {
			t.Errorf("resolve %s: %s, want %s", ref, desc.Digest, want)
		}
	}

	fetcher, err := resolver.Fetcher(t.Context(), "docker.io/library/busybox:latest")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := fetcher.Fetch(t.Context(), ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.Digest(layer), Size: size})
	if err != nil {
		t.Fatalf("fetch layer through docker.io mirror: %v", err)
	}
	body, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || sha256Digest(body) != layer {
		t.Fatalf("fetched %d bytes, %v", len(body), err)
	}
	if n := r.BlobGets(layer); n != 1 {
		t.Errorf("BlobGets after a containerd fetch = %d, want 1", n)
	}
}
