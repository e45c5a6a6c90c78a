package containers

import (
	"context"
	"os"
	"os/exec"
	"testing"
)

// sleeper starts a child that lives until the test ends.
func sleeper(t *testing.T) uint32 {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return uint32(cmd.Process.Pid)
}

func TestCheckShim(t *testing.T) {
	ctx := context.Background()
	a, b := sleeper(t), sleeper(t)
	if checkShim(ctx, "io.containerd.runc.v2", "c", a, b) {
		t.Error("two children of one process reported as under different shims")
	}
	// This process's parent is not this process: a split.
	if !checkShim(ctx, "io.containerd.runc.v2", "c", a, uint32(os.Getpid())) {
		t.Error("processes with different parents not reported")
	}
	if checkShim(ctx, "io.containerd.kata.v2", "c", a, uint32(os.Getpid())) {
		t.Error("a VM runtime's PIDs were compared")
	}
	if checkShim(ctx, "io.containerd.runc.v2", "c", a, 0) {
		t.Error("a pod without a pause PID was compared")
	}
}
