package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func testSandbox(st Status) *Sandbox {
	return &Sandbox{ID: "sb1", Name: "n_ns_uid_0", Config: &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "n", Namespace: "ns", Uid: "uid"}}, status: st}
}

// A failed record write leaves the status as it was and is returned; a
// successful one is what the status then is.
func TestUpdateFailedWriteLeavesStatus(t *testing.T) {
	sb := testSandbox(Status{Phase: PhaseReady, NetNSPath: "/run/netns/x", IPs: []string{"10.0.0.2"}, Pid: 7})
	before := sb.Status()
	boom := errors.New("boom")
	var written []*Metadata
	failing := func(_ context.Context, _ *Sandbox, m *Metadata) error { written = append(written, m); return boom }
	err := sb.update(context.Background(), failing, func(st *Status) error {
		st.Phase = PhaseStopped
		st.IPs[0] = "changed in place"
		st.Resources = &runtimeapi.LinuxContainerResources{CpuShares: 2}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("update with a failing write: %v, want boom", err)
	}
	if len(written) != 1 || !written[0].Stopped || written[0].Network != NetworkTornDown {
		t.Errorf("write attempted with %+v, want one stopped record", written)
	}
	if after := sb.Status(); after.Phase != before.Phase || !slices.Equal(after.IPs, before.IPs) || after.Resources != nil || after.Pid != 7 {
		t.Errorf("status after a failed write: %+v, want %+v", after, before)
	}

	// fn's own error: nothing written, nothing changed.
	written = nil
	ok := func(_ context.Context, _ *Sandbox, m *Metadata) error { written = append(written, m); return nil }
	if err := sb.update(context.Background(), ok, func(st *Status) error { st.Phase = PhaseStopped; return boom }); !errors.Is(err, boom) || len(written) != 0 || sb.Status().Phase != PhaseReady {
		t.Errorf("fn failing: %v, %d writes, phase %v", err, len(written), sb.Status().Phase)
	}

	if err := sb.update(context.Background(), ok, func(st *Status) error { st.Phase = PhaseStopped; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(written) != 1 || sb.Status().Phase != PhaseStopped || sb.Status().State() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("after a good write: %d writes, status %+v", len(written), sb.Status())
	}
}

// A change the record does not show (ready to exited: the pause task tells
// them apart at restart) writes nothing, so it cannot fail.
func TestUpdateWritesOnlyWhatTheRecordShows(t *testing.T) {
	sb := testSandbox(Status{Phase: PhaseReady, NetNSPath: "/run/netns/x"})
	failing := func(context.Context, *Sandbox, *Metadata) error { return errors.New("no write expected") }
	if err := sb.update(context.Background(), failing, func(st *Status) error { st.Phase = PhaseExited; return nil }); err != nil {
		t.Fatal(err)
	}
	if st := sb.Status(); st.Phase != PhaseExited || st.State() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY || st.Network() != NetworkReady {
		t.Errorf("status %+v", st)
	}
}

// Records as earlier daemons wrote them (the four fields) read as the
// phase they meant, and each phase is written in that format.
func TestRecordFormat(t *testing.T) {
	for _, tc := range []struct {
		name string
		json string
		want Phase
		net  string
	}{
		{"creating before the netns", `{"version":1,"id":"a","network":"none","creating":true}`, PhaseCreating, NetworkNone},
		{"creating", `{"version":1,"id":"a","netnsPath":"/n","network":"setup-started","creating":true}`, PhaseCreating, NetworkStarted},
		{"setup started (before creating was recorded)", `{"version":1,"id":"a","netnsPath":"/n","network":"setup-started"}`, PhaseCreating, NetworkStarted},
		{"ready", `{"version":1,"id":"a","netnsPath":"/n","network":"ready","ips":["10.0.0.2"]}`, PhaseReady, NetworkReady},
		{"host network ready", `{"version":1,"id":"a","network":"none"}`, PhaseReady, NetworkNone},
		{"stopped", `{"version":1,"id":"a","netnsPath":"/n","network":"torn-down","stopped":true}`, PhaseStopped, NetworkTornDown},
		{"host network stopped", `{"version":1,"id":"a","network":"none","stopped":true}`, PhaseStopped, NetworkNone},
		{"torn down, stop not recorded", `{"version":1,"id":"a","netnsPath":"/n","network":"torn-down"}`, PhaseStopped, NetworkTornDown},
	} {
		var m Metadata
		if err := json.Unmarshal([]byte(tc.json), &m); err != nil {
			t.Fatal(err)
		}
		st, err := statusOf(&m)
		if err != nil || st.Phase != tc.want || st.Network() != tc.net {
			t.Errorf("%s: phase %v network %q (%v), want %v %q", tc.name, st.Phase, st.Network(), err, tc.want, tc.net)
			continue
		}
		// Written back, the record says the same.
		back, err := testSandbox(st).metadata(st)
		if err != nil {
			t.Fatal(err)
		}
		if back.Network != tc.net || back.Stopped != (tc.want == PhaseStopped) || back.Creating != (tc.want == PhaseCreating) || back.NetNSPath != m.NetNSPath || !slices.Equal(back.IPs, m.IPs) {
			t.Errorf("%s: written back as %+v", tc.name, back)
		}
	}
}

// Resources with several unified entries (a map) still read as the same
// record: a change the record does not show must not write (the record of
// a sandbox being removed is gone).
func TestUpdateSameResourcesWriteNothing(t *testing.T) {
	r := &runtimeapi.LinuxContainerResources{Unified: map[string]string{}}
	for i := range 20 {
		r.Unified[string(rune('a'+i))+".max"] = "1"
	}
	sb := testSandbox(Status{Phase: PhaseReady, NetNSPath: "/n", Resources: r, Overhead: r})
	sb.Config.Labels = map[string]string{"a": "1", "b": "2", "c": "3", "d": "4"}
	failing := func(context.Context, *Sandbox, *Metadata) error { return errors.New("no write expected") }
	for range 20 {
		if err := sb.update(context.Background(), failing, func(st *Status) error { st.Phase = PhaseExited; return nil }); err != nil {
			t.Fatal(err)
		}
		if err := sb.update(context.Background(), failing, func(st *Status) error { st.Phase = PhaseReady; return nil }); err != nil {
			t.Fatal(err)
		}
	}
}

// A create holds the sandbox: the exclusive side (RemovePodSandbox) waits
// for it, and a sandbox that is not ready is not held.
func TestHoldForCreate(t *testing.T) {
	sb := testSandbox(Status{Phase: PhaseReady})
	release, err := sb.HoldForCreate()
	if err != nil {
		t.Fatal(err)
	}
	locked := make(chan struct{})
	go func() {
		sb.createMu.Lock()
		sb.mu.Lock()
		sb.status.Phase = PhaseExited // as RemovePodSandbox leaves it
		sb.mu.Unlock()
		sb.createMu.Unlock()
		close(locked)
	}()
	select {
	case <-locked:
		t.Fatal("removal did not wait for the create")
	case <-time.After(50 * time.Millisecond):
	}
	release()
	<-locked
	if _, err := sb.HoldForCreate(); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("hold of a removed sandbox: %v, want FailedPrecondition", err)
	}
	// Nothing is held after a refusal: removal goes through.
	sb.createMu.Lock()
	sb.createMu.Unlock()
}
