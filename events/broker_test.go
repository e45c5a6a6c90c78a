package events

import (
	"fmt"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/prometheus/client_golang/prometheus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// event builds numbered events; the number goes in CreatedAt.
func event(n int) func() *runtimeapi.ContainerEventResponse {
	return func() *runtimeapi.ContainerEventResponse {
		return &runtimeapi.ContainerEventResponse{ContainerId: fmt.Sprint(n), CreatedAt: int64(n)}
	}
}

func dropped(t *testing.T) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(Metrics); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "nodecri_events_subscribers_dropped_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("nodecri_events_subscribers_dropped_total not exported")
	return 0
}

func TestEveryEventReachesEverySubscriberInOrder(t *testing.T) {
	b := NewBroker(8)
	s1, s2 := b.Subscribe(), b.Subscribe()
	defer s1.Close()
	defer s2.Close()
	for i := range 5 {
		b.Publish(event(i))
	}
	for _, s := range []*Subscription{s1, s2} {
		for i := range 5 {
			if ev := <-s.Events(); ev.CreatedAt != int64(i) {
				t.Fatalf("event %d: got %d", i, ev.CreatedAt)
			}
		}
	}
}

func TestNoSubscriberNoBuild(t *testing.T) {
	b := NewBroker(8)
	b.Publish(func() *runtimeapi.ContainerEventResponse { t.Fatal("built with no subscriber"); return nil })
	s := b.Subscribe()
	s.Close()
	b.Publish(func() *runtimeapi.ContainerEventResponse { t.Fatal("built after the last Close"); return nil })
	if s.Err() != nil {
		t.Errorf("closed subscription has error %v", s.Err())
	}
}

// A subscriber that stops reading is dropped with ResourceExhausted once
// its buffer is full, and counted; publishing goes on without blocking and
// the others get every event.
func TestStuckSubscriberIsDroppedNotWaitedFor(t *testing.T) {
	before := dropped(t)
	b := NewBroker(4)
	stuck, reader := b.Subscribe(), b.Subscribe()
	defer reader.Close()
	for i := range 10 {
		b.Publish(event(i)) // would hang here if a full subscriber blocked
		if ev := <-reader.Events(); ev.CreatedAt != int64(i) {
			t.Fatalf("reader: event %d is %d", i, ev.CreatedAt)
		}
	}
	select {
	case <-stuck.Done():
	default:
		t.Fatal("stuck subscriber not dropped after 10 events with a buffer of 4")
	}
	if err := stuck.Err(); !errdefs.IsResourceExhausted(err) {
		t.Errorf("dropped subscriber's error: %v, want ResourceExhausted", err)
	}
	if after := dropped(t); after != before+1 {
		t.Errorf("dropped counter went from %v to %v, want +1", before, after)
	}
	// Dropped: no longer fed, its backlog freed.
	b.Publish(event(10))
	if n := len(stuck.Events()); n != 0 {
		t.Errorf("dropped subscriber still holds %d events", n)
	}
}

// Concurrent publishers and subscribers (run with -race): each subscriber
// sees events in the order they were built.
func TestConcurrentPublishKeepsBuildOrder(t *testing.T) {
	b := NewBroker(SubscriberBuffer)
	var seq int64 // only touched by build, under the broker's lock
	build := func() *runtimeapi.ContainerEventResponse {
		seq++
		return &runtimeapi.ContainerEventResponse{CreatedAt: seq}
	}
	const publishers, each = 8, 100
	var readers sync.WaitGroup
	subs := make([]*Subscription, 3)
	for i := range subs {
		subs[i] = b.Subscribe()
		readers.Add(1)
		go func(s *Subscription) {
			defer readers.Done()
			var last int64
			for range publishers * each {
				ev := <-s.Events()
				if ev.CreatedAt <= last {
					t.Errorf("event %d after %d", ev.CreatedAt, last)
				}
				last = ev.CreatedAt
			}
		}(subs[i])
	}
	var pubs sync.WaitGroup
	for range publishers {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			for range each {
				b.Publish(build)
			}
		}()
	}
	pubs.Wait()
	readers.Wait()
	for _, s := range subs {
		if s.Err() != nil {
			t.Errorf("subscriber dropped: %v", s.Err())
		}
		s.Close()
	}
}
