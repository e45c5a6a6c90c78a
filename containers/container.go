// Package containers runs the user's containers in pod sandboxes: the OCI
// spec from the CRI config, the task and its logs, exits and OOM kills.
package containers

import (
	"fmt"
	"strings"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/logs"
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

	mu     sync.Mutex
	status Status
	oom    bool
	// exitUnknown: recovery found the task gone without an exit; a late
	// exit or delete event from the shim may still tell the real code.
	exitUnknown bool
	log         *logs.File
	started     chan struct{}   // closed once Start has recorded its outcome
	exited      chan struct{}   // closed once the task's exit is recorded
	exiting     bool            // an exit is being handled: containerd may report one twice
	task        containerd.Task // while running
	// attach is the output fan-out and stdin pipe of the task start()
	// made; nil for a task it did not make (see stream.go).
	attach *attachIO
}

// Status returns a copy of the container's state.
func (c *Container) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

func (c *Container) metadata() (*Metadata, error) {
	cfg, err := proto.Marshal(c.Config)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return &Metadata{Version: 1, ID: c.ID, Name: c.Name, SandboxID: c.SandboxID, Config: cfg, ImageID: c.ImageID,
		ImageRef: c.ImageRef, LogPath: c.LogPath, StopSignal: c.StopSignal, CreatedAt: c.CreatedAt, Status: c.status}, nil
}

// Name is the CRI's unique container name within the node.
func Name(c *runtimeapi.ContainerMetadata, s *runtimeapi.PodSandboxMetadata) string {
	return strings.Join([]string{c.GetName(), s.GetName(), s.GetNamespace(), s.GetUid(), fmt.Sprint(c.GetAttempt())}, "_")
}

// Store indexes containers by ID and by sandbox.
type Store struct {
	mu        sync.RWMutex
	byID      map[string]*Container
	bySandbox map[string]map[string]*Container
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{byID: map[string]*Container{}, bySandbox: map[string]map[string]*Container{}}
}

// Add files a container.
func (st *Store) Add(c *Container) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.byID[c.ID] = c
	if st.bySandbox[c.SandboxID] == nil {
		st.bySandbox[c.SandboxID] = map[string]*Container{}
	}
	st.bySandbox[c.SandboxID][c.ID] = c
}

// Delete forgets a container.
func (st *Store) Delete(c *Container) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.byID, c.ID)
	if m := st.bySandbox[c.SandboxID]; m != nil {
		delete(m, c.ID)
		if len(m) == 0 {
			delete(st.bySandbox, c.SandboxID)
		}
	}
}

// Get finds a container by its full ID or a unique prefix.
func (st *Store) Get(id string) (*Container, error) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	if c, ok := st.byID[id]; ok {
		return c, nil
	}
	var found *Container
	for full, c := range st.byID {
		if strings.HasPrefix(full, id) {
			if found != nil {
				return nil, fmt.Errorf("container ID prefix %q is ambiguous: %w", id, errdefs.ErrInvalidArgument)
			}
			found = c
		}
	}
	if found == nil {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return found, nil
}

// List returns every container, or those of one sandbox.
func (st *Store) List(sandboxID string) []*Container {
	st.mu.RLock()
	defer st.mu.RUnlock()
	src := st.byID
	if sandboxID != "" {
		src = st.bySandbox[sandboxID]
	}
	out := make([]*Container, 0, len(src))
	for _, c := range src {
		out = append(out, c)
	}
	return out
}
