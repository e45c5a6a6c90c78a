// Package events is the one pipeline that turns containerd's task events
// into state changes: a single subscription for the CRI's namespace,
// dispatched to whoever owns the container. Nothing polls.
package events

import (
	"context"
	"sync"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
)

// Exit is a container's init process exiting.
type Exit struct {
	ContainerID string
	Pid         uint32
	Status      uint32
	At          time.Time
}

// OOM is a container hitting its memory limit.
type OOM struct{ ContainerID string }

// Handler receives the events of the containers it registered for.
type Handler interface {
	OnExit(ctx context.Context, e Exit)
	OnOOM(ctx context.Context, e OOM)
}

// DeleteHandler is told, if its Handler implements it, of a task's
// deletion with the exit it recorded. containerd deletes, while it boots,
// the tasks of containers that exited while it was down, before any plugin
// can ask; the shim's delete event, delivered once containerd serves, is
// then the only record of their exit code.
type DeleteHandler interface {
	OnTaskDelete(ctx context.Context, e Exit)
}

// Pipeline dispatches task events by container ID.
type Pipeline struct {
	client *containerd.Client

	mu       sync.RWMutex
	handlers map[string]Handler
}

// New returns a pipeline; Run starts it.
func New(client *containerd.Client) *Pipeline {
	return &Pipeline{client: client, handlers: map[string]Handler{}}
}

// Watch routes the events of container id to h, until Unwatch.
func (p *Pipeline) Watch(id string, h Handler) {
	p.mu.Lock()
	p.handlers[id] = h
	p.mu.Unlock()
}

// Unwatch stops routing container id's events.
func (p *Pipeline) Unwatch(id string) {
	p.mu.Lock()
	delete(p.handlers, id)
	p.mu.Unlock()
}

// Subscribe starts the subscription; call it before creating tasks whose
// exits must not be missed. Events are handled until ctx ends.
func (p *Pipeline) Subscribe(ctx context.Context) {
	ns, _ := namespaces.Namespace(ctx)
	evs, errs := p.client.Subscribe(ctx, `topic=="/tasks/exit"`, `topic=="/tasks/oom"`, `topic=="/tasks/delete"`)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-errs:
				if ctx.Err() != nil {
					return
				}
				log.G(ctx).WithError(err).Error("task event subscription failed; resubscribing")
				time.Sleep(100 * time.Millisecond)
				p.Subscribe(ctx)
				return
			case e := <-evs:
				if e.Namespace != ns {
					continue
				}
				ev, err := typeurl.UnmarshalAny(e.Event)
				if err != nil {
					log.G(ctx).WithError(err).Warn("undecodable task event")
					continue
				}
				p.dispatch(ctx, ev)
			}
		}
	}()
}

func (p *Pipeline) handler(id string) Handler {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.handlers[id]
}

func (p *Pipeline) dispatch(ctx context.Context, ev any) {
	switch ev := ev.(type) {
	case *eventstypes.TaskExit:
		// Exec processes exit too; only the init process ends a container.
		if ev.ID != ev.ContainerID {
			return
		}
		if h := p.handler(ev.ContainerID); h != nil {
			h.OnExit(ctx, Exit{ContainerID: ev.ContainerID, Pid: ev.Pid, Status: ev.ExitStatus, At: ev.ExitedAt.AsTime()})
		}
	case *eventstypes.TaskDelete:
		// Only init processes' deletions are published.
		if h, ok := p.handler(ev.ContainerID).(DeleteHandler); ok {
			h.OnTaskDelete(ctx, Exit{ContainerID: ev.ContainerID, Pid: ev.Pid, Status: ev.ExitStatus, At: ev.ExitedAt.AsTime()})
		}
	case *eventstypes.TaskOOM:
		if h := p.handler(ev.ContainerID); h != nil {
			h.OnOOM(ctx, OOM{ContainerID: ev.ContainerID})
		}
	}
}
