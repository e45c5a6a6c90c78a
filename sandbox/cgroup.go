package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/log"
)

// cgroupRoot is where the cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// RemoveCgroup removes the container's cgroup when runc left it behind:
// a daemon killed while runc was creating the task leaves a cgroup no
// state file names, so `runc delete` at containerd's restart cannot find
// it. Only empty cgroups named after the container (runc's leaf with the
// cgroupfs driver) are removed; call it once the task is gone.
func RemoveCgroup(ctx context.Context, c containerd.Container) {
	sp, err := c.Spec(ctx)
	if err != nil || sp.Linux == nil || sp.Linux.CgroupsPath == "" || strings.Contains(sp.Linux.CgroupsPath, ":") {
		return // the systemd driver's slices are systemd's to remove
	}
	p := filepath.Clean("/" + sp.Linux.CgroupsPath)
	if filepath.Base(p) != c.ID() {
		return
	}
	dirs, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", p)) // v1 hierarchies and v2 at unified/
	dirs = append(dirs, filepath.Join(cgroupRoot, p))           // v2 alone
	for _, d := range dirs {
		if err := os.Remove(d); err == nil {
			log.G(ctx).WithField("cgroup", d).Debug("removed a cgroup runc left")
		}
	}
}
