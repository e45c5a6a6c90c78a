package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/failpoint"
	"github.com/nodecri/nodecri/integration/daemon"
	"github.com/nodecri/nodecri/integration/testimages"
)

// Crash consistency: the daemon is killed (SIGKILL, nothing flushed) at
// every step boundary of the pod and container lifecycles, restarted, and
// driven on as the kubelet would: the same RunPodSandbox or CreateContainer
// again, Stop and Remove re-issued until they succeed. Whatever the crash
// cut, the retries must succeed (never "name is reserved") and, once all is
// removed, nothing may be left on the host or in containerd.

// failpointBinary is bin/containerd-failpoints, built with the failpoints
// tag by `make build-failpoints` (a dependency of make test and make faults).
func failpointBinary(t *testing.T) string {
	t.Helper()
	b := filepath.Join(binDir, "containerd-failpoints")
	if _, err := os.Stat(b); err != nil {
		t.Fatalf("%s missing: run `make build-failpoints`", b)
	}
	return b
}

// faultEnv is one daemon folder that daemons come and go on.
type faultEnv struct {
	l *daemon.Layout
	d *daemon.Daemon // the current daemon, possibly dead
}

func newFaultEnv(t *testing.T) *faultEnv {
	t.Helper()
	reg := testimages.NewRegistry(t)
	reg.Push(t, "pause", "3.10.2", testimages.Pause(t))
	reg.Push(t, "library/busybox", "1.36", testimages.Busybox(t))
	reg.Push(t, "library/data", "1", testimages.Build(t, v1.Config{}, []testimages.File{{Path: "data/hello", Mode: 0o644, Content: []byte("hello\n")}}))
	l := newLayout(t, false)
	withRegistry(t, l, reg)
	if err := l.WriteConflist(); err != nil {
		t.Fatal(err)
	}
	e := &faultEnv{l: l}
	e.d = e.launch(t, binary, "")
	t.Cleanup(func() { daemon.Teardown(t, e.d) })
	mustPull(t, e.d, "busybox:1.36")
	mustPull(t, e.d, "data:1")
	// A first pod pulls and unpacks the sandbox image, so that counts
	// taken from now on see only what pods add.
	id := runPod(t, e.d, podConfig(l, "warmup"))
	stopRemove(t, e.d, id)
	return e
}

// launch starts bin on the layout with the given failpoints armed.
func (e *faultEnv) launch(t *testing.T, bin, armed string) *daemon.Daemon {
	t.Helper()
	// The daemon inherits the test's environment; Setenv is undone when
	// the test ends.
	t.Setenv(failpoint.EnvVar, armed)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d, err := daemon.Start(ctx, bin, e.l)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// restart replaces the current daemon (dead or alive) by a bin/containerd
// with nothing armed.
func (e *faultEnv) restart(t *testing.T) {
	t.Helper()
	if err := e.d.Stop(); err != nil {
		t.Fatalf("stopping daemon: %v", err)
	}
	e.d = e.launch(t, binary, "")
}

// count takes the census of the fault env's folder.
func (e *faultEnv) count(t *testing.T) census {
	t.Helper()
	return takeCensus(t, e.l)
}

// containerConfig runs a long sleep with an image volume, so container
// creation has mounts of its own to clean up.
func containerConfig(name string) *runtimeapi.ContainerConfig {
	c := busybox(name, "sleep", "1000")
	c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/vol", Image: &runtimeapi.ImageSpec{Image: "data:1"}}}
	return c
}

// crash issues call on a daemon armed at name and expects the daemon to
// die there.
func (e *faultEnv) crash(t *testing.T, name string, call func(context.Context, *daemon.Daemon) error) {
	t.Helper()
	err := call(ctxT(t), e.d)
	select {
	case <-e.d.Exited():
	case <-time.After(30 * time.Second):
		t.Fatalf("the call returned %v and the daemon lives: failpoint %s not reached", err, name)
	}
	if err == nil {
		t.Fatalf("the call succeeded though the daemon died at %s", name)
	}
	if log, _ := os.ReadFile(e.d.LogPath); !strings.Contains(string(log), "failpoint "+name+": kill") {
		t.Fatalf("the daemon died, but not at failpoint %s:\n%s", name, e.d.LogTail(30))
	}
}

// retry re-issues a call the way the kubelet does after an error: a few
// times, a moment apart.
func retry(t *testing.T, what string, call func(context.Context) error) {
	t.Helper()
	var err error
	for attempt := 1; attempt <= 5; attempt++ {
		if err = call(ctxT(t)); err == nil {
			if attempt > 1 {
				t.Logf("%s succeeded at attempt %d", what, attempt)
			}
			return
		}
		t.Logf("%s attempt %d: %v", what, attempt, err)
		time.Sleep(time.Second)
	}
	t.Fatalf("%s after the restart: %v", what, err)
}

// podsNamed lists the pods of cfg's pod (its UID).
func podsNamed(t *testing.T, d *daemon.Daemon, cfg *runtimeapi.PodSandboxConfig) []*runtimeapi.PodSandbox {
	t.Helper()
	r, err := d.Runtime.ListPodSandbox(ctxT(t), &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*runtimeapi.PodSandbox
	for _, p := range r.Items {
		if p.Metadata.Uid == cfg.Metadata.Uid {
			out = append(out, p)
		}
	}
	return out
}

func containersOf(t *testing.T, d *daemon.Daemon, podID string) []*runtimeapi.Container {
	t.Helper()
	r, err := d.Runtime.ListContainers(ctxT(t), &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID}})
	if err != nil {
		t.Fatal(err)
	}
	return r.Containers
}

// handedOrFresh checks a retry's result against what was listed before
// it: the one object the cut call finished, or a new one when recovery
// undid a half-made one (then nothing may have been listed).
func handedOrFresh(t *testing.T, what string, listed []string, got string, mustHand bool) {
	t.Helper()
	switch {
	case len(listed) > 1:
		t.Errorf("%s: %d objects listed after the restart, want at most 1: %v", what, len(listed), listed)
	case len(listed) == 1 && listed[0] != got:
		t.Errorf("%s: the retry made %s though the cut call's %s survived", what, got, listed[0])
	case len(listed) == 0 && mustHand:
		t.Errorf("%s: the finished object was lost in the crash", what)
	}
}

func TestFaultAtEveryFailpoint(t *testing.T) {
	fpBin := failpointBinary(t)
	e := newFaultEnv(t)
	for _, name := range failpoint.Names {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			if err := e.d.Stop(); err != nil {
				t.Fatal(err)
			}
			e.d = e.launch(t, fpBin, name+"=kill")
			before := e.count(t)
			e.atFailpoint(t, name)
			if diff := before.diff(e.count(t), kubeletOwned...); diff != "" {
				t.Errorf("left behind:\n%s", diff)
			}
			t.Logf("%s: %v", name, time.Since(start).Round(time.Millisecond))
		})
	}
}

// faultRun is one failpoint case's pod and container.
type faultRun struct {
	e            *faultEnv
	name         string // the failpoint
	cfg          *runtimeapi.PodSandboxConfig
	ccfg         *runtimeapi.ContainerConfig
	podID, ctrID string
}

func (r *faultRun) pod() *pod { return &pod{d: r.e.d, l: r.e.l, id: r.podID, cfg: r.cfg} }

// start starts the container on the current daemon.
func (r *faultRun) start(ctx context.Context) error {
	_, err := r.e.d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: r.ctrID})
	return err
}

// faultStage is how far a case takes its pod before the call the daemon
// dies in.
type faultStage int

const (
	noPod faultStage = iota
	podReady
	containerCreated
	containerRunning
)

// faultScenario is what happens at one kind of failpoint (its name less
// the last part): the call the daemon dies in, made once the pod is at
// stage, and after the restart the kubelet's retry and the checks on what
// it finds.
type faultScenario struct {
	stage faultStage
	call  func(ctx context.Context, r *faultRun, d *daemon.Daemon) error
	after func(t *testing.T, r *faultRun)
	// removesPod: the case took its pod down; otherwise it is stopped
	// and removed at the end.
	removesPod bool
}

// stopScenario: StopPodSandbox, cut anywhere in the stop or the network
// teardown.
var stopScenario = faultScenario{
	stage: containerRunning,
	call:  stopPod,
	after: func(t *testing.T, r *faultRun) {
		retry(t, "StopPodSandbox", func(ctx context.Context) error { return stopPod(ctx, r, r.e.d) })
		if st, _ := podStatus(t, r.e.d, r.podID); st.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
			t.Errorf("pod after StopPodSandbox: %v", st.State)
		}
		if st := r.pod().status(t, r.ctrID); st.State != runtimeapi.ContainerState_CONTAINER_EXITED {
			t.Errorf("container after StopPodSandbox: %v", st.State)
		}
	},
}

// removeScenario: RemovePodSandbox of a running pod, so teardown has
// everything to undo.
var removeScenario = faultScenario{
	stage: containerRunning,
	call:  removePod,
	after: func(t *testing.T, r *faultRun) {
		retry(t, "RemovePodSandbox", func(ctx context.Context) error { return removePod(ctx, r, r.e.d) })
		if ps := podsNamed(t, r.e.d, r.cfg); len(ps) != 0 {
			t.Errorf("pods after RemovePodSandbox: %v", ps)
		}
	},
	removesPod: true,
}

func stopPod(ctx context.Context, r *faultRun, d *daemon.Daemon) error {
	_, err := d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: r.podID})
	return err
}

func removePod(ctx context.Context, r *faultRun, d *daemon.Daemon) error {
	_, err := d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: r.podID})
	return err
}

var faultScenarios = map[string]faultScenario{
	"sandbox.run": {
		stage: noPod,
		call: func(ctx context.Context, r *faultRun, d *daemon.Daemon) error {
			_, err := d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: r.cfg})
			return err
		},
		after: func(t *testing.T, r *faultRun) {
			var listed []string
			for _, p := range podsNamed(t, r.e.d, r.cfg) {
				listed = append(listed, p.Id)
			}
			// The kubelet's retry: the same config, so the same name.
			resp, err := r.e.d.Runtime.RunPodSandbox(ctxT(t), &runtimeapi.RunPodSandboxRequest{Config: r.cfg})
			if err != nil {
				t.Fatalf("RunPodSandbox retry: %v", err)
			}
			r.podID = resp.PodSandboxId
			handedOrFresh(t, "RunPodSandbox", listed, r.podID, r.name == "sandbox.run.after-ready")
			if st, _ := podStatus(t, r.e.d, r.podID); st.State != runtimeapi.PodSandboxState_SANDBOX_READY || st.Network.GetIp() == "" {
				t.Errorf("pod after the retry: %v, IP %q", st.State, st.Network.GetIp())
			}
			r.ctrID = r.pod().create(t, r.ccfg)
			retry(t, "StartContainer", r.start)
		},
	},
	"container.create": {
		stage: podReady,
		call: func(ctx context.Context, r *faultRun, d *daemon.Daemon) error {
			_, err := d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: r.podID, Config: r.ccfg, SandboxConfig: r.cfg})
			return err
		},
		after: func(t *testing.T, r *faultRun) {
			var listed []string
			for _, c := range containersOf(t, r.e.d, r.podID) {
				listed = append(listed, c.Id)
			}
			resp, err := r.e.d.Runtime.CreateContainer(ctxT(t), &runtimeapi.CreateContainerRequest{PodSandboxId: r.podID, Config: r.ccfg, SandboxConfig: r.cfg})
			if err != nil {
				t.Fatalf("CreateContainer retry: %v", err)
			}
			r.ctrID = resp.ContainerId
			handedOrFresh(t, "CreateContainer", listed, r.ctrID, r.name == "container.create.after-record")
			retry(t, "StartContainer", r.start)
		},
	},
	"container.start": {
		stage: containerCreated,
		call:  func(ctx context.Context, r *faultRun, _ *daemon.Daemon) error { return r.start(ctx) },
		after: func(t *testing.T, r *faultRun) {
			// The kubelet starts the container again; a start the crash did
			// not stop is refused, the container running.
			err := r.start(ctxT(t))
			if st := r.pod().status(t, r.ctrID); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
				t.Errorf("container after the StartContainer retry (%v): %v %s", err, st.State, st.Message)
			}
		},
	},
	"container.remove": {
		stage: containerRunning,
		call: func(ctx context.Context, r *faultRun, d *daemon.Daemon) error {
			_, err := d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: r.ctrID})
			return err
		},
		after: func(t *testing.T, r *faultRun) {
			retry(t, "RemoveContainer", func(ctx context.Context) error {
				_, err := r.e.d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: r.ctrID})
				return err
			})
			if cs := containersOf(t, r.e.d, r.podID); len(cs) != 0 {
				t.Errorf("containers after RemoveContainer: %v", cs)
			}
		},
	},
	"sandbox.stop":     stopScenario,
	"sandbox.network":  stopScenario,
	"sandbox.remove":   removeScenario,
	"sandbox.teardown": removeScenario,
}

// atFailpoint takes a pod as far as the failpoint's scenario needs, issues
// its call (the daemon dies), restarts the daemon, retries the call as the
// kubelet would and takes the pod down.
func (e *faultEnv) atFailpoint(t *testing.T, name string) {
	kind := name[:strings.LastIndex(name, ".")]
	sc, ok := faultScenarios[kind]
	if !ok {
		t.Fatalf("no scenario for failpoint %s (%s)", name, kind)
	}
	r := &faultRun{e: e, name: name, cfg: podConfig(e.l, "fp"), ccfg: containerConfig("work")}
	if sc.stage >= podReady {
		r.podID = runPod(t, e.d, r.cfg)
	}
	if sc.stage >= containerCreated {
		r.ctrID = r.pod().create(t, r.ccfg)
	}
	if sc.stage >= containerRunning {
		retry(t, "StartContainer", r.start)
	}
	e.crash(t, name, func(ctx context.Context, d *daemon.Daemon) error { return sc.call(ctx, r, d) })
	e.restart(t)
	sc.after(t, r)
	if !sc.removesPod {
		stopRemove(t, e.d, r.podID)
	}
}

// Random kills: a kubelet-like loop runs pods through their lifecycle while
// a killer kill -9s the daemon at random moments; every call is retried on
// the restarted daemon until it gets an answer. NODECRI_FAULTS_KILLS sets
// the number of kills (default 10; `make faults` runs 100).
func TestFaultRandomKills(t *testing.T) {
	kills := 10
	if v := os.Getenv("NODECRI_FAULTS_KILLS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("NODECRI_FAULTS_KILLS=%q: %v", v, err)
		}
		kills = n
	}
	e := newFaultEnv(t)
	baseline := e.count(t)
	c := &churn{e: e, live: make(chan *daemon.Daemon, 1), done: make(chan struct{}), cut: map[string]int{}}
	c.live <- e.d
	go c.killer(kills)
	start := time.Now()
	cycles := 0
	for ; c.kills.Load() < int32(kills); cycles++ {
		c.cycle(t, cycles)
	}
	close(c.done)
	t.Logf("%d kills over %d pod lifecycles in %v; calls cut: %v", c.kills.Load(), cycles, time.Since(start).Round(time.Second), c.cut)

	// The loop removed every pod it made: nothing may be listed, nothing
	// left on the host.
	if ps := podsAll(t, e.d); len(ps) != 0 {
		t.Errorf("pods left after the loop: %v", ps)
	}
	if cs, err := e.d.Runtime.ListContainers(ctxT(t), &runtimeapi.ListContainersRequest{}); err != nil || len(cs.Containers) != 0 {
		t.Errorf("containers left after the loop: %v %v", cs, err)
	}
	if diff := baseline.diff(e.count(t), kubeletOwned...); diff != "" {
		t.Errorf("left behind:\n%s", diff)
	}
}

func podsAll(t *testing.T, d *daemon.Daemon) []*runtimeapi.PodSandbox {
	t.Helper()
	r, err := d.Runtime.ListPodSandbox(ctxT(t), &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Items
}

type churn struct {
	e      *faultEnv
	live   chan *daemon.Daemon // each daemon started, for the killer
	done   chan struct{}
	kills  atomic.Int32
	killed atomic.Pointer[daemon.Daemon] // the last daemon the killer killed
	cut    map[string]int                // calls cut by a kill, by RPC
}

// killer kill -9s each daemon it is given at a random moment of its life,
// up to n times.
func (c *churn) killer(n int) {
	for int(c.kills.Load()) < n {
		var d *daemon.Daemon
		select {
		case d = <-c.live:
		case <-c.done:
			return
		}
		select {
		case <-time.After(rand.N(3 * time.Second)):
		case <-c.done:
			return
		}
		c.killed.Store(d)
		d.Kill()
		c.kills.Add(1)
	}
}

// do issues call until a living daemon answers it: a call the killer cut
// is issued again, as the kubelet would, on the restarted daemon.
func (c *churn) do(t *testing.T, what string, call func(context.Context, *daemon.Daemon) error) error {
	t.Helper()
	for {
		d := c.e.d
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := call(ctx, d)
		cancel()
		if code := status.Code(err); err == nil || code != codes.Unavailable && code != codes.Canceled {
			return err
		}
		select {
		case <-d.Exited():
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: %v, but the daemon did not die", what, err)
		}
		if c.killed.Load() != d {
			t.Fatalf("%s: the daemon died by itself:\n%s", what, d.LogTail(40))
		}
		c.cut[what]++
		if err := d.Stop(); err != nil {
			t.Fatal(err)
		}
		c.e.d = c.e.launch(t, binary, "")
		select {
		case c.live <- c.e.d:
		default: // the killer is done
		}
	}
}

// cycle takes one pod with one container through its life.
func (c *churn) cycle(t *testing.T, i int) {
	t.Helper()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("cycle %d: %s: %v", i, what, err)
		}
	}
	cfg := podConfig(c.e.l, fmt.Sprintf("churn%d", i))
	ccfg := containerConfig("work")
	var podID, ctrID string
	must("RunPodSandbox", c.do(t, "RunPodSandbox", func(ctx context.Context, d *daemon.Daemon) error {
		r, err := d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		if err == nil {
			podID = r.PodSandboxId
		}
		return err
	}))
	must("CreateContainer", c.do(t, "CreateContainer", func(ctx context.Context, d *daemon.Daemon) error {
		r, err := d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: ccfg, SandboxConfig: cfg})
		if err == nil {
			ctrID = r.ContainerId
		}
		return err
	}))
	err := c.do(t, "StartContainer", func(ctx context.Context, d *daemon.Daemon) error {
		_, err := d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctrID})
		return err
	})
	if status.Code(err) == codes.FailedPrecondition {
		// A cut start may have gone through: then it runs.
		must("ContainerStatus", c.do(t, "ContainerStatus", func(ctx context.Context, d *daemon.Daemon) error {
			r, serr := d.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctrID})
			if serr == nil && r.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
				return fmt.Errorf("StartContainer: %v, and the container is %v", err, r.Status.State)
			}
			return serr
		}))
	} else {
		must("StartContainer", err)
	}
	must("StopContainer", c.do(t, "StopContainer", func(ctx context.Context, d *daemon.Daemon) error {
		_, err := d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctrID})
		return err
	}))
	must("RemoveContainer", c.do(t, "RemoveContainer", func(ctx context.Context, d *daemon.Daemon) error {
		_, err := d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctrID})
		return err
	}))
	must("StopPodSandbox", c.do(t, "StopPodSandbox", func(ctx context.Context, d *daemon.Daemon) error {
		_, err := d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID})
		return err
	}))
	must("RemovePodSandbox", c.do(t, "RemovePodSandbox", func(ctx context.Context, d *daemon.Daemon) error {
		_, err := d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID})
		return err
	}))
}

// A host-network pod has no network state to tell it half-made: its
// record says "creating" until it is ready, so a crash before that is
// undone and the retry gets a new pod, never "name is reserved".
func TestFaultHostNetworkPodRetry(t *testing.T) {
	const name = "sandbox.run.after-record"
	fpBin := failpointBinary(t)
	e := newFaultEnv(t)
	before := e.count(t)
	if err := e.d.Stop(); err != nil {
		t.Fatal(err)
	}
	e.d = e.launch(t, fpBin, name+"=kill")
	cfg := podConfig(e.l, "hostnet")
	cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}
	e.crash(t, name, func(ctx context.Context, d *daemon.Daemon) error {
		_, err := d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		return err
	})
	e.restart(t)
	if ps := podsNamed(t, e.d, cfg); len(ps) != 0 {
		t.Errorf("the half-made host-network pod is listed after the restart: %v", ps)
	}
	id := runPod(t, e.d, cfg)
	if st, _ := podStatus(t, e.d, id); st.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("pod after the retry: %v", st.State)
	}
	stopRemove(t, e.d, id)
	if diff := before.diff(e.count(t), kubeletOwned...); diff != "" {
		t.Errorf("left behind:\n%s", diff)
	}
}
