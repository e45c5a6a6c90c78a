package containers

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func testContainer(st Status) *Container {
	return &Container{ID: "c1", Name: "c", SandboxID: "sb1", Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "c"}}, status: st}
}

// A failed record write leaves the status as it was and is returned; a
// successful one is what the status then is.
func TestUpdateFailedWriteLeavesStatus(t *testing.T) {
	c := testContainer(Status{State: runtimeapi.ContainerState_CONTAINER_CREATED})
	boom := errors.New("boom")
	var written []*Metadata
	failing := func(_ context.Context, _ *Container, m *Metadata) error { written = append(written, m); return boom }
	started := time.Now()
	running := func(st *Status) error {
		st.State = runtimeapi.ContainerState_CONTAINER_RUNNING
		st.StartedAt = started
		st.Pid = 42
		return nil
	}
	if err := c.update(context.Background(), failing, running); !errors.Is(err, boom) {
		t.Fatalf("update with a failing write: %v, want boom", err)
	}
	if len(written) != 1 || written[0].Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING || written[0].Status.Pid != 42 || written[0].ID != "c1" {
		t.Errorf("write attempted with %+v, want one running record", written)
	}
	if st := c.Status(); st.State != runtimeapi.ContainerState_CONTAINER_CREATED || st.Pid != 0 || !st.StartedAt.IsZero() {
		t.Errorf("status after a failed write: %+v, want created as before", st)
	}

	// fn's own error: nothing written, nothing changed.
	written = nil
	ok := func(_ context.Context, _ *Container, m *Metadata) error { written = append(written, m); return nil }
	if err := c.update(context.Background(), ok, func(st *Status) error { st.Pid = 1; return boom }); !errors.Is(err, boom) || len(written) != 0 || c.Status().Pid != 0 {
		t.Errorf("fn failing: %v, %d writes, status %+v", err, len(written), c.Status())
	}

	if err := c.update(context.Background(), ok, running); err != nil {
		t.Fatal(err)
	}
	if st := c.Status(); len(written) != 1 || st.State != runtimeapi.ContainerState_CONTAINER_RUNNING || st.Pid != 42 {
		t.Errorf("after a good write: %d writes, status %+v", len(written), st)
	}
}

// What the record does not hold (OOM mark, resources, unknown exit)
// changes without a write, so it cannot fail.
func TestUpdateWritesOnlyWhatTheRecordShows(t *testing.T) {
	c := testContainer(Status{State: runtimeapi.ContainerState_CONTAINER_RUNNING, Pid: 3})
	failing := func(context.Context, *Container, *Metadata) error { return errors.New("no write expected") }
	r := &runtimeapi.LinuxContainerResources{CpuShares: 512}
	if err := c.update(context.Background(), failing, func(st *Status) error {
		st.OOMKilled = true
		st.Resources = r
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if st := c.Status(); !st.OOMKilled || st.Resources != r {
		t.Errorf("status %+v", st)
	}
}

// The record's status keeps the format earlier daemons wrote: a record
// of theirs reads back the same, and the fields added since are not in it.
func TestStatusRecordFormat(t *testing.T) {
	old := `{"state":2,"pid":7,"startedAt":"2026-12-01T10:00:00Z","finishedAt":"2026-12-01T10:00:05Z","exitCode":137,"reason":"OOMKilled","message":"m"}`
	var st Status
	if err := json.Unmarshal([]byte(old), &st); err != nil {
		t.Fatal(err)
	}
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.Pid != 7 || st.ExitCode != 137 || st.Reason != ReasonOOMKilled || st.FinishedAt.Sub(st.StartedAt) != 5*time.Second {
		t.Errorf("old record read as %+v", st)
	}
	st.OOMKilled, st.ExitUnknown = true, true
	st.Resources = &runtimeapi.LinuxContainerResources{CpuShares: 2}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != old {
		t.Errorf("written as\n%s\nwant\n%s", b, old)
	}
}
