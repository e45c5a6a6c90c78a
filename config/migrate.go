package config

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Legacy catches 1.x keys written in the server section of a version 4
// file, the layout nodecri documented before it read 2.x's. Migration
// moves them out of older files before they are decoded, so only such a
// file fills it. Each field is a key's raw value.
type Legacy struct {
	LegacySandboxImage             any `toml:"sandbox_image,omitempty" json:"-"`
	LegacyPinnedImages             any `toml:"pinned_images,omitempty" json:"-"`
	LegacyContainerd               any `toml:"containerd,omitempty" json:"-"`
	LegacyCNI                      any `toml:"cni,omitempty" json:"-"`
	LegacyRegistry                 any `toml:"registry,omitempty" json:"-"`
	LegacyMaxContainerLogLineSize  any `toml:"max_container_log_line_size,omitempty" json:"-"`
	LegacyRestrictOOMScoreAdj      any `toml:"restrict_oom_score_adj,omitempty" json:"-"`
	LegacyDisableApparmor          any `toml:"disable_apparmor,omitempty" json:"-"`
	LegacyEnableSelinux            any `toml:"enable_selinux,omitempty" json:"-"`
	LegacyImagePullProgressTimeout any `toml:"image_pull_progress_timeout,omitempty" json:"-"`
	LegacyMaxConcurrentDownloads   any `toml:"max_concurrent_downloads,omitempty" json:"-"`
	LegacyStatsCollectPeriod       any `toml:"stats_collect_period,omitempty" json:"-"`
	LegacyStatsSamplePeriod        any `toml:"stats_sample_period,omitempty" json:"-"`
	LegacyEnableCDI                any `toml:"enable_cdi,omitempty" json:"-"`
	LegacyCDISpecDirs              any `toml:"cdi_spec_dirs,omitempty" json:"-"`
	LegacyUnprivilegedPorts        any `toml:"enable_unprivileged_ports,omitempty" json:"-"`
	LegacyUnprivilegedICMP         any `toml:"enable_unprivileged_icmp,omitempty" json:"-"`
	LegacyDisableHugetlb           any `toml:"disable_hugetlb_controller,omitempty" json:"-"`
	LegacyTolerateMissingHugetlb   any `toml:"tolerate_missing_hugetlb_controller,omitempty" json:"-"`
	LegacyDeviceOwnership          any `toml:"device_ownership_from_security_context,omitempty" json:"-"`
	LegacyIgnoreImageVolumes       any `toml:"ignore_image_defined_volumes,omitempty" json:"-"`
	LegacyDrainExecSyncIOTimeout   any `toml:"drain_exec_sync_io_timeout,omitempty" json:"-"`
	LegacySystemdCgroup            any `toml:"systemd_cgroup,omitempty" json:"-"`
}

// serverKeys are the keys the server section keeps in both layouts.
var serverKeys = []string{"disable_tcp_service", "stream_server_address", "stream_server_port", "stream_idle_timeout", "enable_tls_streaming", "x509_key_pair_streaming"}

// imageKeys are the 1.x top-level keys that 2.x keeps in the images section.
var imageKeys = []string{"registry", "max_concurrent_downloads", "image_pull_progress_timeout", "stats_collect_period", "pinned_images"}

// imageContainerdKeys are the 1.x [containerd] keys 2.x keeps in the images
// section.
var imageContainerdKeys = []string{"snapshotter", "disable_snapshot_annotations", "discard_unpacked_layers"}

// Migrate moves the 1.x keys of plugins' server section into the runtime
// and images sections, where containerd 2.x keeps them, in place. A key set
// in both layouts is an error naming both. Keys no section knows are
// dropped and returned as warnings, each with the path the file gave it.
func Migrate(plugins map[string]any) (warnings []string, err error) {
	src, _ := plugins[ServerSection].(map[string]any)
	sections := map[string]map[string]any{}
	section := func(name string) map[string]any {
		if sections[name] == nil {
			m, _ := plugins[name].(map[string]any)
			if m == nil {
				m = map[string]any{}
			}
			sections[name] = m
		}
		return sections[name]
	}
	types := map[string]reflect.Type{RuntimeSection: reflect.TypeFor[RuntimeConfig](), ImagesSection: reflect.TypeFor[ImageConfig](), ServerSection: reflect.TypeFor[ServerConfig]()}

	// Keys already in the 2.x sections.
	for _, name := range []string{RuntimeSection, ImagesSection} {
		if m, ok := plugins[name].(map[string]any); ok {
			warnings = append(warnings, dropUnknown(m, types[name], sectionPath(name))...)
		}
	}

	var errs []string
	move := func(srcPath string, v any, dst string, path ...string) {
		t, ok := typeAt(types[dst], path)
		if !ok {
			warnings = append(warnings, srcPath)
			return
		}
		if m, ok := v.(map[string]any); ok {
			warnings = append(warnings, dropUnknown(m, t, srcPath)...)
		}
		if err := put(section(dst), path, v, srcPath, sectionPath(dst)+"."+strings.Join(path, ".")); err != nil {
			errs = append(errs, err.Error())
		}
	}
	for _, k := range sortedKeys(src) {
		v, srcPath := src[k], sectionPath(ServerSection)+"."+k
		switch {
		case slices.Contains(serverKeys, k):
			continue
		case k == "sandbox_image":
			move(srcPath, v, ImagesSection, "pinned_images", "sandbox")
		case slices.Contains(imageKeys, k):
			move(srcPath, v, ImagesSection, k)
		case k == "stats_sample_period":
			move(srcPath, v, RuntimeSection, "stats_collect_period")
		case k == "containerd":
			ctd, ok := v.(map[string]any)
			if !ok {
				move(srcPath, v, RuntimeSection, k)
				break
			}
			for _, k2 := range sortedKeys(ctd) {
				if slices.Contains(imageContainerdKeys, k2) {
					move(srcPath+"."+k2, ctd[k2], ImagesSection, k2)
				} else {
					move(srcPath+"."+k2, ctd[k2], RuntimeSection, k, k2)
				}
			}
		default:
			move(srcPath, v, RuntimeSection, k)
		}
		delete(src, k)
	}
	if src != nil {
		warnings = append(warnings, dropUnknown(src, types[ServerSection], sectionPath(ServerSection))...)
	}
	for name, m := range sections {
		if len(m) > 0 {
			plugins[name] = m
		}
	}
	if len(errs) > 0 {
		return warnings, fmt.Errorf("cri config sets a key in both containerd 1.x's and 2.x's layout: %s", strings.Join(errs, "; "))
	}
	return warnings, nil
}

func sectionPath(name string) string { return fmt.Sprintf("plugins.%q", name) }

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// put sets path in dst to v, merging tables key by key; a value already
// there is a conflict.
func put(dst map[string]any, path []string, v any, srcPath, dstPath string) error {
	for _, p := range path[:len(path)-1] {
		next, ok := dst[p].(map[string]any)
		if !ok {
			if _, set := dst[p]; set {
				return fmt.Errorf("%s and %s are both set; keep one (%s is containerd 2.x's)", srcPath, dstPath, dstPath)
			}
			next = map[string]any{}
			dst[p] = next
		}
		dst = next
	}
	leaf := path[len(path)-1]
	old, set := dst[leaf]
	if !set {
		dst[leaf] = v
		return nil
	}
	om, ok1 := old.(map[string]any)
	nm, ok2 := v.(map[string]any)
	if !ok1 || !ok2 {
		return fmt.Errorf("%s and %s are both set; keep one (%s is containerd 2.x's)", srcPath, dstPath, dstPath)
	}
	var errs []string
	for _, k := range sortedKeys(nm) {
		if err := put(om, []string{k}, nm[k], srcPath+"."+k, dstPath+"."+k); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// fieldType finds the field of struct t whose toml key is key.
func fieldType(t reflect.Type, key string) (reflect.Type, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			if ft, ok := fieldType(f.Type, key); ok {
				return ft, true
			}
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == key {
			return f.Type, true
		}
	}
	return nil, false
}

// typeAt walks path down from t; a map of anything but structs is a leaf
// that takes any key.
func typeAt(t reflect.Type, path []string) (reflect.Type, bool) {
	for _, p := range path {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Struct:
			ft, ok := fieldType(t, p)
			if !ok {
				return nil, false
			}
			t = ft
		case reflect.Map:
			t = t.Elem()
		default:
			return nil, false
		}
	}
	return t, true
}

// dropUnknown deletes the keys of m that t has no field for, recursively,
// and returns their full paths.
func dropUnknown(m map[string]any, t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var unknown []string
	for _, k := range sortedKeys(m) {
		var ft reflect.Type
		switch t.Kind() {
		case reflect.Struct:
			var ok bool
			if ft, ok = fieldType(t, k); !ok {
				unknown = append(unknown, prefix+"."+k)
				delete(m, k)
				continue
			}
		case reflect.Map:
			ft = t.Elem()
		default:
			continue
		}
		if sub, ok := m[k].(map[string]any); ok && ft.Kind() != reflect.Interface {
			unknown = append(unknown, dropUnknown(sub, ft, prefix+"."+k)...)
		}
	}
	return unknown
}

// Assemble merges the three decoded sections into one Config. A version 4
// file may still carry 1.x keys in the server section (Legacy): they are
// moved as Migrate moves them, and one set where the 2.x section also sets
// a value other than the default is an error naming both.
func Assemble(server ServerConfig, rt RuntimeConfig, img ImageConfig) (*Config, []string, error) {
	c := &Config{ServerConfig: server, RuntimeConfig: rt, ImageConfig: img}
	legacy, err := toMap(server.Legacy)
	if err != nil || len(legacy) == 0 {
		c.Legacy = Legacy{}
		return c, nil, err
	}
	rtSet, err := setKeys(rt, DefaultRuntime())
	if err != nil {
		return nil, nil, err
	}
	imgSet, err := setKeys(img, DefaultImages())
	if err != nil {
		return nil, nil, err
	}
	legacyKeys := sortedKeys(legacy)
	plugins := map[string]any{ServerSection: legacy, RuntimeSection: rtSet, ImagesSection: imgSet}
	warnings, err := Migrate(plugins)
	if err != nil {
		return nil, warnings, err
	}
	c.Legacy = Legacy{}
	c.RuntimeConfig, c.ImageConfig = DefaultRuntime(), DefaultImages()
	if err := fromMap(plugins[RuntimeSection], &c.RuntimeConfig); err != nil {
		return nil, warnings, err
	}
	if err := fromMap(plugins[ImagesSection], &c.ImageConfig); err != nil {
		return nil, warnings, err
	}
	return c, append(warnings, fmt.Sprintf("%s holds containerd 1.x keys in a version 4 file (%s): they are read, but move them to %s and %s",
		sectionPath(ServerSection), strings.Join(legacyKeys, ", "), sectionPath(RuntimeSection), sectionPath(ImagesSection))), nil
}

// toMap is v as containerd's TOML decoder would see it.
func toMap(v any) (map[string]any, error) {
	b, err := toml.Marshal(v)
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	return m, toml.Unmarshal(b, &m)
}

func fromMap(m any, out any) error {
	if m == nil {
		return nil
	}
	b, err := toml.Marshal(m)
	if err != nil {
		return err
	}
	return toml.NewDecoder(bytes.NewReader(b)).Decode(out)
}

// setKeys is v's keys whose values differ from def's: those a decoded
// section must have been given.
func setKeys(v, def any) (map[string]any, error) {
	m, err := toMap(v)
	if err != nil {
		return nil, err
	}
	d, err := toMap(def)
	if err != nil {
		return nil, err
	}
	pruneDefaults(m, d)
	return m, nil
}

func pruneDefaults(m, def map[string]any) {
	for k, v := range m {
		dv, ok := def[k]
		if !ok {
			continue
		}
		sub, ok1 := v.(map[string]any)
		dsub, ok2 := dv.(map[string]any)
		if ok1 && ok2 {
			pruneDefaults(sub, dsub)
			if len(sub) == 0 {
				delete(m, k)
			}
			continue
		}
		if reflect.DeepEqual(v, dv) {
			delete(m, k)
		}
	}
}
