// Package containers runs the user's containers in pod sandboxes: the OCI
// spec from the CRI config, the task and its logs, exits and OOM kills.
package containers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/logs"
	"github.com/nodecri/nodecri/store"
)

// Reasons a container ended, as the kubelet reads them.
const (
	ReasonCompleted  = "Completed"
	ReasonError      = "Error"
	ReasonOOMKilled  = "OOMKilled"
	ReasonStartError = "StartError"
	// startErrorExitCode is what a container that never started reports.
	startErrorExitCode = 128
)

// Metadata is what containerd keeps of a container, as an extension of its
// record: enough to rebuild it after a restart.
type Metadata struct {
	Version    int       `json:"version"`
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	SandboxID  string    `json:"sandboxID"`
	Config     []byte    `json:"config"` // protobuf ContainerConfig
	ImageID    string    `json:"imageID"`
	ImageRef   string    `json:"imageRef"`
	LogPath    string    `json:"logPath,omitempty"`
	StopSignal string    `json:"stopSignal"`
	CreatedAt  time.Time `json:"createdAt"`
	Status     Status    `json:"status"`
}

// MetadataExtension is the container extension Metadata is stored under.
const MetadataExtension = "io.nodecri.container.metadata"

func init() {
	typeurl.Register(&Metadata{}, "github.com/nodecri/nodecri/containers", "Metadata")
}

// Status is a container's changing state.
type Status struct {
	State      runtimeapi.ContainerState `json:"state"`
	Pid        uint32                    `json:"pid,omitempty"`
	StartedAt  time.Time                 `json:"startedAt,omitzero"`
	FinishedAt time.Time                 `json:"finishedAt,omitzero"`
	ExitCode   int32                     `json:"exitCode"`
	Reason     string                    `json:"reason,omitempty"`
	Message    string                    `json:"message,omitempty"`
	// Resources are the last applied by UpdateContainerResources.
	Resources *runtimeapi.LinuxContainerResources `json:"-"`
	// OOMKilled: the kernel OOM-killed a process of the container, so its
	// exit reads OOMKilled.
	OOMKilled bool `json:"-"`
	// ExitUnknown: recovery found the task gone without an exit; a late
	// exit or delete event from the shim may still tell the real code.
	ExitUnknown bool `json:"-"`
}

// Container is one container.
type Container struct {
	ID         string
	Name       string
	SandboxID  string
	Config     *runtimeapi.ContainerConfig
	ImageID    string // the image's config digest
	ImageRef   string // the reference the kubelet asked for
	LogPath    string
	StopSignal string
	CreatedAt  time.Time
	User       specs.User // as resolved at create

	opMu sync.Mutex // serialises Start, Stop and Remove

	// updMu serialises update, so records are written in the order the
	// status changes; mu guards status and the task's handles below for
	// readers, who never wait for a write.
	updMu  sync.Mutex
	mu     sync.Mutex
	status Status

	// The handles of the container's current task, beside the status
	// (they are not state: the status says what the task is doing).
	log     *logs.File
	started chan struct{}   // closed once Start has recorded its outcome
	exited  chan struct{}   // closed once the task's exit is recorded
	exiting bool            // an exit is being handled: containerd may report one twice
	task    containerd.Task // while running
	// attach is the output fan-out and stdin pipe of the task start()
	// made; nil for a task it did not make (see attach.go).
	attach *attachIO
}

// Status returns a copy of the container's state.
func (c *Container) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// metadata is the container's record with status st.
func (c *Container) metadata(st Status) (*Metadata, error) {
	cfg, err := proto.Marshal(c.Config)
	if err != nil {
		return nil, err
	}
	return &Metadata{Version: 1, ID: c.ID, Name: c.Name, SandboxID: c.SandboxID, Config: cfg, ImageID: c.ImageID,
		ImageRef: c.ImageRef, LogPath: c.LogPath, StopSignal: c.StopSignal, CreatedAt: c.CreatedAt, Status: st}, nil
}

// recordWriter writes meta to the container's containerd record.
type recordWriter func(ctx context.Context, c *Container, meta *Metadata) error

// update is the one way the status changes once the container has a
// record: fn edits a copy, the copy is written to the record when the
// record would read differently, and only then does it become the status.
// A failed fn or write leaves the status as it was and is returned.
func (c *Container) update(ctx context.Context, write recordWriter, fn func(*Status) error) error {
	c.updMu.Lock()
	defer c.updMu.Unlock()
	old := c.Status()
	next := old
	if err := fn(&next); err != nil {
		return err
	}
	a, err := json.Marshal(old)
	if err != nil {
		return err
	}
	b, err := json.Marshal(next)
	if err != nil {
		return err
	}
	if !bytes.Equal(a, b) {
		meta, err := c.metadata(next)
		if err != nil {
			return err
		}
		if err := write(ctx, c, meta); err != nil {
			return fmt.Errorf("record container %s %s: %w", c.ID, stateName(next.State), err)
		}
	}
	c.mu.Lock()
	c.status = next
	c.mu.Unlock()
	return nil
}

// inMemory is the writer of a status the record cannot take (see
// Manager.recordFact).
func inMemory(context.Context, *Container, *Metadata) error { return nil }

// Name is the CRI's unique container name within the node.
func Name(c *runtimeapi.ContainerMetadata, s *runtimeapi.PodSandboxMetadata) string {
	return strings.Join([]string{c.GetName(), s.GetName(), s.GetNamespace(), s.GetUid(), fmt.Sprint(c.GetAttempt())}, "_")
}

// Store indexes containers by ID, unique ID prefix and sandbox.
type Store struct{ *store.Store[*Container] }

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{store.New("container", func(c *Container) string { return c.ID }, func(c *Container) string { return c.SandboxID })}
}

// List returns every container, or with a sandbox ID those of that
// sandbox.
func (st *Store) List(sandboxID string) []*Container {
	if sandboxID == "" {
		return st.Store.List()
	}
	return st.ListGroup(sandboxID)
}
