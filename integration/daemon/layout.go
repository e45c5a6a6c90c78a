// Package daemon lays out and runs a nodecri containerd on a private root:
// its own config, sockets, state, runc root and CNI network. `make run` and
// the integration tests both use it, so there is one config generator.
package daemon

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/nodecri/nodecri/cni"
	"github.com/nodecri/nodecri/config"
)

// CRISection is the plugin's section name in containerd's config.
const CRISection = "io.containerd.grpc.v1.cri"

// Network is the pod network a layout's conflist describes. CNI state is
// host-wide, so each instance needs its own bridge, subnet and IPAM folder.
type Network struct {
	Name   string // CNI network name
	Bridge string // Linux bridge device, at most 15 characters
	Subnet string // host-local range
}

// Layout is one daemon's folder and configuration.
type Layout struct {
	Dir            string
	Socket         string
	MetricsAddress string // host:port, "" for no metrics endpoint
	CNIConfDir     string
	CNIBinDirs     []string
	RuntimeBinDir  string // where runc (and ctr, the shim) live
	Network        Network
	// LogLevel is the daemon's; debug unless set (benchmarks use info).
	LogLevel string
	// ExtraPlugins are appended to the pod network's plugin chain.
	ExtraPlugins []map[string]any
	// Config is containerd's whole config as a tree; callers may change
	// it before WriteConfig.
	Config map[string]any
	// Raw, when set, is written as the config file instead of Config, for
	// tests of files shaped as operators' tools write them. Config should
	// still name the runtimes' roots, which the teardown sweeps.
	Raw []byte
}

// NewLayout prepares a layout under dir; nothing is written yet.
func NewLayout(dir, binDir, metricsAddress string, nw Network) *Layout {
	l := &Layout{
		Dir:            dir,
		Socket:         filepath.Join(dir, "containerd.sock"),
		MetricsAddress: metricsAddress,
		CNIConfDir:     filepath.Join(dir, "net.d"),
		// Debian installs CNI plugins in /usr/lib/cni; /opt/cni/bin is the
		// upstream location.
		CNIBinDirs:    []string{"/usr/lib/cni", "/opt/cni/bin"},
		RuntimeBinDir: binDir,
		Network:       nw,
	}
	cri := map[string]any{
		"restrict_oom_score_adj": !HasCapSysResource(),
		// CDI specs of this instance only, never the host's.
		"cdi_spec_dirs": []string{filepath.Join(dir, "cdi")},
		"containerd": map[string]any{
			"default_runtime_name": "runc",
			"runtimes": map[string]any{
				"runc": map[string]any{
					"runtime_type": "io.containerd.runc.v2",
					"options": map[string]any{
						"BinaryName": filepath.Join(binDir, "runc"),
						"Root":       filepath.Join(dir, "runc"),
					},
				},
				// Debian's runc 1.1: a second handler that works on every
				// Debian host, without idmapped mounts.
				"runc-debian": map[string]any{
					"runtime_type": "io.containerd.runc.v2",
					"options": map[string]any{
						"BinaryName": "/usr/sbin/runc",
						"Root":       filepath.Join(dir, "runc-debian"),
					},
				},
			},
		},
		"cni": map[string]any{
			"bin_dirs": l.CNIBinDirs,
			"conf_dir": l.CNIConfDir,
		},
	}
	if CrunUsable() {
		cri["containerd"].(map[string]any)["runtimes"].(map[string]any)["crun"] = map[string]any{
			"runtime_type": "io.containerd.runc.v2",
			"options":      map[string]any{"BinaryName": "crun", "Root": filepath.Join(dir, "crun")},
		}
	}
	servers := map[string]any{
		"io.containerd.server.v1.grpc":  map[string]any{"address": l.Socket},
		"io.containerd.server.v1.ttrpc": map[string]any{"address": l.Socket + ".ttrpc"},
		"io.containerd.server.v1.debug": map[string]any{"address": filepath.Join(dir, "debug.sock")},
		CRISection:                      cri,
	}
	if metricsAddress != "" {
		servers["io.containerd.server.v1.metrics"] = map[string]any{"address": metricsAddress}
	}
	l.Config = map[string]any{
		"version": 4,
		"root":    filepath.Join(dir, "root"),
		"state":   filepath.Join(dir, "state"),
		// Never read the host's /etc/containerd/conf.d.
		"imports": []string{},
		// A bad CRI section stops the daemon rather than leaving one that
		// answers only Unimplemented.
		"required_plugins": []string{CRISection},
		// NRI is not integrated with nodecri yet.
		"disabled_plugins": []string{"io.containerd.nri.v1.nri"},
		"plugins":          servers,
	}
	return l
}

// CRI returns the plugin's settings, for callers to adjust, in containerd
// 1.x's layout (one section, 1.x key names): WriteConfig moves them into
// 2.x's sections with config.Migrate, as the daemon does for a 1.x file.
func (l *Layout) CRI() map[string]any {
	return l.Config["plugins"].(map[string]any)[CRISection].(map[string]any)
}

// ConfigPath is where WriteConfig puts containerd's config.
func (l *Layout) ConfigPath() string { return filepath.Join(l.Dir, "config.toml") }

// WriteConfig writes containerd's config file.
func (l *Layout) WriteConfig() error {
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		return err
	}
	if l.Raw != nil {
		return os.WriteFile(l.ConfigPath(), l.Raw, 0o644)
	}
	cfg, err := migrated(l.Config)
	if err != nil {
		return err
	}
	b, err := toml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("marshal config: %w", err)
	}
	return os.WriteFile(l.ConfigPath(), b, 0o644)
}

// migrated is a copy of cfg with the CRI settings in 2.x's layout. A key
// the daemon would ignore is an error: a test meant it to take effect.
func migrated(cfg map[string]any) (map[string]any, error) {
	b, err := toml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("marshal config: %w", err)
	}
	out := map[string]any{}
	if err := toml.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	plugins, _ := out["plugins"].(map[string]any)
	if plugins == nil {
		return out, nil
	}
	warnings, err := config.Migrate(plugins)
	if err != nil {
		return nil, err
	}
	if len(warnings) > 0 {
		return nil, fmt.Errorf("config keys the daemon does not know: %s", strings.Join(warnings, ", "))
	}
	if srv, ok := plugins[CRISection].(map[string]any); ok && len(srv) == 0 {
		delete(plugins, CRISection)
	}
	return out, nil
}

// ConflistPath is where WriteConflist puts the pod network.
func (l *Layout) ConflistPath() string {
	return filepath.Join(l.CNIConfDir, "10-"+l.Network.Name+".conflist")
}

// WriteConflist writes a bridge + portmap network (go-cni adds loopback
// itself), atomically, since the daemon watches the folder.
func (l *Layout) WriteConflist() error {
	if err := os.MkdirAll(l.CNIConfDir, 0o755); err != nil {
		return err
	}
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       l.Network.Name,
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      l.Network.Bridge,
				"isGateway":   true,
				"ipMasq":      true,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": l.Network.Subnet}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": l.IPAMDir(),
				},
			},
			map[string]any{
				"type":         "portmap",
				"capabilities": map[string]bool{"portMappings": true},
			},
		},
	}
	for _, p := range l.ExtraPlugins {
		conf["plugins"] = append(conf["plugins"].([]any), p)
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	return cni.WriteFileAtomic(l.ConflistPath(), b, 0o644)
}

// IPAMDir is host-local's reservation folder for this layout's network.
func (l *Layout) IPAMDir() string { return filepath.Join(l.Dir, "cni-ipam") }

// HasCapSysResource tells whether this process may lower oom_score_adj
// below its own; without it runc fails every sandbox unless the daemon
// clamps requested scores (restrict_oom_score_adj).
func HasCapSysResource() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			var caps uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%x", &caps); err != nil {
				return false
			}
			const capSysResource = 24
			return caps&(1<<capSysResource) != 0
		}
	}
	return false
}

func (l *Layout) logLevel() string {
	if l.LogLevel == "" {
		return "debug"
	}
	return l.LogLevel
}

// CrunUsable tells whether Debian's crun 1.8 can run containers here: it
// refuses hybrid cgroup hosts with controllers on the v2 hierarchy (this
// VM has hugetlb there), with or without --cgroup-manager=disabled.
func CrunUsable() bool {
	b, err := os.ReadFile("/sys/fs/cgroup/unified/cgroup.controllers")
	return err != nil || strings.TrimSpace(string(b)) == ""
}
