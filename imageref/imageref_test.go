package imageref

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":                        "docker.io/library/busybox:latest",
		"busybox:1.36":                   "docker.io/library/busybox:1.36",
		"registry.k8s.io/pause:3.10.2":   "registry.k8s.io/pause:3.10.2",
		"127.0.0.1:5000/x/y":             "127.0.0.1:5000/x/y:latest",
		"busybox@sha256:" + hex64('a'):   "docker.io/library/busybox@sha256:" + hex64('a'),
		"busybox:1@sha256:" + hex64('b'): "docker.io/library/busybox@sha256:" + hex64('b'),
	} {
		got, err := Normalize(in)
		if err != nil || got != want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "UPPER/case", "a@sha256:zz", "a b", "busybox:"} {
		if _, err := Normalize(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Normalize(%q) = %v, want InvalidArgument", bad, err)
		}
	}
}

func hex64(c byte) string { return strings.Repeat(string(c), 64) }

func TestIDs(t *testing.T) {
	id := "sha256:" + hex64('a')
	if !IsID(id) || IsID(hex64('a')) || IsID("sha512:"+hex64('a')+hex64('a')) {
		t.Error("IsID")
	}
	for s, want := range map[string]bool{id: true, hex64('a'): true, "abc123": true, "sha256:ab": true,
		"": false, "sha256:": false, "xyz": false, hex64('a') + "a": false, "ABC": false} {
		if got := IsIDPrefix(s); got != want {
			t.Errorf("IsIDPrefix(%q) = %v", s, got)
		}
	}
}

func TestKindAndRepoDigest(t *testing.T) {
	d := digest.Digest("sha256:" + hex64('b'))
	for name, want := range map[string][2]bool{
		"docker.io/library/busybox:1.36":          {true, false},
		"docker.io/library/busybox@" + d.String(): {false, true},
		"sha256:" + hex64('a'):                    {false, false},
		"docker.io/library/busybox":               {false, false},
		"Not A Name":                              {false, false},
	} {
		if tag, dg := Kind(name); tag != want[0] || dg != want[1] {
			t.Errorf("Kind(%q) = %v, %v; want %v", name, tag, dg, want)
		}
	}
	if got := RepoDigest("docker.io/library/busybox:1.36", d); got != "docker.io/library/busybox@"+d.String() {
		t.Errorf("RepoDigest = %q", got)
	}
	if got := RepoDigest("Not A Name", d); got != "" {
		t.Errorf("RepoDigest of a bad name = %q", got)
	}
}
