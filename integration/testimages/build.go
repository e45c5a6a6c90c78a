package testimages

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// File is one entry of a layer.
type File struct {
	Path     string // absolute or relative to the image root
	Mode     int64  // permission bits with setuid/setgid/sticky; 0: 0644 files, 0755 dirs, 0777 symlinks
	Content  []byte
	Linkname string // a symlink to Linkname if set
	Dir      bool
}

// epoch is every entry's and the config's timestamp, so that the same
// input always gives the same digests.
var epoch = time.Unix(0, 0).UTC()

// Build makes an OCI image for linux of this host's architecture with cfg
// and one layer per []File. Entries belong to 0:0; missing parent
// directories are added with mode 0755.
func Build(t testing.TB, cfg v1.Config, layers ...[]File) v1.Image {
	t.Helper()
	img, err := build(cfg, layers...)
	if err != nil {
		t.Fatalf("testimages: build image: %v", err)
	}
	return img
}

func build(cfg v1.Config, layers ...[]File) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	// The files come from this host (amd64 on our machines), so its
	// architecture is the one that runs them.
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      v1.Time{Time: epoch},
		Config:       cfg,
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	for i, files := range layers {
		gz, err := layerTarGz(files)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		// Handing over gzip bytes we made ourselves keeps the layer digest
		// independent of go-containerregistry's compression settings.
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(gz)), nil
		}, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:     layer,
			MediaType: types.OCILayer,
			History:   v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "testimages.Build"},
		})
		if err != nil {
			return nil, fmt.Errorf("append layer %d: %w", i, err)
		}
	}
	// Resolve digests now so that errors surface here, not at push time.
	if _, err := img.Digest(); err != nil {
		return nil, fmt.Errorf("compute digest: %w", err)
	}
	return img, nil
}

// layerTarGz writes files as a gzipped tar, parents before children.
func layerTarGz(files []File) ([]byte, error) {
	var (
		headers  []*tar.Header
		contents = map[string][]byte{}
		index    = map[string]int{}  // path -> position in headers
		implicit = map[string]bool{} // directories added only as parents
	)
	add := func(h *tar.Header) {
		index[h.Name] = len(headers)
		headers = append(headers, h)
	}
	for _, f := range files {
		p, err := cleanPath(f.Path)
		if err != nil {
			return nil, err
		}
		for _, dir := range parents(p) {
			i, ok := index[dir]
			if !ok {
				add(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch})
				implicit[dir] = true
			} else if headers[i].Typeflag != tar.TypeDir {
				return nil, fmt.Errorf("%s: parent %s is not a directory", f.Path, dir)
			}
		}
		h := &tar.Header{Name: p, Mode: f.Mode, ModTime: epoch}
		switch {
		case f.Dir:
			h.Typeflag = tar.TypeDir
			if h.Mode == 0 {
				h.Mode = 0o755
			}
		case f.Linkname != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.Linkname
			if h.Mode == 0 {
				h.Mode = 0o777
			}
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Content))
			if h.Mode == 0 {
				h.Mode = 0o644
			}
			contents[p] = f.Content
		}
		if i, ok := index[p]; ok {
			// A directory first seen as a parent may be declared later,
			// with its own mode; anything else twice is a mistake.
			if !f.Dir || !implicit[p] {
				return nil, fmt.Errorf("%s: listed twice", f.Path)
			}
			headers[i].Mode = h.Mode
			delete(implicit, p)
			continue
		}
		add(h)
	}

	var buf bytes.Buffer
	// No name or mtime in the gzip header: the bytes depend on the input
	// only. Speed over size: images are built in every test process.
	gz, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	tw := tar.NewWriter(gz)
	for _, h := range headers {
		name := h.Name
		if h.Typeflag == tar.TypeDir {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar %s: %w", name, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(contents[name]); err != nil {
				return nil, fmt.Errorf("tar %s: %w", name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("tar: %w", err)
	}
	if err := gz.Close(); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	return buf.Bytes(), nil
}

// cleanPath turns p into a tar name relative to the root, refusing paths
// that are the root itself or climb out of it.
func cleanPath(p string) (string, error) {
	clean := strings.TrimPrefix(path.Clean("/"+p), "/")
	if clean == "" || strings.Contains("/"+p+"/", "/../") {
		return "", fmt.Errorf("bad layer path %q", p)
	}
	return clean, nil
}

// parents lists p's ancestor directories, outermost first.
func parents(p string) []string {
	var dirs []string
	for i, c := range p {
		if c == '/' {
			dirs = append(dirs, p[:i])
		}
	}
	return dirs
}

const (
	busyboxPath = "/bin/busybox" // Debian's dynamic busybox package
	defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

var (
	busyboxImage = sync.OnceValues(buildBusybox)
	pauseImage   = sync.OnceValues(buildPause)
)

// Busybox is a busybox image made from this host's /bin/busybox and the
// shared libraries it loads, with a symlink per applet. It is built once
// per process.
func Busybox(t testing.TB) v1.Image {
	t.Helper()
	img, err := busyboxImage()
	if err != nil {
		t.Fatalf("testimages: busybox image: %v", err)
	}
	return img
}

// Pause is an image of our own pause program (images/pause/pause.c),
// compiled statically with gcc once per process.
func Pause(t testing.TB) v1.Image {
	t.Helper()
	img, err := pauseImage()
	if err != nil {
		t.Fatalf("testimages: pause image: %v", err)
	}
	return img
}

func buildBusybox() (v1.Image, error) {
	// The dynamic busybox, unlike busybox-static, execs applets as real
	// processes, which is what exec tests expect of a container.
	bin, err := os.ReadFile(busyboxPath)
	if err != nil {
		return nil, fmt.Errorf("%w (install Debian's busybox package: hack/deps.sh)", err)
	}
	files := []File{{Path: busyboxPath, Mode: 0o755, Content: bin}}

	libs, err := sharedLibs(busyboxPath)
	if err != nil {
		return nil, err
	}
	for _, lib := range libs {
		// ReadFile and Stat follow symlinks: the image gets real files at
		// the paths the loader asks for.
		content, err := os.ReadFile(lib)
		if err != nil {
			return nil, fmt.Errorf("read shared library: %w", err)
		}
		fi, err := os.Stat(lib)
		if err != nil {
			return nil, fmt.Errorf("stat shared library: %w", err)
		}
		files = append(files, File{Path: lib, Mode: int64(fi.Mode().Perm()), Content: content})
	}

	out, err := exec.Command(busyboxPath, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w", busyboxPath, err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if "/"+strings.TrimPrefix(applet, "/") == busyboxPath {
			continue
		}
		files = append(files, File{Path: applet, Linkname: busyboxPath})
	}

	files = append(files,
		File{Path: "/etc/passwd", Content: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		File{Path: "/etc/group", Content: []byte("root:x:0:\nnobody:x:65534:\n")},
		File{Path: "/tmp", Dir: true, Mode: 0o1777},
		File{Path: "/root", Dir: true, Mode: 0o700},
	)
	return build(v1.Config{Cmd: []string{"sh"}, Env: []string{defaultPath}}, files)
}

// sharedLibs lists the files ldd says bin loads, the dynamic loader
// included, at the paths the binary asks for.
func sharedLibs(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).CombinedOutput()
	if err != nil {
		// A static binary answers "not a dynamic executable": that is
		// busybox-static, which must be replaced by Debian's busybox.
		return nil, fmt.Errorf("ldd %s: %w: %s", bin, err, bytes.TrimSpace(out))
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)",
		// "/lib64/ld-linux-x86-64.so.2 (0x...)", "linux-vdso.so.1 (0x...)"
		fields := strings.Fields(line)
		var p string
		switch {
		case len(fields) >= 3 && fields[1] == "=>":
			if fields[2] == "not" {
				return nil, fmt.Errorf("ldd %s: %s", bin, strings.TrimSpace(line))
			}
			p = fields[2]
		case len(fields) >= 1:
			p = fields[0]
		}
		if filepath.IsAbs(p) { // the vDSO has no file
			libs = append(libs, p)
		}
	}
	if len(libs) == 0 {
		return nil, fmt.Errorf("ldd %s: no libraries in %q", bin, out)
	}
	return libs, nil
}

func buildPause() (v1.Image, error) {
	src, err := pauseSource()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "testimages-pause-")
	if err != nil {
		return nil, fmt.Errorf("compile pause: %w", err)
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "pause")
	// Compiled from its own folder so no checkout path ends up in the binary.
	cmd := exec.Command("gcc", "-static", "-Os", "-o", out, filepath.Base(src))
	cmd.Dir = filepath.Dir(src)
	if output, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("gcc -static %s (needs gcc and libc6-dev): %w\n%s", src, err, output)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("compile pause: %w", err)
	}
	return build(v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"},
		[]File{{Path: "/pause", Mode: 0o755, Content: bin}})
}

const pauseRel = "images/pause/pause.c"

// pauseSource finds pause.c from this file's location: tests run in their
// own package folder, which differs between importers.
func pauseSource() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		src := filepath.Join(filepath.Dir(file), "..", "..", pauseRel)
		if _, err := os.Stat(src); err == nil {
			return src, nil
		}
	}
	// Built with -trimpath: look upwards from the working directory.
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find %s: %w", pauseRel, err)
	}
	for {
		src := filepath.Join(dir, pauseRel)
		if _, err := os.Stat(src); err == nil {
			return src, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("find %s: %w", pauseRel, os.ErrNotExist)
		}
		dir = parent
	}
}
