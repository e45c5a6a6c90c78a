// Package config holds the plugin's configuration: the section an operator
// writes under [plugins."io.containerd.grpc.v1.cri"], in containerd 1.x's
// layout, with upstream's defaults, and its validation.
package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"
	"golang.org/x/sys/unix"
)

// Config is the plugin section. Field tags are the 1.x key names so that an
// existing section keeps working unchanged.
type Config struct {
	SandboxImage             string            `toml:"sandbox_image" json:"sandboxImage"`
	PinnedImages             map[string]string `toml:"pinned_images" json:"pinnedImages"`
	StreamServerAddress      string            `toml:"stream_server_address" json:"streamServerAddress"`
	StreamServerPort         string            `toml:"stream_server_port" json:"streamServerPort"`
	EnableTLSStreaming       bool              `toml:"enable_tls_streaming" json:"enableTLSStreaming"`
	X509KeyPairStreaming     X509KeyPair       `toml:"x509_key_pair_streaming" json:"x509KeyPairStreaming"`
	MaxContainerLogLineSize  int               `toml:"max_container_log_line_size" json:"maxContainerLogLineSize"`
	RestrictOOMScoreAdj      bool              `toml:"restrict_oom_score_adj" json:"restrictOOMScoreAdj"`
	DisableApparmor          bool              `toml:"disable_apparmor" json:"disableApparmor"`
	EnableSelinux            bool              `toml:"enable_selinux" json:"enableSelinux"`
	ImagePullProgressTimeout string            `toml:"image_pull_progress_timeout" json:"imagePullProgressTimeout"`
	MaxConcurrentDownloads   int               `toml:"max_concurrent_downloads" json:"maxConcurrentDownloads"`
	// StatsCollectPeriod is how often, in seconds, the snapshotter's usage
	// behind ImageFsInfo is refreshed (its 1.x meaning).
	StatsCollectPeriod int `toml:"stats_collect_period" json:"statsCollectPeriod"`
	// StatsSamplePeriod is how often containers' CPU, memory and process
	// counts are sampled from containerd's task metrics (ours, not 1.x's):
	// a duration, e.g. "10s".
	StatsSamplePeriod string `toml:"stats_sample_period" json:"statsSamplePeriod"`
	// EnableCDI turns on Container Device Interface devices, found in
	// CDISpecDirs.
	EnableCDI   bool     `toml:"enable_cdi" json:"enableCDI"`
	CDISpecDirs []string `toml:"cdi_spec_dirs" json:"cdiSpecDirs"`
	// EnableUnprivilegedPorts gives pods with their own network namespace
	// net.ipv4.ip_unprivileged_port_start=0 unless they set it: any user
	// may bind ports below 1024 there.
	EnableUnprivilegedPorts bool `toml:"enable_unprivileged_ports" json:"enableUnprivilegedPorts"`
	// EnableUnprivilegedICMP gives them net.ipv4.ping_group_range=
	// "0 2147483647" likewise: any user may ping without CAP_NET_RAW.
	EnableUnprivilegedICMP bool `toml:"enable_unprivileged_icmp" json:"enableUnprivilegedICMP"`
	// DisableHugetlbController keeps the kubelet's hugepage limits out of
	// containers' specs, as upstream does by default.
	DisableHugetlbController bool `toml:"disable_hugetlb_controller" json:"disableHugetlbController"`
	// TolerateMissingHugetlbController drops hugepage limits (with one
	// warning) where the runtime cannot use the hugetlb controller,
	// instead of failing CreateContainer.
	TolerateMissingHugetlbController bool `toml:"tolerate_missing_hugetlb_controller" json:"tolerateMissingHugetlbController"`

	Containerd ContainerdConfig `toml:"containerd" json:"containerd"`
	CNI        CNIConfig        `toml:"cni" json:"cni"`
	Registry   RegistryConfig   `toml:"registry" json:"registry"`

	// Removed 1.x keys: present only so that a config still carrying them
	// fails by name instead of being ignored with a warning.
	SystemdCgroup any `toml:"systemd_cgroup,omitempty" json:"-"`
}

// X509KeyPair is the certificate the streaming server uses with TLS.
type X509KeyPair struct {
	TLSCertFile string `toml:"tls_cert_file" json:"tlsCertFile"`
	TLSKeyFile  string `toml:"tls_key_file" json:"tlsKeyFile"`
}

// ContainerdConfig is the [...cri.containerd] table.
type ContainerdConfig struct {
	Snapshotter        string             `toml:"snapshotter" json:"snapshotter"`
	DefaultRuntimeName string             `toml:"default_runtime_name" json:"defaultRuntimeName"`
	Runtimes           map[string]Runtime `toml:"runtimes" json:"runtimes"`

	DefaultRuntime           any `toml:"default_runtime,omitempty" json:"-"`
	UntrustedWorkloadRuntime any `toml:"untrusted_workload_runtime,omitempty" json:"-"`
}

// Runtime is one [...cri.containerd.runtimes.<name>] table: a runtime handler.
type Runtime struct {
	Type                 string         `toml:"runtime_type" json:"runtimeType"`
	Path                 string         `toml:"runtime_path" json:"runtimePath"`
	Snapshotter          string         `toml:"snapshotter" json:"snapshotter"`
	PodAnnotations       []string       `toml:"pod_annotations" json:"podAnnotations"`
	ContainerAnnotations []string       `toml:"container_annotations" json:"containerAnnotations"`
	Options              map[string]any `toml:"options" json:"options"`

	Engine any `toml:"runtime_engine,omitempty" json:"-"`
	Root   any `toml:"runtime_root,omitempty" json:"-"`
}

// CNIConfig is the [...cri.cni] table.
type CNIConfig struct {
	BinDir       string   `toml:"bin_dir" json:"binDir"`
	BinDirs      []string `toml:"bin_dirs" json:"binDirs"`
	ConfDir      string   `toml:"conf_dir" json:"confDir"`
	MaxConfNum   int      `toml:"max_conf_num" json:"maxConfNum"`
	ConfTemplate string   `toml:"conf_template" json:"confTemplate"`
}

// RegistryConfig is the [...cri.registry] table.
type RegistryConfig struct {
	ConfigPath string `toml:"config_path" json:"configPath"`

	Mirrors any `toml:"mirrors,omitempty" json:"-"`
	Configs any `toml:"configs,omitempty" json:"-"`
	Auths   any `toml:"auths,omitempty" json:"-"`
}

// Namespace is the containerd namespace every CRI object lives in, shared
// with the node's tooling (`ctr -n k8s.io`).
const Namespace = "k8s.io"

// RuncRuntimeType is the shim every default handler uses.
const RuncRuntimeType = "io.containerd.runc.v2"

// Default returns the section with upstream's defaults filled in.
func Default() *Config {
	return &Config{
		SandboxImage:             "registry.k8s.io/pause:3.10.2",
		PinnedImages:             map[string]string{},
		StreamServerAddress:      "127.0.0.1",
		StreamServerPort:         "0",
		MaxContainerLogLineSize:  16 * 1024,
		ImagePullProgressTimeout: (5 * time.Minute).String(),
		MaxConcurrentDownloads:   3,
		StatsCollectPeriod:       10,
		StatsSamplePeriod:        (10 * time.Second).String(),
		EnableCDI:                true,
		EnableUnprivilegedPorts:  true,
		EnableUnprivilegedICMP:   true,
		// Upstream's defaults: the kubelet sends a limit for every page
		// size, and many hosts cannot apply them.
		DisableHugetlbController:         true,
		TolerateMissingHugetlbController: true,
		CDISpecDirs:                      []string{"/etc/cdi", "/var/run/cdi"},
		Containerd: ContainerdConfig{
			Snapshotter:        "overlayfs",
			DefaultRuntimeName: "runc",
			Runtimes: map[string]Runtime{
				"runc": {Type: RuncRuntimeType, Options: map[string]any{}},
			},
		},
		CNI: CNIConfig{
			BinDirs:    []string{"/opt/cni/bin"},
			ConfDir:    "/etc/cni/net.d",
			MaxConfNum: 1,
		},
	}
}

// Error is a configuration error naming the offending key and value.
type Error struct {
	Key   string
	Value any
	Why   string
}

func (e *Error) Error() string {
	return fmt.Sprintf("invalid cri config: %s = %s: %s", e.Key, quote(e.Value), e.Why)
}

func quote(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%v", v)
}

func bad(key string, value any, format string, args ...any) error {
	return &Error{Key: key, Value: value, Why: fmt.Sprintf(format, args...)}
}

// Validate checks the section and fills derived values (bin_dir folded into
// bin_dirs). It returns every problem, each naming its key and value.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, r := range removedKeys(c) {
		add(r)
	}

	if _, err := reference.ParseDockerRef(c.SandboxImage); err != nil {
		add(bad("sandbox_image", c.SandboxImage, "not an image reference: %v", err))
	}
	for _, k := range slices.Sorted(maps.Keys(c.PinnedImages)) {
		if _, err := reference.ParseDockerRef(c.PinnedImages[k]); err != nil {
			add(bad("pinned_images."+k, c.PinnedImages[k], "not an image reference: %v", err))
		}
	}
	if c.StreamServerAddress != "" && net.ParseIP(c.StreamServerAddress) == nil {
		add(bad("stream_server_address", c.StreamServerAddress, "not an IP address"))
	}
	if p, err := strconv.Atoi(c.StreamServerPort); err != nil || p < 0 || p > 65535 {
		add(bad("stream_server_port", c.StreamServerPort, "not a port number (0 picks a free one)"))
	}
	if c.EnableTLSStreaming && (c.X509KeyPairStreaming.TLSCertFile == "") != (c.X509KeyPairStreaming.TLSKeyFile == "") {
		add(bad("x509_key_pair_streaming", c.X509KeyPairStreaming, "set both tls_cert_file and tls_key_file, or neither for a self-signed pair"))
	}
	if c.MaxContainerLogLineSize < -1 || c.MaxContainerLogLineSize == 0 {
		add(bad("max_container_log_line_size", c.MaxContainerLogLineSize, "must be positive, or -1 for no limit"))
	}
	if d, err := time.ParseDuration(c.ImagePullProgressTimeout); err != nil {
		add(bad("image_pull_progress_timeout", c.ImagePullProgressTimeout, "not a duration (e.g. \"5m\", \"0\" disables)"))
	} else if d < 0 {
		add(bad("image_pull_progress_timeout", c.ImagePullProgressTimeout, "must not be negative"))
	}
	if c.MaxConcurrentDownloads < 1 {
		add(bad("max_concurrent_downloads", c.MaxConcurrentDownloads, "must be at least 1"))
	}
	if c.StatsCollectPeriod < 1 {
		add(bad("stats_collect_period", c.StatsCollectPeriod, "must be at least 1 (seconds)"))
	}
	if d, err := time.ParseDuration(c.StatsSamplePeriod); err != nil {
		add(bad("stats_sample_period", c.StatsSamplePeriod, "not a duration (e.g. \"10s\")"))
	} else if d < time.Second {
		add(bad("stats_sample_period", c.StatsSamplePeriod, "must be at least 1s"))
	}
	for _, d := range c.CDISpecDirs {
		if !filepath.IsAbs(d) {
			add(bad("cdi_spec_dirs", d, "must be an absolute path"))
		}
	}
	if c.EnableUnprivilegedPorts || c.EnableUnprivilegedICMP {
		// Both sysctls are per network namespace only from Linux 4.11.
		if rel := kernelRelease(); rel != "" && !kernelAtLeast(rel, 4, 11) {
			key, v := "enable_unprivileged_ports", c.EnableUnprivilegedPorts
			if !v {
				key, v = "enable_unprivileged_icmp", c.EnableUnprivilegedICMP
			}
			add(bad(key, v, "needs Linux 4.11 or later (this kernel is %s); set it to false", rel))
		}
	}
	if c.EnableSelinux {
		add(bad("enable_selinux", c.EnableSelinux, "SELinux labelling is not supported by nodecri"))
	}

	if c.Containerd.Snapshotter == "" {
		add(bad("containerd.snapshotter", c.Containerd.Snapshotter, "must name a snapshotter"))
	}
	if len(c.Containerd.Runtimes) == 0 {
		add(bad("containerd.runtimes", "{}", "at least one runtime handler is needed"))
	}
	if _, ok := c.Containerd.Runtimes[c.Containerd.DefaultRuntimeName]; !ok {
		add(bad("containerd.default_runtime_name", c.Containerd.DefaultRuntimeName,
			"no such runtime under containerd.runtimes (have %s)", strings.Join(c.RuntimeNames(), ", ")))
	}
	for _, name := range c.RuntimeNames() {
		r := c.Containerd.Runtimes[name]
		key := "containerd.runtimes." + name
		if name == "" || strings.ContainsAny(name, "/ \t") {
			add(bad(key, name, "a handler name must be non-empty, without slashes or spaces"))
		}
		if r.Type == "" {
			add(bad(key+".runtime_type", r.Type, "missing; e.g. %q", RuncRuntimeType))
		}
		if r.Path != "" && !filepath.IsAbs(r.Path) {
			add(bad(key+".runtime_path", r.Path, "must be an absolute path"))
		}
		if _, err := DecodeOptions(r.Type, r.Options); err != nil {
			add(bad(key+".options", r.Options, "%v", err))
		}
	}

	if c.CNI.BinDir != "" {
		// 1.x's single bin_dir, kept: it is searched before bin_dirs.
		if !slices.Contains(c.CNI.BinDirs, c.CNI.BinDir) {
			c.CNI.BinDirs = append([]string{c.CNI.BinDir}, c.CNI.BinDirs...)
		}
	}
	if len(c.CNI.BinDirs) == 0 {
		add(bad("cni.bin_dirs", "[]", "at least one folder of CNI plugin binaries is needed"))
	}
	for _, d := range c.CNI.BinDirs {
		if !filepath.IsAbs(d) {
			add(bad("cni.bin_dirs", d, "must be an absolute path"))
		}
	}
	if !filepath.IsAbs(c.CNI.ConfDir) {
		add(bad("cni.conf_dir", c.CNI.ConfDir, "must be an absolute path"))
	}
	if c.CNI.MaxConfNum < 0 {
		add(bad("cni.max_conf_num", c.CNI.MaxConfNum, "must not be negative (0 loads every config)"))
	}
	if c.CNI.ConfTemplate != "" && !filepath.IsAbs(c.CNI.ConfTemplate) {
		add(bad("cni.conf_template", c.CNI.ConfTemplate, "must be an absolute path"))
	}
	if c.Registry.ConfigPath != "" {
		for _, p := range filepath.SplitList(c.Registry.ConfigPath) {
			if !filepath.IsAbs(p) {
				add(bad("registry.config_path", c.Registry.ConfigPath, "must be absolute paths"))
				break
			}
		}
	}
	return errors.Join(errs...)
}

// removedKeys reports the 1.x keys nodecri does not carry on, each with the
// key to use instead.
func removedKeys(c *Config) []error {
	var errs []error
	if c.SystemdCgroup != nil {
		errs = append(errs, bad("systemd_cgroup", c.SystemdCgroup, "removed; set SystemdCgroup in containerd.runtimes.<name>.options"))
	}
	if c.Registry.Mirrors != nil {
		errs = append(errs, bad("registry.mirrors", c.Registry.Mirrors, "removed; put mirrors in hosts.toml files under registry.config_path"))
	}
	if c.Registry.Configs != nil {
		errs = append(errs, bad("registry.configs", c.Registry.Configs, "removed; put TLS settings in hosts.toml files under registry.config_path, credentials come from the kubelet"))
	}
	if c.Registry.Auths != nil {
		errs = append(errs, bad("registry.auths", c.Registry.Auths, "removed; credentials come from the kubelet's image pull secrets"))
	}
	if c.Containerd.DefaultRuntime != nil {
		errs = append(errs, bad("containerd.default_runtime", c.Containerd.DefaultRuntime, "removed; use containerd.default_runtime_name and containerd.runtimes.<name>"))
	}
	if c.Containerd.UntrustedWorkloadRuntime != nil {
		errs = append(errs, bad("containerd.untrusted_workload_runtime", c.Containerd.UntrustedWorkloadRuntime, "removed; configure a runtime handler under containerd.runtimes.<name> and use a RuntimeClass"))
	}
	for _, name := range c.RuntimeNames() {
		r := c.Containerd.Runtimes[name]
		// nvidia-ctk and other generators write both keys empty: nothing
		// is lost then, so only a value is refused.
		if r.Engine != nil && r.Engine != "" {
			errs = append(errs, bad("containerd.runtimes."+name+".runtime_engine", r.Engine, "removed; set BinaryName in containerd.runtimes.%s.options", name))
		}
		if r.Root != nil && r.Root != "" {
			errs = append(errs, bad("containerd.runtimes."+name+".runtime_root", r.Root, "removed; set Root in containerd.runtimes.%s.options", name))
		}
	}
	return errs
}

// RuntimeNames returns the configured handler names, sorted.
func (c *Config) RuntimeNames() []string {
	names := make([]string, 0, len(c.Containerd.Runtimes))
	for n := range c.Containerd.Runtimes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// PullProgressTimeout is image_pull_progress_timeout parsed; 0 disables it.
func (c *Config) PullProgressTimeout() time.Duration {
	d, _ := time.ParseDuration(c.ImagePullProgressTimeout)
	return d
}

// StatsPeriod is stats_collect_period as a duration.
func (c *Config) StatsPeriod() time.Duration {
	return time.Duration(c.StatsCollectPeriod) * time.Second
}

// SamplePeriod is stats_sample_period parsed.
func (c *Config) SamplePeriod() time.Duration {
	d, _ := time.ParseDuration(c.StatsSamplePeriod)
	return d
}

// kernelRelease is uname -r, or "" when unknown.
var kernelRelease = func() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// kernelAtLeast compares a release such as "6.18.44-fc" with major.minor.
func kernelAtLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return true // unknown form: let the kernel decide
	}
	ma, err1 := strconv.Atoi(parts[0])
	digits := strings.IndexFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' })
	if digits < 0 {
		digits = len(parts[1])
	}
	mi, err2 := strconv.Atoi(parts[1][:digits])
	if err1 != nil || err2 != nil {
		return true
	}
	return ma > major || ma == major && mi >= minor
}
