package integration

import (
	"crypto/rand"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/integration/daemon"
	"github.com/nodecri/nodecri/integration/testimages"
)

// withRegistry points the layout's registry.config_path at hosts.toml files
// that mirror docker.io and registry.k8s.io to reg, so tests use real names.
func withRegistry(t testing.TB, l *daemon.Layout, reg *testimages.Registry) {
	t.Helper()
	hosts := filepath.Join(l.Dir, "certs.d")
	testimages.WriteHostsDir(t, hosts, reg.Addr, "docker.io", "registry.k8s.io")
	l.CRI()["registry"] = map[string]any{"config_path": hosts}
}

func pull(t *testing.T, d *daemon.Daemon, ref string, auth *runtimeapi.AuthConfig) (string, error) {
	t.Helper()
	r, err := d.Images.PullImage(ctxT(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}, Auth: auth})
	if err != nil {
		return "", err
	}
	return r.ImageRef, nil
}

func mustPull(t *testing.T, d *daemon.Daemon, ref string) string {
	t.Helper()
	id, err := pull(t, d, ref, nil)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	return id
}

func imageStatus(t *testing.T, d *daemon.Daemon, ref string, verbose bool) *runtimeapi.ImageStatusResponse {
	t.Helper()
	r, err := d.Images.ImageStatus(ctxT(t), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}, Verbose: verbose})
	if err != nil {
		t.Fatalf("ImageStatus %s: %v", ref, err)
	}
	return r
}

func configDigest(t *testing.T, img v1.Image) string {
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func TestPullAndImageStatusByEveryReference(t *testing.T) {
	reg := testimages.NewRegistry(t)
	bb, pause := testimages.Busybox(t), testimages.Pause(t)
	manifest := reg.Push(t, "library/busybox", "1.36", bb)
	reg.Push(t, "library/busybox", "latest", bb)
	reg.Push(t, "pause", "3.10.2", pause)
	l := newLayout(t, false)
	withRegistry(t, l, reg)
	d := start(t, l)
	want := configDigest(t, bb)

	for _, ref := range []string{
		"busybox", // short name, through the docker.io mirror
		"docker.io/library/busybox:1.36",
		"docker.io/library/busybox@" + manifest,
		reg.Addr + "/library/busybox:1.36", // the registry by its own name
	} {
		if id := mustPull(t, d, ref); id != want {
			t.Errorf("pull %s: image ref %s, want the config digest %s", ref, id, want)
		}
	}
	for _, ref := range []string{want, strings.TrimPrefix(want, "sha256:"), want[7:19], "busybox", "busybox:1.36",
		"docker.io/library/busybox:latest", "docker.io/library/busybox@" + manifest, reg.Addr + "/library/busybox:1.36"} {
		img := imageStatus(t, d, ref, false).GetImage()
		if img.GetId() != want {
			t.Errorf("ImageStatus(%s) = %v", ref, img)
		}
	}
	img := imageStatus(t, d, "busybox", true)
	for _, tag := range []string{"docker.io/library/busybox:1.36", "docker.io/library/busybox:latest", reg.Addr + "/library/busybox:1.36"} {
		if !slices.Contains(img.Image.RepoTags, tag) {
			t.Errorf("RepoTags %v lack %s", img.Image.RepoTags, tag)
		}
	}
	if !slices.Contains(img.Image.RepoDigests, "docker.io/library/busybox@"+manifest) {
		t.Errorf("RepoDigests %v lack the pulled manifest", img.Image.RepoDigests)
	}
	if img.Image.Size == 0 || img.Image.Pinned || !strings.Contains(img.Info["info"], `"imageSpec"`) {
		t.Errorf("status = %v, info %q", img.Image, img.Info["info"])
	}

	// The sandbox image is pinned, and its user (65535) is a UID.
	mustPull(t, d, "registry.k8s.io/pause:3.10.2")
	ps := imageStatus(t, d, "registry.k8s.io/pause:3.10.2", false).GetImage()
	if !ps.GetPinned() || ps.GetUid().GetValue() != 65535 {
		t.Errorf("pause image status = %v, want pinned with uid 65535", ps)
	}

	list, err := d.Images.ListImages(ctxT(t), &runtimeapi.ListImagesRequest{})
	if err != nil || len(list.Images) != 2 {
		t.Fatalf("ListImages = %v, %v; want 2 images", list, err)
	}
	f, err := d.Images.ListImages(ctxT(t), &runtimeapi.ListImagesRequest{Filter: &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: "busybox:1.36"}}})
	if err != nil || len(f.Images) != 1 || f.Images[0].Id != want {
		t.Errorf("ListImages filtered = %v, %v", f, err)
	}
	if r := imageStatus(t, d, "docker.io/library/nosuch:1", false); r.Image != nil {
		t.Errorf("unknown image status = %v, want empty", r)
	}
}

func TestPullWithBasicAuth(t *testing.T) {
	reg := testimages.NewRegistry(t, testimages.WithBasicAuth("alice", "s3cret"))
	reg.Push(t, "library/busybox", "1.36", testimages.Busybox(t))
	l := newLayout(t, false)
	withRegistry(t, l, reg)
	d := start(t, l)

	_, err := pull(t, d, "busybox:1.36", nil)
	if err == nil || !(strings.Contains(err.Error(), "401") || strings.Contains(strings.ToLower(err.Error()), "unauthorized")) {
		t.Fatalf("pull without credentials: %v, want a 401 / unauthorized error", err)
	}
	if _, err := pull(t, d, "busybox:1.36", &runtimeapi.AuthConfig{Username: "alice", Password: "wrong"}); err == nil {
		t.Fatal("pull with a wrong password succeeded")
	}
	if _, err := pull(t, d, "busybox:1.36", &runtimeapi.AuthConfig{Username: "alice", Password: "s3cret"}); err != nil {
		t.Fatalf("pull with username/password: %v", err)
	}
	if _, err := pull(t, d, "busybox:1.36", &runtimeapi.AuthConfig{Auth: "YWxpY2U6czNjcmV0"}); err != nil {
		t.Fatalf("pull with auth (base64 alice:s3cret): %v", err)
	}
	if _, err := pull(t, d, "busybox:1.36", &runtimeapi.AuthConfig{Auth: "%%%"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("malformed auth: %v, want InvalidArgument", err)
	}
}

// bigImage has a layer of incompressible bytes, so a stall lands mid-blob.
func bigImage(t *testing.T, size int) v1.Image {
	b := make([]byte, size)
	rand.Read(b)
	return testimages.Build(t, v1.Config{Cmd: []string{"/blob"}}, []testimages.File{{Path: "blob", Mode: 0o644, Content: b}})
}

func TestStalledPullIsCancelledByProgressTimeout(t *testing.T) {
	reg := testimages.NewRegistry(t)
	reg.Push(t, "library/big", "1", bigImage(t, 2<<20))
	reg.SetBlobBehaviour(testimages.BlobBehaviour{StallAfter: 64 << 10})
	l := newLayout(t, false)
	l.CRI()["image_pull_progress_timeout"] = "2s"
	withRegistry(t, l, reg)
	d := start(t, l)

	begin := time.Now()
	_, err := pull(t, d, "big:1", nil)
	took := time.Since(begin)
	if err == nil {
		t.Fatal("a pull from a stalled registry succeeded")
	}
	if !strings.Contains(err.Error(), "image_pull_progress_timeout") {
		t.Errorf("error does not say why: %v", err)
	}
	if took > 4*time.Second {
		t.Errorf("failed after %s, want within the 2s timeout + 2s", took)
	}
	if r := imageStatus(t, d, "big:1", false); r.Image != nil {
		t.Errorf("half-pulled image listed: %v", r.Image)
	}
}

func TestSlowMovingPullIsNotCut(t *testing.T) {
	reg := testimages.NewRegistry(t)
	reg.Push(t, "library/big", "1", bigImage(t, 512<<10))
	reg.SetBlobBehaviour(testimages.BlobBehaviour{ChunkSize: 64 << 10, ChunkDelay: 300 * time.Millisecond})
	l := newLayout(t, false)
	l.CRI()["image_pull_progress_timeout"] = "1s"
	withRegistry(t, l, reg)
	d := start(t, l)

	begin := time.Now()
	if _, err := pull(t, d, "big:1", nil); err != nil {
		t.Fatalf("slow but moving pull failed: %v", err)
	}
	if took := time.Since(begin); took < 2*time.Second {
		t.Fatalf("pull took %s: the registry was not slow, the test proves nothing", took)
	}
}

func TestConcurrentPullsFetchEachBlobOnce(t *testing.T) {
	reg := testimages.NewRegistry(t)
	img := bigImage(t, 1<<20)
	reg.Push(t, "library/big", "1", img)
	// Slow enough that all ten requests arrive while the first is fetching.
	reg.SetBlobBehaviour(testimages.BlobBehaviour{ChunkSize: 256 << 10, ChunkDelay: 100 * time.Millisecond})
	l := newLayout(t, true)
	withRegistry(t, l, reg)
	d := start(t, l)
	reg.ResetCounts()

	var wg sync.WaitGroup
	ids := make([]string, 10)
	errs := make([]error, 10)
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], errs[i] = pull(t, d, "big:1", nil)
		}()
	}
	wg.Wait()
	for i := range 10 {
		if errs[i] != nil || ids[i] != configDigest(t, img) {
			t.Fatalf("pull %d: %q, %v", i, ids[i], errs[i])
		}
	}
	layers, _ := img.Layers()
	for _, layer := range layers {
		dg, _ := layer.Digest()
		if n := reg.BlobGets(dg.String()); n != 1 {
			t.Errorf("layer %s fetched %d times", dg, n)
		}
	}
	if n := reg.BlobGets(configDigest(t, img)); n != 1 {
		t.Errorf("config fetched %d times", n)
	}
	body := scrape(t, l.MetricsAddress)
	for _, want := range []string{`nodecri_images_pulls_total{result="success"}`, "nodecri_images_pull_bytes_total", "nodecri_images_pulls_in_flight 0", `nodecri_images_pull_duration_seconds_count{result="success"}`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestRemoveImageByOneTagRemovesAllTags(t *testing.T) {
	reg := testimages.NewRegistry(t)
	bb := testimages.Busybox(t)
	reg.Push(t, "library/busybox", "1.36", bb)
	reg.Push(t, "tools/shell", "v1", bb) // the same image in another repository
	reg.Push(t, "pause", "3.10.2", testimages.Pause(t))
	l := newLayout(t, false)
	withRegistry(t, l, reg)
	d := start(t, l)
	mustPull(t, d, "busybox:1.36")
	mustPull(t, d, "docker.io/tools/shell:v1")
	pauseID := mustPull(t, d, "registry.k8s.io/pause:3.10.2")

	if _, err := d.Images.RemoveImage(ctxT(t), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox:1.36"}}); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"busybox:1.36", "docker.io/tools/shell:v1", configDigest(t, bb)} {
		if r := imageStatus(t, d, ref, false); r.Image != nil {
			t.Errorf("%s still present after removing busybox:1.36: %v", ref, r.Image)
		}
	}
	if r := imageStatus(t, d, "registry.k8s.io/pause:3.10.2", false); r.GetImage().GetId() != pauseID {
		t.Errorf("another image was removed too: %v", r)
	}
	if _, err := d.Images.RemoveImage(ctxT(t), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox:1.36"}}); err != nil {
		t.Errorf("removing a removed image: %v, want success", err)
	}
	out, _ := exec.Command(filepath.Join(binDir, "ctr"), "--address", l.Socket, "-n", "k8s.io", "images", "ls", "-q").CombinedOutput()
	if strings.Contains(string(out), "busybox") || strings.Contains(string(out), "shell") {
		t.Errorf("containerd still has records:\n%s", out)
	}
}

// An image loaded on an air-gapped node with ctr is listed like a pulled
// one, and runs.
func TestCtrImportedImageIsListedAndRuns(t *testing.T) {
	d, l := podEnv(t)
	img := testimages.Busybox(t)
	tag, err := name.NewTag("example.com/airgap/busybox:1")
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(l.Dir, "busybox.tar")
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(binDir, "ctr"), "--address", l.Socket, "-n", "k8s.io", "images", "import", archive).CombinedOutput()
	if err != nil {
		t.Fatalf("ctr import: %v\n%s", err, out)
	}
	eventually(t, "imported image listed", func() (bool, string) {
		r := imageStatus(t, d, "example.com/airgap/busybox:1", false)
		return r.GetImage().GetId() == configDigest(t, img), fmt.Sprint(r)
	})
	cfg := podConfig(l, "airgap")
	p := &pod{d: d, l: l, id: runPod(t, d, cfg), cfg: cfg}
	c := busybox("imported", "sh", "-c", "echo ran-imported")
	c.Image.Image = "example.com/airgap/busybox:1"
	id := p.run(t, c)
	if st := p.waitExit(t, id); st.ExitCode != 0 || readLog(t, st.LogPath)["stdout"] != "ran-imported\n" {
		t.Errorf("container from the imported image: %+v", st)
	}
}

func TestImageFsInfoFollowsPullAndRemove(t *testing.T) {
	reg := testimages.NewRegistry(t)
	reg.Push(t, "library/big", "1", bigImage(t, 3<<20))
	l := newLayout(t, false)
	l.CRI()["stats_collect_period"] = 60 // pulls and removals refresh it, not the period
	withRegistry(t, l, reg)
	d := start(t, l)
	used := func() uint64 {
		r, err := d.Images.ImageFsInfo(ctxT(t), &runtimeapi.ImageFsInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return r.ImageFilesystems[0].UsedBytes.Value
	}
	before := used()
	mustPull(t, d, "big:1")
	eventually(t, "usage grows by the 3 MiB layer", func() (bool, string) {
		u := used()
		return u >= before+3<<20, fmt.Sprint(u)
	})
	if _, err := d.Images.RemoveImage(ctxT(t), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: "big:1"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "usage shrinks after removal", func() (bool, string) {
		u := used()
		return u < before+1<<20, fmt.Sprint(u)
	})
}

func TestBadImageReferences(t *testing.T) {
	d := start(t, newLayout(t, false))
	for _, ref := range []string{"", "UPPER/case", "a@sha256:zz"} {
		if _, err := pull(t, d, ref, nil); status.Code(err) != codes.InvalidArgument {
			t.Errorf("PullImage(%q): %v, want InvalidArgument", ref, err)
		}
		_, err := d.Images.ImageStatus(ctxT(t), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("ImageStatus(%q): %v, want InvalidArgument", ref, err)
		}
		_, err = d.Images.RemoveImage(ctxT(t), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("RemoveImage(%q): %v, want InvalidArgument", ref, err)
		}
	}
	_, err := d.Images.PullImage(ctxT(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox", RuntimeHandler: "nosuch"}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("unknown runtime handler: %v, want InvalidArgument", err)
	}
}
