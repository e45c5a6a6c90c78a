package config

import (
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// decode reads a 1.x section the way the daemon does: migrated into 2.x's
// sections, each decoded over its defaults, then assembled.
func decode(t *testing.T, section string) *Config {
	t.Helper()
	var raw map[string]any
	if err := toml.Unmarshal([]byte(section), &raw); err != nil {
		t.Fatalf("decode: %v", err)
	}
	plugins := map[string]any{ServerSection: raw}
	if _, err := Migrate(plugins); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return assemble(t, plugins)
}

// assemble decodes each section of plugins over its defaults, as
// containerd does, and assembles them.
func assemble(t *testing.T, plugins map[string]any) *Config {
	t.Helper()
	srv, rt, img := DefaultServer(), DefaultRuntime(), DefaultImages()
	for name, out := range map[string]any{ServerSection: &srv, RuntimeSection: &rt, ImagesSection: &img} {
		if err := fromMap(plugins[name], out); err != nil {
			t.Fatalf("decode %s: %v", name, err)
		}
	}
	c, _, err := Assemble(srv, rt, img)
	if err != nil {
		t.Fatalf("assemble: %v", err)
	}
	return c
}

func TestDefaultsValidate(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if c.SandboxImage != "registry.k8s.io/pause:3.10.2" || c.StreamIdle() != 4*time.Hour || !c.DisableSnapshotAnnotations || c.IgnoreImageDefinedVolumes || c.StreamServerPort != "0" || c.MaxContainerLogLineSize != 16384 ||
		c.ImagePullProgressTimeout != "5m0s" || c.MaxConcurrentDownloads != 3 || c.StatsCollectPeriod != 10 || c.SamplePeriod() != 10*time.Second ||
		c.Snapshotter != "overlayfs" || c.Containerd.DefaultRuntimeName != "runc" ||
		c.Containerd.Runtimes["runc"].Type != "io.containerd.runc.v2" || c.CNI.ConfDir != "/etc/cni/net.d" ||
		c.CNI.BinDirs[0] != "/opt/cni/bin" || c.CNI.MaxConfNum != 1 ||
		!c.EnableUnprivilegedPorts || !c.EnableUnprivilegedICMP {
		t.Fatalf("defaults differ from upstream's: %+v", c)
	}
}

// A 1.x section that adds a handler keeps the default runc handler.
func TestOneXSectionMergesOverDefaults(t *testing.T) {
	c := decode(t, `
sandbox_image = "example.com/pause:1"
[containerd]
  default_runtime_name = "crun"
  [containerd.runtimes.crun]
    runtime_type = "io.containerd.runc.v2"
    [containerd.runtimes.crun.options]
      BinaryName = "crun"
      SystemdCgroup = true
[cni]
  bin_dir = "/usr/lib/cni"
`)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Containerd.Runtimes["runc"]; !ok {
		t.Errorf("default runc handler lost when another was configured: %v", c.RuntimeNames())
	}
	if c.CNI.BinDirs[0] != "/usr/lib/cni" {
		t.Errorf("bin_dir not searched first: %v", c.CNI.BinDirs)
	}
	opts, err := DecodeOptions(c.Containerd.Runtimes["crun"].Type, c.Containerd.Runtimes["crun"].Options)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(opts.(interface{ String() string }).String(), "crun") {
		t.Errorf("options not decoded: %v", opts)
	}
}

func TestInvalidValuesNameKeyAndValue(t *testing.T) {
	for _, tc := range []struct{ section, key, value string }{
		{`[containerd]
default_runtime_name = "nope"`, "containerd.default_runtime_name", `"nope"`},
		{`max_concurrent_downloads = -1`, "max_concurrent_downloads", "-1"},
		{`max_container_log_line_size = -5`, "max_container_log_line_size", "-5"},
		{`image_pull_progress_timeout = "5 minutes"`, "image_pull_progress_timeout", `"5 minutes"`},
		{`stream_server_port = "http"`, "stream_server_port", `"http"`},
		{`stats_collect_period = 0`, "stats_collect_period", "0"},
		{`stats_sample_period = "10"`, "stats_collect_period", `"10"`},
		{`stats_sample_period = "100ms"`, "stats_collect_period", `"100ms"`},
		{`stream_idle_timeout = "1 hour"`, "stream_idle_timeout", `"1 hour"`},
		{`disable_tcp_service = false`, "disable_tcp_service", "false"},
		{`drain_exec_sync_io_timeout = "-1s"`, "drain_exec_sync_io_timeout", `"-1s"`},
		{`[cni]
ip_pref = "v6"`, "cni.ip_pref", `"v6"`},
		{`[containerd.runtimes.runc]
sandboxer = "shim"`, "containerd.runtimes.runc.sandboxer", `"shim"`},
		{`[containerd.runtimes.runc]
base_runtime_spec = "spec.json"`, "containerd.runtimes.runc.base_runtime_spec", `"spec.json"`},
		{`[containerd.runtimes.kata]
runtime_path = "/x"`, "containerd.runtimes.kata.runtime_type", `""`},
		{`[containerd.runtimes.runc.options]
BinaryNmae = "runc"`, "containerd.runtimes.runc.options", "BinaryNmae"},
		{`systemd_cgroup = true`, "systemd_cgroup", "true"},
		{`[cni]
conf_dir = "relative"`, "cni.conf_dir", `"relative"`},
	} {
		err := decode(t, tc.section).Validate()
		if err == nil {
			t.Errorf("%q: accepted", tc.section)
			continue
		}
		if !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), tc.value) {
			t.Errorf("%q: error %q does not name key %s and value %s", tc.section, err, tc.key, tc.value)
		}
	}
}

// Setting only runc's options (a common 1.x snippet for SystemdCgroup)
// keeps its runtime_type.
func TestOptionsOnlySectionKeepsRuntimeType(t *testing.T) {
	c := decode(t, `
[containerd.runtimes.runc.options]
SystemdCgroup = true
`)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := c.Containerd.Runtimes["runc"].Type; got != RuncRuntimeType {
		t.Fatalf("runtime_type = %q after setting only options", got)
	}
}

// The unprivileged sysctls exist per network namespace from Linux 4.11:
// on an older kernel either key on is an error naming it.
func TestUnprivilegedSysctlsNeedKernel411(t *testing.T) {
	defer func(f func() string) { kernelRelease = f }(kernelRelease)
	kernelRelease = func() string { return "4.9.0-12-amd64" }
	c := decode(t, "enable_unprivileged_ports = false\n")
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "enable_unprivileged_icmp = true") || !strings.Contains(err.Error(), "4.11") {
		t.Fatalf("4.9 with enable_unprivileged_icmp: %v", err)
	}
	c = decode(t, "enable_unprivileged_ports = false\nenable_unprivileged_icmp = false\n")
	if err := c.Validate(); err != nil {
		t.Fatalf("4.9 with both off: %v", err)
	}
	for rel, want := range map[string]bool{"4.11.0": true, "4.10.17-rt": false, "6.18.44-fc-v769": true, "3.10.0-1160.el7": false, "5.4": true, "4.11-rc1": true} {
		if got := kernelAtLeast(rel, 4, 11); got != want {
			t.Errorf("kernelAtLeast(%q, 4, 11) = %v", rel, got)
		}
	}
}
