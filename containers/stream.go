package containers

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// This file is the container side of the streaming server (package
// streaming): Manager implements its Containers interface. The server
// calls these methods once a client has connected to a URL handed out by
// the CRI's Exec or Attach. PortForward is the pod network's
// (sandbox/portforward.go).

// initialSizeWait bounds how long a TTY exec waits for the client's first
// terminal size, so the process starts at the right size: the shim drops a
// resize that comes before the process has started.
const initialSizeWait = 500 * time.Millisecond

// runningTask returns a running container and its task; unknown is
// NotFound, any other state FailedPrecondition.
func (m *Manager) runningTask(id string) (*Container, containerd.Task, error) {
	c, err := m.store.Get(id)
	if err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	task, state := c.task, c.status.State
	c.mu.Unlock()
	if state != runtimeapi.ContainerState_CONTAINER_RUNNING || task == nil {
		return nil, nil, fmt.Errorf("container %s is %s, not running: %w", c.ID, stateName(state), errdefs.ErrFailedPrecondition)
	}
	return c, task, nil
}

// Exec runs cmd in the running container, its IO streamed to the client.
// A non-zero exit is returned as the exit-code error the streaming library
// reports to the client (kubectl and crictl exit with that code).
func (m *Manager) Exec(ctx context.Context, id string, cmd []string, stdin io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	// The HTTP request's context carries no containerd namespace.
	ctx = namespaces.WithNamespace(ctx, m.Namespace)
	c, task, err := m.runningTask(id)
	if err != nil {
		return err
	}
	pspec, err := m.execSpec(ctx, c, cmd, tty)
	if err != nil {
		return err
	}
	if tty {
		if size, ok := firstSize(resize); ok {
			pspec.ConsoleSize = &specs.Box{Height: uint(size.Height), Width: uint(size.Width)}
		}
	}

	// Without a terminal the shim opens both output fifos or fails: a
	// stream the client did not ask for is discarded.
	if !tty {
		if stdout == nil {
			stdout = nopCloser{io.Discard}
		}
		if stderr == nil {
			stderr = nopCloser{io.Discard}
		}
	}
	// The process's stdin is closed when the client's ends (a pipe like
	// `echo x | kubectl exec -i cat` must see EOF). cio only closes its
	// own end of the fifo; the shim holds another until CloseIO.
	var in io.Reader
	stdinEnded := make(chan struct{})
	if stdin != nil {
		in = &onEnd{r: stdin, fn: func() { close(stdinEnded) }}
	}
	ioOpts := []cio.Opt{cio.WithStreams(in, stdout, stderr), m.fifos()}
	if tty {
		ioOpts = append(ioOpts, cio.WithTerminal)
	}
	e, err := m.startExec(ctx, c, task, pspec, cio.NewCreator(ioOpts...))
	if err != nil {
		return err
	}
	process := e.process
	done := make(chan struct{})
	defer close(done)
	// After Start only: before it the shim has no stdin to close, and the
	// process would then wait for input forever. With a TTY the client's
	// end of stdin is not the process's: ^D travels through the terminal.
	if stdin != nil && !tty {
		go func() {
			select {
			case <-stdinEnded:
				cctx, cancel := m.background()
				defer cancel()
				if err := process.CloseIO(cctx, containerd.WithStdinCloser); err != nil && !errdefs.IsNotFound(err) {
					log.G(ctx).WithError(err).WithField("container", c.ID).Debug("closing exec stdin")
				}
			case <-done:
			}
		}()
	}
	go applyResizes(ctx, resize, done, process.Resize)

	// Output written before the exit reaches the client.
	st, err := e.wait(ctx, nil)
	if err != nil {
		return err
	}
	code, _, err := st.Result()
	if err != nil {
		return fmt.Errorf("wait for exec in %s: %w", c.ID, err)
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("exit status %d", code), Code: int(code)}
	}
	return nil
}

// firstSize waits briefly for the client's first terminal size, which
// clients send as soon as the streams are up.
func firstSize(resize <-chan remotecommand.TerminalSize) (remotecommand.TerminalSize, bool) {
	if resize == nil {
		return remotecommand.TerminalSize{}, false
	}
	t := time.NewTimer(initialSizeWait)
	defer t.Stop()
	select {
	case s, ok := <-resize:
		return s, ok && s.Width > 0 && s.Height > 0
	case <-t.C:
		return remotecommand.TerminalSize{}, false
	}
}

// applyResizes passes terminal sizes on until the channel closes or done.
func applyResizes(ctx context.Context, resize <-chan remotecommand.TerminalSize, done <-chan struct{}, apply func(context.Context, uint32, uint32) error) {
	if resize == nil {
		return
	}
	for {
		select {
		case s, ok := <-resize:
			if !ok {
				return
			}
			if s.Width == 0 || s.Height == 0 {
				continue
			}
			if err := apply(ctx, uint32(s.Width), uint32(s.Height)); err != nil {
				log.G(ctx).WithError(err).Debug("resizing terminal")
			}
		case <-done:
			return
		}
	}
}

// onEnd calls fn once when its reader first returns an error (EOF
// included).
type onEnd struct {
	r    io.Reader
	once sync.Once
	fn   func()
}

func (o *onEnd) Read(p []byte) (int, error) {
	n, err := o.r.Read(p)
	if err != nil {
		o.once.Do(o.fn)
	}
	return n, err
}

// Attach connects the client to the container's main process: its output
// from now on (the log keeps getting all of it), and its stdin when the
// container was created with stdin. It returns when the container exits,
// the client goes away or falls behind, or, with only stdin attached, when
// the client's stdin ends.
func (m *Manager) Attach(ctx context.Context, id string, stdin io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	ctx = namespaces.WithNamespace(ctx, m.Namespace)
	c, task, err := m.runningTask(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	aio := c.attach
	c.mu.Unlock()
	if aio == nil {
		// A task recovery found exited, its exit not yet recorded.
		return fmt.Errorf("container %s has no output to attach to: %w", c.ID, errdefs.ErrFailedPrecondition)
	}

	var subs []*subscriber
	defer func() {
		for _, s := range subs {
			s.from.remove(s, nil)
		}
	}()
	for _, o := range []struct {
		w    io.Writer
		from *fanout
	}{{stdout, aio.stdout}, {stderr, aio.stderr}} {
		if o.w == nil || (o.from == aio.stderr && c.Config.GetTty()) {
			continue // a TTY merges stderr into stdout
		}
		s := o.from.subscribe(o.w)
		if s == nil {
			return nil // the container's output has ended: it exited
		}
		subs = append(subs, s)
	}

	// Stdin of a container created without it is ignored, as upstream
	// does; stdinEnded then stays nil and never fires.
	var stdinEnded chan struct{}
	if stdin != nil && aio.stdinW != nil {
		stdinEnded = make(chan struct{})
		go func() {
			defer close(stdinEnded)
			io.Copy(aio.stdinW, stdin)
			if aio.stdinOnce {
				aio.closeStdin(ctx, task)
			}
		}()
	}
	done := make(chan struct{})
	defer close(done)
	go applyResizes(ctx, resize, done, task.Resize)

	if len(subs) == 0 {
		select {
		case <-stdinEnded:
		case <-aio.closed:
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	}
	// The first output stream to end decides: the container's output
	// closing ends every stream once drained; a failed or slow one ends
	// the attach.
	select {
	case s := <-firstEnded(subs):
		if err := s.err(); err != nil {
			return err
		}
		for _, s := range subs {
			select {
			case <-s.done:
			case <-s.cut:
				return s.err()
			}
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// firstEnded delivers the first subscriber that finished or was cut off.
func firstEnded(subs []*subscriber) <-chan *subscriber {
	out := make(chan *subscriber, len(subs))
	for _, s := range subs {
		go func() {
			select {
			case <-s.done:
			case <-s.cut:
			}
			out <- s
		}()
	}
	return out
}
