package server

import (
	"context"

	"github.com/containerd/log"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/validate"
)

// RuntimeConfig tells the kubelet which cgroup driver the default handler
// uses, so the two agree.
func (s *runtimeService) RuntimeConfig(ctx context.Context, _ *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	driver := runtimeapi.CgroupDriver_CGROUPFS
	if s.Runtimes.Default().SystemdCgroup() {
		driver = runtimeapi.CgroupDriver_SYSTEMD
	}
	return &runtimeapi.RuntimeConfigResponse{
		Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: driver},
	}, nil
}

// UpdateRuntimeConfig keeps the node's pod CIDR, which a conf_template
// turns into the pod network's configuration.
func (s *runtimeService) UpdateRuntimeConfig(ctx context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	cidrs := validate.PodCIDRs(req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr())
	if len(cidrs) == 0 {
		return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
	}
	s.mu.Lock()
	s.podCIDRs = cidrs
	s.mu.Unlock()
	if err := s.CNI.ApplyPodCIDRs(ctx, cidrs); err != nil {
		// The kubelet retries this call; the node simply stays NotReady.
		log.G(ctx).WithError(err).Error("applying pod CIDR to conf_template")
		return nil, err
	}
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}
