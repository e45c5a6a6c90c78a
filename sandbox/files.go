package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// defaultShmSize is the pod's /dev/shm, as upstream sizes it.
const defaultShmSize = 64 << 20

// Files are the per-pod files every container of the pod shares.
type Files struct {
	root  string // <plugin root>/sandboxes/<id>: hostname, hosts, resolv.conf
	state string // <plugin state>/sandboxes/<id>: the shm mount
}

func (f Files) Hostname() string   { return filepath.Join(f.root, "hostname") }
func (f Files) Hosts() string      { return filepath.Join(f.root, "hosts") }
func (f Files) ResolvConf() string { return filepath.Join(f.root, "resolv.conf") }
func (f Files) Shm() string        { return filepath.Join(f.state, "shm") }

// write creates the pod's files from its config.
func (f Files) write(cfg *runtimeapi.PodSandboxConfig, hostNetwork, hostIPC bool) error {
	for _, d := range []string{f.root, f.state} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	hostname := cfg.GetHostname()
	if hostNetwork {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("host name: %w", err)
		}
		hostname = h
	}
	if err := os.WriteFile(f.Hostname(), []byte(hostname+"\n"), 0o644); err != nil {
		return err
	}
	hosts := []byte(defaultHosts)
	if hostNetwork {
		b, err := os.ReadFile("/etc/hosts")
		if err != nil {
			return fmt.Errorf("host /etc/hosts: %w", err)
		}
		hosts = b
	}
	if err := os.WriteFile(f.Hosts(), hosts, 0o644); err != nil {
		return err
	}
	resolv, err := resolvConf(cfg.GetDnsConfig())
	if err != nil {
		return err
	}
	if err := os.WriteFile(f.ResolvConf(), resolv, 0o644); err != nil {
		return err
	}
	if !hostIPC {
		if err := os.MkdirAll(f.Shm(), 0o700); err != nil {
			return err
		}
		opts := fmt.Sprintf("mode=1777,size=%d", defaultShmSize)
		if err := unix.Mount("shm", f.Shm(), "tmpfs", unix.MS_NOEXEC|unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
			return fmt.Errorf("mount pod /dev/shm: %w", err)
		}
	}
	return nil
}

// remove unmounts the pod's shm and deletes its folders; both may already
// be gone.
func (f Files) remove() error {
	if err := unix.Unmount(f.Shm(), unix.MNT_DETACH); err != nil && err != unix.EINVAL && !os.IsNotExist(err) {
		return fmt.Errorf("unmount pod /dev/shm: %w", err)
	}
	if err := os.RemoveAll(f.state); err != nil {
		return err
	}
	return os.RemoveAll(f.root)
}

const defaultHosts = `127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
fe00::0	ip6-localnet
ff00::0	ip6-mcastprefix
ff02::1	ip6-allnodes
ff02::2	ip6-allrouters
`

// resolvConf is the pod's resolv.conf: from its DNS config, or the node's.
func resolvConf(dns *runtimeapi.DNSConfig) ([]byte, error) {
	if dns == nil {
		b, err := os.ReadFile("/etc/resolv.conf")
		if os.IsNotExist(err) {
			return nil, nil
		}
		return b, err
	}
	var b strings.Builder
	if len(dns.Searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(dns.Searches, " "))
	}
	for _, s := range dns.Servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(dns.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(dns.Options, " "))
	}
	return []byte(b.String()), nil
}

func marshalConfig(c *runtimeapi.PodSandboxConfig) ([]byte, error) { return proto.Marshal(c) }

func unmarshalConfig(b []byte) (*runtimeapi.PodSandboxConfig, error) {
	c := &runtimeapi.PodSandboxConfig{}
	return c, proto.Unmarshal(b, c)
}
