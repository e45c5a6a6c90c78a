package sandbox

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdateResources records the pod's new overhead and resources
// (UpdatePodSandboxResources), in memory and in the sandbox's record so a
// restart keeps them. The kubelet has already resized the pod's cgroup, so
// no cgroup is written. A nil argument leaves its value as it was.
func (m *Manager) UpdateResources(ctx context.Context, id string, overhead, resources *runtimeapi.LinuxContainerResources) error {
	sb, err := m.store.Get(id)
	if err != nil {
		return err
	}
	// Serialised with Stop and Remove, so that records are written in the
	// order the state changed.
	if !m.lockOp(sb) {
		return fmt.Errorf("sandbox %q: %w", id, errdefs.ErrNotFound)
	}
	defer sb.opMu.Unlock()
	return m.update(ctx, sb, func(st *Status) error {
		if overhead != nil {
			st.Overhead = proto.Clone(overhead).(*runtimeapi.LinuxContainerResources)
		}
		if resources != nil {
			st.Resources = proto.Clone(resources).(*runtimeapi.LinuxContainerResources)
		}
		return nil
	})
}

func unmarshalResources(b []byte) (*runtimeapi.LinuxContainerResources, error) {
	if len(b) == 0 {
		return nil, nil
	}
	r := &runtimeapi.LinuxContainerResources{}
	return r, proto.Unmarshal(b, r)
}
