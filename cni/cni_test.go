package cni

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sasha-s/go-deadlock"
)

func init() {
	// go-cni swaps in go-deadlock's mutex under -race, whose goroutine-ID
	// lookup fails on this Go and reports every Load-then-Status on
	// different goroutines as recursive locking.
	deadlock.Opts.Disable = true
}

// fakeBins makes a plugin folder with the named (never run) executables.
func fakeBins(t *testing.T, names ...string) string {
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const conflist = `{"cniVersion":"1.0.0","name":"test","plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}]}`

func newManager(t *testing.T, bins string) (*Manager, string) {
	conf := filepath.Join(t.TempDir(), "net.d") // not created: New must create it
	m, err := New(context.Background(), Config{ConfDir: conf, BinDirs: []string{"/nonexistent", bins}, MaxConfNum: 1})
	if err != nil {
		t.Fatal(err)
	}
	return m, conf
}

func TestStatusFollowsConfigFolder(t *testing.T) {
	m, conf := newManager(t, fakeBins(t, "bridge", "portmap", "loopback"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx)

	if err := m.Status(); err == nil {
		t.Fatal("ready with an empty conf_dir")
	}
	if err := WriteFileAtomic(filepath.Join(conf, "10-test.conflist"), []byte(conflist), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ready after a conflist appeared", func() bool { return m.Status() == nil })
	if err := os.Remove(filepath.Join(conf, "10-test.conflist")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "not ready after the conflist went", func() bool { return m.Status() != nil })
}

func TestMissingPluginBinaryIsNotReady(t *testing.T) {
	m, conf := newManager(t, fakeBins(t, "bridge", "loopback")) // no portmap
	if err := WriteFileAtomic(filepath.Join(conf, "10-test.conflist"), []byte(conflist), 0o644); err != nil {
		t.Fatal(err)
	}
	m.Reload(context.Background())
	err := m.Status()
	if err == nil || !strings.Contains(err.Error(), `"portmap"`) {
		t.Fatalf("Status = %v, want an error naming portmap", err)
	}
}

func TestTemplateRenderedForPodCIDR(t *testing.T) {
	bins := fakeBins(t, "bridge", "portmap", "loopback")
	tmpl := filepath.Join(t.TempDir(), "tmpl")
	os.WriteFile(tmpl, []byte(`{"cniVersion":"1.0.0","name":"k8s","plugins":[{"type":"bridge","ipam":{"type":"host-local","ranges":[{{range $i, $r := .PodCIDRRanges}}{{if $i}},{{end}}[{"subnet":"{{$r}}"}]{{end}}],"routes":[{{range $i, $r := .Routes}}{{if $i}},{{end}}{"dst":"{{$r}}"}{{end}}]}}]}`), 0o644)
	conf := filepath.Join(t.TempDir(), "net.d")
	m, err := New(context.Background(), Config{ConfDir: conf, BinDirs: []string{bins}, Template: tmpl})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.ApplyPodCIDRs(context.Background(), []string{"10.9.0.0/24", "fd00:9::/64"}); err != nil {
		t.Fatal(err)
	}
	if err := m.Status(); err != nil {
		t.Fatalf("not ready after rendering the template: %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(conf, defaultConfName))
	for _, want := range []string{`"subnet":"10.9.0.0/24"`, `"subnet":"fd00:9::/64"`, `"dst":"0.0.0.0/0"`, `"dst":"::/0"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("rendered config lacks %s: %s", want, b)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
