// Package runtimes turns the configured runtime handlers into runtime
// choices: the shim, its options, the snapshotter and what the OCI runtime
// behind it really supports. It is the one place that does so.
package runtimes

import (
	"context"
	"fmt"
	"sort"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
)

// Handler is one runtime handler, as a RuntimeClass names it.
type Handler struct {
	Name                 string
	Type                 string // shim, e.g. io.containerd.runc.v2
	Path                 string // shim binary, when not found by Type
	Snapshotter          string
	PodAnnotations       []string
	ContainerAnnotations []string
	Options              proto.Message // what the shim is given; nil for none
	Features             Features
}

// WithRuntime runs a container's tasks with the handler's shim (its path
// when configured, else its type) and options.
func (h *Handler) WithRuntime() containerd.NewContainerOpts {
	shim := h.Type
	if h.Path != "" {
		shim = h.Path
	}
	return containerd.WithRuntime(shim, h.Options)
}

// Features are what the kubelet admits pods by; each is true only when the
// OCI runtime and the kernel both support it.
type Features struct {
	RecursiveReadOnlyMounts bool `json:"recursiveReadOnlyMounts"`
	UserNamespaces          bool `json:"userNamespaces"`
	// SpecVersion is the newest OCI runtime-spec version the runtime takes
	// ("" when unknown); specs are written at most at that version, or an
	// older runtime (Debian's crun 1.8: 1.0.0) refuses them.
	SpecVersion string `json:"specVersion,omitempty"`
}

// SystemdCgroup says whether the handler's shim uses the systemd cgroup driver.
func (h *Handler) SystemdCgroup() bool {
	if o, ok := h.Options.(*runcoptions.Options); ok {
		return o.SystemdCgroup
	}
	return false
}

// binary is the OCI runtime the shim runs, when we can know it: only the
// runc shim's options (which it, and only it, is always given) name one.
func (h *Handler) binary() string {
	o, ok := h.Options.(*runcoptions.Options)
	if !ok {
		return ""
	}
	if o.BinaryName != "" {
		return o.BinaryName
	}
	return "runc"
}

// Set is every configured handler.
type Set struct {
	byName map[string]*Handler
	def    string
}

// Prober reports an OCI runtime binary's features.
type Prober func(ctx context.Context, binary string) Features

// Config is one configured handler, its shim options already decoded.
type Config struct {
	Type                 string
	Path                 string
	Snapshotter          string // "" for Options.Snapshotter
	PodAnnotations       []string
	ContainerAnnotations []string
	Options              proto.Message
}

// Options are the configured handlers, from the plugin's configuration.
type Options struct {
	Handlers map[string]Config
	// Default names the handler used when a request names none.
	Default string
	// Snapshotter is the snapshotter of a handler that names none.
	Snapshotter string
}

// New builds the handlers, probing each runtime's features concurrently.
func New(ctx context.Context, opts Options, probe Prober) (*Set, error) {
	s := &Set{byName: map[string]*Handler{}, def: opts.Default}
	type result struct {
		h *Handler
		f Features
	}
	results := make(chan result, len(opts.Handlers))
	for name, r := range opts.Handlers {
		h := &Handler{
			Name:                 name,
			Type:                 r.Type,
			Path:                 r.Path,
			Snapshotter:          r.Snapshotter,
			PodAnnotations:       r.PodAnnotations,
			ContainerAnnotations: r.ContainerAnnotations,
			Options:              r.Options,
		}
		if h.Snapshotter == "" {
			h.Snapshotter = opts.Snapshotter
		}
		s.byName[name] = h
		go func() {
			var f Features
			if bin := h.binary(); bin != "" && probe != nil {
				f = probe(ctx, bin)
			}
			results <- result{h, f}
		}()
	}
	for range opts.Handlers {
		r := <-results
		r.h.Features = r.f
	}
	if _, ok := s.byName[s.def]; !ok {
		return nil, fmt.Errorf("default runtime %q is not configured", s.def)
	}
	return s, nil
}

// Get returns the handler a request names; "" is the default handler.
func (s *Set) Get(name string) (*Handler, error) {
	if name == "" {
		name = s.def
	}
	h, ok := s.byName[name]
	if !ok {
		return nil, fmt.Errorf("no runtime handler %q is configured: %w", name, errdefs.ErrInvalidArgument)
	}
	return h, nil
}

// Default is the handler used when a request names none.
func (s *Set) Default() *Handler { return s.byName[s.def] }

// All returns every handler, sorted by name.
func (s *Set) All() []*Handler {
	out := make([]*Handler, 0, len(s.byName))
	for _, h := range s.byName {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
