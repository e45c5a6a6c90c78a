package testimages

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// WriteHostsDir makes dir a containerd registry.config_path that sends
// every host in mirrored (e.g. "docker.io", "registry.k8s.io") to the
// registry at registryAddr over plain HTTP. The registry's own address gets
// a hosts.toml too, so images named after it are pulled over HTTP as well.
// containerd looks up <dir>/<host>/hosts.toml, "host:port" for a host with
// a port; for docker.io the folder is "docker.io", not registry-1.docker.io.
func WriteHostsDir(t testing.TB, dir, registryAddr string, mirrored ...string) {
	t.Helper()
	url := "http://" + registryAddr
	content := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", url, url)
	hosts := slices.Clone(mirrored)
	if !slices.Contains(hosts, registryAddr) {
		hosts = append(hosts, registryAddr)
	}
	for _, host := range hosts {
		if err := writeFileAtomic(filepath.Join(dir, host, "hosts.toml"), []byte(content)); err != nil {
			t.Fatalf("testimages: hosts.toml for %s: %v", host, err)
		}
	}
}

// writeFileAtomic writes through a temporary file and a rename, so a
// daemon reading the folder meanwhile never sees half a file.
func writeFileAtomic(name string, data []byte) error {
	dir := filepath.Dir(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".hosts-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // fails harmlessly after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}
