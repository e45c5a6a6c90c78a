package containers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	corecontainers "github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// maxExecOutput caps each of ExecSync's streams, as the CRI requires.
const maxExecOutput = 16 << 20

// capped keeps the first max bytes written and drops the rest.
type capped struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - c.buf.Len(); room > 0 {
		if len(p) > room {
			c.buf.Write(p[:room])
		} else {
			c.buf.Write(p)
		}
	}
	return len(p), nil
}

func (c *capped) Close() error { return nil }

func (c *capped) Bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf.Bytes())
}

// ExecResult is what ExecSync returns.
type ExecResult struct {
	Stdout, Stderr []byte
	ExitCode       int32
}

// ExecSync runs cmd in the running container and returns its output. On
// timeout the process is killed and the call answers DeadlineExceeded at
// once, even when a background child still holds the output open.
func (m *Manager) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (*ExecResult, error) {
	c, err := m.store.Get(id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	task, state := c.task, c.status.State
	c.mu.Unlock()
	if state != runtimeapi.ContainerState_CONTAINER_RUNNING || task == nil {
		return nil, fmt.Errorf("container %s is not running: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	pspec, err := m.execSpec(ctx, c, cmd, false)
	if err != nil {
		return nil, err
	}
	stdout, stderr := &capped{max: maxExecOutput}, &capped{max: maxExecOutput}
	e, err := m.startExec(ctx, c, task, pspec, cio.NewCreator(cio.WithStreams(nil, stdout, stderr), m.fifos()))
	if err != nil {
		return nil, err
	}
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	st, err := e.wait(ctx, deadline)
	if errors.Is(err, errExecTimeout) {
		return nil, fmt.Errorf("command %q timed out after %s: %w", cmd, timeout, context.DeadlineExceeded)
	}
	if err != nil {
		return nil, err
	}
	return &ExecResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: int32(st.ExitCode())}, nil
}

// execSpec is the process spec of cmd run in c: its main process's, with
// cmd's arguments and terminal.
func (m *Manager) execSpec(ctx context.Context, c *Container, cmd []string, tty bool) (*specs.Process, error) {
	container, err := m.Client.LoadContainer(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	sp, err := container.Spec(ctx)
	if err != nil {
		return nil, err
	}
	pspec := *sp.Process
	pspec.Args = cmd
	pspec.Terminal = tty
	pspec.ConsoleSize = nil
	return &pspec, nil
}

// execProcess is an exec process started in a container: the one start, wait and
// drain of ExecSync and the streaming Exec.
type execProcess struct {
	m       *Manager
	c       *Container
	process containerd.Process
	exitCh  <-chan containerd.ExitStatus
}

// errExecTimeout: the exec outlived its deadline and was killed.
var errExecTimeout = errors.New("exec timed out")

// startExec starts pspec in task with the IO ioc makes.
func (m *Manager) startExec(ctx context.Context, c *Container, task containerd.Task, pspec *specs.Process, ioc cio.Creator) (*execProcess, error) {
	process, err := task.Exec(ctx, newID()[:32], pspec, ioc)
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", c.ID, err)
	}
	exitCh, err := process.Wait(ctx)
	if err != nil {
		m.cleanupExec(process)
		return nil, err
	}
	if err := process.Start(ctx); err != nil {
		m.cleanupExec(process)
		return nil, fmt.Errorf("start exec in %s: %w", c.ID, err)
	}
	return &execProcess{m: m, c: c, process: process, exitCh: exitCh}, nil
}

// wait returns the exec's exit once its output is read, then deletes it.
// At deadline (nil: none) it kills it and returns errExecTimeout, when
// ctx ends ctx's error.
func (e *execProcess) wait(ctx context.Context, deadline <-chan time.Time) (containerd.ExitStatus, error) {
	select {
	case st := <-e.exitCh:
		// Output written before the exit is read; a child still holding
		// the pipe does not keep the call.
		waitIO(e.process.IO())
		e.m.cleanupExec(e.process)
		return st, nil
	case <-deadline:
		e.process.Kill(ctx, syscall.SIGKILL)
		e.m.cleanupExec(e.process)
		return containerd.ExitStatus{}, errExecTimeout
	case <-ctx.Done():
		e.process.Kill(context.WithoutCancel(ctx), syscall.SIGKILL)
		e.m.cleanupExec(e.process)
		return containerd.ExitStatus{}, ctx.Err()
	}
}

// waitIO waits for a finished process's output to be copied, at most
// ioDrainTimeout: a background child can hold the pipe open forever. It
// says whether the output ended.
func waitIO(tio cio.IO) bool {
	drained := make(chan struct{})
	go func() { tio.Wait(); close(drained) }()
	select {
	case <-drained:
		return true
	case <-time.After(ioDrainTimeout):
		return false
	}
}

// cleanupExec closes an exec's IO and deletes it, in the background: a
// child holding its pipes must not hold the caller.
func (m *Manager) cleanupExec(p containerd.Process) {
	go func() {
		ctx, cancel := m.background()
		defer cancel()
		p.IO().Cancel()
		p.IO().Close()
		if _, err := p.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			log.G(ctx).WithError(err).Debug("deleting exec process")
		}
	}()
}

// Update applies new resources to the container: to its record always and
// to its running task. Fields the request leaves zero keep their values
// (mergeResources); absent Linux resources change nothing.
func (m *Manager) Update(ctx context.Context, id string, r *runtimeapi.LinuxContainerResources) error {
	c, err := m.store.Get(id)
	if err != nil {
		return err
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	task, state, cur := c.task, c.status.State, c.status.Resources
	c.mu.Unlock()
	if state == runtimeapi.ContainerState_CONTAINER_EXITED {
		return fmt.Errorf("container %s has exited: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	if r == nil {
		return nil
	}
	huge, err := m.Hugetlb.Limits(ctx, r.HugepageLimits)
	if err != nil {
		return err
	}
	if cur == nil {
		cur = c.Config.GetLinux().GetResources()
	}
	merged := mergeResources(cur, r)
	container, err := m.Client.LoadContainer(ctx, c.ID)
	if err != nil {
		return err
	}
	sp, err := container.Spec(ctx)
	if err != nil {
		return err
	}
	if sp.Linux.Resources != nil && len(r.HugepageLimits) == 0 {
		huge = sp.Linux.Resources.HugepageLimits // none given: as they were
	}
	if err := withResources(merged, huge)(ctx, nil, nil, sp); err != nil {
		return err
	}
	if err := container.Update(ctx, containerd.UpdateContainerOpts(func(_ context.Context, _ *containerd.Client, rec *corecontainers.Container) error {
		return setSpec(rec, sp)
	})); err != nil {
		return fmt.Errorf("record new resources: %w", err)
	}
	if task != nil {
		if err := task.Update(ctx, containerd.WithResources(sp.Linux.Resources)); err != nil {
			return fmt.Errorf("apply new resources: %w", err)
		}
	}
	// Not recorded in the extension (the spec holds them): nothing is
	// written.
	return m.update(ctx, c, func(st *Status) error { st.Resources = merged; return nil })
}

func setSpec(rec *corecontainers.Container, sp *specs.Spec) error {
	a, err := typeurl.MarshalAny(sp)
	if err != nil {
		return err
	}
	rec.Spec = a
	return nil
}
