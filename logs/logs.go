// Package logs writes containers' stdout and stderr to their log file in
// the CRI log format, the one the kubelet parses for `kubectl logs`
// (k8s.io/kubernetes pkg/kubelet/kuberuntime/logs):
//
//	<timestamp> <stream> <tag> <content>\n
//
// stream is "stdout" or "stderr"; tag is "F" when the content was followed
// by a newline in the container's output and "P" when the line goes on in
// the stream's next entry. The kubelet gives a full entry's content back
// with a "\n" after it and a partial entry's content with nothing after it,
// so joining one stream's entries that way rebuilds its output byte for
// byte. That drives the choices below:
//
//   - A line longer than the File's maximum is cut into entries of exactly
//     that many bytes, tagged P, and a last entry, tagged F, with the rest
//     (1 to max bytes): the cut never leaves an empty F entry.
//   - Output that ends without a newline (the stream's Close, or the File's)
//     is written as a P entry, as upstream containerd does: the kubelet then
//     prints it without a newline, as the program wrote it. An F entry would
//     add a newline the program never wrote.
//   - Only the "\n" ends a line. A "\r" before it stays in the content, so a
//     "\r\n" line comes back from the kubelet as "\r\n". (Upstream containerd
//     drops the "\r", as bufio.Reader.ReadLine does; the kubelet strips only
//     the "\n" of a partial entry, and nothing from a full one.)
//   - Content is bytes: no UTF-8 check, no escaping. It never holds a "\n".
//
// Timestamps are UTC, with all nine digits of the fraction
// ("2006-01-02T15:04:05.000000000Z", the kubelet's own output layout): that
// is RFC 3339 and parsed by time.Parse(time.RFC3339Nano, ...) as the kubelet
// does, is the same whatever the node's time zone, has a fixed width, and
// sorts as text. Upstream containerd writes local time with its offset via
// time.RFC3339Nano, which drops trailing zeros of the fraction; both parse
// to the same instant. Each entry is stamped with Now() as it is formatted,
// when its line is complete (or cut, or flushed by Close), just before the
// write that carries it; the two streams format apart and take turns at the
// file, so neighbouring entries of different streams may be out of time
// order by that gap. The kubelet filters by time entry by entry and needs
// no order.
package logs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Now is the clock, replaceable in tests. It may be called from several
// goroutines at once.
var Now = time.Now

// DefaultMaxLine is the default of max_container_log_line_size, as in
// containerd's CRI configuration.
const DefaultMaxLine = 16 * 1024

const (
	// Stdout and Stderr are the stream names of the format.
	Stdout = "stdout"
	Stderr = "stderr"

	tsLayout = "2006-01-02T15:04:05" // then ".nnnnnnnnnZ", written by hand

	// batchSize: a writer gathers the entries of one Write in a buffer and
	// writes them to the file with one call each time it holds this much,
	// and at the end of the Write, rather than with one call per entry.
	batchSize = 16 * 1024
	// keepCap: a buffer grown beyond this (a long line with no limit) is let
	// go once used rather than held for the writer's life.
	keepCap = 1 << 20
)

// File is one container's log file; both streams write to it.
//
// Entries reach the file whole and one after another: every write call
// carries whole entries (never part of one), under the File's mutex, on a
// file opened with O_APPEND. A writer gathers the entries one Write makes
// and writes them together, up to batchSize bytes per call, so a chunk of
// many short lines costs one system call rather than one per line.
//
// A failed write (disk full, quota, I/O error) never reaches the container:
// the entries it carried are dropped and counted (Dropped), and the next
// entries are tried again. A file that is deleted (or renamed) while open
// goes on receiving the entries through its open descriptor, unlinked and
// invisible, until Reopen: that is not a failure and Dropped does not count
// it.
type File struct {
	path    string
	maxLine int

	mu      sync.Mutex
	file    *os.File // nil once closed
	closing bool
	writers map[*writer]struct{}

	dropped atomic.Uint64
}

// Open creates the log file at path, and its parent directories (0755), or
// opens it for appending if it exists. maxLine is the most content bytes one
// entry holds (max_container_log_line_size); 0 or less (-1 in containerd's
// configuration) means no limit, each line then being one entry however long
// and held in memory until its newline.
func Open(path string, maxLine int) (*File, error) {
	file, err := openFile(path)
	if err != nil {
		return nil, err
	}
	if maxLine < 0 {
		maxLine = 0
	}
	return &File{path: path, maxLine: maxLine, file: file, writers: map[*writer]struct{}{}}, nil
}

func openFile(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	// os.OpenFile sets O_CLOEXEC itself; it is spelled out for the reader.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_CLOEXEC, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return f, nil
}

// Dropped is the number of entries lost to failed writes. An entry a failed
// write cut short in the file counts as dropped.
func (f *File) Dropped() uint64 { return f.dropped.Load() }

// Writer returns a writer for one stream, "stdout" or "stderr". Write takes
// any chunks (parts of lines, many lines); it holds an unfinished line until
// its newline, the line limit, or Close, and returns len(p), nil even when
// the file write fails. Close writes the unfinished line, if any, as a P
// entry and ends the writer; Write after Close returns os.ErrClosed, and so
// does every Write of a writer asked for after the File's Close or for
// another stream name. A writer is safe for concurrent use, but its output
// from concurrent Writes has no defined order; each stream should have one
// writer fed by one goroutine.
func (f *File) Writer(stream string) io.WriteCloser {
	if stream != Stdout && stream != Stderr {
		return errWriter{fmt.Errorf("logs: invalid stream %q, want %q or %q", stream, Stdout, Stderr)}
	}
	w := &writer{f: f, max: f.maxLine}
	w.full = []byte(" " + stream + " F ")
	w.part = []byte(" " + stream + " P ")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		w.closed = true
		return w
	}
	f.writers[w] = struct{}{}
	return w
}

// Reopen opens the file's path again, creating it: the kubelet calls
// ReopenContainerLog after renaming the file to rotate it. Entries written
// after Reopen returns go to the new file; those written before stay in the
// old one. It may run during writes. If the open fails, writes go on to the
// old file and the error is returned.
func (f *File) Reopen() error {
	f.mu.Lock()
	closing := f.closing
	f.mu.Unlock()
	if closing {
		return os.ErrClosed // and do not create the file again
	}
	// Open outside the mutex: writes wait only for the swap.
	file, err := openFile(f.path)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.file == nil {
		file.Close()
		return os.ErrClosed
	}
	old := f.file
	f.file = file
	if err := old.Close(); err != nil {
		return fmt.Errorf("close previous log file: %w", err)
	}
	return nil
}

// Close closes the writers still open, which writes their unfinished lines,
// then the file. Closing again does nothing.
func (f *File) Close() error {
	f.mu.Lock()
	if f.closing {
		f.mu.Unlock()
		return nil
	}
	f.closing = true
	ws := make([]*writer, 0, len(f.writers))
	for w := range f.writers {
		ws = append(ws, w)
	}
	f.mu.Unlock()

	for _, w := range ws {
		w.Close()
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.file.Close()
	f.file = nil
	return err
}

// write puts b, whole entries, in the file with one call; a failure drops
// the entries not (fully) written.
func (f *File) write(b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.file == nil {
		f.dropped.Add(uint64(bytes.Count(b, nl)))
		return
	}
	n, err := f.file.Write(b)
	if err == nil {
		return
	}
	// Every entry ends with the only "\n" it holds: the ones ending after
	// byte n are lost or cut.
	f.dropped.Add(uint64(bytes.Count(b[n:], nl)))
	if n > 0 && b[n-1] != '\n' {
		// End the cut entry, so that it does not swallow the next one into
		// the same line: the kubelet skips a malformed line, or shows a
		// short content. Best effort: the disk is likely still full.
		f.file.Write(nl)
	}
}

var nl = []byte{'\n'}

// writer is one stream's writer.
type writer struct {
	f          *File
	max        int    // content bytes per entry; 0: no limit
	full, part []byte // " stdout F ", " stdout P "

	mu     sync.Mutex
	closed bool
	pend   []byte // the unfinished line, len(pend) <= max
	buf    []byte // entries not yet written
	sec    int64  // second of tsPre
	tsPre  []byte // tsLayout of second sec, reused while it lasts
}

func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, os.ErrClosed
	}
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.line(p, false)
			break
		}
		w.line(p[:i], true)
		p = p[i+1:]
	}
	w.flush()
	return n, nil
}

// line takes the next piece of a line, its end if eol.
func (w *writer) line(s []byte, eol bool) {
	if w.max > 0 {
		for len(w.pend)+len(s) > w.max {
			k := w.max - len(w.pend)
			w.entry(w.part, w.pend, s[:k])
			w.pend = w.pend[:0]
			s = s[k:]
		}
	}
	if eol {
		w.entry(w.full, w.pend, s)
		w.pend = w.pend[:0]
		if cap(w.pend) > keepCap {
			w.pend = nil
		}
		return
	}
	w.pend = append(w.pend, s...)
}

// entry appends one entry, content a then b, to buf; tag is w.full or w.part.
func (w *writer) entry(tag, a, b []byte) {
	w.buf = w.stamp(w.buf)
	w.buf = append(w.buf, tag...)
	w.buf = append(w.buf, a...)
	w.buf = append(w.buf, b...)
	w.buf = append(w.buf, '\n')
	if len(w.buf) >= batchSize {
		w.flush()
	}
}

// flush writes the entries in buf.
func (w *writer) flush() {
	if len(w.buf) == 0 {
		return
	}
	w.f.write(w.buf)
	w.buf = w.buf[:0]
	if cap(w.buf) > keepCap {
		w.buf = nil
	}
}

// stamp appends Now() as 2006-01-02T15:04:05.000000000Z, formatting the
// part up to the second only when the second changes.
func (w *writer) stamp(b []byte) []byte {
	t := Now().UTC()
	if sec := t.Unix(); sec != w.sec || w.tsPre == nil {
		w.sec = sec
		w.tsPre = t.AppendFormat(w.tsPre[:0], tsLayout)
	}
	b = append(b, w.tsPre...)
	var frac [11]byte
	frac[0] = '.'
	ns := t.Nanosecond()
	for i := 9; i >= 1; i-- {
		frac[i] = byte('0' + ns%10)
		ns /= 10
	}
	frac[10] = 'Z'
	return append(b, frac[:]...)
}

// Close writes the unfinished line, if any, as a P entry and ends the writer.
func (w *writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	if len(w.pend) > 0 {
		w.entry(w.part, w.pend, nil)
	}
	w.flush()
	w.pend, w.buf, w.tsPre = nil, nil, nil
	w.f.mu.Lock()
	delete(w.f.writers, w)
	w.f.mu.Unlock()
	return nil
}

type errWriter struct{ err error }

func (e errWriter) Write([]byte) (int, error) { return 0, e.err }
func (e errWriter) Close() error              { return nil }

// Parse parses one entry of a CRI log file, with or without its ending
// "\n". content is the entry's content, without the line's "\n" (the
// original output had a "\n" after it when partial is false); it shares
// line's memory. Parse is stricter than the kubelet: the tag (the part
// before any ":" of the tag field) must be P or F, and the content may not
// hold a "\n".
func Parse(line []byte) (ts time.Time, stream string, partial bool, content []byte, err error) {
	line = bytes.TrimSuffix(line, nl)
	i := bytes.IndexByte(line, ' ')
	if i < 0 {
		return ts, "", false, nil, errors.New("logs: timestamp not found")
	}
	ts, err = time.Parse(time.RFC3339Nano, string(line[:i]))
	if err != nil {
		return time.Time{}, "", false, nil, fmt.Errorf("logs: bad timestamp: %w", err)
	}
	line = line[i+1:]
	i = bytes.IndexByte(line, ' ')
	if i < 0 {
		return time.Time{}, "", false, nil, errors.New("logs: stream not found")
	}
	switch s := string(line[:i]); s {
	case Stdout:
		stream = Stdout
	case Stderr:
		stream = Stderr
	default:
		return time.Time{}, "", false, nil, fmt.Errorf("logs: unknown stream %q", s)
	}
	line = line[i+1:]
	i = bytes.IndexByte(line, ' ')
	if i < 0 {
		return time.Time{}, "", false, nil, errors.New("logs: tag not found")
	}
	tag := line[:i]
	if j := bytes.IndexByte(tag, ':'); j >= 0 {
		tag = tag[:j]
	}
	switch string(tag) {
	case "P":
		partial = true
	case "F":
	default:
		return time.Time{}, "", false, nil, fmt.Errorf("logs: unknown tag %q", line[:i])
	}
	content = line[i+1:]
	if bytes.IndexByte(content, '\n') >= 0 {
		return time.Time{}, "", false, nil, errors.New("logs: newline inside an entry")
	}
	return ts, stream, partial, content, nil
}
