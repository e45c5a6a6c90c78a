package store

import (
	"slices"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
)

type obj struct{ id, group string }

func newObjs() *Store[*obj] {
	return New("thing", func(o *obj) string { return o.id }, func(o *obj) string { return o.group })
}

func ids(l []*obj) []string {
	var out []string
	for _, o := range l {
		out = append(out, o.id)
	}
	slices.Sort(out)
	return out
}

func TestGetByIDAndPrefix(t *testing.T) {
	s := newObjs()
	s.Add(&obj{id: "abc1", group: "p"})
	s.Add(&obj{id: "abc2", group: "p"})
	s.Add(&obj{id: "abd", group: "q"})
	s.Add(&obj{id: "ab", group: "q"})

	for _, tc := range []struct {
		id, want string
		err      func(error) bool
	}{
		{id: "abc1", want: "abc1"},
		{id: "abd", want: "abd"},
		{id: "ab", want: "ab"}, // a full ID wins over the prefixes it is of
		{id: "abc", err: errdefs.IsInvalidArgument},
		{id: "a", err: errdefs.IsInvalidArgument},
		{id: "x", err: errdefs.IsNotFound},
		{id: "abc12", err: errdefs.IsNotFound},
	} {
		got, err := s.Get(tc.id)
		if tc.err != nil {
			if !tc.err(err) {
				t.Errorf("Get(%q): %v, %v; want the other error", tc.id, got, err)
			}
			continue
		}
		if err != nil || got.id != tc.want {
			t.Errorf("Get(%q): %v, %v; want %s", tc.id, got, err, tc.want)
		}
	}
	if _, err := s.Get("zz"); err == nil || err.Error() != `thing "zz": not found` {
		t.Errorf("NotFound message: %v", err)
	}
	if _, err := s.Get("abc"); err == nil || err.Error() != `thing ID prefix "abc" is ambiguous: invalid argument` {
		t.Errorf("ambiguous message: %v", err)
	}
}

func TestListAndGroups(t *testing.T) {
	s := newObjs()
	if l := s.List(); len(l) != 0 {
		t.Errorf("empty store lists %v", ids(l))
	}
	s.Add(&obj{id: "1", group: "p"})
	s.Add(&obj{id: "2", group: "p"})
	s.Add(&obj{id: "3", group: "q"})
	if got := ids(s.List()); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Errorf("List: %v", got)
	}
	if got := ids(s.ListGroup("p")); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("ListGroup(p): %v", got)
	}
	s.Delete("1")
	s.Delete("3")
	s.Delete("nosuch")
	if got := ids(s.ListGroup("p")); !slices.Equal(got, []string{"2"}) {
		t.Errorf("ListGroup(p) after delete: %v", got)
	}
	if got := s.ListGroup("q"); len(got) != 0 {
		t.Errorf("ListGroup(q) after its last delete: %v", ids(got))
	}
	if len(s.byGroup) != 1 {
		t.Errorf("empty groups kept: %v", s.byGroup)
	}
	if _, err := s.Get("1"); !errdefs.IsNotFound(err) {
		t.Errorf("Get deleted: %v", err)
	}
	// Re-adding an ID under another group moves it.
	s.Add(&obj{id: "2", group: "q"})
	if len(s.ListGroup("p")) != 0 || len(s.ListGroup("q")) != 1 || len(s.List()) != 1 {
		t.Errorf("re-add: p %v q %v all %v", ids(s.ListGroup("p")), ids(s.ListGroup("q")), ids(s.List()))
	}
}

func TestWithoutGroups(t *testing.T) {
	s := New("pod", func(o *obj) string { return o.id }, nil)
	s.Add(&obj{id: "1", group: "p"})
	if len(s.ListGroup("p")) != 0 || len(s.List()) != 1 {
		t.Error("a store without a second key indexed one")
	}
	s.Delete("1")
	if len(s.List()) != 0 {
		t.Error("delete")
	}
}

// Run with -race: the store guards itself.
func TestConcurrentUse(t *testing.T) {
	s := newObjs()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				id := string(rune('a'+i)) + string(rune('a'+j%26))
				s.Add(&obj{id: id, group: string(rune('a' + i))})
				s.Get(id[:1])
				s.List()
				s.ListGroup(id[:1])
				s.Delete(id)
			}
		}()
	}
	wg.Wait()
	if len(s.List()) != 0 || len(s.byGroup) != 0 {
		t.Errorf("left: %v", ids(s.List()))
	}
}
