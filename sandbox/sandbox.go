// Package sandbox runs pod sandboxes: a network namespace wired by CNI and
// a pause container holding the pod's namespaces and cgroup.
package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	gocni "github.com/containerd/go-cni"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/store"
)

// Network setup progress, recorded before each step so that a restarted
// daemon knows what to undo (a CNI DEL is owed from "started" on).
const (
	NetworkNone     = "none" // host network
	NetworkStarted  = "setup-started"
	NetworkReady    = "ready"
	NetworkTornDown = "torn-down"
)

// Metadata is what containerd keeps of a sandbox, as an extension of its
// pause container: enough to rebuild the sandbox after a restart.
type Metadata struct {
	Version   int             `json:"version"`
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Config    []byte          `json:"config"` // protobuf PodSandboxConfig
	Handler   string          `json:"runtimeHandler"`
	CreatedAt time.Time       `json:"createdAt"`
	NetNSPath string          `json:"netnsPath,omitempty"`
	Network   string          `json:"network"`
	IPs       []string        `json:"ips,omitempty"`
	CNIResult json.RawMessage `json:"cniResult,omitempty"`
	Stopped   bool            `json:"stopped,omitempty"`
	// Overhead and Resources are protobuf LinuxContainerResources, the
	// last UpdatePodSandboxResources recorded.
	Overhead  []byte `json:"overhead,omitempty"`
	Resources []byte `json:"resources,omitempty"`
	// Creating: RunPodSandbox has not finished; a record found so at
	// start is a crash's half-made sandbox, whatever its network.
	Creating bool `json:"creating,omitempty"`
}

// MetadataExtension is the container extension Metadata is stored under.
const MetadataExtension = "io.nodecri.sandbox.metadata"

func init() {
	typeurl.Register(&Metadata{}, "github.com/nodecri/nodecri/sandbox", "Metadata")
}

// Phase is where a sandbox is in its life. It is recorded (as the
// Metadata's Network, Stopped and Creating, the format older daemons
// wrote) whenever the record would read differently.
type Phase int

const (
	// PhaseCreating: RunPodSandbox has not finished; network setup may
	// have started. A record found so at start is a crash's half-made
	// sandbox, torn down.
	PhaseCreating Phase = iota
	// PhaseReady: the pause process runs and the network is set up.
	PhaseReady
	// PhaseExited: the pause process is gone without a stop (it died, it
	// was gone at a restart, or the pod is being removed); the network may
	// still be set up, and StopPodSandbox tears it down.
	PhaseExited
	// PhaseStopped: StopPodSandbox finished: pause gone, network torn down.
	PhaseStopped
)

func (p Phase) String() string {
	switch p {
	case PhaseCreating:
		return "creating"
	case PhaseReady:
		return "ready"
	case PhaseExited:
		return "exited"
	case PhaseStopped:
		return "stopped"
	}
	return fmt.Sprintf("phase(%d)", int(p))
}

// Sandbox is one pod sandbox.
type Sandbox struct {
	ID        string
	Name      string
	Config    *runtimeapi.PodSandboxConfig
	Handler   string
	CreatedAt time.Time

	// opMu serialises Stop and Remove of this sandbox.
	opMu sync.Mutex
	// createMu is held shared by each CreateContainer from its check that
	// the sandbox is ready to its container's store insert, and
	// exclusively by RemovePodSandbox: a pod is never removed with a
	// container half-made in it.
	createMu sync.RWMutex

	// updMu serialises update, so records are written in the order the
	// status changes; mu guards status for readers, who never wait for a
	// write.
	updMu  sync.Mutex
	mu     sync.Mutex
	status Status
}

// HostNetwork tells whether the pod uses the node's network namespace.
func (s *Sandbox) HostNetwork() bool {
	return s.Config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
}

// Status is the sandbox's changing state. A Status is a value: its slices
// and pointers are shared between copies and never modified in place.
type Status struct {
	Phase     Phase
	NetNSPath string // "" for a host-network pod
	IPs       []string
	CNIResult *gocni.Result
	Pid       uint32
	// Overhead and Resources are what UpdatePodSandboxResources last
	// recorded (nil before).
	Overhead, Resources *runtimeapi.LinuxContainerResources
}

// HoldForCreate holds the sandbox against removal while a container is
// made in it: a RemovePodSandbox waits until release is called, so its
// removal of the pod's containers sees the new one. It fails, holding
// nothing, unless the sandbox is ready, as it is not once removed.
func (s *Sandbox) HoldForCreate() (release func(), err error) {
	s.createMu.RLock()
	if st := s.Status(); st.Phase != PhaseReady {
		s.createMu.RUnlock()
		return nil, fmt.Errorf("sandbox %s is not ready: %w", s.ID, errdefs.ErrFailedPrecondition)
	}
	return s.createMu.RUnlock, nil
}

// State is the CRI's view of the phase: only a ready sandbox is ready.
func (st Status) State() runtimeapi.PodSandboxState {
	if st.Phase == PhaseReady {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

// Network is the network's progress (Network* constants), as recorded.
func (st Status) Network() string {
	switch {
	case st.NetNSPath == "":
		return NetworkNone
	case st.Phase == PhaseCreating:
		return NetworkStarted
	case st.Phase == PhaseStopped:
		return NetworkTornDown
	}
	return NetworkReady
}

// Status returns the sandbox's current state.
func (s *Sandbox) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.IPs = slices.Clone(st.IPs)
	return st
}

// recordWriter writes meta to the sandbox's containerd record.
type recordWriter func(ctx context.Context, sb *Sandbox, meta *Metadata) error

// update is the one way the status changes once the sandbox has a record:
// fn edits a copy, the copy is written to the record when the record
// would read differently, and only then does it become the status. A
// failed fn or write leaves the status as it was and is returned.
func (s *Sandbox) update(ctx context.Context, write recordWriter, fn func(*Status) error) error {
	s.updMu.Lock()
	defer s.updMu.Unlock()
	old := s.Status()
	next := old
	next.IPs = slices.Clone(old.IPs)
	if err := fn(&next); err != nil {
		return err
	}
	cfg, err := marshalConfig(s.Config)
	if err != nil {
		return err
	}
	oldMeta, err := s.record(cfg, old)
	if err != nil {
		return err
	}
	meta, err := s.record(cfg, next)
	if err != nil {
		return err
	}
	if changed, err := recordDiffers(oldMeta, meta); err != nil {
		return err
	} else if changed {
		if err := write(ctx, s, meta); err != nil {
			return fmt.Errorf("record sandbox %s %s: %w", s.ID, next.Phase, err)
		}
	}
	s.mu.Lock()
	s.status = next
	s.mu.Unlock()
	return nil
}

func recordDiffers(a, b *Metadata) (bool, error) {
	ja, err := json.Marshal(a)
	if err != nil {
		return false, err
	}
	jb, err := json.Marshal(b)
	if err != nil {
		return false, err
	}
	return !bytes.Equal(ja, jb), nil
}

// metadata is the record of the sandbox with status st.
func (s *Sandbox) metadata(st Status) (*Metadata, error) {
	cfg, err := marshalConfig(s.Config)
	if err != nil {
		return nil, err
	}
	return s.record(cfg, st)
}

// record is metadata with the config already encoded. Its status part is
// encoded deterministically (map keys in order), so that equal statuses
// read as equal records.
func (s *Sandbox) record(cfg []byte, st Status) (*Metadata, error) {
	var err error
	m := &Metadata{Version: 1, ID: s.ID, Name: s.Name, Config: cfg, Handler: s.Handler, CreatedAt: s.CreatedAt,
		NetNSPath: st.NetNSPath, Network: st.Network(), IPs: st.IPs,
		Stopped: st.Phase == PhaseStopped, Creating: st.Phase == PhaseCreating}
	if st.CNIResult != nil {
		if m.CNIResult, err = json.Marshal(st.CNIResult); err != nil {
			return nil, err
		}
	}
	det := proto.MarshalOptions{Deterministic: true}
	if m.Overhead, err = det.Marshal(st.Overhead); err != nil {
		return nil, err
	}
	if m.Resources, err = det.Marshal(st.Resources); err != nil {
		return nil, err
	}
	return m, nil
}

// statusOf is the status a record says, the reverse of metadata (but for
// Exited, recorded as Ready: the pause task's state tells them apart).
// Records of every earlier version read so.
func statusOf(meta *Metadata) (Status, error) {
	st := Status{NetNSPath: meta.NetNSPath, IPs: meta.IPs}
	switch {
	case !meta.Stopped && (meta.Creating || meta.Network == NetworkStarted):
		st.Phase = PhaseCreating
	case meta.Stopped || meta.Network == NetworkTornDown:
		// Torn down without Stopped: the network went, then the record
		// of the stop failed; the pause was killed first.
		st.Phase = PhaseStopped
	default:
		st.Phase = PhaseReady
	}
	var err error
	if st.Overhead, err = unmarshalResources(meta.Overhead); err != nil {
		return st, fmt.Errorf("recorded overhead: %w", err)
	}
	if st.Resources, err = unmarshalResources(meta.Resources); err != nil {
		return st, fmt.Errorf("recorded resources: %w", err)
	}
	if len(meta.CNIResult) > 0 {
		var r gocni.Result
		if err := json.Unmarshal(meta.CNIResult, &r); err == nil {
			st.CNIResult = &r
		}
	}
	return st, nil
}

// Name is the CRI's unique sandbox name: name_namespace_uid_attempt.
func Name(m *runtimeapi.PodSandboxMetadata) string {
	return strings.Join([]string{m.GetName(), m.GetNamespace(), m.GetUid(), fmt.Sprint(m.GetAttempt())}, "_")
}

// Store indexes sandboxes by ID and unique ID prefix.
type Store = store.Store[*Sandbox]

// NewStore returns an empty store.
func NewStore() *Store {
	return store.New("sandbox", func(s *Sandbox) string { return s.ID }, nil)
}
