package daemon

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Critest is one run of cri-tools' critest.
type Critest struct {
	// Binary is bin/critest; the ginkgo CLI it execs above -parallel 1 is
	// found next to it.
	Binary string
	// Dir is the working folder; critest's output goes to
	// Dir/critest.log, replacing an earlier run's.
	Dir     string
	Args    []string
	Timeout time.Duration
}

// RunCritest runs c and reports whether it was killed at its timeout. A
// failed spec is no error here (critest's report says which); a critest
// that cannot run ends the test.
//
// critest may exec the ginkgo CLI, which runs more critest processes: they
// all get a process group of their own that is killed at the end, so that
// nothing is left running, even when ginkgo's own timeout did not end them.
// TMPDIR is a folder of their own, removed afterwards: critest leaves a
// folder there per run, and its specs their host paths.
func RunCritest(ctx context.Context, t testing.TB, c Critest) (timedOut bool) {
	t.Helper()
	logf, err := os.Create(filepath.Join(c.Dir, "critest.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	tmp, err := os.MkdirTemp("", "nodecri-critest-tmp-")
	if err == nil {
		// Searchable, as /tmp is, for host paths mounted into
		// user-namespaced pods.
		err = os.Chmod(tmp, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer RemoveUnlessMounted(t, tmp)
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Binary, c.Args...)
	cmd.Dir = c.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(c.Binary)+":"+os.Getenv("PATH"), "TMPDIR="+tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }

	t.Logf("running critest %s (output: %s)", strings.Join(c.Args, " "), logf.Name())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // whatever is left of the group
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return true
	case errors.As(err, &exit):
		return false
	case err != nil:
		t.Fatalf("critest: %v", err)
	}
	return false
}
