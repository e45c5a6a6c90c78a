package containers

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// blockingWriter never returns from Write until released.
type blockingWriter struct{ release chan struct{} }

func (b blockingWriter) Write(p []byte) (int, error) {
	<-b.release
	return 0, errors.New("released")
}

func TestFanoutDeliversToLogAndAttachers(t *testing.T) {
	var log, a lockedBuffer
	f := newFanout(&log)
	f.Write([]byte("before "))
	s := f.subscribe(&a)
	f.Write([]byte("during"))
	f.close()
	<-s.done
	if log.String() != "before during" || a.String() != "during" {
		t.Errorf("log %q, attacher %q", log.String(), a.String())
	}
	if s.err() != nil {
		t.Errorf("normal end reported %v", s.err())
	}
	if f.subscribe(&a) != nil {
		t.Error("subscribed to a closed stream")
	}
}

// A client that stops reading must not hold the container's output or the
// log: it is cut off once its queue is full, and the rest goes on.
func TestFanoutCutsSlowAttacher(t *testing.T) {
	var log, fast lockedBuffer
	f := newFanout(&log)
	stuck := blockingWriter{release: make(chan struct{})}
	defer close(stuck.release)
	slow := f.subscribe(stuck)
	quick := f.subscribe(&fast)

	wrote := make(chan struct{})
	chunk := []byte(strings.Repeat("x", 1024))
	const writes = attachQueue * 2
	go func() {
		for i := range writes {
			f.Write(chunk)
			// Paced by the reading attacher, which is then never behind.
			for len(fast.String()) < (i+1)*len(chunk) {
				time.Sleep(time.Millisecond)
			}
		}
		close(wrote)
	}()
	select {
	case <-wrote:
	case <-time.After(10 * time.Second):
		t.Fatal("writes blocked behind a stuck attacher")
	}
	select {
	case <-slow.cut:
	default:
		t.Fatal("stuck attacher not cut off")
	}
	if !errors.Is(slow.err(), errSlowAttacher) {
		t.Errorf("cut reason %v", slow.err())
	}
	f.close()
	<-quick.done
	want := writes * len(chunk)
	if len(log.String()) != want || len(fast.String()) != want {
		t.Errorf("log got %d bytes, reading attacher %d, want %d", len(log.String()), len(fast.String()), want)
	}
}

// An attacher whose connection fails is dropped, the others unaffected.
func TestFanoutDropsFailedAttacher(t *testing.T) {
	f := newFanout(io.Discard)
	pr, pw := io.Pipe()
	pr.Close()
	s := f.subscribe(pw)
	f.Write([]byte("x"))
	<-s.done
	if s.err() == nil {
		t.Error("failed write not reported")
	}
	f.mu.Lock()
	n := len(f.subs)
	f.mu.Unlock()
	if n != 0 {
		t.Errorf("%d subscribers left", n)
	}
}

func TestOnEndFiresOnce(t *testing.T) {
	n := 0
	r := &onEnd{r: strings.NewReader("ab"), fn: func() { n++ }}
	io.ReadAll(r)
	r.Read(make([]byte, 1))
	if n != 1 {
		t.Errorf("fn ran %d times", n)
	}
}
