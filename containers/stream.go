package containers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/netns"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	cnins "github.com/containernetworking/plugins/pkg/ns"
	"github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	"github.com/nodecri/nodecri/logs"
)

// This file is the runtime side of the streaming server (package
// streaming): Manager implements its Runtime interface. The server calls
// these methods once a client has connected to a URL handed out by the
// CRI's Exec, Attach or PortForward.

const (
	// attachQueue is how many output chunks (each at most cio's 32 KiB
	// copy buffer) an attacher may fall behind before it is disconnected.
	attachQueue = 256
	// initialSizeWait bounds how long a TTY exec waits for the client's
	// first terminal size, so the process starts at the right size: the
	// shim drops a resize that comes before the process has started.
	initialSizeWait = 500 * time.Millisecond
)

// errSlowAttacher ends an attach whose client does not read its output:
// the container and its log must never wait for it.
var errSlowAttacher = errors.New("attached client does not read the output fast enough; disconnected")

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
	container, err := m.Client.LoadContainer(ctx, c.ID)
	if err != nil {
		return err
	}
	sp, err := container.Spec(ctx)
	if err != nil {
		return err
	}
	pspec := *sp.Process
	pspec.Args = cmd
	pspec.Terminal = tty
	pspec.ConsoleSize = nil
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
	process, err := task.Exec(ctx, newID()[:32], &pspec, cio.NewCreator(ioOpts...))
	if err != nil {
		return fmt.Errorf("exec in %s: %w", c.ID, err)
	}
	exitCh, err := process.Wait(ctx)
	if err != nil {
		m.cleanupExec(process)
		return err
	}
	if err := process.Start(ctx); err != nil {
		m.cleanupExec(process)
		return fmt.Errorf("start exec in %s: %w", c.ID, err)
	}
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

	select {
	case st := <-exitCh:
		// Output written before the exit reaches the client; a background
		// child holding the pipe does not keep the call.
		drained := make(chan struct{})
		go func() { process.IO().Wait(); close(drained) }()
		select {
		case <-drained:
		case <-time.After(ioDrainTimeout):
		}
		m.cleanupExec(process)
		code, _, err := st.Result()
		if err != nil {
			return fmt.Errorf("wait for exec in %s: %w", c.ID, err)
		}
		if code != 0 {
			return utilexec.CodeExitError{Err: fmt.Errorf("exit status %d", code), Code: int(code)}
		}
		return nil
	case <-ctx.Done():
		process.Kill(context.WithoutCancel(ctx), syscall.SIGKILL)
		m.cleanupExec(process)
		return ctx.Err()
	}
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

// attachIO is a started container's IO as attach sees it: stdout and
// stderr fan out to the log and to attachers, and with the config's stdin a
// pipe that attachers write into feeds the process.
type attachIO struct {
	stdout, stderr *fanout
	stdinR         *io.PipeReader // nil without stdin
	stdinW         *io.PipeWriter
	stdinOnce      bool
	stdinClosed    sync.Once
	closed         chan struct{} // closed by close: the container's IO is over
	closeOnce      sync.Once
}

// openIO opens the container's log (appending) and builds the attach
// plumbing around it, recorded in c: the one constructor for the IO of a
// task start() creates (cio.NewCreator) and of a running task recovery
// reconnects to (cio.NewAttach), which get the options it returns.
// stdinOpen is false when the task's stdin can no longer be fed: its
// stdin_once was used before a restart.
func (m *Manager) openIO(c *Container, stdinOpen bool) ([]cio.Opt, error) {
	var stdout, stderr io.Writer = io.Discard, io.Discard
	var lf *logs.File
	if c.LogPath != "" {
		var err error
		if lf, err = logs.Open(c.LogPath, m.MaxLogLineSize); err != nil {
			return nil, fmt.Errorf("open log %s: %w", c.LogPath, err)
		}
		stdout, stderr = lf.Writer("stdout"), lf.Writer("stderr")
	}
	// The output also fans out to attached clients, and a container
	// created with stdin reads it from a pipe they feed.
	aio := newAttachIO(c.Config, stdout, stderr, stdinOpen)
	c.mu.Lock()
	c.log = lf
	c.attach = aio
	c.mu.Unlock()
	opts := []cio.Opt{cio.WithStreams(aio.streams()), m.fifos()}
	if c.Config.GetTty() {
		opts = append(opts, cio.WithTerminal)
	}
	return opts, nil
}

// newAttachIO wraps a container's log writers. Without stdinOpen, a
// config's stdin is built already closed, as after its stdin_once was
// used: attachers' input is dropped, as it is then without a restart.
func newAttachIO(cfg *runtimeapi.ContainerConfig, stdout, stderr io.Writer, stdinOpen bool) *attachIO {
	a := &attachIO{stdout: newFanout(stdout), stderr: newFanout(stderr), closed: make(chan struct{})}
	if cfg.GetStdin() {
		a.stdinR, a.stdinW = io.Pipe()
		a.stdinOnce = cfg.GetStdinOnce()
		if !stdinOpen {
			a.stdinClosed.Do(func() { a.stdinW.Close() })
			a.stdinR = nil // nothing for cio to copy
		}
	}
	return a
}

// streams are what the task's cio copies from and to. stdin is a nil
// interface without a pipe: cio then creates no stdin fifo.
func (a *attachIO) streams() (stdin io.Reader, stdout, stderr io.Writer) {
	if a.stdinR != nil {
		stdin = a.stdinR
	}
	return stdin, a.stdout, a.stderr
}

// closeStdin ends the container's stdin for good (StdinOnce): our end of
// the pipe, then the shim's hold on the fifo, so the process reads EOF.
func (a *attachIO) closeStdin(ctx context.Context, task containerd.Task) {
	a.stdinClosed.Do(func() {
		a.stdinW.Close()
		if err := task.CloseIO(context.WithoutCancel(ctx), containerd.WithStdinCloser); err != nil && !errdefs.IsNotFound(err) {
			log.G(ctx).WithError(err).Debug("closing container stdin")
		}
	})
}

// close ends attachment once the container's output is over (exit, failed
// start, removal): attachers get what is queued, then EOF, and cio's
// stdin copy ends. Safe on nil and more than once.
func (a *attachIO) close() {
	if a == nil {
		return
	}
	a.closeOnce.Do(func() {
		if a.stdinW != nil {
			a.stdinW.Close()
		}
		a.stdout.close()
		a.stderr.close()
		close(a.closed)
	})
}

// fanout copies one output stream of a container to its log and to the
// current attachers. The log gets every byte, in the caller's goroutine, as
// without attach. Each attacher gets a copy through a bounded queue drained
// by a goroutine of its own, so a slow or stuck client never holds the
// container's output (and so the container) or the log: once its queue is
// full it is disconnected.
type fanout struct {
	log io.Writer

	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	from  *fanout
	w     io.Writer
	queue chan []byte   // closed when unsubscribed
	done  chan struct{} // closed when the writer goroutine returns
	// cut is closed when it is dropped for an error: its Attach returns
	// at once, which closes the connection even if a Write is stuck.
	cut chan struct{}

	mu     sync.Mutex
	reason error // why it was cut off; nil when the output ended
}

func newFanout(log io.Writer) *fanout {
	return &fanout{log: log, subs: map[*subscriber]struct{}{}}
}

// Write never fails: a failing log is the log's business, a failing
// attacher is dropped.
func (f *fanout) Write(p []byte) (int, error) {
	f.log.Write(p)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.subs) == 0 {
		return len(p), nil
	}
	b := append([]byte(nil), p...) // cio reuses its buffer
	for s := range f.subs {
		select {
		case s.queue <- b:
		default:
			f.removeLocked(s, errSlowAttacher)
		}
	}
	return len(p), nil
}

// subscribe adds an attacher; nil once the stream has ended.
func (f *fanout) subscribe(w io.Writer) *subscriber {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	s := &subscriber{from: f, w: w, queue: make(chan []byte, attachQueue),
		done: make(chan struct{}), cut: make(chan struct{})}
	f.subs[s] = struct{}{}
	go s.run()
	return s
}

func (s *subscriber) run() {
	defer close(s.done)
	for b := range s.queue {
		select {
		case <-s.cut:
			return // its queued output is not wanted any more
		default:
		}
		if _, err := s.w.Write(b); err != nil {
			s.from.remove(s, fmt.Errorf("writing to attached client: %w", err))
			return
		}
	}
}

func (s *subscriber) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason
}

// remove unsubscribes s; its queued output is still written. Idempotent.
func (f *fanout) remove(s *subscriber, why error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removeLocked(s, why)
}

func (f *fanout) removeLocked(s *subscriber, why error) {
	if _, ok := f.subs[s]; !ok {
		return
	}
	delete(f.subs, s)
	s.mu.Lock()
	s.reason = why
	s.mu.Unlock()
	if why != nil {
		close(s.cut)
	}
	close(s.queue)
}

// close ends the stream: attachers drain their queues and finish.
func (f *fanout) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for s := range f.subs {
		f.removeLocked(s, nil)
	}
}

// PortForward connects stream to TCP port on the pod's loopback: dialled
// from inside the pod's network namespace (the socket stays there), or on
// the node for a host-network pod.
func (m *Manager) PortForward(ctx context.Context, sandboxID string, port int32, stream io.ReadWriteCloser) error {
	if port <= 0 || port > 65535 {
		return fmt.Errorf("port %d is not a TCP port: %w", port, errdefs.ErrInvalidArgument)
	}
	sb, err := m.Sandboxes.Store().Get(sandboxID)
	if err != nil {
		return err
	}
	st := sb.Status()
	if st.State() != runtimeapi.PodSandboxState_SANDBOX_READY {
		return fmt.Errorf("sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	var conn net.Conn
	if sb.HostNetwork() {
		conn, err = dialLoopback(ctx, port)
	} else if st.NetNSPath == "" {
		return fmt.Errorf("sandbox %s has no network namespace: %w", sb.ID, errdefs.ErrFailedPrecondition)
	} else {
		err = netns.LoadNetNS(st.NetNSPath).Do(func(cnins.NetNS) error {
			var derr error
			conn, derr = dialLoopback(ctx, port)
			return derr
		})
	}
	if err != nil {
		return fmt.Errorf("port-forward to %s port %d: %w", sb.ID, port, err)
	}
	defer conn.Close()

	go func() {
		io.Copy(conn, stream)
		// The client has sent all it will; the pod's server may still
		// answer, so only our sending side closes.
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	// Done when the pod's side closes (or the client goes away): the
	// library then closes the stream, and conn's close ends the copy above.
	if _, err := io.Copy(stream, conn); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("port-forward to %s port %d: %w", sb.ID, port, err)
	}
	return nil
}

// dialLoopback connects to port on 127.0.0.1, else on ::1 (IPv6-only pods),
// in the calling thread's network namespace: with an IP literal the socket
// is made in this goroutine, which netns.Do keeps on its thread.
func dialLoopback(ctx context.Context, port int32) (net.Conn, error) {
	var d net.Dialer
	p := strconv.Itoa(int(port))
	conn, err := d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", p))
	if err == nil {
		return conn, nil
	}
	if conn6, err6 := d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", p)); err6 == nil {
		return conn6, nil
	}
	return nil, err
}
