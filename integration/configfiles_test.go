package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/integration/daemon"
	"github.com/nodecri/nodecri/integration/testimages"
)

// fileData fills the config files in testdata/configs: the shapes of
// operators' tools, with this test's private paths.
type fileData struct {
	Dir, Socket, BinDir, CNIConfDir, CNIBinDir, CNIBinDirs, HostsDir string
	RestrictOOM                                                      bool
	StreamPort                                                       int
	SandboxImage, BaseSpec, RuncRoot, Imports                        string
}

// rawLayout lays out a daemon whose config file is testdata/configs/name,
// rendered, with a registry holding the pause image and busybox behind the
// file's registry.config_path, and a pod network in its CNI folder.
func rawLayout(t *testing.T, name string, dropIns ...string) (*daemon.Layout, fileData) {
	t.Helper()
	reg := testimages.NewRegistry(t)
	reg.Push(t, "pause", "3.10.2", testimages.Pause(t))
	reg.Push(t, "library/busybox", "1.36", testimages.Busybox(t))
	l := newLayout(t, false)
	bins, _ := json.Marshal(l.CNIBinDirs)
	d := fileData{
		Dir: l.Dir, Socket: l.Socket, BinDir: binDir, CNIConfDir: l.CNIConfDir,
		CNIBinDir: l.CNIBinDirs[0], CNIBinDirs: string(bins),
		HostsDir:     filepath.Join(l.Dir, "certs.d"),
		RestrictOOM:  !daemon.HasCapSysResource(),
		SandboxImage: "registry.k8s.io/pause:3.10.2",
		BaseSpec:     filepath.Join(l.Dir, "base-runtime-spec.json"),
		// Not the fixture's runc root: the file's own must be used.
		RuncRoot: filepath.Join(l.Dir, "runc-from-file"),
	}
	addr := freeAddr(t)
	d.StreamPort, _ = strconv.Atoi(addr[strings.LastIndex(addr, ":")+1:])
	testimages.WriteHostsDir(t, d.HostsDir, reg.Addr, "docker.io", "registry.k8s.io")
	writeBaseSpec(t, d.BaseSpec)
	var imports []string
	for _, in := range dropIns {
		p := filepath.Join(l.Dir, "conf.d", in)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join("testdata", "configs", in))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		imports = append(imports, strconv.Quote(filepath.Join(l.Dir, "conf.d", "*.toml")))
	}
	d.Imports = strings.Join(imports, ", ")
	tmpl := template.Must(template.ParseFiles(filepath.Join("testdata", "configs", "common-v3.tmpl"), filepath.Join("testdata", "configs", name)))
	var b strings.Builder
	if err := tmpl.ExecuteTemplate(&b, name, d); err != nil {
		t.Fatal(err)
	}
	l.Raw = []byte(b.String())
	// The teardown sweeps the runc roots the fixture's tree names.
	l.CRI()["containerd"].(map[string]any)["runtimes"].(map[string]any)["runc"].(map[string]any)["options"].(map[string]any)["Root"] = d.RuncRoot
	if err := l.WriteConflist(); err != nil {
		t.Fatal(err)
	}
	return l, d
}

// writeBaseSpec writes a base runtime spec as EKS and kind use it: the
// default spec with a higher RLIMIT_NOFILE.
func writeBaseSpec(t *testing.T, path string) {
	t.Helper()
	spec := map[string]any{
		"ociVersion": "1.1.0",
		"process": map[string]any{
			"cwd":     "/",
			"rlimits": []map[string]any{{"type": "RLIMIT_NOFILE", "hard": 65536, "soft": 65536}},
		},
		"root":  map[string]any{"path": "rootfs"},
		"linux": map[string]any{"namespaces": []map[string]any{{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}}},
	}
	b, _ := json.Marshal(spec)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// infoConfig is the effective configuration `crictl info` shows.
func infoConfig(t *testing.T, d *daemon.Daemon) map[string]any {
	t.Helper()
	st, err := d.Runtime.Status(ctxT(t), &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(st.Info["config"]), &cfg); err != nil {
		t.Fatalf("config in verbose Status: %v", err)
	}
	return cfg
}

// at walks a JSON tree by keys.
func at(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// The check, as an operator runs it: a version 3 file with the CRI
// settings only in 2.x's sections; its registry.config_path, runc Root,
// CNI folders and restrict_oom_score_adj (without which no pod starts on a
// host lacking CAP_SYS_RESOURCE) all take effect.
func TestVersion3FileTakesEffect(t *testing.T) {
	l, fd := rawLayout(t, "eks.toml")
	d := start(t, l)
	// No registry but the test's: the pull goes through the file's hosts.
	mustPull(t, d, "busybox:1.36")
	cfg := podConfig(l, "v3")
	p := &pod{d: d, l: l, id: runPod(t, d, cfg), cfg: cfg}
	id := p.run(t, busybox("sleeper", "sleep", "3600"))

	st, _ := podStatus(t, d, p.id)
	if ip := st.GetNetwork().GetIp(); !strings.HasPrefix(ip, strings.TrimSuffix(l.Network.Subnet, "0/24")) {
		t.Errorf("pod IP %q is not from the file's CNI network %s", ip, l.Network.Subnet)
	}
	// runc keeps a container's state under <Root>/<namespace>/<id>.
	if _, err := os.Stat(filepath.Join(fd.RuncRoot, "k8s.io", id, "state.json")); err != nil {
		t.Errorf("runc state is not under the file's Root: %v", err)
	}
	if _, err := os.Stat(filepath.Join(l.Dir, "runc", "k8s.io", id)); err == nil {
		t.Errorf("runc state also under the fixture's default root")
	}
	if got := p.mustExec(t, id, "cat", "/proc/self/oom_score_adj"); strings.TrimSpace(got) == "" {
		t.Errorf("no oom_score_adj")
	}

	c := infoConfig(t, d)
	for path, want := range map[string]any{
		"restrictOOMScoreAdj":   fd.RestrictOOM,
		"discardUnpackedLayers": true,
		"sandboxImage":          fd.SandboxImage,
	} {
		if got := at(c, path); got != want {
			t.Errorf("crictl info config.%s = %v, want %v", path, got, want)
		}
	}
	if got := at(c, "registry", "configPath"); got != fd.HostsDir+":/etc/docker/certs.d" {
		t.Errorf("crictl info registry.configPath = %v", got)
	}
	if got := at(c, "containerd", "runtimes", "runc", "options", "Root"); got != fd.RuncRoot {
		t.Errorf("crictl info runc Root = %v", got)
	}
}

// Files shaped like operators' tools' start the daemon, and their settings
// show in crictl info.
func TestOperatorConfigFilesStart(t *testing.T) {
	for _, tc := range []struct {
		file    string
		dropIns []string
		want    map[string]any // dotted path in crictl info's config
	}{
		{"eks.toml", nil, map[string]any{
			"discardUnpackedLayers":                       true,
			"enableCDI":                                   true,
			"containerd.defaultRuntimeName":               "runc",
			"containerd.runtimes.runc.baseRuntimeSpec":    "{{.BaseSpec}}",
			"containerd.runtimes.runc.options.BinaryName": "{{.BinDir}}/runc",
		}},
		{"kind.toml", nil, map[string]any{
			"sandboxImage":          "registry.k8s.io/pause:3.10.2",
			"snapshotter":           "overlayfs",
			"discardUnpackedLayers": true,
			"containerd.runtimes.test-handler.baseRuntimeSpec": "{{.BaseSpec}}",
			"containerd.runtimes.test-handler.options.Root":    "{{.RuncRoot}}-test",
			"cni.binDirs":         "[{{.CNIBinDir}} /opt/cni/bin]",
			"registry.configPath": "{{.HostsDir}}",
		}},
		{"k3s.toml", nil, map[string]any{
			"streamServerPort":                   "{{.StreamPort}}",
			"enableUnprivilegedPorts":            true,
			"deviceOwnershipFromSecurityContext": false,
			"disableSnapshotAnnotations":         true,
			"cni.confDir":                        "{{.CNIConfDir}}",
		}},
		{"nvidia-ctk.toml", []string{"nvidia-ctk-dropin.toml"}, map[string]any{
			"containerd.defaultRuntimeName":                           "nvidia",
			"containerd.runtimes.nvidia.runtimeType":                  "io.containerd.runc.v2",
			"containerd.runtimes.nvidia.options.BinaryName":           "/usr/bin/nvidia-container-runtime",
			"containerd.runtimes.nvidia.privilegedWithoutHostDevices": false,
			"containerd.runtimes.runc.options.Root":                   "{{.RuncRoot}}",
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			l, fd := rawLayout(t, tc.file, tc.dropIns...)
			d := start(t, l)
			c := infoConfig(t, d)
			for path, want := range tc.want {
				if s, ok := want.(string); ok {
					var b strings.Builder
					template.Must(template.New("").Parse(s)).Execute(&b, fd)
					want = b.String()
				}
				got := at(c, strings.Split(path, ".")...)
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("crictl info config.%s = %v, want %v", path, got, want)
				}
			}
			if _, err := d.Runtime.Status(ctxT(t), &runtimeapi.StatusRequest{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A file that sets one setting in both layouts stops the daemon with one
// line naming both keys.
func TestBothLayoutsRefused(t *testing.T) {
	l, _ := rawLayout(t, "kind.toml")
	l.Raw = append(l.Raw, []byte(`
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  Root = "/run/elsewhere"
`)...)
	err, out := daemon.RunToExit(ctxT(t), binary, l, 30*time.Second)
	if err == nil {
		t.Fatalf("daemon started on a file setting runc's Root twice:\n%s", lastLines(out, 10))
	}
	want := `plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options.Root and plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options.Root`
	if !strings.Contains(out, want) {
		t.Errorf("no line naming both keys; output:\n%s", lastLines(out, 10))
	}
}
