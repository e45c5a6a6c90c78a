package server

import (
	"context"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/events"
)

// blockedStream is a client that reads only when the test lets it: Send
// blocks, as gRPC's does once flow control is exhausted.
type blockedStream struct {
	grpc.ServerStream
	ctx        context.Context
	subscribed chan struct{}
	release    chan struct{}
	sent       int
}

func (s *blockedStream) Context() context.Context { return s.ctx }

func (s *blockedStream) SendHeader(metadata.MD) error { close(s.subscribed); return nil }

func (s *blockedStream) Send(*runtimeapi.ContainerEventResponse) error {
	select {
	case <-s.release:
		s.sent++
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

// A subscriber stuck in Send is dropped without holding publishers up;
// once it moves again, its stream ends ResourceExhausted.
func TestStuckEventStreamEndsResourceExhausted(t *testing.T) {
	svc := &runtimeService{Service: &Service{events: events.NewBroker(4)}}
	stream := &blockedStream{ctx: t.Context(), subscribed: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error)
	go func() { done <- svc.GetContainerEvents(&runtimeapi.GetEventsRequest{}, stream) }()
	<-stream.subscribed
	for i := range 20 {
		svc.events.Publish(func() *runtimeapi.ContainerEventResponse {
			return &runtimeapi.ContainerEventResponse{ContainerId: fmt.Sprint(i)}
		})
	}
	close(stream.release)
	err := <-done
	if !errdefs.IsResourceExhausted(err) {
		t.Fatalf("stuck stream ended with %v, want ResourceExhausted", err)
	}
	if stream.sent > 1 {
		t.Errorf("%d events sent after the drop, want at most the one in flight", stream.sent)
	}
}

// A client that leaves ends its stream and its subscription.
func TestEventStreamEndsWithClient(t *testing.T) {
	svc := &runtimeService{Service: &Service{events: events.NewBroker(4)}}
	ctx, cancel := context.WithCancel(t.Context())
	stream := &blockedStream{ctx: ctx, subscribed: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error)
	go func() { done <- svc.GetContainerEvents(&runtimeapi.GetEventsRequest{}, stream) }()
	<-stream.subscribed
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("stream ended with %v, want context.Canceled", err)
	}
	svc.events.Publish(func() *runtimeapi.ContainerEventResponse {
		t.Error("event built with no subscriber left")
		return nil
	})
}
