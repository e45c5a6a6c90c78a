// Package store is the in-memory index of sandboxes and containers: by
// full ID, by unique ID prefix (as crictl and the kubelet may pass), and
// by an optional second key (a container's sandbox).
package store

import (
	"fmt"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
)

// Store indexes objects of one kind. It has its own lock: the objects'
// own state is theirs to guard.
type Store[T any] struct {
	kind  string // for errors: "sandbox", "container"
	id    func(T) string
	group func(T) string // the second key; nil for none

	mu      sync.RWMutex
	byID    map[string]T
	byGroup map[string]map[string]T
}

// New returns an empty store of kind (named in errors), keyed by id and,
// when group is not nil, also indexed by group.
func New[T any](kind string, id func(T) string, group func(T) string) *Store[T] {
	return &Store[T]{kind: kind, id: id, group: group, byID: map[string]T{}, byGroup: map[string]map[string]T{}}
}

// Add files v, replacing any object of the same ID.
func (s *Store[T]) Add(v T) {
	id := s.id(v)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteLocked(id)
	s.byID[id] = v
	if s.group != nil {
		g := s.group(v)
		if s.byGroup[g] == nil {
			s.byGroup[g] = map[string]T{}
		}
		s.byGroup[g][id] = v
	}
}

// Delete forgets the object of full ID id, if any.
func (s *Store[T]) Delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteLocked(id)
}

func (s *Store[T]) deleteLocked(id string) {
	v, ok := s.byID[id]
	if !ok {
		return
	}
	delete(s.byID, id)
	if s.group != nil {
		g := s.group(v)
		if m := s.byGroup[g]; m != nil {
			delete(m, id)
			if len(m) == 0 {
				delete(s.byGroup, g)
			}
		}
	}
}

// Get finds an object by its full ID or a unique prefix of it: NotFound
// when none matches, InvalidArgument when the prefix matches several.
func (s *Store[T]) Get(id string) (T, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if v, ok := s.byID[id]; ok {
		return v, nil
	}
	var (
		found T
		n     int
	)
	for full, v := range s.byID {
		if strings.HasPrefix(full, id) {
			if n++; n > 1 {
				var zero T
				return zero, fmt.Errorf("%s ID prefix %q is ambiguous: %w", s.kind, id, errdefs.ErrInvalidArgument)
			}
			found = v
		}
	}
	if n == 0 {
		return found, fmt.Errorf("%s %q: %w", s.kind, id, errdefs.ErrNotFound)
	}
	return found, nil
}

// List returns every object, in no order.
func (s *Store[T]) List() []T {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]T, 0, len(s.byID))
	for _, v := range s.byID {
		out = append(out, v)
	}
	return out
}

// ListGroup returns the objects filed under group, in no order.
func (s *Store[T]) ListGroup(group string) []T {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m := s.byGroup[group]
	out := make([]T, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
