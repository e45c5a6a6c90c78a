package server

import (
	"context"

	"github.com/containerd/containerd/v2/version"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	// kubeAPIVersion is the CRI version field, fixed by the kubelet's protocol.
	kubeAPIVersion    = "0.1.0"
	runtimeName       = "containerd"
	runtimeAPIVersion = "v1"
)

func (s *runtimeService) Version(ctx context.Context, _ *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{
		Version:           kubeAPIVersion,
		RuntimeName:       runtimeName,
		RuntimeVersion:    version.Version,
		RuntimeApiVersion: runtimeAPIVersion,
	}, nil
}
