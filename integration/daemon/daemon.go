package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Daemon is a running containerd started from a Layout.
type Daemon struct {
	Layout  *Layout
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error

	Conn    *grpc.ClientConn
	Runtime runtimeapi.RuntimeServiceClient
	Images  runtimeapi.ImageServiceClient
}

// Start runs binary on the layout's config (written first) and waits until
// the CRI answers on its socket, or the process exits, or ctx ends.
func Start(ctx context.Context, binary string, l *Layout) (*Daemon, error) {
	if err := l.WriteConfig(); err != nil {
		return nil, err
	}
	d := &Daemon{Layout: l, LogPath: filepath.Join(l.Dir, "containerd.log"), done: make(chan struct{})}
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	d.cmd = exec.Command(binary, "--config", l.ConfigPath(), "--log-level", l.logLevel())
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	// The shim and runc are found on PATH: ours first.
	d.cmd.Env = append(os.Environ(), "PATH="+l.RuntimeBinDir+":"+os.Getenv("PATH"))
	// Its own process group, so that a test's signals do not reach it.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	go func() { d.waitErr = d.cmd.Wait(); close(d.done) }()

	// The socket file of a killed daemon stays until the next one binds
	// it: dialing it fails, and grpc's default backoff (up to 2 minutes)
	// would then hide when the new daemon starts serving. Retry briskly.
	conn, err := grpc.NewClient("unix://"+l.Socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6, MaxDelay: 100 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		d.Stop()
		return nil, err
	}
	d.Conn, d.Runtime, d.Images = conn, runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
	if err := d.waitReady(ctx); err != nil {
		d.Stop()
		return nil, fmt.Errorf("%w\n--- %s ---\n%s", err, d.LogPath, d.LogTail(40))
	}
	return d, nil
}

func (d *Daemon) waitReady(ctx context.Context) error {
	// Startup is the one place the harness polls: the daemon offers no
	// readiness notification to an outside process.
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if _, err := os.Stat(d.Layout.Socket); err == nil {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			_, err := d.Runtime.Version(cctx, &runtimeapi.VersionRequest{})
			cancel()
			if err == nil {
				return nil
			}
		}
		select {
		case <-d.done:
			return fmt.Errorf("containerd exited before serving: %v", d.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("containerd not serving: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// PID is the daemon's process ID.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// Exited is closed when the process has exited.
func (d *Daemon) Exited() <-chan struct{} { return d.done }

// Stop sends SIGTERM, then SIGKILL after 10 s, and waits for the exit.
func (d *Daemon) Stop() error {
	if d.Conn != nil {
		d.Conn.Close()
	}
	select {
	case <-d.done:
		return nil
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
	var ee *exec.ExitError
	if d.waitErr != nil && !errors.As(d.waitErr, &ee) {
		return d.waitErr
	}
	return nil
}

// Kill sends SIGKILL, as a crash would, and waits for the exit.
func (d *Daemon) Kill() {
	if d.Conn != nil {
		d.Conn.Close()
	}
	_ = d.cmd.Process.Kill()
	<-d.done
}

// LogTail returns the last n lines of the daemon's log.
func (d *Daemon) LogTail(n int) string { return tail(d.LogPath, n) }

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// RunToExit runs binary on the layout's config and expects it to exit by
// itself (a config it must refuse); it returns the exit error and the log.
func RunToExit(ctx context.Context, binary string, l *Layout, timeout time.Duration) (error, string) {
	if err := l.WriteConfig(); err != nil {
		return err, ""
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "--config", l.ConfigPath())
	cmd.Env = append(os.Environ(), "PATH="+l.RuntimeBinDir+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return fmt.Errorf("still running after %s: %w", timeout, ctx.Err()), string(out)
	}
	return err, string(out)
}
