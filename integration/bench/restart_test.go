package bench

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/integration/daemon"
)

// restart kill -9s each daemon while it holds n pods, each with a running
// container, starts it again on the same root and times two things from
// the exec: the CRI answering (Version; upstream answers "not initialized"
// until its recovery is done) and every pod Ready and every container
// running again. Most of either is containerd's runtime reconnecting to
// each task's shim before any plugin loads, which both pay.
func restart(ctx context.Context, t *testing.T, targets []*target, res *results, n int) {
	serving, recovered := map[string]float64{}, map[string]float64{}
	for _, tg := range targets {
		serving[tg.name], recovered[tg.name] = restartOne(ctx, t, tg, targets, n)
	}
	res.add(fmt.Sprintf("kill -9 and restart with %d pods: CRI serving (1 sample)", n), "s", serving["ours"], serving["upstream"])
	res.add(fmt.Sprintf("kill -9 and restart with %d pods: all Ready and running (1 sample)", n), "s", recovered["ours"], recovered["upstream"])
}

// restartOne restarts tg while the other daemons are frozen (SIGSTOP;
// their shims and pods run on): idle with 100 pods, upstream's daemon used
// about a sixth of a core, which would otherwise slow ours' restart only.
func restartOne(ctx context.Context, t *testing.T, tg *target, all []*target, n int) (serving, recovered float64) {
	signal := func(sig syscall.Signal) {
		for _, o := range all {
			if o != tg {
				_ = syscall.Kill(o.d.PID(), sig)
			}
		}
	}
	signal(syscall.SIGSTOP)
	defer signal(syscall.SIGCONT)
	tg.d.Kill()
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	d, err := daemon.Start(sctx, tg.binary, tg.l)
	cancel()
	if err != nil {
		t.Fatalf("%s: restart: %v", tg.name, err)
	}
	tg.d = d
	serving = time.Since(start).Seconds()
	if err := tg.waitRecovered(ctx, n); err != nil {
		t.Fatalf("%s: after restart: %v", tg.name, err)
	}
	return serving, time.Since(start).Seconds()
}

// waitRecovered waits until n pods are Ready and n containers running.
// There is no event an outside client can wait on for this, so it polls.
func (tg *target) waitRecovered(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	readyPods := &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}
	running := &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}
	var last string
	for {
		p, err := tg.d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: readyPods})
		if err == nil {
			var c *runtimeapi.ListContainersResponse
			c, err = tg.d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: running})
			if err == nil {
				if len(p.Items) == n && len(c.Containers) == n {
					return nil
				}
				last = fmt.Sprintf("%d ready pods, %d running containers, want %d", len(p.Items), len(c.Containers), n)
			}
		}
		if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not recovered: %s", last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
