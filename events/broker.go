package events

import (
	"fmt"
	"sync"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// SubscriberBuffer is how many container events a GetContainerEvents
// subscriber may fall behind before its stream is closed. The kubelet's
// evented PLEG moves each event into its own 1000-deep queue as soon as it
// arrives, so a healthy kubelet is a few events behind at most, even
// through a node drain (a few hundred events over seconds). 1024 absorbs a
// reader stalled for a while (CPU starvation, a GC pause) at a bounded
// cost: events are a few KB (a pod's status and its containers'), so a
// few MB per stuck subscriber. A reader further behind is stuck: closing
// its stream makes the kubelet relist, which is cheaper than the backlog
// and never wrong.
const SubscriberBuffer = 1024

// Broker fans the CRI's container lifecycle events (GetContainerEvents)
// out to subscribers. Publishing never blocks: each subscriber has a
// bounded buffer, and one that lets it fill is dropped with an error (and
// counted) rather than slowing the runtime or silently losing events.
type Broker struct {
	buffer int

	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

// NewBroker returns a broker whose subscribers may fall buffer events
// behind.
func NewBroker(buffer int) *Broker {
	return &Broker{buffer: buffer, subs: map[*Subscription]struct{}{}}
}

// Subscription is one subscriber's queue of events.
type Subscription struct {
	b      *Broker
	events chan *runtimeapi.ContainerEventResponse
	done   chan struct{}
	err    error // why done was closed; written before the close
}

// Subscribe returns a subscription to every event published from now on.
func (b *Broker) Subscribe() *Subscription {
	s := &Subscription{b: b, events: make(chan *runtimeapi.ContainerEventResponse, b.buffer), done: make(chan struct{})}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// Events delivers the subscription's events in publication order.
func (s *Subscription) Events() <-chan *runtimeapi.ContainerEventResponse { return s.events }

// Done is closed when the broker dropped the subscription; Err says why.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err is why the subscription was dropped (a ResourceExhausted error), or
// nil while it is live or after Close.
func (s *Subscription) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Close unsubscribes; events published afterwards are not queued.
func (s *Subscription) Close() {
	s.b.mu.Lock()
	delete(s.b.subs, s)
	s.b.mu.Unlock()
}

// Publish queues an event for every subscriber, building it only when
// there is one. build runs under the broker's lock, so events are built
// and delivered in one order: a later event never carries older statuses
// or an earlier timestamp than the one before it (the kubelet keeps the
// newest status by timestamp). build must therefore be quick and do no
// I/O; callers must hold no lock build takes.
func (b *Broker) Publish(build func() *runtimeapi.ContainerEventResponse) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.subs) == 0 {
		return
	}
	ev := build()
	for s := range b.subs {
		select {
		case s.events <- ev:
		default:
			b.drop(s, ev)
		}
	}
}

// drop ends a subscription whose buffer is full. Called with b.mu held.
func (b *Broker) drop(s *Subscription, ev *runtimeapi.ContainerEventResponse) {
	delete(b.subs, s)
	s.err = fmt.Errorf("container event subscriber fell %d events behind and was dropped at %s of %s; relist and subscribe again: %w",
		b.buffer, ev.GetContainerEventType(), ev.GetContainerId(), errdefs.ErrResourceExhausted)
	close(s.done)
	subscribersDropped.Inc()
	// Free the backlog now: the reader may stay stuck for long, and it
	// gets the error rather than stale events.
	for {
		select {
		case <-s.events:
		default:
			return
		}
	}
}
