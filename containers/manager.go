package containers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	corecontainers "github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	"github.com/moby/sys/signal"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/events"
	"github.com/nodecri/nodecri/failpoint"
	"github.com/nodecri/nodecri/images"
	"github.com/nodecri/nodecri/names"
	"github.com/nodecri/nodecri/runtimes"
	"github.com/nodecri/nodecri/sandbox"
	"github.com/nodecri/nodecri/spec"
)

const (
	kindLabel      = "io.cri-containerd.kind"
	kindContainer  = "container"
	sandboxIDLabel = "io.cri-containerd.sandbox-id"
	abandonGrace   = 3 * time.Minute
	cleanupTimeout = time.Minute
	// ioDrainTimeout bounds waiting for a finished process's output: a
	// background child can hold the pipe open forever.
	ioDrainTimeout = 2 * time.Second
)

// Options are the manager's dependencies.
type Options struct {
	Client         *containerd.Client
	Runtimes       *runtimes.Set
	Images         *images.Service
	Events         *events.Pipeline
	Sandboxes      *sandbox.Manager
	MaxLogLineSize int
	EnableCDI      bool
	RootDir        string // the plugin's root: per-container folders
	StateDir       string // the plugin's state (tmpfs): the tasks' fifos
	RestrictOOM    bool
	// Hugetlb decides which hugepage limits reach a spec.
	Hugetlb   *spec.Hugetlb
	Namespace string
	// Notifier is told of the containers' transitions; nil for none.
	Notifier sandbox.Notifier
}

// Manager creates, runs, stops and removes containers.
type Manager struct {
	Options
	store *Store
	names *names.Registry
}

// NewManager returns a manager with no containers.
func NewManager(opts Options) *Manager {
	return &Manager{Options: opts, store: NewStore(), names: names.New("container", abandonGrace)}
}

// Store is the manager's index of containers.
func (m *Manager) Store() *Store { return m.store }

func newID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (m *Manager) background() (context.Context, context.CancelFunc) {
	return context.WithTimeout(namespaces.WithNamespace(context.Background(), m.Namespace), cleanupTimeout)
}

// Create makes a container in a ready sandbox. Like RunPodSandbox, a retry
// of a timed-out call is handed what the first call made.
func (m *Manager) Create(ctx context.Context, sandboxID string, cfg *runtimeapi.ContainerConfig) (string, error) {
	sb, err := m.Sandboxes.Store().Get(sandboxID)
	if err != nil {
		return "", err
	}
	st := sb.Status()
	if st.State() != runtimeapi.PodSandboxState_SANDBOX_READY {
		return "", fmt.Errorf("sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	h, err := m.Runtimes.Get(sb.Handler)
	if err != nil {
		return "", err
	}
	for _, mnt := range cfg.GetMounts() {
		if mnt.RecursiveReadOnly && !h.Features.RecursiveReadOnlyMounts {
			return "", fmt.Errorf("mount %s: runtime handler %q has no recursive read-only mounts: %w", mnt.ContainerPath, h.Name, errdefs.ErrInvalidArgument)
		}
	}
	img, err := m.Images.Resolve(cfg.GetImage().GetImage())
	if errdefs.IsNotFound(err) {
		return "", fmt.Errorf("image %q not found: %w", cfg.GetImage().GetImage(), errdefs.ErrNotFound)
	}
	if err != nil {
		return "", err
	}
	targetPid, err := m.pidTarget(sb.ID, cfg.GetLinux().GetSecurityContext().GetNamespaceOptions())
	if err != nil {
		return "", err
	}
	name := Name(cfg.GetMetadata(), sb.Config.GetMetadata())
	defer opDurations.WithValues("create", sb.Handler).UpdateSince(time.Now())
	return m.names.Create(ctx, name, newID(), func(ctx context.Context, id string) error {
		return m.create(ctx, id, name, sb, st.Pid, targetPid, h, &img, cfg)
	}, func(id string) {
		ctx, cancel := m.background()
		defer cancel()
		log.G(ctx).WithField("container", id).Warn("container never claimed by a CreateContainer retry; removing it")
		m.Remove(ctx, id)
	})
}

// pidTarget is the init PID of the container a TARGET PID namespace mode
// names: one of the same pod, running (the kubelet's debug containers
// share the PID namespace of the container they debug).
func (m *Manager) pidTarget(sandboxID string, ns *runtimeapi.NamespaceOption) (uint32, error) {
	if ns.GetPid() != runtimeapi.NamespaceMode_TARGET {
		return 0, nil
	}
	t, err := m.store.Get(ns.GetTargetId())
	if err != nil {
		return 0, fmt.Errorf("PID namespace target %s: %w", ns.GetTargetId(), err)
	}
	if t.SandboxID != sandboxID {
		return 0, fmt.Errorf("PID namespace target %s is in another pod: %w", t.ID, errdefs.ErrInvalidArgument)
	}
	st := t.Status()
	if st.State != runtimeapi.ContainerState_CONTAINER_RUNNING || st.Pid == 0 {
		return 0, fmt.Errorf("PID namespace target %s is not running: %w", t.ID, errdefs.ErrFailedPrecondition)
	}
	return st.Pid, nil
}

func (m *Manager) create(ctx context.Context, id, name string, sb *sandbox.Sandbox, pausePid, targetPid uint32, h *runtimes.Handler, img *images.Image, cfg *runtimeapi.ContainerConfig) (retErr error) {
	// Until the container is in the store (or cleaned up), the sandbox
	// is not removed: its removal would miss the container.
	release, err := sb.HoldForCreate()
	if err != nil {
		return err
	}
	defer release()
	// Before any work: a refused limit fails the create with nothing made.
	hugepages, err := m.Hugetlb.Limits(ctx, cfg.GetLinux().GetResources().GetHugepageLimits())
	if err != nil {
		return err
	}
	ref := cfg.GetImage().GetImage()
	var cimg containerd.Image
	for n := range img.Refs {
		if ci, err := m.Client.GetImage(ctx, n); err == nil {
			cimg = ci
			break
		}
	}
	if cimg == nil {
		return fmt.Errorf("image %q has no usable record: %w", ref, errdefs.ErrNotFound)
	}
	if ok, _ := cimg.IsUnpacked(ctx, h.Snapshotter); !ok {
		// Imported with ctr, or pulled for another handler's snapshotter.
		if err := cimg.Unpack(ctx, h.Snapshotter); err != nil {
			return fmt.Errorf("unpack %s into %s: %w", ref, h.Snapshotter, err)
		}
	}
	c := &Container{
		ID: id, Name: name, SandboxID: sb.ID, Config: cfg, ImageID: img.ID, ImageRef: ref,
		StopSignal: stopSignal(cfg, img), CreatedAt: time.Now(),
		status: Status{State: runtimeapi.ContainerState_CONTAINER_CREATED},
	}
	if dir, p := sb.Config.GetLogDirectory(), cfg.GetLogPath(); dir != "" && p != "" {
		c.LogPath = filepath.Join(dir, p)
	}
	defer func() {
		if retErr != nil {
			cctx, cancel := m.background()
			defer cancel()
			if err := m.releaseImageVolumes(cctx, id, h.Snapshotter); err != nil {
				log.G(ctx).WithError(err).WithField("container", id).Warn("releasing image volumes of a failed CreateContainer")
			}
		}
	}()
	mounts, err := m.mountImageVolumes(ctx, id, h.Snapshotter, cfg.GetMounts())
	if err != nil {
		return err
	}
	failpoint.Hit(ctx, "container.create.after-image-volumes")
	opts, err := containerSpec(specInput{id: id, cfg: cfg, sandbox: sb, pausePid: pausePid, targetPid: targetPid, files: m.Sandboxes.Files(sb.ID),
		image: img, imageRef: ref, imageName: cimg.Name(), handler: h, restrictOOM: m.RestrictOOM, enableCDI: m.EnableCDI, mounts: mounts,
		hugepages: hugepages})
	if err != nil {
		return fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
	}
	meta, err := c.metadata(c.status)
	if err != nil {
		return err
	}
	snapshot, err := sandbox.Rootfs(ctx, m.Client, id, cimg, h.Snapshotter, sb.Config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions())
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			// NewContainer may have prepared the snapshot before failing.
			cctx, cancel := m.background()
			defer cancel()
			if err := m.Client.SnapshotService(h.Snapshotter).Remove(cctx, id); err != nil && !errdefs.IsNotFound(err) {
				log.G(ctx).WithError(err).WithField("container", id).Warn("removing the snapshot of a failed CreateContainer")
			}
		}
	}()
	cntr, err := m.Client.NewContainer(ctx, id,
		containerd.WithContainerLabels(map[string]string{kindLabel: kindContainer, sandboxIDLabel: sb.ID}),
		containerd.WithImageName(cimg.Name()),
		containerd.WithSnapshotter(h.Snapshotter),
		snapshot,
		h.WithRuntime(),
		containerd.WithNewSpec(opts...),
		containerd.WithContainerExtension(MetadataExtension, meta),
	)
	if err != nil {
		return fmt.Errorf("create container: %w", err)
	}
	failpoint.Hit(ctx, "container.create.after-record")
	// The user the spec resolved (names, image groups), for status.
	if sp, err := cntr.Spec(ctx); err == nil && sp.Process != nil {
		c.User = sp.Process.User
	}
	m.store.Add(c)
	m.notify(runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, c)
	return nil
}

// notify tells the notifier, if any, of c's transition t, with c's
// sandbox when it is still known.
func (m *Manager) notify(t runtimeapi.ContainerEventType, c *Container) {
	if m.Notifier == nil {
		return
	}
	sb, err := m.Sandboxes.Store().Get(c.SandboxID)
	if err != nil {
		sb = nil
	}
	m.Notifier.Notify(t, c.ID, sb)
}

// stopSignal is the request's stop signal, else the image's, else SIGTERM.
func stopSignal(cfg *runtimeapi.ContainerConfig, img *images.Image) string {
	if s := cfg.GetStopSignal(); s != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		return trimSignal(s.String())
	}
	if s := img.Spec.Config.StopSignal; s != "" {
		return s
	}
	return "SIGTERM"
}

func trimSignal(s string) string { return s[len("SIGNAL_"):] }

// Start creates and starts the container's task, its output going to the
// log file in the CRI format. A failed start leaves the container exited
// with the reason.
func (m *Manager) Start(ctx context.Context, id string) error {
	c, err := m.store.Get(id)
	if err != nil {
		return err
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	if st := c.Status(); st.State != runtimeapi.ContainerState_CONTAINER_CREATED {
		return fmt.Errorf("container %s is %s, not created: %w", c.ID, stateName(st.State), errdefs.ErrFailedPrecondition)
	}
	sb, err := m.Sandboxes.Store().Get(c.SandboxID)
	if err != nil || sb.Status().State() != runtimeapi.PodSandboxState_SANDBOX_READY {
		return fmt.Errorf("sandbox %s of container %s is not ready: %w", c.SandboxID, c.ID, errdefs.ErrFailedPrecondition)
	}
	defer opDurations.WithValues("start", sb.Handler).UpdateSince(time.Now())
	if err := m.start(ctx, c, sb); err != nil {
		now := time.Now()
		uerr := m.update(ctx, c, func(st *Status) error {
			st.State = runtimeapi.ContainerState_CONTAINER_EXITED
			st.FinishedAt = now
			st.ExitCode = startErrorExitCode
			st.Reason = ReasonStartError
			st.Message = err.Error()
			return nil
		})
		if uerr != nil {
			// Still created, as its record says (its task is gone): a
			// retry of StartContainer may start it.
			return fmt.Errorf("%w (and recording the failed start: %v)", err, uerr)
		}
		m.notify(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, c)
		return err
	}
	return nil
}

func (m *Manager) start(ctx context.Context, c *Container, sb *sandbox.Sandbox) error {
	container, err := m.Client.LoadContainer(ctx, c.ID)
	if err != nil {
		return err
	}
	ioOpts, err := m.openIO(c, true)
	if err != nil {
		return err
	}
	// A fast process can exit before Start returns: its exit is handled
	// only once Start has recorded the outcome.
	started := make(chan struct{})
	defer close(started)
	c.mu.Lock()
	c.exited = make(chan struct{})
	c.started = started
	c.mu.Unlock()
	m.Events.Watch(c.ID, m)
	task, err := container.NewTask(ctx, cio.NewCreator(ioOpts...))
	if err != nil {
		m.closeLog(c)
		return fmt.Errorf("create task: %w", err)
	}
	failpoint.Hit(ctx, "container.start.after-task-create")
	if h, err := m.Runtimes.Get(sb.Handler); err == nil {
		checkShim(ctx, h.Type, c.ID, task.Pid(), sb.Status().Pid)
	}
	// Taken before Start: a process can exit before Start returns, and its
	// finish time must not precede its start time.
	startedAt := time.Now()
	if err := task.Start(ctx); err != nil {
		cctx, cancel := m.background()
		defer cancel()
		task.Delete(cctx, containerd.WithProcessKill)
		m.closeLog(c)
		return fmt.Errorf("start task: %w", err)
	}
	failpoint.Hit(ctx, "container.start.after-task-start")
	// The handle first: whoever sees the container running finds its task.
	c.mu.Lock()
	c.task = task
	c.mu.Unlock()
	err = m.update(ctx, c, func(st *Status) error {
		st.State = runtimeapi.ContainerState_CONTAINER_RUNNING
		st.StartedAt = startedAt
		st.Pid = task.Pid()
		return nil
	})
	if err != nil {
		// Not recorded running, so not running: the container stays
		// created, as memory and record say. The task's exit, handled
		// once started is closed, finds it not running and does nothing.
		cctx, cancel := m.background()
		defer cancel()
		task.Delete(cctx, containerd.WithProcessKill)
		c.mu.Lock()
		c.task = nil
		c.mu.Unlock()
		m.closeLog(c)
		return err
	}
	// Before started is closed: an exit's event must follow this one.
	m.notify(runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, c)
	return nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func (m *Manager) closeLog(c *Container) {
	c.mu.Lock()
	lf := c.log
	c.log = nil
	aio := c.attach
	c.mu.Unlock()
	// The output is over: attached clients get the rest, then EOF.
	aio.close()
	if lf != nil {
		lf.Close()
	}
}

// OnExit records a container's exit: its output is drained (within a
// bound), its task deleted, and the exit code, time and reason kept.
func (m *Manager) OnExit(_ context.Context, e events.Exit) {
	c, err := m.store.Get(e.ContainerID)
	if err != nil {
		return
	}
	if m.adoptLateExit(c, e) {
		return
	}
	go m.handleExit(c, e)
}

// OnTaskDelete learns the exit of a container whose task containerd
// deleted while it booted (see events.DeleteHandler).
func (m *Manager) OnTaskDelete(_ context.Context, e events.Exit) {
	if c, err := m.store.Get(e.ContainerID); err == nil {
		m.adoptLateExit(c, e)
	}
}

// adoptLateExit records e as the exit of a container recovery had to
// report as unknown, and says whether it did.
func (m *Manager) adoptLateExit(c *Container, e events.Exit) bool {
	if !c.Status().ExitUnknown {
		return false
	}
	ctx, cancel := m.background()
	defer cancel()
	adopted := false
	m.recordFact(ctx, c, "late exit", func(st *Status) error {
		adopted = st.ExitUnknown // a concurrent event may have adopted it
		if !adopted {
			return nil
		}
		st.ExitUnknown = false
		st.ExitCode = int32(e.Status)
		st.FinishedAt = e.At
		st.Message = ""
		st.Reason = ReasonError
		if e.Status == 0 {
			st.Reason = ReasonCompleted
		}
		return nil
	})
	if !adopted {
		return false
	}
	log.G(ctx).WithFields(log.Fields{"container": c.ID, "status": e.Status}).Info("exit while containerd was down learned from the shim")
	// Told again: the exit recovery reported is now known.
	m.notify(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, c)
	return true
}

// exitRecordAttempts bounds the writes of a fact (an exit) to a record.
const exitRecordAttempts = 3

// recordFact records what happened without asking (an exit, what recovery
// found) through update, retrying a failed write. A status it still cannot
// write is kept in memory only, logged: the process is gone whatever the
// record says, and a container shown running would never stop. The
// record then says what it said before; a restart reads it as it finds
// the task (a running container whose task is gone exits as unknown).
func (m *Manager) recordFact(ctx context.Context, c *Container, what string, fn func(*Status) error) {
	var err error
	for attempt := 1; ; attempt++ {
		if err = m.update(ctx, c, fn); err == nil {
			return
		}
		if errdefs.IsNotFound(err) || attempt == exitRecordAttempts {
			break // no record to write, or no more tries
		}
		log.G(ctx).WithError(err).WithFields(log.Fields{"container": c.ID, "attempt": attempt}).Warn("recording " + what)
		select {
		case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	log.G(ctx).WithError(err).WithField("container", c.ID).Error("recording " + what + " failed; kept in memory only")
	if err := c.update(ctx, inMemory, fn); err != nil {
		log.G(ctx).WithError(err).WithField("container", c.ID).Error("recording " + what)
	}
}

func (m *Manager) handleExit(c *Container, e events.Exit) {
	ctx, cancel := m.background()
	defer cancel()
	log.G(ctx).WithFields(log.Fields{"container": c.ID, "status": e.Status}).Debug("container exited")
	c.mu.Lock()
	started := c.started
	c.mu.Unlock()
	if started != nil {
		<-started
	}
	c.mu.Lock()
	task, state, dup := c.task, c.status.State, c.exiting
	// The exit of an earlier process: the task recovery deleted because
	// the daemon died before starting it.
	stale := e.Pid != 0 && c.status.Pid != 0 && e.Pid != c.status.Pid
	if state == runtimeapi.ContainerState_CONTAINER_RUNNING && !stale {
		c.exiting = true
	}
	c.mu.Unlock()
	if state != runtimeapi.ContainerState_CONTAINER_RUNNING || stale {
		return // a failed start already recorded why
	}
	if dup {
		// A dead shim's cleanup reports the exit again (status 137):
		// the first report is being recorded.
		return
	}
	if task != nil {
		// A task recovered after it exited has no IO attached.
		if tio := task.IO(); tio != nil && !waitIO(tio) {
			tio.Close()
		}
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			log.G(ctx).WithError(err).WithField("container", c.ID).Warn("deleting exited task")
		}
		log.G(ctx).WithField("container", c.ID).Debug("exited task deleted")
	}
	m.closeLog(c)
	var (
		wasRunning bool
		reason     string
	)
	m.recordFact(ctx, c, "exit", func(st *Status) error {
		wasRunning = st.State == runtimeapi.ContainerState_CONTAINER_RUNNING
		st.State = runtimeapi.ContainerState_CONTAINER_EXITED
		st.FinishedAt = e.At
		st.ExitCode = int32(e.Status)
		switch {
		case st.OOMKilled:
			st.Reason = ReasonOOMKilled
		case e.Status == 0:
			st.Reason = ReasonCompleted
		default:
			st.Reason = ReasonError
		}
		reason = st.Reason
		return nil
	})
	c.mu.Lock()
	c.task = nil
	exited := c.exited
	c.mu.Unlock()
	if wasRunning {
		m.notify(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, c)
	}
	exitsTotal.WithValues(reason).Inc()
	if exited != nil {
		close(exited)
	}
}

// OnOOM marks the container, so that its exit reads OOMKilled.
func (m *Manager) OnOOM(ctx context.Context, e events.OOM) {
	if c, err := m.store.Get(e.ContainerID); err == nil {
		// Not recorded (as before): nothing is written, nothing fails.
		if err := m.update(ctx, c, func(st *Status) error { st.OOMKilled = true; return nil }); err != nil {
			log.G(ctx).WithError(err).WithField("container", c.ID).Error("marking OOM kill")
		}
	}
}

// Stop sends the stop signal, then SIGKILL after timeout (at once for 0),
// and returns once the exit is recorded. Unknown and stopped containers
// succeed.
func (m *Manager) Stop(ctx context.Context, id string, timeout time.Duration) error {
	c, err := m.store.Get(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	defer opDurations.WithValues("stop", m.handlerOf(c)).UpdateSince(time.Now())
	return m.stop(ctx, c, timeout)
}

// handlerOf names the runtime handler of c's sandbox, for metrics.
func (m *Manager) handlerOf(c *Container) string {
	if sb, err := m.Sandboxes.Store().Get(c.SandboxID); err == nil {
		return sb.Handler
	}
	return ""
}

func (m *Manager) stop(ctx context.Context, c *Container, timeout time.Duration) error {
	c.mu.Lock()
	task, exited, state := c.task, c.exited, c.status.State
	c.mu.Unlock()
	if state != runtimeapi.ContainerState_CONTAINER_RUNNING || task == nil {
		return nil
	}
	if timeout > 0 {
		sig, err := signal.ParseSignal(c.StopSignal)
		if err != nil {
			sig = syscall.SIGTERM
		}
		if err := task.Kill(ctx, sig); err != nil && !runtimes.TaskGone(err) {
			return fmt.Errorf("signal container %s: %w", c.ID, err)
		}
		select {
		case <-exited:
			return nil
		case <-time.After(timeout):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
		if !runtimes.TaskGone(err) {
			return fmt.Errorf("kill container %s: %w", c.ID, err)
		}
		// Exited on its own: its exit handling (which deletes the task and
		// lets the shim go) is under way, or the shim died with it.
		select {
		case <-exited:
			return nil
		case <-time.After(ioDrainTimeout + 3*time.Second):
			m.handleExit(c, events.Exit{ContainerID: c.ID, Status: 255, At: time.Now()})
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Remove force-stops the container, deletes its task, record and snapshot
// and keeps its log. Unknown containers succeed.
func (m *Manager) Remove(ctx context.Context, id string) error {
	c, err := m.store.Get(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	defer opDurations.WithValues("remove", m.handlerOf(c)).UpdateSince(time.Now())
	if err := m.stop(ctx, c, 0); err != nil {
		return err
	}
	failpoint.Hit(ctx, "container.remove.after-stop")
	m.Events.Unwatch(c.ID)
	if container, err := m.Client.LoadContainer(ctx, c.ID); err == nil {
		if t, err := container.Task(ctx, nil); err == nil {
			t.Delete(ctx, containerd.WithProcessKill)
		}
		sandbox.RemoveCgroup(ctx, container)
		if err := container.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete container %s: %w", c.ID, err)
		}
	} else if !errdefs.IsNotFound(err) {
		return err
	}
	failpoint.Hit(ctx, "container.remove.after-record-delete")
	m.closeLog(c)
	if err := m.releaseImageVolumes(ctx, c.ID, m.snapshotterOf(c)); err != nil {
		return err
	}
	failpoint.Hit(ctx, "container.remove.after-image-volumes")
	m.store.Delete(c.ID)
	m.names.Release(c.Name, c.ID)
	m.notify(runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, c)
	return nil
}

// snapshotterOf is the snapshotter of c's runtime handler.
func (m *Manager) snapshotterOf(c *Container) string {
	if h, err := m.Runtimes.Get(m.handlerOf(c)); err == nil {
		return h.Snapshotter
	}
	return m.Runtimes.Default().Snapshotter
}

// StopAll stops a pod's containers at once, before its sandbox stops.
func (m *Manager) StopAll(ctx context.Context, sandboxID string) error {
	for _, c := range m.store.List(sandboxID) {
		if err := m.Stop(ctx, c.ID, 0); err != nil {
			return err
		}
	}
	return nil
}

// RemoveAll removes a pod's containers, before its sandbox is removed.
func (m *Manager) RemoveAll(ctx context.Context, sandboxID string) error {
	for _, c := range m.store.List(sandboxID) {
		if err := m.Remove(ctx, c.ID); err != nil {
			return err
		}
	}
	return nil
}

// ReopenLog reopens the log file after the kubelet rotated it.
func (m *Manager) ReopenLog(ctx context.Context, id string) error {
	c, err := m.store.Get(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	lf, state := c.log, c.status.State
	c.mu.Unlock()
	if state != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return fmt.Errorf("container %s is not running: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	if lf == nil {
		return nil
	}
	return lf.Reopen()
}

// update changes c's status through fn, its record first (see
// Container.update).
func (m *Manager) update(ctx context.Context, c *Container, fn func(*Status) error) error {
	return c.update(ctx, m.persist, fn)
}

// persist writes the container's metadata to its record. What it records
// has happened: it is written even when the caller has gone.
func (m *Manager) persist(ctx context.Context, c *Container, meta *Metadata) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	container, err := m.Client.LoadContainer(ctx, c.ID)
	if err != nil {
		return err
	}
	return container.Update(ctx, func(_ context.Context, _ *containerd.Client, rec *corecontainers.Container) error {
		a, err := typeurl.MarshalAny(meta)
		if err != nil {
			return err
		}
		if rec.Extensions == nil {
			rec.Extensions = map[string]typeurl.Any{}
		}
		rec.Extensions[MetadataExtension] = a
		return nil
	})
}

func stateName(s runtimeapi.ContainerState) string {
	switch s {
	case runtimeapi.ContainerState_CONTAINER_CREATED:
		return "created"
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		return "running"
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		return "exited"
	}
	return "unknown"
}
