// Package sandbox runs pod sandboxes: a network namespace wired by CNI and
// a pause container holding the pod's namespaces and cgroup.
package sandbox

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

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

// Sandbox is one pod sandbox.
type Sandbox struct {
	ID        string
	Name      string
	Config    *runtimeapi.PodSandboxConfig
	Handler   string
	CreatedAt time.Time

	// opMu serialises Stop and Remove of this sandbox.
	opMu sync.Mutex

	mu        sync.Mutex
	state     runtimeapi.PodSandboxState
	netnsPath string
	network   string
	ips       []string
	cniResult *gocni.Result
	pid       uint32
	stopped   bool // Stop completed: pause gone, network torn down
	// overhead and resources: the last UpdatePodSandboxResources.
	overhead, resources *runtimeapi.LinuxContainerResources
	creating            bool // RunPodSandbox not finished
}

// HostNetwork tells whether the pod uses the node's network namespace.
func (s *Sandbox) HostNetwork() bool {
	return s.Config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
}

// Status is a consistent copy of the sandbox's changing state.
type Status struct {
	State     runtimeapi.PodSandboxState
	NetNSPath string
	Network   string
	IPs       []string
	CNIResult *gocni.Result
	Pid       uint32
	// Overhead and Resources are what UpdatePodSandboxResources last
	// recorded (nil before); shared, not to be modified.
	Overhead, Resources *runtimeapi.LinuxContainerResources
}

// Status returns the sandbox's current state.
func (s *Sandbox) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Status{State: s.state, NetNSPath: s.netnsPath, Network: s.network, IPs: append([]string(nil), s.ips...), CNIResult: s.cniResult, Pid: s.pid,
		Overhead: s.overhead, Resources: s.resources}
}

func (s *Sandbox) metadata() (*Metadata, error) {
	cfg, err := marshalConfig(s.Config)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := &Metadata{Version: 1, ID: s.ID, Name: s.Name, Config: cfg, Handler: s.Handler, CreatedAt: s.CreatedAt,
		NetNSPath: s.netnsPath, Network: s.network, IPs: s.ips, Stopped: s.stopped, Creating: s.creating}
	if s.cniResult != nil {
		if m.CNIResult, err = json.Marshal(s.cniResult); err != nil {
			return nil, err
		}
	}
	if m.Overhead, err = proto.Marshal(s.overhead); err != nil {
		return nil, err
	}
	if m.Resources, err = proto.Marshal(s.resources); err != nil {
		return nil, err
	}
	return m, nil
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
