package names

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestDuplicateWhileHeld(t *testing.T) {
	r := New("sandbox", time.Minute)
	e, joined, err := r.Reserve(context.Background(), "n", "id1")
	if err != nil || joined {
		t.Fatal(err)
	}
	e.Finish(nil, nil)
	if !e.Claim() {
		t.Fatal("owner could not claim")
	}
	_, _, err = r.Reserve(context.Background(), "n", "id2")
	if !errdefs.IsAlreadyExists(err) || !contains(err.Error(), "id1") {
		t.Fatalf("second reserve: %v, want AlreadyExists naming id1", err)
	}
	r.Release("n", "id1")
	if _, _, err := r.Reserve(context.Background(), "n", "id3"); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

// A retry arriving while the first create runs waits and gets its object.
func TestRetryWaitsAndJoins(t *testing.T) {
	r := New("sandbox", time.Minute)
	e, _, _ := r.Reserve(context.Background(), "n", "id1")
	got := make(chan string)
	go func() {
		res, joined, err := r.Reserve(context.Background(), "n", "id2")
		if err != nil || !joined {
			got <- "error: " + errString(err)
			return
		}
		got <- res.ID
	}()
	time.Sleep(20 * time.Millisecond)
	e.Finish(nil, func() { t.Error("abandoned though claimed") })
	// The first caller left (timed out): it does not claim.
	if id := <-got; id != "id1" {
		t.Fatalf("retry got %s", id)
	}
	time.Sleep(30 * time.Millisecond)
}

func TestRetryGivesUpWithItsDeadline(t *testing.T) {
	r := New("sandbox", time.Minute)
	r.Reserve(context.Background(), "n", "id1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := r.Reserve(ctx, "n", "id2"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
}

func TestFailureReleasesName(t *testing.T) {
	r := New("sandbox", time.Minute)
	e, _, _ := r.Reserve(context.Background(), "n", "id1")
	e.Finish(errors.New("cni failed"), nil)
	if _, joined, err := r.Reserve(context.Background(), "n", "id2"); err != nil || joined {
		t.Fatalf("after a failed create: %v %v", joined, err)
	}
}

func TestUnclaimedIsAbandoned(t *testing.T) {
	r := New("sandbox", 30*time.Millisecond)
	e, _, _ := r.Reserve(context.Background(), "n", "id1")
	var abandoned atomic.Bool
	e.Finish(nil, func() { abandoned.Store(true); r.Release("n", "id1") })
	time.Sleep(100 * time.Millisecond)
	if !abandoned.Load() {
		t.Fatal("unclaimed object not abandoned")
	}
	if _, joined, err := r.Reserve(context.Background(), "n", "id2"); err != nil || joined {
		t.Fatalf("name not free after abandonment: %v", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

// A recovered object the daemon may have finished after its caller lost
// the answer is handed to the first create under its name, once.
func TestRestoreClaimableHandsOnce(t *testing.T) {
	r := New("sandbox", time.Minute)
	r.RestoreClaimable("n", "id1")
	id, err := r.Create(context.Background(), "n", "id2", func(context.Context, string) error {
		t.Error("a new object was made for a recovered name")
		return nil
	}, nil)
	if err != nil || id != "id1" {
		t.Fatalf("retry got %q, %v; want id1", id, err)
	}
	if _, _, err := r.Reserve(context.Background(), "n", "id3"); !errdefs.IsAlreadyExists(err) {
		t.Errorf("second create under a handed name: %v, want AlreadyExists", err)
	}
	r.Restore("m", "id4")
	if _, _, err := r.Reserve(context.Background(), "m", "id5"); !errdefs.IsAlreadyExists(err) {
		t.Errorf("create under a restored claimed name: %v, want AlreadyExists", err)
	}
}
