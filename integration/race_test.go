package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CreateContainer racing StopPodSandbox and RemovePodSandbox of its pod
// either makes a container that the pod's removal takes with it or fails;
// it never leaves a container whose pod is gone, nor its containerd
// container, task or snapshot. The three calls start together, each after
// a small random delay, so every order and overlap comes up
// (NODECRI_RACE_N rounds, 100 by default).
func TestCreateContainerRacesRemovePodSandbox(t *testing.T) {
	n := 100
	if v, err := strconv.Atoi(os.Getenv("NODECRI_RACE_N")); err == nil && v > 0 {
		n = v
	}
	d, l := podEnv(t)
	mustPull(t, d, "busybox:1.36")
	before := takeCensus(t, l)
	created := 0
	for i := range n {
		cfg := podConfig(l, fmt.Sprintf("race%d", i))
		podID := runPod(t, d, cfg)
		jitter := func() { time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond) }
		var (
			wg                 sync.WaitGroup
			createErr, stopErr error
			removeErr          error
			ctx                = ctxT(t)
		)
		wg.Add(3)
		go func() {
			defer wg.Done()
			jitter()
			_, createErr = d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: busybox("c", "sleep", "1000"), SandboxConfig: cfg})
		}()
		go func() {
			defer wg.Done()
			jitter()
			_, stopErr = d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID})
		}()
		go func() {
			defer wg.Done()
			jitter()
			_, removeErr = d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID})
		}()
		wg.Wait()
		if stopErr != nil || removeErr != nil {
			t.Fatalf("round %d: StopPodSandbox: %v; RemovePodSandbox: %v", i, stopErr, removeErr)
		}
		if createErr == nil {
			created++
		} else if c := status.Code(createErr); c != codes.NotFound && c != codes.FailedPrecondition {
			t.Errorf("round %d: CreateContainer: %v, want success, NotFound or FailedPrecondition", i, createErr)
		}
		pods, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) != 0 {
			t.Fatalf("round %d: pods left after RemovePodSandbox: %v", i, pods.Items)
		}
		ctrs, err := d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(ctrs.Containers) != 0 {
			t.Fatalf("round %d (create: %v): containers whose pod is gone: %v", i, createErr, ctrs.Containers)
		}
	}
	t.Logf("%d of %d creates made a container before the pod went", created, n)
	eventually(t, "nothing left on the host", func() (bool, string) {
		diff := before.diff(takeCensus(t, l))
		return diff == "", diff
	})
}
