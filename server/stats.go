package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/containers"
	"github.com/nodecri/nodecri/sandbox"
	"github.com/nodecri/nodecri/stats"
)

// Stats come from the stats collector's latest samples (see stats/); these
// handlers pick the objects and shape the answer.

func (s *runtimeService) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	c, err := s.Containers.Store().Get(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	out, err := s.containerStats(ctx, []*containers.Container{c})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("container %s is not running: %w", c.ID, errdefs.ErrNotFound)
	}
	return &runtimeapi.ContainerStatsResponse{Stats: out[0]}, nil
}

func (s *runtimeService) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	out, err := s.listContainerStats(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListContainerStatsResponse{Stats: out}, nil
}

func (s *runtimeService) StreamContainerStats(req *runtimeapi.StreamContainerStatsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamContainerStatsResponse]) error {
	out, err := s.listContainerStats(stream.Context(), req.GetFilter())
	if err != nil {
		return err
	}
	return sendChunks(out, func(c []*runtimeapi.ContainerStats) *runtimeapi.StreamContainerStatsResponse {
		return &runtimeapi.StreamContainerStatsResponse{ContainerStats: c}
	}, stream.Send)
}

func (s *runtimeService) listContainerStats(ctx context.Context, f *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	list, err := s.selectContainers(f.GetId(), f.GetPodSandboxId(), running, f.GetLabelSelector())
	if err != nil {
		return nil, err
	}
	return s.containerStats(ctx, list)
}

// containerStats answers the stats of the containers that have a task
// sample; the others (exited meanwhile) are left out.
func (s *Service) containerStats(ctx context.Context, list []*containers.Container) ([]*runtimeapi.ContainerStats, error) {
	if len(list) == 0 {
		return nil, nil
	}
	ids := make([]string, len(list))
	for i, c := range list {
		ids[i] = c.ID
	}
	samples, err := s.Stats.Tasks(ctx, ids)
	if err != nil {
		return nil, err
	}
	layers := s.Stats.WritableLayers(ctx, ids)
	out := make([]*runtimeapi.ContainerStats, 0, len(list))
	for _, c := range list {
		if cs := oneContainerStats(c, samples, layers); cs != nil {
			out = append(out, cs)
		}
	}
	return out, nil
}

// oneContainerStats is c's stats; nil without a task sample.
func oneContainerStats(c *containers.Container, samples map[string]stats.TaskStats, layers map[string]stats.LayerUsage) *runtimeapi.ContainerStats {
	ts, ok := samples[c.ID]
	if !ok {
		return nil
	}
	cs := &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{
			Id:          c.ID,
			Metadata:    c.Config.GetMetadata(),
			Labels:      c.Config.GetLabels(),
			Annotations: c.Config.GetAnnotations(),
		},
		Cpu:    stats.CPU(ts),
		Memory: stats.MemoryUsage(ts),
	}
	if l, ok := layers[c.ID]; ok {
		cs.WritableLayer = stats.FS(l)
	}
	return cs
}

func (s *runtimeService) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	sb, err := s.Sandboxes.Store().Get(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if sb.Status().State() != runtimeapi.PodSandboxState_SANDBOX_READY {
		return nil, fmt.Errorf("pod sandbox %s is not ready: %w", sb.ID, errdefs.ErrNotFound)
	}
	out, err := s.podStats(ctx, []*sandbox.Sandbox{sb})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("pod sandbox %s has no running pause task: %w", sb.ID, errdefs.ErrNotFound)
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: out[0]}, nil
}

func (s *runtimeService) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	out, err := s.listPodSandboxStats(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: out}, nil
}

func (s *runtimeService) StreamPodSandboxStats(req *runtimeapi.StreamPodSandboxStatsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxStatsResponse]) error {
	out, err := s.listPodSandboxStats(stream.Context(), req.GetFilter())
	if err != nil {
		return err
	}
	return sendChunks(out, func(p []*runtimeapi.PodSandboxStats) *runtimeapi.StreamPodSandboxStatsResponse {
		return &runtimeapi.StreamPodSandboxStatsResponse{PodSandboxStats: p}
	}, stream.Send)
}

var (
	running = &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}
	ready   = &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}
)

func (s *Service) listPodSandboxStats(ctx context.Context, f *runtimeapi.PodSandboxStatsFilter) ([]*runtimeapi.PodSandboxStats, error) {
	sbs, err := s.selectSandboxes(f.GetId(), ready, f.GetLabelSelector())
	if err != nil {
		return nil, err
	}
	return s.podStats(ctx, sbs)
}

// podSample is what one pod's stats and metrics are made of.
type podSample struct {
	sb         *sandbox.Sandbox
	pod        stats.TaskStats // pause and containers summed
	containers []*containers.Container
	tasks      map[string]stats.TaskStats
	layers     map[string]stats.LayerUsage
	network    *stats.Network // nil for host-network pods
}

// podSamples gathers the samples of the pods, in one collector call for
// all their tasks. A pod whose pause task has no sample is left out.
func (s *Service) podSamples(ctx context.Context, sbs []*sandbox.Sandbox) ([]podSample, error) {
	if len(sbs) == 0 {
		return nil, nil
	}
	var ids []string
	ctrs := make([][]*containers.Container, len(sbs))
	for i, sb := range sbs {
		ids = append(ids, sb.ID)
		for _, c := range s.Containers.Store().List(sb.ID) {
			if c.Status().State == runtimeapi.ContainerState_CONTAINER_RUNNING {
				ctrs[i] = append(ctrs[i], c)
				ids = append(ids, c.ID)
			}
		}
	}
	tasks, err := s.Stats.Tasks(ctx, ids)
	if err != nil {
		return nil, err
	}
	layers := s.Stats.WritableLayers(ctx, ids)
	var out []podSample
	for i, sb := range sbs {
		pause, ok := tasks[sb.ID]
		if !ok {
			continue
		}
		all := []stats.TaskStats{pause}
		for _, c := range ctrs[i] {
			if ts, ok := tasks[c.ID]; ok {
				all = append(all, ts)
			}
		}
		p := podSample{sb: sb, pod: stats.Sum(all), containers: ctrs[i], tasks: tasks, layers: layers}
		if st := sb.Status(); !sb.HostNetwork() && st.Pid != 0 {
			n, err := stats.ReadNetwork(st.Pid)
			if err != nil {
				// The pause process exited since its sample.
				log.G(ctx).WithError(err).WithField("sandbox", sb.ID).Debug("pod network counters")
			} else {
				p.network = &n
			}
		}
		out = append(out, p)
	}
	return out, nil
}

func (s *Service) podStats(ctx context.Context, sbs []*sandbox.Sandbox) ([]*runtimeapi.PodSandboxStats, error) {
	samples, err := s.podSamples(ctx, sbs)
	if err != nil {
		return nil, err
	}
	out := make([]*runtimeapi.PodSandboxStats, 0, len(samples))
	for _, p := range samples {
		linux := &runtimeapi.LinuxPodSandboxStats{
			Cpu:     stats.CPU(p.pod),
			Memory:  stats.MemoryUsage(p.pod),
			Process: stats.Process(p.pod),
		}
		if p.network != nil {
			linux.Network = stats.NetworkUsage(*p.network)
		}
		for _, c := range p.containers {
			if cs := oneContainerStats(c, p.tasks, p.layers); cs != nil {
				linux.Containers = append(linux.Containers, cs)
			}
		}
		out = append(out, &runtimeapi.PodSandboxStats{
			Attributes: &runtimeapi.PodSandboxAttributes{Id: p.sb.ID, Metadata: p.sb.Config.GetMetadata(), Labels: p.sb.Config.GetLabels(), Annotations: p.sb.Config.GetAnnotations()},
			Linux:      linux,
		})
	}
	return out, nil
}

func (s *runtimeService) ListMetricDescriptors(context.Context, *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	return &runtimeapi.ListMetricDescriptorsResponse{Descriptors: stats.Descriptors()}, nil
}

func (s *runtimeService) ListPodSandboxMetrics(ctx context.Context, _ *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	out, err := s.podMetrics(ctx)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxMetricsResponse{PodMetrics: out}, nil
}

func (s *runtimeService) StreamPodSandboxMetrics(req *runtimeapi.StreamPodSandboxMetricsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxMetricsResponse]) error {
	out, err := s.podMetrics(stream.Context())
	if err != nil {
		return err
	}
	return sendChunks(out, func(p []*runtimeapi.PodSandboxMetrics) *runtimeapi.StreamPodSandboxMetricsResponse {
		return &runtimeapi.StreamPodSandboxMetricsResponse{PodSandboxMetrics: p}
	}, stream.Send)
}

func (s *Service) podMetrics(ctx context.Context) ([]*runtimeapi.PodSandboxMetrics, error) {
	sbs, err := s.selectSandboxes("", ready, nil)
	if err != nil {
		return nil, err
	}
	samples, err := s.podSamples(ctx, sbs)
	if err != nil {
		return nil, err
	}
	out := make([]*runtimeapi.PodSandboxMetrics, 0, len(samples))
	for _, p := range samples {
		pm := &runtimeapi.PodSandboxMetrics{PodSandboxId: p.sb.ID}
		if p.network != nil {
			pm.Metrics = stats.PodMetrics(stats.Identity{ID: p.sb.ID, Name: p.sb.Name, Image: s.SandboxImage}, *p.network)
		}
		for _, c := range p.containers {
			ts, ok := p.tasks[c.ID]
			if !ok {
				continue
			}
			var layer *stats.LayerUsage
			if l, ok := p.layers[c.ID]; ok {
				layer = &l
			}
			pm.ContainerMetrics = append(pm.ContainerMetrics, stats.ContainerMetrics(stats.Identity{ID: c.ID, Name: c.Name, Image: c.ImageRef}, ts, layer))
		}
		out = append(out, pm)
	}
	return out, nil
}
