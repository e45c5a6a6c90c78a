package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/streaming"
)

// streaming is the server whose URLs Exec, Attach and PortForward hand out.
func (s *Service) streaming() (*streaming.Server, error) {
	if s.Streaming == nil {
		return nil, fmt.Errorf("the streaming server is not running: %w", errdefs.ErrUnavailable)
	}
	return s.Streaming, nil
}

// runningContainer resolves id (or a unique prefix) to a running
// container's full ID: the URL is only worth handing out for one.
func (s *Service) runningContainer(id string) (string, error) {
	c, err := s.Containers.Store().Get(id)
	if err != nil {
		return "", err
	}
	if st := c.Status(); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return "", fmt.Errorf("container %s is not running (%s): %w", c.ID, st.State, errdefs.ErrFailedPrecondition)
	}
	return c.ID, nil
}

func (s *runtimeService) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	st, err := s.streaming()
	if err != nil {
		return nil, err
	}
	id, err := s.runningContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	req = proto.CloneOf(req)
	req.ContainerId = id
	return st.GetExec(req)
}

func (s *runtimeService) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	st, err := s.streaming()
	if err != nil {
		return nil, err
	}
	id, err := s.runningContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	req = proto.CloneOf(req)
	req.ContainerId = id
	return st.GetAttach(req)
}

func (s *runtimeService) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	st, err := s.streaming()
	if err != nil {
		return nil, err
	}
	sb, err := s.Sandboxes.Store().Get(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if state := sb.Status().State(); state != runtimeapi.PodSandboxState_SANDBOX_READY {
		return nil, fmt.Errorf("sandbox %s is not ready (%s): %w", sb.ID, state, errdefs.ErrFailedPrecondition)
	}
	req = proto.CloneOf(req)
	req.PodSandboxId = sb.ID
	return st.GetPortForward(req)
}
