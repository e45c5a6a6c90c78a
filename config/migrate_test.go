package config

import (
	"slices"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// plugins is a config file's [plugins] table.
func plugins(t *testing.T, file string) map[string]any {
	t.Helper()
	var f struct {
		Plugins map[string]any `toml:"plugins"`
	}
	if err := toml.Unmarshal([]byte(file), &f); err != nil {
		t.Fatal(err)
	}
	return f.Plugins
}

// A 1.x section lands where 2.x keeps each key.
func TestMigrateMovesOneXKeys(t *testing.T) {
	p := plugins(t, `
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "example.com/pause:9"
  stream_server_port = "10010"
  restrict_oom_score_adj = true
  stats_sample_period = "20s"
  stats_collect_period = 30
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    discard_unpacked_layers = true
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      Root = "/run/other-runc"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d"
`)
	if w, err := Migrate(p); err != nil || len(w) > 0 {
		t.Fatalf("migrate: %v %v", w, err)
	}
	c := assemble(t, p)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.SandboxImage != "example.com/pause:9" || c.StreamServerPort != "10010" || !c.RestrictOOMScoreAdj ||
		c.SamplePeriod().Seconds() != 20 || c.StatsCollectPeriod != 30 || c.Snapshotter != "native" || !c.DiscardUnpackedLayers ||
		c.Containerd.Runtimes["runc"].Options["Root"] != "/run/other-runc" || c.Containerd.Runtimes["runc"].Type != RuncRuntimeType ||
		c.Registry.ConfigPath != "/etc/containerd/certs.d" {
		t.Fatalf("migrated config: %+v", c)
	}
	if srv := p[ServerSection].(map[string]any); len(srv) != 1 {
		t.Errorf("server section keeps more than its streaming key: %v", srv)
	}
}

// A setting in both layouts is refused with one line naming both keys;
// different settings of the two layouts merge.
func TestMigrateRefusesBothLayouts(t *testing.T) {
	p := plugins(t, `
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    Root = "/run/a"
    BinaryName = "/usr/bin/runc"
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
    Root = "/run/b"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata]
    runtime_type = "io.containerd.kata.v2"
`)
	_, err := Migrate(p)
	if err == nil {
		t.Fatal("a key in both layouts was accepted")
	}
	for _, want := range []string{
		`plugins."io.containerd.grpc.v1.cri".restrict_oom_score_adj and plugins."io.containerd.cri.v1.runtime".restrict_oom_score_adj`,
		`plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options.Root and plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options.Root`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "BinaryName") || strings.Contains(err.Error(), "kata") || strings.Contains(err.Error(), "\n") {
		t.Errorf("error names keys set only once, or spans lines: %q", err)
	}
}

// Keys no section knows are dropped, each reported with the path the file
// wrote, so the operator finds it.
func TestMigrateReportsUnknownKeysWithPath(t *testing.T) {
	p := plugins(t, `
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_scor_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_typ = "io.containerd.runc.v2"
[plugins."io.containerd.cri.v1.images"]
  max_concurent_downloads = 5
  [plugins."io.containerd.cri.v1.images".registry.mirrors."docker.io"]
    endpoints = ["https://m"]
`)
	w, err := Migrate(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`plugins."io.containerd.cri.v1.images".max_concurent_downloads`,
		`plugins."io.containerd.cri.v1.images".registry.mirrors.docker.io.endpoints`,
		`plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.runtime_typ`,
		`plugins."io.containerd.grpc.v1.cri".restrict_oom_scor_adj`,
	}
	slices.Sort(w)
	if !slices.Equal(w, want) {
		t.Fatalf("unknown keys reported as\n%v\nwant\n%v", w, want)
	}
}

// nodecri's earlier layout, 1.x keys in a version 4 file's server section,
// is still read; a 1.x key conflicts only with a 2.x value that differs
// from its default.
func TestAssembleReadsLegacyVersion4(t *testing.T) {
	srv, rt, img := DefaultServer(), DefaultRuntime(), DefaultImages()
	if err := toml.Unmarshal([]byte(`
sandbox_image = "example.com/pause:9"
[containerd]
  snapshotter = "native"
  [containerd.runtimes.runc.options]
    Root = "/run/a"
`), &srv); err != nil {
		t.Fatal(err)
	}
	rt.CNI.ConfDir = "/etc/other-net.d"
	c, w, err := Assemble(srv, rt, img)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 1 || !strings.Contains(w[0], "containerd, sandbox_image") {
		t.Errorf("warnings: %v", w)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.SandboxImage != "example.com/pause:9" || c.Snapshotter != "native" || c.Containerd.Runtimes["runc"].Options["Root"] != "/run/a" ||
		c.CNI.ConfDir != "/etc/other-net.d" || c.Containerd.Runtimes["runc"].Type != RuncRuntimeType {
		t.Fatalf("assembled: %+v", c)
	}

	rt.Containerd.Runtimes = map[string]Runtime{"runc": {Type: RuncRuntimeType, Options: map[string]any{"Root": "/run/b"}}}
	if _, _, err := Assemble(srv, rt, img); err == nil || !strings.Contains(err.Error(), "containerd.runtimes.runc.options.Root") {
		t.Fatalf("conflicting Root accepted or not named: %v", err)
	}
}
