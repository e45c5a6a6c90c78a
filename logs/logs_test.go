package logs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// entry is one parsed line of a log file.
type entry struct {
	ts      time.Time
	stream  string
	partial bool
	content string
}

func (e entry) String() string {
	tag := "F"
	if e.partial {
		tag = "P"
	}
	return fmt.Sprintf("%s %s %q", e.stream, tag, e.content)
}

// fakeClock makes Now return base, base+1ns, base+2ns, ... until the test
// ends.
func fakeClock(t testing.TB, base time.Time) {
	t.Helper()
	var n atomic.Int64
	n.Store(-1)
	Now = func() time.Time { return base.Add(time.Duration(n.Add(1))) }
	t.Cleanup(func() { Now = time.Now })
}

var base = time.Date(2024, 2, 29, 23, 59, 59, 999999998, time.UTC)

func open(t testing.TB, maxLine int) (*File, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pod", "ctr", "0.log")
	f, err := Open(path, maxLine)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, path
}

// readEntries parses every line of the file, which must all be well formed
// and end with "\n".
func readEntries(t testing.TB, path string) []entry {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	es, err := parseAll(data)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func parseAll(data []byte) ([]entry, error) {
	var es []entry
	if len(data) > 0 && data[len(data)-1] != '\n' {
		return nil, fmt.Errorf("file does not end with a newline: %q", tail(data))
	}
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		line := data[:i+1]
		data = data[i+1:]
		ts, stream, partial, content, err := Parse(line)
		if err != nil {
			return nil, fmt.Errorf("line %d %q: %v", len(es)+1, line, err)
		}
		es = append(es, entry{ts, stream, partial, string(content)})
	}
	return es, nil
}

func tail(b []byte) []byte {
	if len(b) > 100 {
		return b[len(b)-100:]
	}
	return b
}

// output rebuilds what each stream wrote, as the kubelet does: a full
// entry's content then "\n", a partial entry's content alone.
func output(es []entry) map[string]string {
	var out, errb strings.Builder
	for _, e := range es {
		b := &out
		if e.stream == Stderr {
			b = &errb
		}
		b.WriteString(e.content)
		if !e.partial {
			b.WriteByte('\n')
		}
	}
	return map[string]string{Stdout: out.String(), Stderr: errb.String()}
}

func entries(spec ...string) []entry {
	var es []entry
	for _, s := range spec {
		stream, rest, _ := strings.Cut(s, " ")
		tag, content, _ := strings.Cut(rest, " ")
		es = append(es, entry{stream: stream, partial: tag == "P", content: content})
	}
	return es
}

func checkEntries(t *testing.T, got []entry, want ...string) {
	t.Helper()
	w := entries(want...)
	if len(got) != len(w) {
		t.Fatalf("got %d entries %v, want %d %v", len(got), got, len(w), w)
	}
	for i := range w {
		if got[i].stream != w[i].stream || got[i].partial != w[i].partial || got[i].content != w[i].content {
			t.Fatalf("entry %d: got %v, want %v\nall: %v", i, got[i], w[i], got)
		}
	}
}

func write(t *testing.T, w io.Writer, s string) {
	t.Helper()
	n, err := w.Write([]byte(s))
	if err != nil || n != len(s) {
		t.Fatalf("Write(%q) = %d, %v", s, n, err)
	}
}

func TestExactFormat(t *testing.T) {
	// Local time with an offset is written in UTC, nine digits of fraction.
	zone := time.FixedZone("X", -7*3600)
	fakeClock(t, time.Date(2024, 3, 1, 1, 2, 3, 4000, zone))
	f, path := open(t, DefaultMaxLine)
	w := f.Writer(Stdout)
	write(t, w, "hello world\n\n")
	e := f.Writer(Stderr)
	write(t, e, "a\r\nb")
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "2024-03-01T08:02:03.000004000Z stdout F hello world\n" +
		"2024-03-01T08:02:03.000004001Z stdout F \n" +
		"2024-03-01T08:02:03.000004002Z stderr F a\r\n" +
		"2024-03-01T08:02:03.000004003Z stderr P b\n"
	if string(got) != want {
		t.Fatalf("file:\n%q\nwant:\n%q", got, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&^0o640 != 0 {
		t.Errorf("file mode %v, want at most 0640", perm)
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if !di.IsDir() {
		t.Error("parent not created")
	}
}

func TestTimestampSecondChange(t *testing.T) {
	// base is 2ns before midnight of a leap day: the cached second prefix
	// must follow.
	fakeClock(t, base)
	f, path := open(t, 0)
	w := f.Writer(Stdout)
	for i := 0; i < 4; i++ {
		write(t, w, "x\n")
	}
	f.Close()
	es := readEntries(t, path)
	for i, e := range es {
		if want := base.Add(time.Duration(i)); !e.ts.Equal(want) {
			t.Errorf("entry %d: ts %v, want %v", i, e.ts, want)
		}
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "2024-02-29T23:59:59.999999999Z stdout F x\n2024-03-01T00:00:00.000000000Z stdout F x\n") {
		t.Errorf("file:\n%s", data)
	}
}

func TestFullLines(t *testing.T) {
	f, path := open(t, DefaultMaxLine)
	w := f.Writer(Stdout)
	write(t, w, "one\n")
	write(t, w, "two\nthree\nfour\n")
	checkEntries(t, readEntries(t, path), "stdout F one", "stdout F two", "stdout F three", "stdout F four")
}

func TestByteByByte(t *testing.T) {
	f, path := open(t, DefaultMaxLine)
	w := f.Writer(Stderr)
	for _, c := range []byte("a line in pieces\nand another\n") {
		write(t, w, string(c))
	}
	// Nothing is written before the newline.
	write(t, w, "pending")
	checkEntries(t, readEntries(t, path), "stderr F a line in pieces", "stderr F and another")
	write(t, w, "")
	w.Close()
	checkEntries(t, readEntries(t, path), "stderr F a line in pieces", "stderr F and another", "stderr P pending")
}

func TestEmptyLines(t *testing.T) {
	f, path := open(t, 4)
	w := f.Writer(Stdout)
	write(t, w, "\n")
	write(t, w, "\n\nx\n\n")
	checkEntries(t, readEntries(t, path), "stdout F ", "stdout F ", "stdout F ", "stdout F x", "stdout F ")
}

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"abc\n", []string{"stdout F abc"}},
		{"abcd\n", []string{"stdout F abcd"}},
		{"abcde\n", []string{"stdout P abcd", "stdout F e"}},
		{"abcdefgh\n", []string{"stdout P abcd", "stdout F efgh"}},
		{"abcdefghij\nkl\n", []string{"stdout P abcd", "stdout P efgh", "stdout F ij", "stdout F kl"}},
		{"abcd\r\n", []string{"stdout P abcd", "stdout F \r"}},
		// At the end, without a newline: every entry partial.
		{"abcd", []string{"stdout P abcd"}},
		{"abcdefgh", []string{"stdout P abcd", "stdout P efgh"}},
		{"abcdefghi", []string{"stdout P abcd", "stdout P efgh", "stdout P i"}},
	} {
		for _, chunk := range []int{1, 2, 3, 5, 1000} {
			t.Run(fmt.Sprintf("%q/%d", tc.in, chunk), func(t *testing.T) {
				f, path := open(t, 4)
				w := f.Writer(Stdout)
				for s := tc.in; len(s) > 0; {
					n := min(chunk, len(s))
					write(t, w, s[:n])
					s = s[n:]
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				checkEntries(t, readEntries(t, path), tc.want...)
			})
		}
	}
}

func TestSplitDefault(t *testing.T) {
	f, path := open(t, DefaultMaxLine)
	w := f.Writer(Stdout)
	line := bytes.Repeat([]byte("0123456789abcdef"), 3*1024) // 48 KiB
	line[DefaultMaxLine-1] = 'X'
	line[DefaultMaxLine] = 'Y'
	write(t, w, string(line[:100]))
	write(t, w, string(line[100:])+"z\n")
	es := readEntries(t, path)
	if len(es) != 4 {
		t.Fatalf("%d entries", len(es))
	}
	for i, e := range es[:3] {
		if !e.partial || len(e.content) != DefaultMaxLine || e.content != string(line[i*DefaultMaxLine:(i+1)*DefaultMaxLine]) {
			t.Fatalf("entry %d: partial %v, %d bytes", i, e.partial, len(e.content))
		}
	}
	if es[0].content[DefaultMaxLine-1] != 'X' || es[1].content[0] != 'Y' {
		t.Fatal("cut at the wrong byte")
	}
	if es[3].partial || es[3].content != "z" {
		t.Fatalf("last entry %v", es[3])
	}
}

func TestNoLimit(t *testing.T) {
	for _, max := range []int{-1, 0} {
		f, path := open(t, max)
		w := f.Writer(Stdout)
		line := strings.Repeat("x", 100000)
		for i := 0; i < len(line); i += 7000 {
			write(t, w, line[i:min(i+7000, len(line))])
		}
		write(t, w, "\n"+line)
		f.Close()
		checkEntries(t, readEntries(t, path), "stdout F "+line, "stdout P "+line)
	}
}

func TestClose(t *testing.T) {
	f, path := open(t, DefaultMaxLine)
	out := f.Writer(Stdout)
	errw := f.Writer(Stderr)
	write(t, out, "done\nhalf")
	write(t, errw, "err half")
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, err := out.Write([]byte("late\n")); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	// The File's Close flushes the writer still open.
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, err := errw.Write([]byte("late\n")); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after File.Close: %v", err)
	}
	if _, err := f.Writer(Stdout).Write([]byte("late\n")); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write of a writer made after File.Close: %v", err)
	}
	if err := f.Reopen(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Reopen after Close: %v", err)
	}
	checkEntries(t, readEntries(t, path), "stdout F done", "stdout P half", "stderr P err half")
	if f.Dropped() != 0 {
		t.Fatalf("Dropped %d", f.Dropped())
	}
}

func TestInvalidStream(t *testing.T) {
	f, path := open(t, DefaultMaxLine)
	w := f.Writer("stdin")
	if _, err := w.Write([]byte("x\n")); err == nil {
		t.Fatal("no error for stream stdin")
	}
	w.Close()
	f.Close()
	checkEntries(t, readEntries(t, path))
}

// randomChunks writes data to w in chunks of random sizes, some small.
func randomChunks(t testing.TB, r *rand.Rand, w io.Writer, data []byte) {
	for len(data) > 0 {
		n := 1 + r.Intn(64)
		if r.Intn(8) == 0 {
			n = 1 + r.Intn(40000)
		}
		n = min(n, len(data))
		if m, err := w.Write(data[:n]); m != n || err != nil {
			t.Errorf("Write = %d, %v", m, err)
			return
		}
		data = data[n:]
	}
}

// randomOutput is lines of random lengths, some empty, some long, some with
// "\r\n" or bytes that are not UTF-8, ending without a newline.
func randomOutput(r *rand.Rand, size int, fill byte) []byte {
	var b []byte
	for len(b) < size {
		n := r.Intn(100)
		if r.Intn(20) == 0 {
			n = r.Intn(3 * DefaultMaxLine)
		}
		for i := 0; i < n; i++ {
			b = append(b, fill+byte(i%7))
		}
		switch r.Intn(6) {
		case 0:
			b = append(b, '\r', '\n')
		case 1:
			b = append(b, 0xff, 0, ' ', '\n')
		default:
			b = append(b, '\n')
		}
	}
	return append(b, "no newline"...)
}

func TestInterleaved(t *testing.T) {
	f, path := open(t, DefaultMaxLine)
	r := rand.New(rand.NewSource(1))
	want := map[string][]byte{
		Stdout: randomOutput(r, 2<<20, 'a'),
		Stderr: randomOutput(r, 2<<20, 'A'),
	}
	var wg sync.WaitGroup
	for i, stream := range []string{Stdout, Stderr} {
		w := f.Writer(stream)
		wg.Add(1)
		go func() {
			defer wg.Done()
			randomChunks(t, rand.New(rand.NewSource(int64(i+2))), w, want[stream])
			w.Close()
		}()
	}
	wg.Wait()
	f.Close()
	es := readEntries(t, path)
	got := output(es)
	for _, s := range []string{Stdout, Stderr} {
		if got[s] != string(want[s]) {
			t.Errorf("%s: got %d bytes, want %d", s, len(got[s]), len(want[s]))
		}
	}
	// Both streams did take turns in the file.
	switches := 0
	for i := 1; i < len(es); i++ {
		if es[i].stream != es[i-1].stream {
			switches++
		}
	}
	t.Logf("%d entries, %d stream switches", len(es), switches)
	for _, e := range es {
		if len(e.content) > DefaultMaxLine {
			t.Fatalf("entry of %d bytes", len(e.content))
		}
	}
}

func TestReopen(t *testing.T) {
	f, path := open(t, DefaultMaxLine)
	w := f.Writer(Stdout)
	write(t, w, "one\ntw")
	rotated := path + ".20240101-000000"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	write(t, w, "o\nthree\n")
	checkEntries(t, readEntries(t, rotated), "stdout F one")
	checkEntries(t, readEntries(t, path), "stdout F two", "stdout F three")

	// Reopen without a rename appends to the same file.
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	write(t, w, "four\n")
	checkEntries(t, readEntries(t, path), "stdout F two", "stdout F three", "stdout F four")
}

func TestReopenFails(t *testing.T) {
	f, path := open(t, DefaultMaxLine)
	w := f.Writer(Stdout)
	write(t, w, "one\n")
	// The directory is replaced by a file: the path cannot be opened.
	dir := filepath.Dir(path)
	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.Reopen(); err == nil {
		t.Fatal("Reopen succeeded")
	}
	// Writes go on to the old file.
	write(t, w, "two\n")
	checkEntries(t, readEntries(t, filepath.Join(dir+".old", filepath.Base(path))), "stdout F one", "stdout F two")
}

func TestReopenDuringWrites(t *testing.T) {
	f, path := open(t, 100)
	r := rand.New(rand.NewSource(7))
	want := map[string][]byte{Stdout: randomOutput(r, 1<<20, 'a'), Stderr: randomOutput(r, 1<<20, 'A')}
	var wg sync.WaitGroup
	for i, stream := range []string{Stdout, Stderr} {
		w := f.Writer(stream)
		wg.Add(1)
		go func() {
			defer wg.Done()
			randomChunks(t, rand.New(rand.NewSource(int64(i))), w, want[stream])
			w.Close()
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var rotated []string
loop:
	for i := 0; ; i++ {
		select {
		case <-done:
			break loop
		default:
		}
		name := fmt.Sprintf("%s.%d", path, i)
		if err := os.Rename(path, name); err != nil {
			t.Fatal(err)
		}
		rotated = append(rotated, name)
		if err := f.Reopen(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	f.Close()
	var all []entry
	for _, name := range append(rotated, path) {
		all = append(all, readEntries(t, name)...)
	}
	got := output(all)
	for _, s := range []string{Stdout, Stderr} {
		if got[s] != string(want[s]) {
			t.Errorf("%s: got %d bytes, want %d", s, len(got[s]), len(want[s]))
		}
	}
	t.Logf("%d rotations", len(rotated))
}

func TestCloseDuringWrites(t *testing.T) {
	f, path := open(t, 50)
	var wg, started sync.WaitGroup
	written := map[string]*strings.Builder{Stdout: {}, Stderr: {}}
	for i, stream := range []string{Stdout, Stderr} {
		w := f.Writer(stream)
		b := written[stream]
		r := rand.New(rand.NewSource(int64(i)))
		all := randomOutput(r, 64<<10, 'a')
		wg.Add(1)
		started.Add(1)
		go func() {
			defer wg.Done()
			// Bounded, so a Close slow to win the lock on a loaded machine
			// cannot make the test write for minutes.
			for k, data := 0, all; k < 20000; k++ {
				if k == 100 {
					started.Done()
				}
				if len(data) == 0 {
					data = all
				}
				n := min(1+r.Intn(200), len(data))
				m, err := w.Write(data[:n])
				if errors.Is(err, os.ErrClosed) {
					if k < 100 {
						t.Error("closed early")
						started.Done()
					}
					return
				}
				if err != nil || m != n {
					t.Errorf("Write = %d, %v", m, err)
					return
				}
				b.Write(data[:n])
				data = data[n:]
			}
		}()
	}
	started.Wait()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	got := output(readEntries(t, path))
	for _, s := range []string{Stdout, Stderr} {
		if got[s] != written[s].String() {
			t.Errorf("%s: got %d bytes, want %d", s, len(got[s]), written[s].Len())
		}
	}
}

func TestDeletedFile(t *testing.T) {
	// Entries written after the file was deleted go to the open, unlinked
	// file: no error, nothing dropped; Reopen makes a new file.
	f, path := open(t, DefaultMaxLine)
	w := f.Writer(Stdout)
	write(t, w, "before\n")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	write(t, w, "while deleted\n")
	if f.Dropped() != 0 {
		t.Fatalf("Dropped %d", f.Dropped())
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("file came back: %v", err)
	}
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	write(t, w, "after\n")
	checkEntries(t, readEntries(t, path), "stdout F after")
	// Removing the directory too.
	if err := os.RemoveAll(filepath.Dir(path)); err != nil {
		t.Fatal(err)
	}
	write(t, w, "gone\n")
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	write(t, w, "back\n")
	checkEntries(t, readEntries(t, path), "stdout F back")
}

func TestWriteErrorsDropped(t *testing.T) {
	// Every write to /dev/full fails with ENOSPC.
	f, err := Open("/dev/full", DefaultMaxLine)
	if err != nil {
		t.Skip("no /dev/full:", err)
	}
	defer f.Close()
	if _, err := f.file.Write([]byte("x")); err == nil {
		t.Skip("/dev/full accepts writes")
	}
	w := f.Writer(Stdout)
	write(t, w, "one\ntwo\nthr")
	if got := f.Dropped(); got != 2 {
		t.Fatalf("Dropped %d, want 2", got)
	}
	write(t, w, "ee\n"+strings.Repeat("x\n", 20000)) // several batches
	if got := f.Dropped(); got != 20003 {
		t.Fatalf("Dropped %d, want 20003", got)
	}
	write(t, w, "tail")
	w.Close()
	if got := f.Dropped(); got != 20004 {
		t.Fatalf("Dropped %d, want 20004", got)
	}
}

func TestParse(t *testing.T) {
	ts := "2016-10-06T00:17:09.669794202Z"
	for _, tc := range []struct {
		line    string
		stream  string
		partial bool
		content string
	}{
		{ts + " stdout F hello\n", Stdout, false, "hello"},
		{ts + " stderr P hello", Stderr, true, "hello"},
		{ts + " stdout F \n", Stdout, false, ""},
		{ts + " stdout F  two  spaces \r\n", Stdout, false, " two  spaces \r"},
		{ts + " stdout F:x:y tagged\n", Stdout, false, "tagged"},
		{ts + " stdout P:x tagged\n", Stdout, true, "tagged"},
		{"2016-10-06T00:17:09-07:00 stdout F offset\n", Stdout, false, "offset"},
	} {
		got, stream, partial, content, err := Parse([]byte(tc.line))
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.line, err)
			continue
		}
		if got.IsZero() || stream != tc.stream || partial != tc.partial || string(content) != tc.content {
			t.Errorf("Parse(%q) = %v %q %v %q", tc.line, got, stream, partial, content)
		}
	}
	want, _ := time.Parse(time.RFC3339Nano, ts)
	if got, _, _, _, _ := Parse([]byte(ts + " stdout F x")); !got.Equal(want) {
		t.Errorf("ts %v, want %v", got, want)
	}
	for _, bad := range []string{
		"",
		"\n",
		ts,
		ts + " stdout",
		ts + " stdout F",
		ts + " stdin F x",
		ts + " stdout X x",
		ts + " stdout  x",
		"yesterday stdout F x",
		ts + " stdout F a\nb",
		ts + " stdout F x\n\n",
	} {
		if _, _, _, _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
}

func TestNoAllocs(t *testing.T) {
	f, _ := open(t, DefaultMaxLine)
	w := f.Writer(Stdout)
	chunk := shortLines(32 * 1024)
	long := bytes.Repeat([]byte("y"), 5*DefaultMaxLine/2)
	write(t, w, string(chunk)) // grow the buffers
	write(t, w, string(long))
	for _, tc := range []struct {
		name string
		p    []byte
	}{{"short lines", chunk}, {"long line", long}, {"one byte", []byte("z")}} {
		if n := testing.AllocsPerRun(50, func() { w.Write(tc.p) }); n != 0 {
			t.Errorf("%s: %v allocations per Write", tc.name, n)
		}
	}
}

// shortLines is size bytes of lines of 20 to 100 bytes.
func shortLines(size int) []byte {
	r := rand.New(rand.NewSource(3))
	b := make([]byte, 0, size)
	for len(b) < size {
		n := 20 + r.Intn(80)
		for i := 0; i < n-1 && len(b) < size-1; i++ {
			b = append(b, 'a'+byte(i%26))
		}
		b = append(b, '\n')
	}
	return b
}

// BenchmarkWriter writes 1 MiB of short lines (60 bytes on average) per
// iteration, in the 32 KiB chunks io.Copy reads from the container's pipe,
// to a real file.
func BenchmarkWriter(b *testing.B) {
	data := shortLines(1 << 20)
	for _, bc := range []struct {
		name  string
		chunk int
		data  []byte
	}{
		{"ShortLines/32KiB", 32 * 1024, data},
		{"ShortLines/512B", 512, data},
		{"LongLines/32KiB", 32 * 1024, bytes.Repeat([]byte(strings.Repeat("L", 50000)+"\n"), 21)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f, _ := open(b, DefaultMaxLine)
			w := f.Writer(Stdout)
			b.SetBytes(int64(len(bc.data)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for p := bc.data; len(p) > 0; {
					n := min(bc.chunk, len(p))
					w.Write(p[:n])
					p = p[n:]
				}
				if i%64 == 63 {
					b.StopTimer()
					f.file.Truncate(0)
					b.StartTimer()
				}
			}
			b.StopTimer()
			if f.Dropped() != 0 {
				b.Fatalf("dropped %d", f.Dropped())
			}
		})
	}
}

// FuzzWriter writes two streams in chunks whose sizes come from sizes, with
// a line limit from maxLine (0 or less: none), then parses the file back:
// every line must be a well-formed entry, and each stream's entries must
// rebuild its output exactly.
func FuzzWriter(f *testing.F) {
	f.Add([]byte("hello\nworld\n"), []byte("oops"), []byte{1, 2, 3}, 4)
	f.Add([]byte("\n\n\r\n"), []byte("a\r\nb\rc\n"), []byte{0}, -1)
	f.Add([]byte("abcdefgh\nabcd\nabcde"), []byte("x\n"), []byte{7, 1}, 4)
	f.Add(bytes.Repeat([]byte("0123456789"), 50), []byte{0xff, 0xfe, '\n', 0}, []byte{200, 13}, 16)
	dir := f.TempDir() // one directory: a fresh one per input is slow
	var execs atomic.Int64
	f.Fuzz(func(t *testing.T, stdout, stderr, sizes []byte, maxLine int) {
		if maxLine > 0 {
			maxLine = maxLine%300 + 1
		}
		fakeClock(t, base)
		path := filepath.Join(dir, fmt.Sprintf("%d.log", execs.Add(1)))
		defer os.Remove(path)
		lf, err := Open(path, maxLine)
		if err != nil {
			t.Fatal(err)
		}
		in := map[string][]byte{Stdout: stdout, Stderr: stderr}
		ws := map[string]io.WriteCloser{Stdout: lf.Writer(Stdout), Stderr: lf.Writer(Stderr)}
		k := 0
		next := func() int {
			if len(sizes) == 0 {
				return 1 << 30
			}
			n := int(sizes[k%len(sizes)])
			k++
			return n // 0: an empty Write, then one byte
		}
		for len(in[Stdout])+len(in[Stderr]) > 0 {
			for _, s := range []string{Stdout, Stderr} {
				n := next()
				if n == 0 {
					if m, err := ws[s].Write(in[s][:0]); m != 0 || err != nil {
						t.Fatalf("empty Write = %d, %v", m, err)
					}
					n = 1
				}
				n = min(n, len(in[s]))
				if m, err := ws[s].Write(in[s][:n]); m != n || err != nil {
					t.Fatalf("Write = %d, %v", m, err)
				}
				in[s] = in[s][n:]
			}
		}
		// Close stdout's writer itself, leave stderr's to the File.
		ws[Stdout].Close()
		if err := lf.Close(); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		es, err := parseAll(data)
		if err != nil {
			t.Fatal(err)
		}
		got := output(es)
		if got[Stdout] != string(stdout) || got[Stderr] != string(stderr) {
			t.Fatalf("rebuilt stdout %q stderr %q, want %q %q", got[Stdout], got[Stderr], stdout, stderr)
		}
		last := map[string]int{}
		for i, e := range es {
			last[e.stream] = i
			if want := base.Add(time.Duration(i)); !e.ts.Equal(want) {
				t.Fatalf("entry %d: ts %v, want %v", i, e.ts, want)
			}
		}
		for i, e := range es {
			if maxLine > 0 && len(e.content) > maxLine {
				t.Fatalf("entry %d: %d bytes, limit %d", i, len(e.content), maxLine)
			}
			if e.partial && e.content == "" {
				t.Fatalf("entry %d: empty partial", i)
			}
			// Only a line's limit or the stream's end makes a partial entry.
			if e.partial && i != last[e.stream] && len(e.content) != maxLine {
				t.Fatalf("entry %d: partial of %d bytes, limit %d", i, len(e.content), maxLine)
			}
		}
		if lf.Dropped() != 0 {
			t.Fatalf("dropped %d", lf.Dropped())
		}
	})
}
