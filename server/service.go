// Package server implements the CRI RuntimeService and ImageService. Each
// handler validates (through the validate package, before it is called),
// finds its object, calls the package that does the work, and returns
// errdefs errors that the instrumentation maps to gRPC codes.
package server

import (
	"sync"

	containerd "github.com/containerd/containerd/v2/client"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/cni"
	"github.com/nodecri/nodecri/containers"
	"github.com/nodecri/nodecri/events"
	"github.com/nodecri/nodecri/images"
	"github.com/nodecri/nodecri/runtimes"
	"github.com/nodecri/nodecri/sandbox"
	"github.com/nodecri/nodecri/stats"
	"github.com/nodecri/nodecri/streaming"
)

// Options are the service's dependencies, built by the plugin.
type Options struct {
	Client     *containerd.Client
	Runtimes   *runtimes.Set
	CNI        *cni.Manager
	FSInfo     *images.FSInfo
	Images     *images.Service
	Sandboxes  *sandbox.Manager
	Containers *containers.Manager
	Stats      *stats.Collector
	// Streaming serves what Exec, Attach and PortForward hand out URLs to.
	Streaming *streaming.Server
	// RootDir and StateDir are the plugin's own folders under containerd's.
	RootDir, StateDir string
	// ContainerdRootDir is containerd's root, for verbose status.
	ContainerdRootDir string
	// Namespace is the containerd namespace every handler runs in.
	Namespace string
	// SandboxImage is the pause image, shown in pod status and metrics.
	SandboxImage string
	// StatusConfig is the effective configuration, a JSON object that
	// verbose Status shows (statusConfig).
	StatusConfig any
}

// Service holds what both CRI services share.
type Service struct {
	Options

	mu       sync.Mutex
	podCIDRs []string // from UpdateRuntimeConfig

	// events carries GetContainerEvents; the managers feed it through
	// their Notifier, which the plugin connects to Notify (events.go).
	events *events.Broker
}

// New returns the CRI services over opts.
func New(opts Options) *Service {
	return &Service{Options: opts, events: events.NewBroker(events.SubscriberBuffer)}
}

type runtimeService struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	*Service
}

type imageService struct {
	runtimeapi.UnimplementedImageServiceServer
	*Service
}

// Register serves both CRI services on s, instrumented and validated.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	ir := instrumented{r, s.Namespace}
	runtimeapi.RegisterRuntimeServiceServer(ir, &runtimeService{Service: s})
	runtimeapi.RegisterImageServiceServer(ir, &imageService{Service: s})
}
