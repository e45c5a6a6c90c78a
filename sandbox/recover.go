package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/netns"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
)

// Recover rebuilds the sandbox store from containerd's records at start:
// a sandbox whose pause task runs is Ready again; one whose pause died
// while the daemon was down is NotReady; one a crash left half-made
// (network setup started but never recorded ready) is torn down, so its
// name is free for the kubelet's retry. Call it after the event pipeline
// subscribed, so no exit is missed.
func (m *Manager) Recover(ctx context.Context) error {
	start := time.Now()
	list, err := m.Client.Containers(ctx, fmt.Sprintf("labels.%q==%s", kindLabel, kindSandbox))
	if err != nil {
		return fmt.Errorf("list sandbox records: %w", err)
	}
	var ready, notReady, cleaned int
	for _, c := range list {
		sb, err := m.recoverOne(ctx, c)
		if err != nil {
			log.G(ctx).WithError(err).WithField("sandbox", c.ID()).Error("recovering sandbox")
			continue
		}
		if sb == nil {
			cleaned++
			continue
		}
		if sb.Status().Phase == PhaseReady {
			ready++
		} else {
			notReady++
		}
	}
	orphans := m.sweepOrphans(ctx) + m.sweepShims(ctx) + m.sweepLeases(ctx)
	log.G(ctx).WithFields(log.Fields{"ready": ready, "notReady": notReady, "cleanedUp": cleaned, "orphans": orphans, "took": time.Since(start)}).Info("sandboxes recovered")
	return nil
}

// sweepOrphans removes what a crash before a sandbox's first record left:
// namespace pins and pod folders no record names. No CNI ADD can have run
// for them: ADD only follows the record.
func (m *Manager) sweepOrphans(ctx context.Context) int {
	known := map[string]bool{}
	for _, sb := range m.store.List() {
		known[sb.ID] = true
		if p := sb.Status().NetNSPath; p != "" {
			known[p] = true
		}
	}
	n := 0
	pins, _ := filepath.Glob(filepath.Join(m.netnsDir(), "*"))
	for _, p := range pins {
		if !known[p] {
			if err := netns.LoadNetNS(p).Remove(); err != nil {
				log.G(ctx).WithError(err).WithField("netns", p).Warn("removing orphan network namespace")
				continue
			}
			n++
		}
	}
	for _, dir := range []string{m.RootDir, m.StateDir} {
		entries, _ := os.ReadDir(filepath.Join(dir, "sandboxes"))
		for _, e := range entries {
			if !known[e.Name()] {
				if err := m.Files(e.Name()).remove(); err != nil {
					log.G(ctx).WithError(err).WithField("sandbox", e.Name()).Warn("removing orphan pod files")
					continue
				}
				n++
			}
		}
	}
	return n
}

// sweepShims kills the shims a crash orphaned: a daemon killed while a
// shim was starting leaves it running, but containerd, finding no address
// for it at restart, deletes its bundle; the shim then serves nothing and
// never exits. Such a shim works in a deleted bundle folder, under this
// containerd's task state, and no record names its ID. Nothing else runs
// yet: recovery precedes serving.
func (m *Manager) sweepShims(ctx context.Context) int {
	bundles := filepath.Join(filepath.Dir(m.StateDir), "io.containerd.runtime.v2.task") + "/"
	cwds, _ := filepath.Glob("/proc/[0-9]*/cwd")
	n := 0
	for _, p := range cwds {
		cwd, err := os.Readlink(p)
		if err != nil || !strings.HasPrefix(cwd, bundles) || !strings.HasSuffix(cwd, " (deleted)") {
			continue
		}
		id := strings.TrimPrefix(filepath.Base(strings.TrimSuffix(cwd, " (deleted)")), ".")
		cmd, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline"))
		if !strings.Contains(string(cmd), "containerd-shim") {
			continue
		}
		if _, err := m.Client.LoadContainer(ctx, id); !errdefs.IsNotFound(err) {
			continue
		}
		if cs, err := m.Client.Containers(ctx, fmt.Sprintf("labels.%q==%s", "io.cri-containerd.sandbox-id", id)); err != nil || len(cs) > 0 {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			log.G(ctx).WithFields(log.Fields{"pid": pid, "id": id}).Warn("killed a shim a crash orphaned")
			n++
		}
	}
	return n
}

// sweepLeases deletes what a crash inside NewContainer left: the lease
// the client holds while it prepares a sandbox's or container's snapshot
// (keyed by its ID) and writes the record. Cut before the record, the
// snapshot would stay held until the lease expires a day later. Only
// leases holding nothing but such snapshots, of IDs no record names, go.
func (m *Manager) sweepLeases(ctx context.Context) int {
	ls := m.Client.LeasesService()
	all, err := ls.List(ctx)
	if err != nil {
		log.G(ctx).WithError(err).Warn("listing leases")
		return 0
	}
	n := 0
	for _, l := range all {
		res, err := ls.ListResources(ctx, l)
		if err != nil || len(res) == 0 {
			continue
		}
		orphan := true
		for _, r := range res {
			if !strings.HasPrefix(r.Type, "snapshots/") || !isID(r.ID) {
				orphan = false
				break
			}
			if _, err := m.Client.LoadContainer(ctx, r.ID); !errdefs.IsNotFound(err) {
				orphan = false
				break
			}
		}
		if !orphan {
			continue
		}
		for _, r := range res {
			sn := strings.TrimPrefix(r.Type, "snapshots/")
			if err := m.Client.SnapshotService(sn).Remove(ctx, r.ID); err != nil && !errdefs.IsNotFound(err) {
				log.G(ctx).WithError(err).WithField("snapshot", r.ID).Warn("removing a crash's orphan snapshot")
			}
		}
		if err := ls.Delete(ctx, l); err != nil {
			log.G(ctx).WithError(err).WithField("lease", l.ID).Warn("deleting a crash's orphan lease")
			continue
		}
		log.G(ctx).WithField("lease", l.ID).Warn("deleted a lease and snapshot a crash left")
		n++
	}
	return n
}

// isID tells a sandbox or container ID: 64 lowercase hex digits.
func isID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (m *Manager) recoverOne(ctx context.Context, c containerd.Container) (*Sandbox, error) {
	exts, err := c.Extensions(ctx)
	if err != nil {
		return nil, err
	}
	a, ok := exts[MetadataExtension]
	if !ok {
		return nil, fmt.Errorf("no %s extension", MetadataExtension)
	}
	v, err := typeurl.UnmarshalAny(a)
	if err != nil {
		return nil, err
	}
	meta, ok := v.(*Metadata)
	if !ok {
		return nil, fmt.Errorf("extension is %T", v)
	}
	cfg, err := unmarshalConfig(meta.Config)
	if err != nil {
		return nil, err
	}
	st, err := statusOf(meta)
	if err != nil {
		return nil, err
	}
	sb := &Sandbox{ID: meta.ID, Name: meta.Name, Config: cfg, Handler: meta.Handler, CreatedAt: meta.CreatedAt, status: st}

	// Created, but the daemon died before recording it ready: undo it all,
	// CNI DEL included (ADD may have happened). The retry of its
	// RunPodSandbox then makes a new one under the free name.
	if st.Phase == PhaseCreating {
		log.G(ctx).WithField("sandbox", sb.ID).Warn("sandbox left half-made by a crash; tearing it down")
		if err := m.teardown(ctx, sb); err != nil {
			return nil, fmt.Errorf("tear down half-made sandbox: %w", err)
		}
		return nil, nil
	}
	// Ready as recorded: ready again only if its pause still runs. Built
	// before the sandbox is shared: not a transition, and the record
	// reads the same either way.
	running := false
	m.Events.Watch(sb.ID, m)
	task, err := c.Task(ctx, nil)
	switch {
	case errdefs.IsNotFound(err):
	case err != nil:
		return nil, err
	default:
		ts, err := task.Status(ctx)
		if err != nil {
			return nil, err
		}
		if ts.Status == containerd.Running && sb.status.Phase == PhaseReady {
			running = true
			sb.status.Pid = task.Pid()
		}
	}
	if sb.status.Phase == PhaseReady && !running {
		sb.status.Phase = PhaseExited
	}
	m.store.Add(sb)
	if sb.Status().Phase == PhaseReady {
		// Finished, but the daemon may have died before RunPodSandbox
		// answered: the kubelet's retry is handed this sandbox, never
		// "name is reserved".
		m.names.RestoreClaimable(sb.Name, sb.ID)
	} else {
		m.names.Restore(sb.Name, sb.ID)
	}
	return sb, nil
}
