package integration

import (
	"os"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/integration/daemon"
	"github.com/nodecri/nodecri/integration/testimages"
)

// A daemon upgraded in place recovers what the previous binary made, from
// the records it wrote: a ready pod with a running and an exited
// container, and a stopped pod. NODECRI_PREVIOUS_CONTAINERD names the
// previous binary (e.g. built from the last release's commit); without it
// the test is skipped.
func TestUpgradeInPlaceRecoversPods(t *testing.T) {
	prev := os.Getenv("NODECRI_PREVIOUS_CONTAINERD")
	if prev == "" {
		t.Skip("NODECRI_PREVIOUS_CONTAINERD names no previous binary")
	}
	reg := testimages.NewRegistry(t)
	reg.Push(t, "pause", "3.10.2", testimages.Pause(t))
	reg.Push(t, "library/busybox", "1.36", testimages.Busybox(t))
	l := newLayout(t, true)
	withRegistry(t, l, reg)
	if err := l.WriteConflist(); err != nil {
		t.Fatal(err)
	}
	old := daemon.StartTest(t, prev, l)
	mustPull(t, old, "busybox:1.36")
	baseline := takeCensus(t, l)

	readyCfg := podConfig(l, "ready")
	ready := &pod{d: old, l: l, id: runPod(t, old, readyCfg), cfg: readyCfg}
	running := ready.run(t, busybox("running", "sleep", "1000"))
	exited := ready.run(t, busybox("exited", "sh", "-c", "exit 3"))
	ready.waitExit(t, exited)
	stoppedCfg := podConfig(l, "stopped")
	stopped := &pod{d: old, l: l, id: runPod(t, old, stoppedCfg), cfg: stoppedCfg}
	inStopped := stopped.run(t, busybox("instopped", "sleep", "1000"))
	if _, err := old.Runtime.StopPodSandbox(ctxT(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: stopped.id}); err != nil {
		t.Fatal(err)
	}
	if err := old.Stop(); err != nil {
		t.Fatal(err)
	}

	d := start(t, l)
	ready.d, stopped.d = d, d
	if st, info := podStatus(t, d, ready.id); st.State != runtimeapi.PodSandboxState_SANDBOX_READY || st.Network.Ip == "" || info["network"] != "ready" {
		t.Errorf("ready pod after the upgrade: %v ip %q network %v", st.State, st.Network.Ip, info["network"])
	}
	if st, info := podStatus(t, d, stopped.id); st.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY || st.Network.Ip != "" || info["network"] != "torn-down" {
		t.Errorf("stopped pod after the upgrade: %v ip %q network %v", st.State, st.Network.Ip, info["network"])
	}
	if s := ready.status(t, running); s.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("running container after the upgrade: %v", s.State)
	}
	if out := ready.mustExec(t, running, "echo", "hi"); out != "hi\n" {
		t.Errorf("exec after the upgrade: %q", out)
	}
	if s := ready.status(t, exited); s.State != runtimeapi.ContainerState_CONTAINER_EXITED || s.ExitCode != 3 || s.Reason != "Error" {
		t.Errorf("exited container after the upgrade: %v exit %d reason %q", s.State, s.ExitCode, s.Reason)
	}
	if s := stopped.status(t, inStopped); s.State != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("container of the stopped pod after the upgrade: %v", s.State)
	}
	// The new daemon writes records the old format can hold, and takes
	// everything down.
	stopRemove(t, d, ready.id)
	if _, err := d.Runtime.RemovePodSandbox(ctxT(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: stopped.id}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "nothing left after the upgraded daemon removed the pods", func() (bool, string) {
		diff := baseline.diff(takeCensus(t, l), kubeletOwned...)
		return diff == "", diff
	})
}
