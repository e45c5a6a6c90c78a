package testimages

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// pull fetches repo:tag from r with go-containerregistry's client and
// checks it is the image pushed as digest.
func pull(t *testing.T, r *Registry, repo, tag, digest string) v1.Image {
	t.Helper()
	ref, err := name.NewTag(r.Addr+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref, r.RemoteOptions(t.Context())...)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	got, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != digest {
		t.Fatalf("pulled %s as %s, pushed %s", ref, got, digest)
	}
	return img
}

// unpack extracts img's layers into a new folder, keeping modes and symlinks.
func unpack(t *testing.T, img v1.Image) string {
	t.Helper()
	root := t.TempDir()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("read layer: %v", err)
			}
			if strings.Contains("/"+h.Name+"/", "/../") {
				t.Fatalf("layer entry %q leaves the root", h.Name)
			}
			p := filepath.Join(root, h.Name)
			switch h.Typeflag {
			case tar.TypeDir:
				err = os.MkdirAll(p, 0o755)
				if err == nil {
					err = os.Chmod(p, os.FileMode(h.Mode).Perm()|modeBits(h.Mode))
				}
			case tar.TypeSymlink:
				err = os.Symlink(h.Linkname, p)
			case tar.TypeReg:
				var f *os.File
				f, err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode).Perm())
				if err == nil {
					_, err = io.Copy(f, tr)
					f.Close()
				}
			default:
				t.Fatalf("unexpected entry type %c for %s", h.Typeflag, h.Name)
			}
			if err != nil {
				t.Fatalf("unpack %s: %v", h.Name, err)
			}
		}
		rc.Close()
	}
	return root
}

func modeBits(m int64) os.FileMode {
	var fm os.FileMode
	if m&0o1000 != 0 {
		fm |= os.ModeSticky
	}
	if m&0o2000 != 0 {
		fm |= os.ModeSetgid
	}
	if m&0o4000 != 0 {
		fm |= os.ModeSetuid
	}
	return fm
}

func TestBusyboxPushPullRun(t *testing.T) {
	r := NewRegistry(t)
	img := Busybox(t)
	digest := r.Push(t, "library/busybox", "1.35", img)
	if !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("Push returned %q", digest)
	}
	pulled := pull(t, r, "library/busybox", "1.35", digest)

	if mt, err := pulled.MediaType(); err != nil || mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %q (%v), want OCI", mt, err)
	}
	cf, err := pulled.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform %s/%s, want linux/amd64", cf.OS, cf.Architecture)
	}
	if strings.Join(cf.Config.Cmd, " ") != "sh" || len(cf.Config.Env) != 1 || !strings.HasPrefix(cf.Config.Env[0], "PATH=/usr/local/sbin:") {
		t.Errorf("config Cmd %q Env %q", cf.Config.Cmd, cf.Config.Env)
	}

	root := unpack(t, pulled)
	layers, _ := pulled.Layers()
	for _, l := range layers {
		d, _ := l.Digest()
		if n := r.BlobGets(d.String()); n != 1 {
			t.Errorf("BlobGets(%s) = %d after one pull, want 1", d, n)
		}
	}

	for _, p := range []string{"bin/busybox", "lib64/ld-linux-x86-64.so.2", "etc/passwd", "etc/group"} {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: want a regular file, got %v %v", p, fi, err)
		}
	}
	for _, p := range []string{"bin/sh", "usr/bin/env"} {
		if target, err := os.Readlink(filepath.Join(root, p)); err != nil || target != "/bin/busybox" {
			t.Errorf("%s -> %q (%v), want /bin/busybox", p, target, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(root, "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Errorf("tmp: %v %v, want drwxrwxrwt", fi, err)
	}

	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	// `id` runs as its own process here, so this also shows the loader
	// and libraries are complete.
	out, err := exec.Command("chroot", root, "/bin/sh", "-c", "echo ok; id -u; id -u nobody; id -gn").CombinedOutput()
	if err != nil {
		t.Fatalf("chroot busybox: %v\n%s", err, out)
	}
	if got, want := string(out), "ok\n0\n65534\nroot\n"; got != want {
		t.Fatalf("chroot busybox printed %q, want %q", got, want)
	}
}

// unpackPause pushes and pulls the pause image and returns its binary.
func unpackPause(t *testing.T) string {
	t.Helper()
	r := NewRegistry(t)
	digest := r.Push(t, "pause", "3.10.2", Pause(t))
	pulled := pull(t, r, "pause", "3.10.2", digest)
	cf, err := pulled.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cf.Config.Entrypoint, " ") != "/pause" || cf.Config.User != "65535:65535" {
		t.Errorf("pause config Entrypoint %q User %q", cf.Config.Entrypoint, cf.Config.User)
	}
	bin := filepath.Join(unpack(t, pulled), "pause")
	if fi, err := os.Stat(bin); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("pause binary: %v %v", fi, err)
	}
	return bin
}

// startPause runs bin and waits until it has installed its handlers, so
// that a signal sent next meets them rather than the default action.
func startPause(t *testing.T, bin string, attr *syscall.SysProcAttr) *exec.Cmd {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin)
	cmd.Stdout, cmd.Stderr, cmd.SysProcAttr = &out, &out, attr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if out.Len() > 0 {
			t.Errorf("pause printed %q", out.String())
		}
	})
	// SIGINT (2), SIGTERM (15) and SIGCHLD (17) are bits 1, 14 and 16.
	const want = 1<<1 | 1<<14 | 1<<16
	deadline := time.Now().Add(2 * time.Second)
	for {
		status, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/status")
		if err != nil {
			t.Fatal(err)
		}
		if caught, ok := sigCgt(string(status)); ok && caught&want == want {
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("pause did not catch SIGINT, SIGTERM and SIGCHLD:\n%s", status)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func sigCgt(status string) (uint64, bool) {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			var n uint64
			for _, c := range strings.TrimSpace(v) {
				n = n<<4 | uint64(strings.IndexRune("0123456789abcdef", c))
			}
			return n, true
		}
	}
	return 0, false
}

// waitExit waits up to d for cmd and returns its exit error.
func waitExit(t *testing.T, cmd *exec.Cmd, d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("pause still running %s after the signal", d)
		return nil
	}
}

func TestPauseExitsOnSignal(t *testing.T) {
	bin := unpackPause(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := startPause(t, bin, nil)
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if err := waitExit(t, cmd, 2*time.Second); err != nil {
				t.Fatalf("pause exited with %v after %s, want 0", err, sig)
			}
		})
	}
}

// TestPauseReapsZombies makes pause PID 1 of a new PID namespace, as in a
// pod, and orphans a process in it: pause must reap it when it exits.
func TestPauseReapsZombies(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a PID namespace needs root")
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Skip("nsenter not found")
	}
	bin := unpackPause(t)
	cmd := startPause(t, bin, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID})
	pid := strconv.Itoa(cmd.Process.Pid)
	childrenFile := "/proc/" + pid + "/task/" + pid + "/children"

	// sh leaves sleep behind and exits; the orphan goes to the namespace's
	// init, pause. sleep must not hold the output pipe, or nsenter's
	// output is only complete once sleep is gone.
	out, err := exec.Command(nsenter, "-t", pid, "-p", "--", "/bin/sh", "-c", "sleep 0.5 >/dev/null 2>&1 & exit 0").CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter: %v\n%s", err, out)
	}
	children, err := os.ReadFile(childrenFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(bytes.Fields(children)) != 1 {
		t.Fatalf("pause has children %q, want the orphaned sleep", children)
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(bytes.Fields(children)) > 0 {
		if time.Now().After(deadline) {
			state, _ := os.ReadFile("/proc/" + string(bytes.Fields(children)[0]) + "/stat")
			t.Fatalf("orphan not reaped: %s", state)
		}
		time.Sleep(20 * time.Millisecond)
		if children, err = os.ReadFile(childrenFile); err != nil {
			t.Fatal(err)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(t, cmd, 2*time.Second); err != nil {
		t.Fatalf("pause as PID 1 exited with %v, want 0", err)
	}
}

func TestBuildDeterministic(t *testing.T) {
	files := []File{
		{Path: "/a/b/c.txt", Content: []byte("hello")},
		{Path: "a", Dir: true, Mode: 0o700},
		{Path: "link", Linkname: "/a/b/c.txt"},
	}
	cfg := v1.Config{Cmd: []string{"true"}}
	d1, _ := Build(t, cfg, files, []File{{Path: "x", Content: []byte("x")}}).Digest()
	d2, _ := Build(t, cfg, files, []File{{Path: "x", Content: []byte("x")}}).Digest()
	d3, _ := Build(t, cfg, files, []File{{Path: "x", Content: []byte("y")}}).Digest()
	if d1 != d2 {
		t.Errorf("same input, digests %s and %s", d1, d2)
	}
	if d1 == d3 {
		t.Errorf("different content, same digest %s", d1)
	}

	img := Build(t, cfg, files)
	layers, _ := img.Layers()
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var got []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(epoch) {
			t.Errorf("%s: uid %d gid %d mtime %s", h.Name, h.Uid, h.Gid, h.ModTime)
		}
		got = append(got, h.Name+" "+os.FileMode(h.Mode).String())
	}
	want := []string{"a/ -rwx------", "a/b/ -rwxr-xr-x", "a/b/c.txt -rw-r--r--", "link -rwxrwxrwx"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("layer entries %q, want %q", got, want)
	}

	// Rebuilding busybox and pause from scratch gives the cached digests.
	for _, tc := range []struct {
		name   string
		cached func(testing.TB) v1.Image
		fresh  func() (v1.Image, error)
	}{{"busybox", Busybox, buildBusybox}, {"pause", Pause, buildPause}} {
		fresh, err := tc.fresh()
		if err != nil {
			t.Fatal(err)
		}
		a, _ := tc.cached(t).Digest()
		b, _ := fresh.Digest()
		if a != b {
			t.Errorf("%s rebuilt as %s, first built as %s", tc.name, b, a)
		}
	}

	for _, bad := range [][]File{
		{{Path: "/"}},
		{{Path: "../x"}},
		{{Path: "x"}, {Path: "x"}},
		{{Path: "f"}, {Path: "f/g"}},
	} {
		if _, err := build(cfg, bad); err == nil {
			t.Errorf("build(%v) succeeded", bad)
		}
	}
}
