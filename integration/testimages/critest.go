package testimages

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// Names critest v1.36.0 uses (pkg/validate/consts.go, pkg/framework/util.go,
// security_context_linux.go, multi_container_linux.go, and
// pkg/benchmark/image.go for -benchmark).
const (
	e2e     = "registry.k8s.io/e2e-test-images/"
	staging = "gcr.io/k8s-staging-cri-tools/"
	ecr     = "public.ecr.aws/docker/library/"
)

// CritestMirrors are the registries critest names, and docker.io for
// short names: WriteHostsDir sends them all to the one in-process
// registry, so nothing is fetched from the internet.
var CritestMirrors = []string{"registry.k8s.io", "k8s.gcr.io", "gcr.io", "public.ecr.aws", "docker.io"}

// Named is one image and every reference it is pulled by.
type Named struct {
	Refs  []string
	Image v1.Image
}

// Critest builds offline a stand-in for every image critest's validation
// specs and its -benchmark specs pull, with what those specs check of it.
// The one image it cannot give is test-image-digest@sha256:9700f9a2…: that
// digest is of upstream's bytes, so that spec fails here.
func Critest(t testing.TB) []Named {
	t.Helper()
	pause := Pause(t)

	// Like upstream's busybox-based images: www-data in /etc/passwd; pgrep
	// and ipcs, which Debian's busybox lacks as applets (the execSync
	// timeout spec runs pgrep, the HostIpc specs ipcs -m); and /bin/ls a
	// file of its own, as upstream's hard link is: the MaskedPaths spec
	// masks /bin/ls, and masking testimages' symlink masks busybox itself.
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	base := derive(t, Busybox(t), nil, append(hostBinaries(t, "/usr/bin/pgrep", "/usr/bin/ipcs"),
		File{Path: "/bin/ls", Mode: 0o755, Content: busybox},
		File{Path: "/etc/passwd", Content: []byte("root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/false\nnobody:x:65534:65534:nobody:/home:/bin/false\n")},
		File{Path: "/etc/group", Content: []byte("root:x:0:\nwww-data:x:33:\nnobody:x:65534:\n")},
		File{Path: "/var/run", Dir: true},
	)...)
	user := func(u string) v1.Image { return derive(t, base, func(c *v1.Config) { c.User = u }) }
	// image-test in cri-tools' images/: busybox plus an empty file named
	// after the image, so that each is a different image.
	marked := func(file string) v1.Image {
		return derive(t, base, nil, File{Path: file})
	}

	return []Named{
		// The sandbox image, kept apart from pause:3.9, whose spec wants an
		// image with exactly that tag's two names.
		{[]string{"registry.k8s.io/pause:3.10.2"}, pause},
		{[]string{"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"},
			derive(t, pause, func(c *v1.Config) { c.Labels = map[string]string{"org.nodecri.critest": "pause-3.9"} })},
		{[]string{e2e + "busybox:1.29-2"}, base},
		// PID namespace specs look for "master process" in /proc/1/cmdline,
		// read /var/run/nginx.pid and find it with `pidof nginx`; network
		// and port-forward specs GET / and want 200.
		{[]string{e2e + "nginx:1.14-2"}, webServer(t, base, "nginx", "/usr/sbin/nginx", "/usr/share/nginx/html", 80)},
		{[]string{staging + "hostnet-nginx-" + runtime.GOARCH + ":latest"}, webServer(t, base, "nginx", "/usr/sbin/nginx", "/usr/share/nginx/html", 12003)},
		// The multi-container specs GET / on port 80 and look for "httpd"
		// in its log.
		{[]string{e2e + "httpd:2.4.39-4"}, webServer(t, base, "httpd", "/usr/local/bin/httpd-foreground", "/usr/local/apache2/htdocs", 80)},
		{[]string{e2e + "nonewprivs:1.3"}, noNewPrivs(t, base)},
		// ImageStatus reports uid or username from the config's User.
		{[]string{staging + "test-image-user-uid:latest"}, user("1002")},
		{[]string{staging + "test-image-user-username:latest"}, user("www-data")},
		{[]string{staging + "test-image-user-uid-group:latest"}, user("1003:1004")},
		{[]string{staging + "test-image-user-username-group:latest"}, user("www-data:1004")},
		// SupplementalGroupsPolicy specs: uid 1000 belongs to gid 50000 in
		// the image's /etc/group.
		{[]string{staging + "test-image-predefined-group:latest"}, derive(t, base, func(c *v1.Config) { c.User = "1000" },
			File{Path: "/etc/passwd", Content: []byte("root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/false\nnobody:x:65534:65534:nobody:/home:/bin/false\ndefault-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n")},
			File{Path: "/etc/group", Content: []byte("root:x:0:\nwww-data:x:33:\nnobody:x:65534:\ndefault-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n")},
			File{Path: "/home/default-user", Dir: true},
		)},
		{[]string{staging + "test-image-latest:latest"}, marked("test-image-latest")},
		{[]string{staging + "test-image-tag:test"}, marked("test")},
		{[]string{staging + "test-image-tag:all"}, marked("all")},
		{[]string{staging + "test-image-1:latest"}, marked("test-image-1")},
		{[]string{staging + "test-image-2:latest"}, marked("test-image-2")},
		{[]string{staging + "test-image-3:latest"}, marked("test-image-3")},
		{[]string{staging + "test-image-tags:1", staging + "test-image-tags:2", staging + "test-image-tags:3"}, marked("same-image")},
		// -benchmark's image specs pull the first of these and list all
		// (defaultImageListingBenchmarkImagesAmd64, a subset elsewhere).
		{[]string{ecr + "busybox:1.35.0-glibc"}, marked("busybox-1.35.0-glibc")},
		{[]string{ecr + "busybox:1-uclibc"}, marked("busybox-1-uclibc")},
		{[]string{ecr + "busybox:1"}, marked("busybox-1")},
		{[]string{ecr + "busybox:1-glibc"}, marked("busybox-1-glibc")},
		{[]string{ecr + "busybox:1-musl"}, marked("busybox-1-musl")},
	}
}

// PushAll pushes every image under each of its references' repository and
// tag. All mirrored hosts share the registry's one namespace, so two
// references differing only by host must be the same image.
func (r *Registry) PushAll(t testing.TB, images []Named) {
	t.Helper()
	pushed := map[string]string{} // repo:tag -> manifest digest
	for _, im := range images {
		for _, ref := range im.Refs {
			tag, err := name.NewTag(ref, name.StrictValidation)
			if err != nil {
				t.Fatalf("image reference %q: %v", ref, err)
			}
			key := tag.RepositoryStr() + ":" + tag.TagStr()
			d, err := im.Image.Digest()
			if err != nil {
				t.Fatal(err)
			}
			if prev, ok := pushed[key]; ok {
				if prev != d.String() {
					t.Fatalf("%s: another image was pushed as %s already", ref, key)
				}
				continue
			}
			pushed[key] = r.Push(t, tag.RepositoryStr(), tag.TagStr(), im.Image)
		}
	}
}

// derive returns base with files as one more layer (if any) and edit
// applied to its config (if set).
func derive(t testing.TB, base v1.Image, edit func(*v1.Config), files ...File) v1.Image {
	t.Helper()
	img := base
	if len(files) > 0 {
		layers, err := Build(t, v1.Config{}, files).Layers()
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, layers...); err != nil {
			t.Fatal(err)
		}
	}
	if edit != nil {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cfg := *cf.Config.DeepCopy()
		edit(&cfg)
		if img, err = mutate.Config(img, cfg); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// webServer stands in for nginx and httpd: busybox httpd serves an index
// page from root on port, as the child of a shell script at path. The
// script stays PID 1, so that it answers SIGTERM and SIGQUIT (PID 1 has no
// default signal actions), is found by `pidof` under path's base name (a
// script's process takes the script's name) and writes its PID where nginx
// does. "master process" is in its argv, as in nginx's renamed master.
func webServer(t testing.TB, base v1.Image, server, path, root string, port int) v1.Image {
	t.Helper()
	// busybox by its path: the script may shadow the httpd applet on PATH.
	script := fmt.Sprintf(`#!/bin/sh
# %[1]s stand-in from nodecri's integration/testimages: busybox httpd serves %[2]s on port %[3]d.
trap 'kill $child 2>/dev/null; exit 0' TERM QUIT INT
echo $$ > /var/run/%[1]s.pid
echo "%[1]s: serving %[2]s on port %[3]d"
/bin/busybox httpd -f -p %[3]d -h %[2]s &
child=$!
wait $child
`, server, root, port)
	return derive(t, base, func(c *v1.Config) { c.Cmd = []string{path, "master process"} },
		File{Path: path, Mode: 0o755, Content: []byte(script)},
		File{Path: root + "/index.html", Content: []byte("<html><body><h1>" + server + " stand-in</h1></body></html>\n")},
	)
}

// nnpSource is what e2e's nonewprivs image runs, setuid root: the NoNewPrivs
// specs run it as uid 1000 and read the effective uid from its log.
const nnpSource = `#include <stdio.h>
#include <unistd.h>
int main(void) { printf("Effective uid: %d\n", geteuid()); return 0; }
`

func noNewPrivs(t testing.TB, base v1.Image) v1.Image {
	t.Helper()
	dir := t.TempDir()
	src, bin := filepath.Join(dir, "nnp.c"), filepath.Join(dir, "nnp")
	if err := os.WriteFile(src, []byte(nnpSource), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("gcc", "-static", "-Os", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc -static nnp.c (needs gcc and libc6-dev): %v\n%s", err, out)
	}
	content, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	const path = "/usr/local/bin/nnp"
	return derive(t, base, func(c *v1.Config) { c.Entrypoint, c.Cmd = []string{path}, nil },
		File{Path: path, Mode: 0o4755, Content: content})
}

// hostBinaries copies binaries of this host into image files, with the
// shared libraries ldd lists for them, at the same paths (as
// Busybox does for busybox).
func hostBinaries(t testing.TB, bins ...string) []File {
	t.Helper()
	var files []File
	seen := map[string]bool{}
	add := func(path string, mode int64) {
		if seen[path] {
			return
		}
		seen[path] = true
		content, err := os.ReadFile(path) // follows symlinks: real files in the image
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, File{Path: path, Mode: mode, Content: content})
	}
	for _, bin := range bins {
		add(bin, 0o755)
		out, err := exec.Command("ldd", bin).CombinedOutput()
		if err != nil {
			t.Fatalf("ldd %s: %v: %s", bin, err, bytes.TrimSpace(out))
		}
		// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)",
		// "/lib64/ld-linux-x86-64.so.2 (0x...)", "linux-vdso.so.1 (0x...)"
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) >= 3 && f[1] == "=>" && filepath.IsAbs(f[2]):
				add(f[2], 0o755)
			case len(f) >= 1 && filepath.IsAbs(f[0]):
				add(f[0], 0o755)
			case len(f) >= 3 && f[1] == "=>":
				t.Fatalf("ldd %s: %s", bin, strings.TrimSpace(line))
			}
		}
	}
	return files
}
