package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/integration/daemon"
)

const (
	evCreated = runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT
	evStarted = runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT
	evStopped = runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT
	evDeleted = runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT
)

// subscribe opens GetContainerEvents and waits for its headers: the
// daemon sends them once subscribed, so no later event is missed.
func subscribe(t *testing.T, ctx context.Context, rt runtimeapi.RuntimeServiceClient) grpc.ServerStreamingClient[runtimeapi.ContainerEventResponse] {
	t.Helper()
	s, err := rt.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Header(); err != nil {
		t.Fatalf("GetContainerEvents headers: %v", err)
	}
	return s
}

// eventReader hands a subscription's events over one at a time.
type eventReader struct {
	t    *testing.T
	s    grpc.ServerStreamingClient[runtimeapi.ContainerEventResponse]
	last int64
}

// next returns the next event, which must be of type typ about id.
func (r *eventReader) next(typ runtimeapi.ContainerEventType, id, what string) *runtimeapi.ContainerEventResponse {
	r.t.Helper()
	ev, err := r.s.Recv()
	if err != nil {
		r.t.Fatalf("waiting for %s %s: %v", typ, what, err)
	}
	if ev.ContainerEventType != typ || ev.ContainerId != id {
		r.t.Fatalf("got %s of %.12s, want %s of %s (%.12s)", ev.ContainerEventType, ev.ContainerId, typ, what, id)
	}
	if ev.CreatedAt < r.last {
		r.t.Errorf("%s %s: created_at %d before the previous event's %d", typ, what, ev.CreatedAt, r.last)
	}
	r.last = ev.CreatedAt
	return ev
}

// containerIn finds id among an event's container statuses.
func containerIn(ev *runtimeapi.ContainerEventResponse, id string) *runtimeapi.ContainerStatus {
	for _, c := range ev.ContainersStatuses {
		if c.Id == id {
			return c
		}
	}
	return nil
}

// Every transition of a pod and its containers comes in order, each with
// the pod's status and its containers' as they are at that point.
func TestContainerEventsFollowLifecycle(t *testing.T) {
	d, l := podEnv(t)
	mustPull(t, d, "busybox:1.36")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := &eventReader{t: t, s: subscribe(t, ctx, d.Runtime)}

	cfg := podConfig(l, "events")
	p := &pod{d: d, l: l, id: runPod(t, d, cfg), cfg: cfg}
	for _, typ := range []runtimeapi.ContainerEventType{evCreated, evStarted} {
		ev := r.next(typ, p.id, "the sandbox")
		if st := ev.PodSandboxStatus; st.GetId() != p.id || st.State != runtimeapi.PodSandboxState_SANDBOX_READY ||
			st.GetMetadata().GetUid() != cfg.Metadata.Uid || st.GetNetwork().GetIp() == "" {
			t.Errorf("sandbox %s: pod status %v", typ, st)
		}
		if len(ev.ContainersStatuses) != 0 {
			t.Errorf("sandbox %s: containers %v", typ, ev.ContainersStatuses)
		}
	}

	// Exits the task event pipeline sees.
	quitter := p.create(t, busybox("quitter", "sh", "-c", "exit 3"))
	ev := r.next(evCreated, quitter, "the quitter")
	if c := containerIn(ev, quitter); c.GetState() != runtimeapi.ContainerState_CONTAINER_CREATED || c.GetMetadata().GetName() != "quitter" {
		t.Errorf("quitter created: status %v", c)
	}
	if ev.PodSandboxStatus.GetId() != p.id || ev.PodSandboxStatus.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("quitter created: pod status %v", ev.PodSandboxStatus)
	}
	if _, err := d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: quitter}); err != nil {
		t.Fatal(err)
	}
	ev = r.next(evStarted, quitter, "the quitter")
	if c := containerIn(ev, quitter); c.GetStartedAt() == 0 {
		t.Errorf("quitter started: status %v", c)
	}
	ev = r.next(evStopped, quitter, "the quitter")
	if c := containerIn(ev, quitter); c.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || c.ExitCode != 3 || c.Reason != "Error" {
		t.Errorf("quitter stopped: status %v", c)
	}

	// A stop the runtime is asked for.
	sleeper := p.create(t, busybox("sleeper", "sleep", "1000"))
	ev = r.next(evCreated, sleeper, "the sleeper")
	if len(ev.ContainersStatuses) != 2 {
		t.Errorf("sleeper created: %d container statuses, want 2", len(ev.ContainersStatuses))
	}
	if _, err := d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: sleeper}); err != nil {
		t.Fatal(err)
	}
	ev = r.next(evStarted, sleeper, "the sleeper")
	if c := containerIn(ev, sleeper); c.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("sleeper started: status %v", c)
	}
	// The event's status is ContainerStatus's.
	if want := p.status(t, sleeper); !proto.Equal(containerIn(ev, sleeper), want) {
		t.Errorf("sleeper started: event status\n%v\nContainerStatus\n%v", containerIn(ev, sleeper), want)
	}
	if _, err := d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: sleeper}); err != nil {
		t.Fatal(err)
	}
	ev = r.next(evStopped, sleeper, "the sleeper")
	if c := containerIn(ev, sleeper); c.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || c.ExitCode != 137 {
		t.Errorf("sleeper stopped: status %v", c)
	}
	if _, err := d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: sleeper}); err != nil {
		t.Fatal(err)
	}
	ev = r.next(evDeleted, sleeper, "the sleeper")
	if containerIn(ev, sleeper) != nil || containerIn(ev, quitter) == nil {
		t.Errorf("sleeper deleted: containers %v", ev.ContainersStatuses)
	}

	// The pod: stopped once, then its remaining container and itself go.
	if _, err := d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id}); err != nil {
		t.Fatal(err)
	}
	ev = r.next(evStopped, p.id, "the sandbox")
	if ev.PodSandboxStatus.GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("sandbox stopped: pod status %v", ev.PodSandboxStatus)
	}
	if _, err := d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id}); err != nil {
		t.Fatal(err)
	}
	r.next(evDeleted, quitter, "the quitter")
	ev = r.next(evDeleted, p.id, "the sandbox")
	// The last status tells the kubelet which pod went.
	if ev.PodSandboxStatus.GetId() != p.id || ev.PodSandboxStatus.GetMetadata().GetUid() != cfg.Metadata.Uid || len(ev.ContainersStatuses) != 0 {
		t.Errorf("sandbox deleted: pod status %v, containers %v", ev.PodSandboxStatus, ev.ContainersStatuses)
	}

	// Nothing else came in between: the next event is a new pod's.
	next := runPod(t, d, podConfig(l, "after"))
	r.next(evCreated, next, "the next sandbox")
}

// droppedSubscribers reads nodecri_events_subscribers_dropped_total.
func droppedSubscribers(t *testing.T, l *daemon.Layout) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^nodecri_events_subscribers_dropped_total (\d+)`).FindStringSubmatch(scrape(t, l.MetricsAddress))
	if m == nil {
		t.Fatal("metrics lack nodecri_events_subscribers_dropped_total")
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// A subscriber that never reads holds nothing up: pods and containers
// keep being made, a reading subscriber gets every event, and once the
// stuck one's buffer is full its stream ends ResourceExhausted and it is
// counted.
func TestStuckEventSubscriberIsDroppedNotWaitedFor(t *testing.T) {
	d, l := podEnv(t)
	mustPull(t, d, "busybox:1.36")
	// The stuck client has a connection of its own, as a second kubelet
	// would.
	conn, err := grpc.NewClient("unix://"+l.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	stuck := subscribe(t, ctx, runtimeapi.NewRuntimeServiceClient(conn))
	reading := subscribe(t, ctx, d.Runtime)
	// The reader counts events up to the stop of the pod made last.
	const lastPod = "after-drop"
	var (
		read    int
		readErr error
	)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for {
			ev, err := reading.Recv()
			if err != nil {
				readErr = err
				return
			}
			read++
			if sb := ev.PodSandboxStatus; ev.ContainerEventType == evStopped && ev.ContainerId == sb.GetId() && sb.GetMetadata().GetName() == lastPod {
				return
			}
		}
	}()

	const workers = 4
	pods := make([]*pod, workers)
	for i := range pods {
		cfg := podConfig(l, fmt.Sprintf("busy%d", i))
		pods[i] = &pod{d: d, l: l, id: runPod(t, d, cfg), cfg: cfg}
	}
	published := 2 * workers
	// Create and remove containers (two events each) until the stuck
	// subscriber is dropped; past the buffer plus what gRPC holds in
	// flight, it must be.
	const batch, limit = 25, 6000
	for droppedSubscribers(t, l) == 0 {
		if published > limit {
			t.Fatalf("%d events published and the subscriber that never reads is still fed", published)
		}
		var wg sync.WaitGroup
		for _, p := range pods {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range batch {
					r, err := d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: busybox("churn", "true"), SandboxConfig: p.cfg})
					if err != nil {
						t.Errorf("CreateContainer: %v", err)
						return
					}
					if _, err := d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: r.ContainerId}); err != nil {
						t.Errorf("RemoveContainer: %v", err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		published += 2 * batch * workers
	}
	t.Logf("stuck subscriber dropped after at most %d events", published)
	// The runtime goes on: a pod more, seen by the reader.
	last := runPod(t, d, podConfig(l, lastPod))

	// The stuck client now reads: what gRPC held in flight, then the error.
	got := 0
	for {
		_, err := stuck.Recv()
		if err == nil {
			got++
			continue
		}
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "relist") {
			t.Errorf("stuck stream ended with %v, want ResourceExhausted asking to relist", err)
		}
		break
	}
	t.Logf("the stuck subscriber got %d events, then its error", got)
	if got >= published {
		t.Errorf("stuck subscriber got all %d events before its error", got)
	}
	if n := droppedSubscribers(t, l); n != 1 {
		t.Errorf("dropped subscribers = %d, want 1 (the reader is not)", n)
	}

	// The reader missed nothing: every event, the last pod's three too.
	if _, err := d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: last}); err != nil {
		t.Fatal(err)
	}
	<-readDone
	if want := published + 3; read != want || readErr != nil {
		t.Errorf("reading subscriber got %d events (ended with %v), want %d", read, readErr, want)
	}
}

// byID sorts any list of CRI objects with an ID for comparison.
func byID[T interface{ GetId() string }](list []T) []T {
	slices.SortFunc(list, func(a, b T) int { return strings.Compare(a.GetId(), b.GetId()) })
	return list
}

func sameItems[T proto.Message](t *testing.T, what string, stream, list []T) {
	t.Helper()
	if len(stream) != len(list) {
		t.Errorf("%s: stream has %d items, list %d", what, len(stream), len(list))
		return
	}
	for i := range stream {
		if !proto.Equal(stream[i], list[i]) {
			t.Errorf("%s: item %d differs:\nstream %v\nlist   %v", what, i, stream[i], list[i])
			return
		}
	}
}

// recvAll drains a Stream* call, counting its messages.
func recvAll[R any, T any](t *testing.T, s grpc.ServerStreamingClient[R], err error, items func(*R) []T) ([]T, int) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	var out []T
	msgs := 0
	for {
		r, err := s.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("stream: %v", err)
			}
			return out, msgs
		}
		msgs++
		out = append(out, items(r)...)
	}
}

// Stream* answer what List* answer, filters included, in several messages
// when there are many items.
func TestStreamsEqualLists(t *testing.T) {
	d, l := podEnv(t)
	mustPull(t, d, "busybox:1.36")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var pods []*pod
	for i := range 3 {
		cfg := podConfig(l, fmt.Sprintf("many%d", i))
		pods = append(pods, &pod{d: d, l: l, id: runPod(t, d, cfg), cfg: cfg})
	}
	for i := range 300 {
		cfg := busybox(fmt.Sprintf("c%d", i), "true")
		cfg.Labels = map[string]string{"parity": strconv.Itoa(i % 2)}
		pods[i%3].create(t, cfg)
	}
	started := pods[0].run(t, busybox("runner", "sleep", "1000"))

	containerFilters := []*runtimeapi.ContainerFilter{
		nil,
		{PodSandboxId: pods[1].id},
		{LabelSelector: map[string]string{"parity": "1"}},
		{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}},
		{Id: started},
		{PodSandboxId: "unknown"},
	}
	for i, f := range containerFilters {
		list, err := d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		s, err := d.Runtime.StreamContainers(ctx, &runtimeapi.StreamContainersRequest{Filter: f})
		got, msgs := recvAll(t, s, err, func(r *runtimeapi.StreamContainersResponse) []*runtimeapi.Container { return r.Containers })
		sameItems(t, fmt.Sprintf("containers, filter %d", i), byID(got), byID(list.Containers))
		if f == nil && (len(got) != 301 || msgs < 2) {
			t.Errorf("all containers: %d items in %d messages, want 301 in more than one", len(got), msgs)
		}
	}

	sandboxFilters := []*runtimeapi.PodSandboxFilter{
		nil,
		{Id: pods[2].id},
		{LabelSelector: map[string]string{"app": "many1"}},
		{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}},
	}
	for i, f := range sandboxFilters {
		list, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		s, err := d.Runtime.StreamPodSandboxes(ctx, &runtimeapi.StreamPodSandboxesRequest{Filter: f})
		got, _ := recvAll(t, s, err, func(r *runtimeapi.StreamPodSandboxesResponse) []*runtimeapi.PodSandbox { return r.PodSandboxes })
		sameItems(t, fmt.Sprintf("sandboxes, filter %d", i), byID(got), byID(list.Items))
	}

	for i, f := range []*runtimeapi.ImageFilter{nil, {Image: &runtimeapi.ImageSpec{Image: "busybox:1.36"}}} {
		list, err := d.Images.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		s, err := d.Images.StreamImages(ctx, &runtimeapi.StreamImagesRequest{Filter: f})
		got, _ := recvAll(t, s, err, func(r *runtimeapi.StreamImagesResponse) []*runtimeapi.Image { return r.Images })
		sameItems(t, fmt.Sprintf("images, filter %d", i), byID(got), byID(list.Images))
		if len(got) == 0 {
			t.Errorf("images, filter %d: none", i)
		}
	}

	// A filter List refuses, Stream refuses alike.
	s, err := d.Runtime.StreamContainers(ctx, &runtimeapi.StreamContainersRequest{Filter: &runtimeapi.ContainerFilter{Id: "../x"}})
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("StreamContainers with a bad ID filter: %v, want InvalidArgument", err)
	}
}

// verboseResources returns the overhead and resources verbose
// PodSandboxStatus shows.
func verboseResources(t *testing.T, d *daemon.Daemon, id string) (overhead, resources string) {
	t.Helper()
	_, info := podStatus(t, d, id)
	o, _ := json.Marshal(info["overhead"])
	r, _ := json.Marshal(info["resources"])
	return string(o), string(r)
}

// UpdatePodSandboxResources is recorded, shown by verbose PodSandboxStatus,
// and kept across a restart.
func TestUpdatePodSandboxResourcesSurvivesRestart(t *testing.T) {
	d, l := podEnv(t)
	cfg := podConfig(l, "resized")
	id := runPod(t, d, cfg)
	ctx := ctxT(t)

	if o, r := verboseResources(t, d, id); o != "null" || r != "null" {
		t.Errorf("before any update: overhead %s resources %s", o, r)
	}
	req := &runtimeapi.UpdatePodSandboxResourcesRequest{
		PodSandboxId: id,
		Overhead:     &runtimeapi.LinuxContainerResources{CpuShares: 20, MemoryLimitInBytes: 64 << 20},
		Resources:    &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 256 << 20, Unified: map[string]string{"memory.high": "200000000"}},
	}
	if _, err := d.Runtime.UpdatePodSandboxResources(ctx, req); err != nil {
		t.Fatal(err)
	}
	o, r := verboseResources(t, d, id)
	for _, want := range []string{`"cpu_shares":20`, `"memory_limit_in_bytes":67108864`} {
		if !strings.Contains(o, want) {
			t.Errorf("overhead %s lacks %s", o, want)
		}
	}
	for _, want := range []string{`"cpu_quota":50000`, `"cpu_shares":512`, `"memory_limit_in_bytes":268435456`, `"memory.high":"200000000"`} {
		if !strings.Contains(r, want) {
			t.Errorf("resources %s lack %s", r, want)
		}
	}

	_, err := d.Runtime.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: strings.Repeat("ab", 32), Resources: req.Resources})
	if status.Code(err) != codes.NotFound {
		t.Errorf("unknown sandbox: %v, want NotFound", err)
	}
	_, err = d.Runtime.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: id, Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -5}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("negative memory limit: %v, want InvalidArgument", err)
	}

	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	d2 := start(t, l)
	if o2, r2 := verboseResources(t, d2, id); o2 != o || r2 != r {
		t.Errorf("after restart:\noverhead  %s\nresources %s\nwant\noverhead  %s\nresources %s", o2, r2, o, r)
	}
	stopRemove(t, d2, id)
}
