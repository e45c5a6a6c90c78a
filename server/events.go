package server

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/containerd/log"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/containers"
	"github.com/nodecri/nodecri/events"
	"github.com/nodecri/nodecri/sandbox"
)

// GetContainerEvents streams every container and sandbox transition from
// the subscription on, until the client leaves or falls
// events.SubscriberBuffer events behind: the stream then ends
// ResourceExhausted and the kubelet relists. Headers are sent once
// subscribed, so a client that has them misses no later event.
func (s *runtimeService) GetContainerEvents(_ *runtimeapi.GetEventsRequest, stream grpc.ServerStreamingServer[runtimeapi.ContainerEventResponse]) error {
	sub := s.events.Subscribe()
	defer sub.Close()
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	ctx := stream.Context()
	for {
		// A dropped subscriber gets the error before any queued event.
		select {
		case <-sub.Done():
			return dropped(ctx, sub)
		default:
		}
		select {
		case ev := <-sub.Events():
			if err := stream.Send(ev); err != nil {
				return err
			}
		case <-sub.Done():
			return dropped(ctx, sub)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func dropped(ctx context.Context, sub *events.Subscription) error {
	log.G(ctx).WithError(sub.Err()).Warn("GetContainerEvents subscriber dropped")
	return sub.Err()
}

// Notify publishes a transition (a sandbox.Notifier: the plugin gives the
// sandbox and container managers one that calls it) with the pod's status
// and its containers' as PodSandboxStatus and ContainerStatus report them
// now. The sandbox's own deletion carries its last status, so the kubelet
// can tell which pod went. Built only when someone listens.
func (s *Service) Notify(t runtimeapi.ContainerEventType, containerID string, sb *sandbox.Sandbox) {
	s.events.Publish(func() *runtimeapi.ContainerEventResponse {
		ev := &runtimeapi.ContainerEventResponse{ContainerId: containerID, ContainerEventType: t, CreatedAt: time.Now().UnixNano()}
		if sb == nil {
			return ev
		}
		ev.PodSandboxStatus = sandboxStatus(sb, sb.Status())
		list := s.Containers.Store().List(sb.ID)
		slices.SortFunc(list, func(a, b *containers.Container) int {
			return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
		})
		for _, c := range list {
			ev.ContainersStatuses = append(ev.ContainersStatuses, s.containerStatus(c, c.Status()))
		}
		return ev
	})
}
