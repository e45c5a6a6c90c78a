package containers

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The probe tells a stdin fifo someone reads (the shim, before stdin_once
// closed it) from one nobody reads any more, and does not end the reader's
// stream while another writer holds it (the shim's own write end).
func TestStdinReadable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stdin")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := stdinReadable(path); !errors.Is(err, unix.ENXIO) {
		t.Errorf("fifo without a reader: %v, want ENXIO", err)
	}
	r, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := os.OpenFile(path, os.O_WRONLY, 0) // the shim's write end
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := stdinReadable(path); err != nil {
		t.Errorf("fifo with a reader: %v", err)
	}
	w.Write([]byte("x"))
	b := make([]byte, 2)
	if n, err := r.Read(b); n != 1 || err != nil {
		t.Errorf("reader after the probe: %d bytes, %v; want the shim's byte, no EOF", n, err)
	}
	if err := stdinReadable(filepath.Join(t.TempDir(), "gone")); !errors.Is(err, unix.ENOENT) {
		t.Errorf("missing fifo: %v, want ENOENT", err)
	}
	if err := stdinReadable(""); err == nil {
		t.Error("no fifo path: no error")
	}
}

// A stdin recovery found closed gives cio nothing to copy, and attachers'
// input fails at once, as after stdin_once without a restart.
func TestAttachIOStdinClosedAtRecovery(t *testing.T) {
	cfg := &runtimeapi.ContainerConfig{Stdin: true, StdinOnce: true}
	a := newAttachIO(cfg, io.Discard, io.Discard, false)
	if in, _, _ := a.streams(); in != nil {
		t.Errorf("cio gets stdin %v for a closed stdin", in)
	}
	if _, err := a.stdinW.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("attacher's input: %v, want ErrClosedPipe", err)
	}
	a = newAttachIO(cfg, io.Discard, io.Discard, true)
	if in, _, _ := a.streams(); in == nil {
		t.Error("open stdin gives cio nothing to copy")
	}
	a.close()
}
