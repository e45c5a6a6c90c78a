package config

import (
	"bufio"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// docKey is one key of the section as docs/configuration.md names it.
type docKey struct {
	path string // dotted; "<name>" stands for a map key such as a handler name
	// removed: the field is tagged json:"-" and exists only so that
	// removedKeys can refuse a 1.x key by name.
	removed bool
}

// sectionKeys walks t's toml tags: nested tables become dotted paths, and a
// map of tables (containerd.runtimes) contributes its value's keys under
// "<name>". Maps of scalars, lists and free-form tables (options) are keys.
func sectionKeys(t *testing.T, typ reflect.Type, prefix string) []docKey {
	t.Helper()
	var keys []docKey
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() || f.Type == reflect.TypeFor[Legacy]() {
			// Legacy holds 1.x keys on their way to the other sections.
			continue
		}
		tag, ok := f.Tag.Lookup("toml")
		name, _, _ := strings.Cut(tag, ",")
		if !ok || name == "" || name == "-" {
			// go-toml would decode it under the Go field name: a key
			// nobody meant to offer.
			t.Errorf("%s.%s has no toml key name", typ.Name(), f.Name)
			continue
		}
		path := prefix + name
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct:
			keys = append(keys, sectionKeys(t, ft, path+".")...)
		case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct:
			keys = append(keys, sectionKeys(t, ft.Elem(), path+".<name>.")...)
		default:
			keys = append(keys, docKey{path: path, removed: f.Tag.Get("json") == "-" && ft.Kind() == reflect.Interface})
		}
	}
	return keys
}

// moduleRoot is the folder holding go.mod, found upwards from the test's
// package folder, so the test keeps working if the package moves.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's folder")
		}
		dir = parent
	}
}

// documentedKeys reads the first cell of every table row that is a single
// `key`: rows under "## Removed keys", and the rest by the section whose
// name the nearest "## " heading holds.
func documentedKeys(t *testing.T, file string) (live map[string]map[string]bool, removed map[string]bool) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatalf("the configuration reference: %v", err)
	}
	defer f.Close()
	live, removed = map[string]map[string]bool{}, map[string]bool{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if h, ok := strings.CutPrefix(line, "## "); ok {
			section = strings.TrimSpace(h)
			for _, name := range []string{ServerSection, RuntimeSection, ImagesSection} {
				if strings.Contains(h, `"`+name+`"`) {
					section = name
				}
			}
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 3 || strings.TrimSpace(cells[0]) != "" {
			continue
		}
		cell := strings.TrimSpace(cells[1])
		if len(cell) < 3 || cell[0] != '`' || cell[len(cell)-1] != '`' || strings.Count(cell, "`") != 2 {
			continue
		}
		key := cell[1 : len(cell)-1]
		if section == "Removed keys" {
			removed[key] = true
		} else {
			if live[section] == nil {
				live[section] = map[string]bool{}
			}
			live[section][key] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return live, removed
}

// TestConfigKeysDocumented fails for each key of the section that
// docs/configuration.md has no table row for: live keys in its Keys table,
// removed 1.x keys under "Removed keys".
func TestConfigKeysDocumented(t *testing.T) {
	doc := filepath.Join(moduleRoot(t), "docs", "configuration.md")
	live, removed := documentedKeys(t, doc)
	var missingRemoved []string
	for _, sec := range []struct {
		name string
		typ  reflect.Type
		want string // a key a right walk finds
	}{
		{ServerSection, reflect.TypeFor[ServerConfig](), "x509_key_pair_streaming.tls_cert_file"},
		{RuntimeSection, reflect.TypeFor[RuntimeConfig](), "containerd.runtimes.<name>.runtime_type"},
		{ImagesSection, reflect.TypeFor[ImageConfig](), "registry.mirrors.<name>.endpoint"},
	} {
		keys := sectionKeys(t, sec.typ, "")
		// A walk that went wrong would find nothing missing.
		if !slices.ContainsFunc(keys, func(k docKey) bool { return k.path == sec.want }) {
			t.Fatalf("walk of %s's toml tags missed %s: %v", sec.typ.Name(), sec.want, keys)
		}
		for _, k := range keys {
			switch {
			case k.removed && !removed[k.path]:
				missingRemoved = append(missingRemoved, k.path)
			case !k.removed && !live[sec.name][k.path]:
				t.Errorf("config key %s of [plugins.%q] is not documented in docs/configuration.md: add a row \"| `%s` | default | meaning |\" to that section's table", k.path, sec.name, k.path)
			}
		}
	}
	for _, k := range missingRemoved {
		t.Errorf("removed config key %s is not documented in docs/configuration.md: add a row \"| `%s` | what to use instead |\" under \"## Removed keys\"", k, k)
	}
}

// TestRemovedKeysAreRefused checks that the fields the doc walk treats as
// removed (json:"-") are the ones Validate refuses by name, so that none is
// a live key hidden from the doc check.
func TestRemovedKeysAreRefused(t *testing.T) {
	for _, k := range sectionKeys(t, reflect.TypeFor[RuntimeConfig](), "") {
		if !k.removed {
			continue
		}
		key := strings.ReplaceAll(k.path, "<name>", "runc")
		c := decode(t, key+` = "x"`)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), key+` = "x": removed`) {
			t.Errorf("%s is tagged json:\"-\" but Validate does not refuse it by name: %v", key, err)
		}
	}
}

// Generators such as nvidia-ctk write runtime_engine and runtime_root
// empty; such a file starts, and only a value is refused.
func TestEmptyRemovedRuntimeKeysAccepted(t *testing.T) {
	for _, key := range []string{"containerd.runtimes.runc.runtime_engine", "containerd.runtimes.runc.runtime_root"} {
		if err := decode(t, key+` = ""`).Validate(); err != nil {
			t.Errorf("%s = \"\": %v", key, err)
		}
	}
}
