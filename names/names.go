// Package names is the one name reserver for sandboxes and containers.
//
// A CRI name (name_namespace_uid_attempt) belongs to one object. The kubelet
// retries a create whose call timed out with the same name, so a name is
// more than a lock: a retry that finds the first create still running
// waits for it and gets its result; an object finished after its caller
// left is handed to the next call for the name; one never claimed within a
// grace period is cleaned up by its owner.
package names

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// Registry holds the reserved names of one kind of object.
type Registry struct {
	kind  string // "sandbox", "container": for messages
	grace time.Duration

	mu      sync.Mutex
	entries map[string]*Reservation
}

// Reservation is one name, held by an object being created or created.
type Reservation struct {
	Name string
	ID   string

	r       *Registry
	done    chan struct{} // closed when creation finished
	err     error
	claimed bool
	timer   *time.Timer
}

// New returns a registry; unclaimed objects are abandoned after grace.
func New(kind string, grace time.Duration) *Registry {
	return &Registry{kind: kind, grace: grace, entries: map[string]*Reservation{}}
}

// Reserve takes name for a new object with id. When the name is taken by an
// object still being created it waits (within ctx) for that creation: if it
// succeeded and nobody claimed it, the caller gets it (joined=true); if it
// failed, the caller gets its error. A name held by a claimed object is
// AlreadyExists, naming the holder.
func (r *Registry) Reserve(ctx context.Context, name, id string) (res *Reservation, joined bool, err error) {
	r.mu.Lock()
	e, ok := r.entries[name]
	if !ok {
		e = &Reservation{Name: name, ID: id, r: r, done: make(chan struct{})}
		r.entries[name] = e
		r.mu.Unlock()
		return e, false, nil
	}
	r.mu.Unlock()

	select {
	case <-e.done:
	case <-ctx.Done():
		return nil, false, fmt.Errorf("waiting for %s %s, still being created under name %q: %w", r.kind, e.ID, name, ctx.Err())
	}
	if e.err != nil {
		return nil, false, e.err
	}
	if e.Claim() {
		return e, true, nil
	}
	return nil, false, fmt.Errorf("%s name %q is reserved for %s: %w", r.kind, name, e.ID, errdefs.ErrAlreadyExists)
}

// Restore records an existing, claimed object (at recovery).
func (r *Registry) Restore(name, id string) { r.restore(name, id, true) }

// RestoreClaimable records an existing object (at recovery) that the next
// create under its name is handed, as a creation finished after its caller
// left is: the daemon may have died before the caller heard of it, and the
// kubelet retries with the same name. No abandon timer runs: the kubelet
// removes what it does not want from the listing.
func (r *Registry) RestoreClaimable(name, id string) { r.restore(name, id, false) }

func (r *Registry) restore(name, id string, claimed bool) {
	e := &Reservation{Name: name, ID: id, r: r, done: make(chan struct{}), claimed: claimed}
	close(e.done)
	r.mu.Lock()
	r.entries[name] = e
	r.mu.Unlock()
}

// Finish ends the creation. On error the name is released at once. On
// success, onAbandon runs if nobody claims the object within the grace
// period; the owner claims it by calling Claim when its caller is still
// there.
func (e *Reservation) Finish(err error, onAbandon func()) {
	r := e.r
	r.mu.Lock()
	e.err = err
	if err != nil {
		if r.entries[e.Name] == e {
			delete(r.entries, e.Name)
		}
	} else if onAbandon != nil {
		e.timer = time.AfterFunc(r.grace, func() {
			r.mu.Lock()
			abandoned := !e.claimed
			r.mu.Unlock()
			if abandoned {
				onAbandon()
			}
		})
	}
	r.mu.Unlock()
	close(e.done)
}

// Claim hands the finished object to one caller; it is true only once.
func (e *Reservation) Claim() bool {
	e.r.mu.Lock()
	defer e.r.mu.Unlock()
	if e.claimed {
		return false
	}
	e.claimed = true
	if e.timer != nil {
		e.timer.Stop()
	}
	return true
}

// Release frees name if it is still held by id.
func (r *Registry) Release(name, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.entries[name]; ok && e.ID == id {
		if e.timer != nil {
			e.timer.Stop()
		}
		delete(r.entries, name)
	}
}

// Create runs create for a new object under name, detached from ctx: when
// the caller gives up (the kubelet's call timed out) the object is still
// finished and handed to the next call for the name; if nobody claims it
// within the grace period, abandon is called to remove it. A retry that
// finds the creation running waits for it within its own ctx.
func (r *Registry) Create(ctx context.Context, name, id string, create func(ctx context.Context, id string) error, abandon func(id string)) (string, error) {
	res, joined, err := r.Reserve(ctx, name, id)
	if err != nil {
		return "", err
	}
	if joined {
		log.G(ctx).WithField(r.kind, res.ID).Infof("create retry handed the %s its earlier call made", r.kind)
		return res.ID, nil
	}
	done := make(chan error, 1)
	go func() {
		err := safely(func() error { return create(context.WithoutCancel(ctx), res.ID) })
		res.Finish(err, func() { abandon(res.ID) })
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return "", err
		}
		res.Claim()
		return res.ID, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// safely runs detached work, turning a panic into an error: no request may
// take the node's runtime down.
func safely(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			log.L.WithField("panic", p).Errorf("create panicked\n%s", debug.Stack())
			err = fmt.Errorf("internal error: %v", p)
		}
	}()
	return f()
}
