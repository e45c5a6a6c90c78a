package cni

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"text/template"

	"github.com/containerd/log"
)

// templateData is what a conf_template sees, under containerd 1.x's names.
type templateData struct {
	PodCIDR       string   // the first range
	PodCIDRRanges []string // every range, for dual stack
	Routes        []string // a default route per address family present
}

// ApplyPodCIDRs renders the conf_template for the node's pod CIDRs, when a
// template is configured and no pod network is loaded yet (a network the
// operator installed always wins).
func (m *Manager) ApplyPodCIDRs(ctx context.Context, cidrs []string) error {
	if m.cfg.Template == "" || len(cidrs) == 0 || m.Status() == nil {
		return nil
	}
	data := templateData{PodCIDR: cidrs[0], PodCIDRRanges: cidrs}
	v4, v6 := false, false
	for _, c := range cidrs {
		ip, _, err := net.ParseCIDR(c)
		if err != nil {
			return fmt.Errorf("pod CIDR %q: %w", c, err)
		}
		if ip.To4() != nil {
			v4 = true
		} else {
			v6 = true
		}
	}
	if v4 {
		data.Routes = append(data.Routes, "0.0.0.0/0")
	}
	if v6 {
		data.Routes = append(data.Routes, "::/0")
	}
	t, err := template.ParseFiles(m.cfg.Template)
	if err != nil {
		return fmt.Errorf("parse cni.conf_template: %w", err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return fmt.Errorf("render cni.conf_template: %w", err)
	}
	dst := filepath.Join(m.cfg.ConfDir, defaultConfName)
	if err := WriteFileAtomic(dst, buf.Bytes(), 0o644); err != nil {
		return err
	}
	log.G(ctx).WithField("file", dst).WithField("podCIDRs", cidrs).Info("wrote CNI config from conf_template")
	m.Reload(ctx)
	return nil
}

// WriteFileAtomic writes data to path through a temp file and a rename, so a
// watcher never loads a half-written config.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
