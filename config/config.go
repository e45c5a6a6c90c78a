// Package config holds the plugin's configuration in containerd 2.x's
// layout: three sections, each with upstream's key names and defaults.
//
//	[plugins."io.containerd.grpc.v1.cri"]      ServerConfig (streaming)
//	[plugins."io.containerd.cri.v1.runtime"]   RuntimeConfig
//	[plugins."io.containerd.cri.v1.images"]    ImageConfig
//
// Files in containerd 1.x's layout (everything under the first section) are
// moved into the three by Migrate; Config is the three together.
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

// The sections' names in containerd's config, as plugin type.ID.
const (
	ServerSection  = "io.containerd.grpc.v1.cri"
	RuntimeSection = "io.containerd.cri.v1.runtime"
	ImagesSection  = "io.containerd.cri.v1.images"
)

// Config is the whole configuration: the three sections, merged. Verbose
// Status (crictl info) shows it as JSON.
type Config struct {
	ServerConfig
	RuntimeConfig
	ImageConfig
	// SandboxImage is pinned_images.sandbox, filled by Validate.
	SandboxImage string `toml:"-" json:"sandboxImage"`
}

// ServerConfig is [plugins."io.containerd.grpc.v1.cri"] in a 2.x file: the
// streaming server. In a 1.x file the section holds everything; Migrate
// moves the rest out.
type ServerConfig struct {
	// DisableTCPService is upstream's switch for a CRI endpoint on TCP;
	// nodecri serves CRI only on containerd's socket, so only true is
	// accepted.
	DisableTCPService    bool        `toml:"disable_tcp_service" json:"disableTCPService"`
	StreamServerAddress  string      `toml:"stream_server_address" json:"streamServerAddress"`
	StreamServerPort     string      `toml:"stream_server_port" json:"streamServerPort"`
	StreamIdleTimeout    string      `toml:"stream_idle_timeout" json:"streamIdleTimeout"`
	EnableTLSStreaming   bool        `toml:"enable_tls_streaming" json:"enableTLSStreaming"`
	X509KeyPairStreaming X509KeyPair `toml:"x509_key_pair_streaming" json:"x509KeyPairStreaming"`

	// Legacy holds 1.x keys found here in a version 4 file (nodecri wrote
	// that layout before it read 2.x's); the plugin moves them with
	// Migrate. Migration empties it for older files.
	Legacy `json:"-"`
}

// X509KeyPair is the certificate the streaming server uses with TLS.
type X509KeyPair struct {
	TLSCertFile string `toml:"tls_cert_file" json:"tlsCertFile"`
	TLSKeyFile  string `toml:"tls_key_file" json:"tlsKeyFile"`
}

// RuntimeConfig is [plugins."io.containerd.cri.v1.runtime"].
type RuntimeConfig struct {
	Containerd              ContainerdConfig `toml:"containerd" json:"containerd"`
	CNI                     CNIConfig        `toml:"cni" json:"cni"`
	MaxContainerLogLineSize int              `toml:"max_container_log_line_size" json:"maxContainerLogLineSize"`
	RestrictOOMScoreAdj     bool             `toml:"restrict_oom_score_adj" json:"restrictOOMScoreAdj"`
	DisableApparmor         bool             `toml:"disable_apparmor" json:"disableApparmor"`
	EnableSelinux           bool             `toml:"enable_selinux" json:"enableSelinux"`
	// StatsSamplePeriod is how often containers' CPU, memory and process
	// counts are sampled from containerd's task metrics: a duration. It is
	// upstream 2.x's runtime stats_collect_period (1.x files: nodecri's
	// stats_sample_period).
	StatsSamplePeriod string `toml:"stats_collect_period" json:"statsSamplePeriod"`
	// EnableCDI turns on Container Device Interface devices, found in
	// CDISpecDirs. Upstream 2.x always has CDI on; the key is kept.
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
	// DeviceOwnershipFromSecurityContext makes devices added to a
	// container owned by its runAsUser/runAsGroup.
	DeviceOwnershipFromSecurityContext bool `toml:"device_ownership_from_security_context" json:"deviceOwnershipFromSecurityContext"`
	// IgnoreImageDefinedVolumes leaves an image's VOLUMEs as part of the
	// rootfs instead of giving each container a writable copy.
	IgnoreImageDefinedVolumes bool `toml:"ignore_image_defined_volumes" json:"ignoreImageDefinedVolumes"`
	// DrainExecSyncIOTimeout bounds how long ExecSync waits for output
	// after the exec process exits; "0s" waits without limit.
	DrainExecSyncIOTimeout string `toml:"drain_exec_sync_io_timeout" json:"drainExecSyncIOTimeout"`

	// Removed 1.x keys: present only so that a config still carrying them
	// fails by name instead of being ignored with a warning.
	SystemdCgroup any `toml:"systemd_cgroup,omitempty" json:"-"`
}

// ContainerdConfig is the runtime section's [containerd] table.
type ContainerdConfig struct {
	DefaultRuntimeName string             `toml:"default_runtime_name" json:"defaultRuntimeName"`
	Runtimes           map[string]Runtime `toml:"runtimes" json:"runtimes"`

	DefaultRuntime           any `toml:"default_runtime,omitempty" json:"-"`
	UntrustedWorkloadRuntime any `toml:"untrusted_workload_runtime,omitempty" json:"-"`
}

// Runtime is one [containerd.runtimes.<name>] table: a runtime handler.
type Runtime struct {
	Type                 string         `toml:"runtime_type" json:"runtimeType"`
	Path                 string         `toml:"runtime_path" json:"runtimePath"`
	Snapshotter          string         `toml:"snapshotter" json:"snapshotter"`
	PodAnnotations       []string       `toml:"pod_annotations" json:"podAnnotations"`
	ContainerAnnotations []string       `toml:"container_annotations" json:"containerAnnotations"`
	Options              map[string]any `toml:"options" json:"options"`
	// PrivilegedWithoutHostDevices gives this handler's privileged
	// containers no host devices (VM runtimes, for instance).
	PrivilegedWithoutHostDevices bool `toml:"privileged_without_host_devices" json:"privilegedWithoutHostDevices"`
	// PrivilegedWithoutHostDevicesAllDevicesAllowed keeps the device
	// cgroup open to all devices for them.
	PrivilegedWithoutHostDevicesAllDevicesAllowed bool `toml:"privileged_without_host_devices_all_devices_allowed" json:"privilegedWithoutHostDevicesAllDevicesAllowed"`
	// CgroupWritable mounts the container's cgroup read-write.
	CgroupWritable bool `toml:"cgroup_writable" json:"cgroupWritable"`
	// BaseRuntimeSpec is a JSON OCI spec file every container of this
	// handler starts from, read once at start.
	BaseRuntimeSpec string `toml:"base_runtime_spec" json:"baseRuntimeSpec"`
	// CNIConfDir and CNIMaxConfNum give this handler's pods their own CNI
	// configuration instead of the node's.
	CNIConfDir    string `toml:"cni_conf_dir" json:"cniConfDir"`
	CNIMaxConfNum int    `toml:"cni_max_conf_num" json:"cniMaxConfNum"`
	// Sandboxer names how pods of this handler are run: only upstream's
	// "podsandbox" (a pause container) is implemented.
	Sandboxer string `toml:"sandboxer" json:"sandboxer"`

	Engine any `toml:"runtime_engine,omitempty" json:"-"`
	Root   any `toml:"runtime_root,omitempty" json:"-"`
}

// CNIConfig is the runtime section's [cni] table.
type CNIConfig struct {
	// BinDir is 1.x's single folder, searched before BinDirs.
	BinDir       string   `toml:"bin_dir" json:"binDir"`
	BinDirs      []string `toml:"bin_dirs" json:"binDirs"`
	ConfDir      string   `toml:"conf_dir" json:"confDir"`
	MaxConfNum   int      `toml:"max_conf_num" json:"maxConfNum"`
	ConfTemplate string   `toml:"conf_template" json:"confTemplate"`
	// SetupSerially runs the networks of a pod one after another.
	SetupSerially bool `toml:"setup_serially" json:"setupSerially"`
	// IPPref picks the pod's primary IP: "ipv4" (or ""), "ipv6" or "cni"
	// (the first the plugin returned).
	IPPref string `toml:"ip_pref" json:"ipPref"`
	// UseInternalLoopback brings lo up without the loopback plugin.
	UseInternalLoopback bool `toml:"use_internal_loopback" json:"useInternalLoopback"`
}

// ImageConfig is [plugins."io.containerd.cri.v1.images"].
type ImageConfig struct {
	Snapshotter string `toml:"snapshotter" json:"snapshotter"`
	// DisableSnapshotAnnotations keeps the image reference and layer
	// digests off snapshot labels; remote snapshotters need them (false).
	DisableSnapshotAnnotations bool `toml:"disable_snapshot_annotations" json:"disableSnapshotAnnotations"`
	// DiscardUnpackedLayers lets the layer blobs go once unpacked.
	DiscardUnpackedLayers bool `toml:"discard_unpacked_layers" json:"discardUnpackedLayers"`
	// PinnedImages are never garbage collected by the kubelet; "sandbox"
	// is the pause image.
	PinnedImages             map[string]string `toml:"pinned_images" json:"pinnedImages"`
	Registry                 Registry          `toml:"registry" json:"registry"`
	MaxConcurrentDownloads   int               `toml:"max_concurrent_downloads" json:"maxConcurrentDownloads"`
	ImagePullProgressTimeout string            `toml:"image_pull_progress_timeout" json:"imagePullProgressTimeout"`
	// StatsCollectPeriod is how often, in seconds, the snapshotter's usage
	// behind ImageFsInfo is refreshed.
	StatsCollectPeriod int `toml:"stats_collect_period" json:"statsCollectPeriod"`
}

// Registry is the images section's [registry] table. Hosts come from
// hosts.toml files under ConfigPath; mirrors, configs and auths are
// deprecated upstream and translated into the same host settings.
type Registry struct {
	ConfigPath string                        `toml:"config_path" json:"configPath"`
	Mirrors    map[string]Mirror             `toml:"mirrors" json:"mirrors"`
	Configs    map[string]RegistryHostConfig `toml:"configs" json:"configs"`
	// Auths is keyed by endpoint URL (deprecated already in 1.x).
	Auths   map[string]AuthConfig `toml:"auths" json:"auths"`
	Headers map[string][]string   `toml:"headers" json:"headers"`
}

// Mirror lists the endpoints tried for a registry host, in order.
type Mirror struct {
	Endpoints []string `toml:"endpoint" json:"endpoint"`
}

// RegistryHostConfig is one registry host's TLS and credentials.
type RegistryHostConfig struct {
	TLS  *TLSConfig  `toml:"tls" json:"tls"`
	Auth *AuthConfig `toml:"auth" json:"auth"`
}

// TLSConfig is a registry host's TLS client settings.
type TLSConfig struct {
	InsecureSkipVerify bool   `toml:"insecure_skip_verify" json:"insecureSkipVerify"`
	CAFile             string `toml:"ca_file" json:"caFile"`
	CertFile           string `toml:"cert_file" json:"certFile"`
	KeyFile            string `toml:"key_file" json:"keyFile"`
}

// AuthConfig is a registry host's credentials; json "-" keeps them out of
// crictl info.
type AuthConfig struct {
	Username      string `toml:"username" json:"-"`
	Password      string `toml:"password" json:"-"`
	Auth          string `toml:"auth" json:"-"`
	IdentityToken string `toml:"identitytoken" json:"-"`
}

// Namespace is the containerd namespace every CRI object lives in, shared
// with the node's tooling (`ctr -n k8s.io`).
const Namespace = "k8s.io"

// RuncRuntimeType is the shim every default handler uses.
const RuncRuntimeType = "io.containerd.runc.v2"

// PodSandboxMode is the only sandboxer nodecri implements.
const PodSandboxMode = "podsandbox"

// DefaultSandboxImage is pinned_images.sandbox unless set.
const DefaultSandboxImage = "registry.k8s.io/pause:3.10.2"

// DefaultServer returns the server section with upstream's defaults.
func DefaultServer() ServerConfig {
	return ServerConfig{
		DisableTCPService:   true,
		StreamServerAddress: "127.0.0.1",
		StreamServerPort:    "0",
		StreamIdleTimeout:   (4 * time.Hour).String(),
	}
}

// DefaultRuntime returns the runtime section with upstream's defaults.
func DefaultRuntime() RuntimeConfig {
	return RuntimeConfig{
		MaxContainerLogLineSize: 16 * 1024,
		// Ours: upstream samples every second; ten seconds is the
		// kubelet's own housekeeping pace and costs a tenth.
		StatsSamplePeriod:       (10 * time.Second).String(),
		EnableCDI:               true,
		CDISpecDirs:             []string{"/etc/cdi", "/var/run/cdi"},
		EnableUnprivilegedPorts: true,
		EnableUnprivilegedICMP:  true,
		// Upstream's defaults: the kubelet sends a limit for every page
		// size, and many hosts cannot apply them.
		DisableHugetlbController:         true,
		TolerateMissingHugetlbController: true,
		DrainExecSyncIOTimeout:           "0s",
		Containerd: ContainerdConfig{
			DefaultRuntimeName: "runc",
			Runtimes: map[string]Runtime{
				"runc": {Type: RuncRuntimeType, Options: map[string]any{}, Sandboxer: PodSandboxMode},
			},
		},
		CNI: CNIConfig{
			BinDirs:    []string{"/opt/cni/bin"},
			ConfDir:    "/etc/cni/net.d",
			MaxConfNum: 1,
		},
	}
}

// DefaultImages returns the images section with upstream's defaults.
func DefaultImages() ImageConfig {
	return ImageConfig{
		Snapshotter:                "overlayfs",
		DisableSnapshotAnnotations: true,
		PinnedImages:               map[string]string{"sandbox": DefaultSandboxImage},
		MaxConcurrentDownloads:     3,
		ImagePullProgressTimeout:   (5 * time.Minute).String(),
		StatsCollectPeriod:         10,
	}
}

// Default returns the whole configuration with upstream's defaults.
func Default() *Config {
	return &Config{ServerConfig: DefaultServer(), RuntimeConfig: DefaultRuntime(), ImageConfig: DefaultImages(), SandboxImage: DefaultSandboxImage}
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

	if c.PinnedImages == nil {
		c.PinnedImages = map[string]string{}
	}
	if c.PinnedImages["sandbox"] == "" {
		c.PinnedImages["sandbox"] = DefaultSandboxImage
	}
	c.SandboxImage = c.PinnedImages["sandbox"]
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
	if !c.DisableTCPService {
		add(bad("disable_tcp_service", c.DisableTCPService, "nodecri serves CRI only on containerd's socket; remove the key"))
	}
	if d, err := time.ParseDuration(c.StreamIdleTimeout); err != nil || d < 0 {
		add(bad("stream_idle_timeout", c.StreamIdleTimeout, "not a duration (e.g. \"4h\", \"0\" never closes idle streams)"))
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
		add(bad(runtimeStatsKey, c.StatsSamplePeriod, "not a duration (e.g. \"10s\")"))
	} else if d < time.Second {
		add(bad(runtimeStatsKey, c.StatsSamplePeriod, "must be at least 1s"))
	}
	if d, err := time.ParseDuration(c.DrainExecSyncIOTimeout); err != nil || d < 0 {
		add(bad("drain_exec_sync_io_timeout", c.DrainExecSyncIOTimeout, "not a duration (e.g. \"10s\", \"0s\" waits without limit)"))
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

	if c.Snapshotter == "" {
		add(bad("snapshotter", c.Snapshotter, "must name a snapshotter"))
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
		if r.Sandboxer != "" && r.Sandboxer != PodSandboxMode {
			add(bad(key+".sandboxer", r.Sandboxer, "only %q (pods with a pause container) is implemented", PodSandboxMode))
		}
		if r.BaseRuntimeSpec != "" && !filepath.IsAbs(r.BaseRuntimeSpec) {
			add(bad(key+".base_runtime_spec", r.BaseRuntimeSpec, "must be an absolute path"))
		}
		if r.CNIConfDir != "" && !filepath.IsAbs(r.CNIConfDir) {
			add(bad(key+".cni_conf_dir", r.CNIConfDir, "must be an absolute path"))
		}
		if r.CNIMaxConfNum < 0 {
			add(bad(key+".cni_max_conf_num", r.CNIMaxConfNum, "must not be negative (0 loads every config)"))
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
	switch c.CNI.IPPref {
	case "", "ipv4", "ipv6", "cni":
	default:
		add(bad("cni.ip_pref", c.CNI.IPPref, "must be \"ipv4\", \"ipv6\" or \"cni\""))
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

// Deprecated lists the keys set that upstream deprecates but still reads,
// each with what to use instead.
func (c *Config) Deprecated() []*Error {
	var out []*Error
	if len(c.Registry.Mirrors) > 0 {
		out = append(out, &Error{Key: "registry.mirrors", Value: slices.Sorted(maps.Keys(c.Registry.Mirrors)), Why: "deprecated; put mirrors in hosts.toml files under registry.config_path"})
	}
	if len(c.Registry.Configs) > 0 {
		out = append(out, &Error{Key: "registry.configs", Value: slices.Sorted(maps.Keys(c.Registry.Configs)), Why: "deprecated; put TLS settings in hosts.toml files under registry.config_path, credentials in the kubelet's image pull secrets or credential providers"})
	}
	if len(c.Registry.Auths) > 0 {
		out = append(out, &Error{Key: "registry.auths", Value: slices.Sorted(maps.Keys(c.Registry.Auths)), Why: "deprecated; use the kubelet's image pull secrets or credential providers"})
	}
	return out
}

// removedKeys reports the 1.x keys nodecri does not carry on, each with the
// key to use instead.
func removedKeys(c *Config) []error {
	var errs []error
	if c.SystemdCgroup != nil {
		errs = append(errs, bad("systemd_cgroup", c.SystemdCgroup, "removed; set SystemdCgroup in containerd.runtimes.<name>.options"))
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

// SamplePeriod is the runtime section's stats_collect_period parsed.
func (c *Config) SamplePeriod() time.Duration {
	d, _ := time.ParseDuration(c.StatsSamplePeriod)
	return d
}

// runtimeStatsKey names the runtime section's stats_collect_period in
// errors, apart from the images section's key of the same name.
const runtimeStatsKey = `plugins."io.containerd.cri.v1.runtime".stats_collect_period`

// StreamIdle is stream_idle_timeout parsed.
func (c *Config) StreamIdle() time.Duration {
	d, _ := time.ParseDuration(c.StreamIdleTimeout)
	return d
}

// DrainExecSyncIO is drain_exec_sync_io_timeout parsed; 0 is no limit.
func (c *Config) DrainExecSyncIO() time.Duration {
	d, _ := time.ParseDuration(c.DrainExecSyncIOTimeout)
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
