package containers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/events"
)

// Recover rebuilds the container store from containerd's records at
// start, after the sandboxes. A running container gets back the IO it had
// when started: its log continues and clients can attach to it. One that
// exited while the daemon was down gets its real exit code and time from
// the shim; a record whose sandbox is gone is removed.
func (m *Manager) Recover(ctx context.Context) error {
	start := time.Now()
	list, err := m.Client.Containers(ctx, fmt.Sprintf("labels.%q==%s", kindLabel, kindContainer))
	if err != nil {
		return fmt.Errorf("list container records: %w", err)
	}
	n := 0
	for _, cc := range list {
		if err := m.recoverOne(ctx, cc); err != nil {
			log.G(ctx).WithError(err).WithField("container", cc.ID()).Error("recovering container")
			continue
		}
		n++
	}
	orphans := m.sweepOrphans(ctx)
	fifos := m.sweepFIFOs(ctx)
	log.G(ctx).WithFields(log.Fields{"containers": n, "orphans": orphans, "fifoDirs": fifos, "took": time.Since(start)}).Info("containers recovered")
	return nil
}

func (m *Manager) recoverOne(ctx context.Context, cc containerd.Container) error {
	exts, err := cc.Extensions(ctx)
	if err != nil {
		return err
	}
	a, ok := exts[MetadataExtension]
	if !ok {
		return fmt.Errorf("no %s extension", MetadataExtension)
	}
	v, err := typeurl.UnmarshalAny(a)
	if err != nil {
		return err
	}
	meta, ok := v.(*Metadata)
	if !ok {
		return fmt.Errorf("extension is %T", v)
	}
	cfg := &runtimeapi.ContainerConfig{}
	if err := proto.Unmarshal(meta.Config, cfg); err != nil {
		return err
	}
	c := &Container{ID: meta.ID, Name: meta.Name, SandboxID: meta.SandboxID, Config: cfg, ImageID: meta.ImageID,
		ImageRef: meta.ImageRef, LogPath: meta.LogPath, StopSignal: meta.StopSignal, CreatedAt: meta.CreatedAt, status: meta.Status}
	if sp, err := cc.Spec(ctx); err == nil && sp.Process != nil {
		c.User = sp.Process.User
	}
	if _, err := m.Sandboxes.Store().Get(c.SandboxID); errdefs.IsNotFound(err) {
		log.G(ctx).WithField("container", c.ID).Warn("container of a removed sandbox; removing it")
		if t, err := cc.Task(ctx, nil); err == nil {
			t.Delete(ctx, containerd.WithProcessKill)
		}
		return cc.Delete(ctx, containerd.WithSnapshotCleanup)
	}

	m.Events.Watch(c.ID, m)
	task, err := m.attach(ctx, cc, c)
	switch {
	case errdefs.IsNotFound(err):
		if c.Status().State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			// Its task is gone with no exit recorded: containerd deletes,
			// while it boots, the task of a container that exited while it
			// was down, before any plugin can read the code. The shim
			// then re-sends that exit once containerd serves (see
			// adoptLateExit); until then, and for good if the shim died,
			// the code is unknown.
			now := time.Now()
			m.recordFact(ctx, c, "an exit while containerd was down", func(st *Status) error {
				st.ExitUnknown = true
				st.State = runtimeapi.ContainerState_CONTAINER_EXITED
				st.FinishedAt = now
				st.ExitCode = 255
				st.Reason = "Unknown"
				st.Message = "the task disappeared while containerd was down"
				return nil
			})
		}
	case err != nil:
		return err
	default:
		st, err := task.Status(ctx)
		if err != nil {
			return err
		}
		if st.Status == containerd.Created {
			// The daemon died between creating the task and starting it:
			// the container goes back to created, for StartContainer again.
			if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
				return fmt.Errorf("delete a task never started: %w", err)
			}
			m.recordFact(ctx, c, "a task never started", func(st *Status) error {
				st.State = runtimeapi.ContainerState_CONTAINER_CREATED
				return nil
			})
			break
		}
		// The handles first: whoever sees the container running finds its
		// task.
		c.mu.Lock()
		c.task = task
		c.exited = make(chan struct{})
		c.mu.Unlock()
		if st.Status == containerd.Running {
			m.recordFact(ctx, c, "a running task", func(st *Status) error {
				st.State = runtimeapi.ContainerState_CONTAINER_RUNNING
				st.Pid = task.Pid()
				return nil
			})
		} else {
			// Exited while the daemon was down: the shim kept the code.
			m.recordFact(ctx, c, "a task that ran", func(st *Status) error {
				st.State = runtimeapi.ContainerState_CONTAINER_RUNNING
				return nil
			})
			m.store.Add(c)
			m.names.Restore(c.Name, c.ID)
			m.handleExit(c, events.Exit{ContainerID: c.ID, Status: st.ExitStatus, At: st.ExitTime})
			return nil
		}
	}
	m.store.Add(c)
	if c.Status().State == runtimeapi.ContainerState_CONTAINER_CREATED {
		// The daemon may have died before CreateContainer answered: the
		// kubelet's retry is handed this container, never "name is
		// reserved".
		m.names.RestoreClaimable(c.Name, c.ID)
	} else {
		m.names.Restore(c.Name, c.ID)
	}
	return nil
}

// attach reconnects to the container's task. A running one gets the IO a
// started one has (openIO): its output goes to the log again (appending)
// and to attachers, and its stdin, if the config has it and the shim still
// reads it, is fed by attachers again. The status is read first: the
// output pipes of a process that exited can no longer be opened.
func (m *Manager) attach(ctx context.Context, cc containerd.Container, c *Container) (containerd.Task, error) {
	task, err := cc.Task(ctx, nil)
	if err != nil {
		return task, err
	}
	if st, err := task.Status(ctx); err != nil || st.Status != containerd.Running {
		return task, err
	}
	task, err = cc.Task(ctx, func(fifos *cio.FIFOSet) (cio.IO, error) {
		stdinOpen := false
		if c.Config.GetStdin() {
			if err := stdinReadable(fifos.Stdin); err != nil {
				log.G(ctx).WithError(err).WithField("container", c.ID).Info("the container's stdin was closed before the restart (stdin_once): attachers get its output only")
			} else {
				stdinOpen = true
			}
		}
		opts, err := m.openIO(c, stdinOpen)
		if err != nil {
			return nil, err
		}
		return cio.NewAttach(opts...)(fifos)
	})
	if err != nil {
		// Its fifos are gone (a start cut short by a crash, between the
		// IO's cleanup and the task's delete): keep the container known,
		// so that it can still be stopped and removed, without its output.
		m.closeLog(c)
		log.G(ctx).WithError(err).WithField("container", c.ID).Warn("cannot reattach the container's IO: its output after the restart is not logged")
		return cc.Task(ctx, nil)
	}
	return task, nil
}

// stdinReadable says whether the shim still reads the task's stdin fifo.
// Once stdin is closed (CloseIO) it stops reading for good, and opening
// the fifo for writing without blocking fails (ENXIO). Until then the
// shim holds a write end of its own, so closing the probe sends no EOF.
func stdinReadable(path string) error {
	if path == "" {
		return errors.New("the task has no stdin fifo")
	}
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open stdin fifo %s: %w", path, err)
	}
	return unix.Close(fd)
}

// sweepOrphans releases what a crash left of containers without a record:
// image volumes mounted by a CreateContainer cut before the record was
// written, or by a RemoveContainer cut after it was deleted.
func (m *Manager) sweepOrphans(ctx context.Context) int {
	entries, _ := os.ReadDir(filepath.Join(m.RootDir, "containers"))
	n := 0
	for _, e := range entries {
		if _, err := m.Client.LoadContainer(ctx, e.Name()); !errdefs.IsNotFound(err) {
			continue
		}
		// The view's snapshotter is not recorded: try each handler's.
		var err error
		for _, h := range m.Runtimes.All() {
			if err = m.releaseImageVolumes(ctx, e.Name(), h.Snapshotter); err != nil {
				break
			}
		}
		if err != nil {
			log.G(ctx).WithError(err).WithField("container", e.Name()).Warn("releasing orphan image volumes")
			continue
		}
		n++
	}
	return n
}

// fifos puts the fifos of the tasks and execs this plugin starts in a
// folder of its own, not containerd's shared /run/containerd/fifo, so
// that recovery can tell which are left over.
func (m *Manager) fifos() cio.Opt { return cio.WithFIFODir(m.fifoDir()) }

func (m *Manager) fifoDir() string { return filepath.Join(m.StateDir, "fifo") }

// sweepFIFOs removes the fifo folders no running container uses: those of
// execs (their clients went with the daemon) and of tasks that ended or
// that containerd deleted while the daemon was down. The client library
// removes a folder when its IO is closed; a daemon that died first could
// not. cio names each fifo "<container or exec ID>-std{in,out,err}".
func (m *Manager) sweepFIFOs(ctx context.Context) int {
	entries, _ := os.ReadDir(m.fifoDir())
	n := 0
	for _, e := range entries {
		dir := filepath.Join(m.fifoDir(), e.Name())
		if m.fifoInUse(dir) {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			log.G(ctx).WithError(err).WithField("dir", dir).Warn("removing a leftover fifo folder")
			continue
		}
		n++
	}
	return n
}

func (m *Manager) fifoInUse(dir string) bool {
	fifos, _ := os.ReadDir(dir)
	for _, f := range fifos {
		i := strings.LastIndexByte(f.Name(), '-')
		if i <= 0 {
			continue
		}
		if c, err := m.store.Get(f.Name()[:i]); err == nil && c.Status().State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			return true
		}
	}
	return false
}
