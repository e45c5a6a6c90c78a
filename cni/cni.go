// Package cni wraps go-cni: it loads the CNI configuration folder, keeps it
// current by watching the folder, and reports whether pod networking is
// ready, including the plugin binaries the loaded networks need.
package cni

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	gocni "github.com/containerd/go-cni"
	"github.com/containerd/log"
	"github.com/fsnotify/fsnotify"
)

// Config says where networks and plugins are.
type Config struct {
	ConfDir    string
	BinDirs    []string
	MaxConfNum int
	// Template, when set, is rendered into ConfDir once the kubelet reports
	// the node's pod CIDR and no network is configured yet.
	Template string
}

// Manager owns the go-cni instance for the pod network.
type Manager struct {
	cfg Config
	cni gocni.CNI

	mu      sync.RWMutex
	loadErr error // why the last load did not give a network, if it did not
	watcher *fsnotify.Watcher
}

// defaultConfName is the file a conf_template is rendered into.
const defaultConfName = "10-containerd-net.conflist"

// New creates the manager and loads the configuration once. A folder with no
// network yet is not an error: Status reports it until one appears.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	// The loopback network plus at least one pod network.
	c, err := gocni.New(
		gocni.WithMinNetworkCount(2),
		gocni.WithPluginConfDir(cfg.ConfDir),
		gocni.WithPluginDir(cfg.BinDirs),
		gocni.WithPluginMaxConfNum(cfg.MaxConfNum),
	)
	if err != nil {
		return nil, fmt.Errorf("initialise go-cni: %w", err)
	}
	m := &Manager{cfg: cfg, cni: c}
	// The folder must exist to be watched; an operator's CNI installer may
	// create its config only later.
	if err := os.MkdirAll(cfg.ConfDir, 0o755); err != nil {
		return nil, fmt.Errorf("create CNI conf_dir %s: %w", cfg.ConfDir, err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch CNI conf_dir: %w", err)
	}
	if err := w.Add(cfg.ConfDir); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch CNI conf_dir %s: %w", cfg.ConfDir, err)
	}
	m.watcher = w
	m.Reload(ctx)
	return m, nil
}

// Reload reads the configuration folder again.
func (m *Manager) Reload(ctx context.Context) {
	err := m.cni.Load(gocni.WithLoNetwork, gocni.WithDefaultConf)
	m.mu.Lock()
	changed := (err == nil) != (m.loadErr == nil)
	m.loadErr = err
	m.mu.Unlock()
	if err != nil {
		if changed {
			log.G(ctx).WithError(err).Warn("no usable CNI network configuration")
		}
		return
	}
	log.G(ctx).WithField("networks", m.networkNames()).Info("loaded CNI network configuration")
}

// Run watches the folder and reloads on every change until ctx ends.
// Writers are expected to write atomically (temp file + rename): a file
// caught half-written is simply reloaded again on its next event.
func (m *Manager) Run(ctx context.Context) {
	defer m.watcher.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-m.watcher.Events:
			if !ok {
				return
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			// Coalesce a burst (create, write, rename) into one reload.
			m.drain()
			m.Reload(ctx)
		case err, ok := <-m.watcher.Errors:
			if !ok {
				return
			}
			log.G(ctx).WithError(err).Warn("CNI conf_dir watch error")
		}
	}
}

func (m *Manager) drain() {
	for {
		select {
		case <-m.watcher.Events:
		default:
			return
		}
	}
}

// ErrNotReady marks every reason pod networking cannot be set up.
var ErrNotReady = errors.New("cni plugin not initialized")

// Status is nil when a pod network is loaded and every plugin binary it
// needs is present; otherwise it says why not.
func (m *Manager) Status() error {
	m.mu.RLock()
	loadErr := m.loadErr
	m.mu.RUnlock()
	if loadErr != nil {
		return fmt.Errorf("%w: %v", ErrNotReady, loadErr)
	}
	if err := m.cni.Status(); err != nil {
		return fmt.Errorf("%w: %v", ErrNotReady, err)
	}
	// Checked on every call, not at load: a CNI installer often drops its
	// binaries after its config, and readiness must follow.
	for _, n := range m.cni.GetConfig().Networks {
		for _, p := range n.Config.Plugins {
			if !m.hasBinary(p.Network.Type) {
				return fmt.Errorf("%w: network %q needs plugin %q, not found in %v",
					ErrNotReady, n.Config.Name, p.Network.Type, m.cfg.BinDirs)
			}
		}
	}
	return nil
}

func (m *Manager) hasBinary(name string) bool {
	if name == "" || filepath.Base(name) != name {
		return false
	}
	for _, d := range m.cfg.BinDirs {
		if fi, err := os.Stat(filepath.Join(d, name)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return true
		}
	}
	return false
}

func (m *Manager) networkNames() []string {
	var names []string
	for _, n := range m.cni.GetConfig().Networks {
		names = append(names, n.Config.Name)
	}
	return names
}

// Config returns what go-cni has loaded, for Status' verbose info.
func (m *Manager) Config() *gocni.ConfigResult { return m.cni.GetConfig() }
