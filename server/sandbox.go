package server

import (
	"context"
	"encoding/json"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/sandbox"
)

func (s *runtimeService) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	id, err := s.Sandboxes.Run(ctx, req.GetConfig(), req.GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

func (s *runtimeService) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	if err := s.Sandboxes.Stop(ctx, req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

func (s *runtimeService) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	if err := s.Sandboxes.Remove(ctx, req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

func (s *runtimeService) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	sb, err := s.Sandboxes.Store().Get(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	st := sb.Status()
	resp := &runtimeapi.PodSandboxStatusResponse{Status: sandboxStatus(sb, st)}
	if req.GetVerbose() {
		// As for containers: no pid once the pause process is gone.
		pid := uint32(0)
		if st.State() == runtimeapi.PodSandboxState_SANDBOX_READY {
			pid = st.Pid
		}
		m := map[string]any{
			"pid":            pid,
			"netNamespace":   st.NetNSPath,
			"network":        st.Network(),
			"cniResult":      st.CNIResult,
			"runtimeHandler": sb.Handler,
			"config":         sb.Config,
			"image":          s.SandboxImage,
		}
		// The CRI's status has no field for them: where upstream puts them.
		if st.Overhead != nil {
			m["overhead"] = &runtimeapi.ContainerResources{Linux: st.Overhead}
		}
		if st.Resources != nil {
			m["resources"] = &runtimeapi.ContainerResources{Linux: st.Resources}
		}
		s.addRecordInfo(ctx, sb.ID, m)
		info, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("sandbox verbose info: %w", err)
		}
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

// UpdatePodSandboxResources records the pod's new overhead and resources
// (verbose PodSandboxStatus shows them); the kubelet has resized the pod's
// cgroup itself, and the CRI makes this call best effort.
func (s *runtimeService) UpdatePodSandboxResources(ctx context.Context, req *runtimeapi.UpdatePodSandboxResourcesRequest) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	if err := s.Sandboxes.UpdateResources(ctx, req.GetPodSandboxId(), req.GetOverhead(), req.GetResources()); err != nil {
		return nil, err
	}
	return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
}

func sandboxStatus(sb *sandbox.Sandbox, st sandbox.Status) *runtimeapi.PodSandboxStatus {
	ip, more := st.Primary()
	if st.Network() != sandbox.NetworkReady {
		// Torn down (stopped pod): the addresses went back to IPAM and
		// may already be another pod's.
		ip, more = "", nil
	}
	extra := make([]*runtimeapi.PodIP, 0, len(more))
	for _, a := range more {
		extra = append(extra, &runtimeapi.PodIP{Ip: a})
	}
	nsOpts := sb.Config.GetLinux().GetSecurityContext().GetNamespaceOptions()
	if nsOpts == nil {
		nsOpts = &runtimeapi.NamespaceOption{}
	}
	return &runtimeapi.PodSandboxStatus{
		Id:             sb.ID,
		Metadata:       sb.Config.GetMetadata(),
		State:          st.State(),
		CreatedAt:      sb.CreatedAt.UnixNano(),
		Network:        &runtimeapi.PodSandboxNetworkStatus{Ip: ip, AdditionalIps: extra},
		Linux:          &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{Options: nsOpts}},
		Labels:         sb.Config.GetLabels(),
		Annotations:    sb.Config.GetAnnotations(),
		RuntimeHandler: sb.Handler,
	}
}

func (s *runtimeService) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	items, err := s.listPodSandboxes(req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxResponse{Items: items}, nil
}

// listPodSandboxes answers ListPodSandbox and StreamPodSandboxes.
func (s *Service) listPodSandboxes(f *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error) {
	list, err := s.selectSandboxes(f.GetId(), f.GetState(), f.GetLabelSelector())
	if err != nil {
		return nil, err
	}
	items := make([]*runtimeapi.PodSandbox, 0, len(list))
	for _, sb := range list {
		st := sb.Status()
		items = append(items, &runtimeapi.PodSandbox{
			Id:             sb.ID,
			Metadata:       sb.Config.GetMetadata(),
			State:          st.State(),
			CreatedAt:      sb.CreatedAt.UnixNano(),
			Labels:         sb.Config.GetLabels(),
			Annotations:    sb.Config.GetAnnotations(),
			RuntimeHandler: sb.Handler,
		})
	}
	return items, nil
}

// selectSandboxes is the one sandbox filter, of ListPodSandbox,
// StreamPodSandboxes and the pod stats lists: ID by full ID or unique
// prefix (an unknown one selects nothing), the state if given, every
// selector label.
func (s *Service) selectSandboxes(id string, state *runtimeapi.PodSandboxStateValue, labels map[string]string) ([]*sandbox.Sandbox, error) {
	var list []*sandbox.Sandbox
	if id != "" {
		sb, err := s.Sandboxes.Store().Get(id)
		if err != nil {
			return nil, unknownSelectsNothing(err)
		}
		list = []*sandbox.Sandbox{sb}
	} else {
		list = s.Sandboxes.Store().List()
	}
	out := list[:0]
	for _, sb := range list {
		if state != nil && sb.Status().State() != state.GetState() {
			continue
		}
		if labelsMatch(sb.Config.GetLabels(), labels) {
			out = append(out, sb)
		}
	}
	return out, nil
}

// labelsMatch: every selector label is present with the same value.
func labelsMatch(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
