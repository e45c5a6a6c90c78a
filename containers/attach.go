package containers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/logs"
)

// This file is a started container's IO: its output fanned out to the
// log and to attached clients, and the stdin pipe attachers feed.

// attachQueue is how many output chunks (each at most cio's 32 KiB copy
// buffer) an attacher may fall behind before it is disconnected.
const attachQueue = 256

// errSlowAttacher ends an attach whose client does not read its output:
// the container and its log must never wait for it.
var errSlowAttacher = errors.New("attached client does not read the output fast enough; disconnected")

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
