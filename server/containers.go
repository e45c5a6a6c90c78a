package server

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/containers"
)

func (s *runtimeService) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	id, err := s.Containers.Create(ctx, req.GetPodSandboxId(), req.GetConfig())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
}

func (s *runtimeService) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	if err := s.Containers.Start(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtimeapi.StartContainerResponse{}, nil
}

func (s *runtimeService) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	if err := s.Containers.Stop(ctx, req.GetContainerId(), time.Duration(req.GetTimeout())*time.Second); err != nil {
		return nil, err
	}
	return &runtimeapi.StopContainerResponse{}, nil
}

func (s *runtimeService) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	if err := s.Containers.Remove(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveContainerResponse{}, nil
}

func (s *runtimeService) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	c, err := s.Containers.Store().Get(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	st := c.Status()
	resp := &runtimeapi.ContainerStatusResponse{Status: s.containerStatus(c, st)}
	if req.GetVerbose() {
		// A pid only while it is the container's: once exited it may be
		// any process's, and operators nsenter with it.
		pid := uint32(0)
		if st.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			pid = st.Pid
		}
		m := map[string]any{
			"pid":       pid,
			"sandboxID": c.SandboxID,
			"logPath":   c.LogPath,
			"config":    c.Config,
		}
		s.addRecordInfo(ctx, c.ID, m)
		info, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("container verbose info: %w", err)
		}
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

func (s *Service) containerStatus(c *containers.Container, st containers.Status) *runtimeapi.ContainerStatus {
	out := &runtimeapi.ContainerStatus{
		Id:          c.ID,
		Metadata:    c.Config.GetMetadata(),
		State:       st.State,
		CreatedAt:   c.CreatedAt.UnixNano(),
		ExitCode:    st.ExitCode,
		Image:       imageSpec(c),
		ImageRef:    c.ImageID,
		ImageId:     c.ImageID,
		Reason:      st.Reason,
		Message:     st.Message,
		Labels:      c.Config.GetLabels(),
		Annotations: c.Config.GetAnnotations(),
		Mounts:      c.Config.GetMounts(),
		LogPath:     c.LogPath,
		User: &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{
			Uid: int64(c.User.UID), Gid: int64(c.User.GID), SupplementalGroups: gids(c.User.AdditionalGids)}},
		StopSignal: stopSignalEnum(c.StopSignal),
	}
	if img, err := s.Images.Resolve(c.ImageID); err == nil {
		if rd := img.RepoDigests(); len(rd) > 0 {
			out.ImageRef = rd[0]
		}
	}
	if !st.StartedAt.IsZero() {
		out.StartedAt = st.StartedAt.UnixNano()
	}
	if !st.FinishedAt.IsZero() {
		out.FinishedAt = st.FinishedAt.UnixNano()
	}
	// As applied: a memory limit brings its swap limit (EffectiveResources).
	if r := st.Resources; r != nil {
		out.Resources = &runtimeapi.ContainerResources{Linux: containers.EffectiveResources(r)}
	} else if r := c.Config.GetLinux().GetResources(); r != nil {
		out.Resources = &runtimeapi.ContainerResources{Linux: containers.EffectiveResources(r)}
	}
	return out
}

// imageSpec is the image as the container was created with it, keeping
// the name the user wrote: the kubelet creates containers from the image
// ID and passes that name in UserSpecifiedImage, which tools then read
// from ListContainers.
func imageSpec(c *containers.Container) *runtimeapi.ImageSpec {
	spec := &runtimeapi.ImageSpec{Image: c.ImageRef}
	if img := c.Config.GetImage(); img != nil {
		spec.UserSpecifiedImage = img.GetUserSpecifiedImage()
		spec.Annotations = img.GetAnnotations()
		spec.RuntimeHandler = img.GetRuntimeHandler()
	}
	return spec
}

// addRecordInfo adds to a verbose status what containerd's record of the
// container (or pause container) says, under the keys operators query with
// `crictl inspect[p] | jq`: runtimeSpec (cgroupsPath, mounts, namespace
// paths), runtimeType, runtimeOptions, snapshotter and snapshotKey. A
// record that cannot be read (removed meanwhile) only leaves them out.
func (s *Service) addRecordInfo(ctx context.Context, id string, info map[string]any) {
	if s.Client == nil {
		return
	}
	rec, err := s.Client.ContainerService().Get(ctx, id)
	if err != nil {
		log.G(ctx).WithError(err).WithField("id", id).Debug("verbose status without containerd's record")
		return
	}
	info["runtimeType"] = rec.Runtime.Name
	info["snapshotter"] = rec.Snapshotter
	info["snapshotKey"] = rec.SnapshotKey
	if rec.Runtime.Options != nil {
		if v, err := typeurl.UnmarshalAny(rec.Runtime.Options); err == nil {
			info["runtimeOptions"] = v
		}
	}
	if rec.Spec != nil {
		var spec specs.Spec
		if err := typeurl.UnmarshalTo(rec.Spec, &spec); err == nil {
			info["runtimeSpec"] = &spec
		} else {
			log.G(ctx).WithError(err).WithField("id", id).Debug("verbose status without the runtime spec")
		}
	}
}

func gids(in []uint32) []int64 {
	out := make([]int64, 0, len(in))
	for _, g := range in {
		out = append(out, int64(g))
	}
	return out
}

func stopSignalEnum(name string) runtimeapi.Signal {
	if v, ok := runtimeapi.Signal_value["SIGNAL_"+name]; ok {
		return runtimeapi.Signal(v)
	}
	return runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT
}

func (s *runtimeService) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	items, err := s.listContainers(req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListContainersResponse{Containers: items}, nil
}

// listContainers answers ListContainers and StreamContainers.
func (s *Service) listContainers(f *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	list, err := s.selectContainers(f.GetId(), f.GetPodSandboxId(), f.GetState(), f.GetLabelSelector())
	if err != nil {
		return nil, err
	}
	items := make([]*runtimeapi.Container, 0, len(list))
	for _, c := range list {
		st := c.Status()
		items = append(items, &runtimeapi.Container{
			Id:           c.ID,
			PodSandboxId: c.SandboxID,
			Metadata:     c.Config.GetMetadata(),
			Image:        imageSpec(c),
			ImageRef:     c.ImageID,
			ImageId:      c.ImageID,
			State:        st.State,
			CreatedAt:    c.CreatedAt.UnixNano(),
			Labels:       c.Config.GetLabels(),
			Annotations:  c.Config.GetAnnotations(),
		})
	}
	return items, nil
}

func (s *runtimeService) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	if err := s.Containers.Update(ctx, req.GetContainerId(), req.GetLinux()); err != nil {
		return nil, err
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}

func (s *runtimeService) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	if err := s.Containers.ReopenLog(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}

func (s *runtimeService) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	r, err := s.Containers.ExecSync(ctx, req.GetContainerId(), req.GetCmd(), time.Duration(req.GetTimeout())*time.Second)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ExecSyncResponse{Stdout: r.Stdout, Stderr: r.Stderr, ExitCode: r.ExitCode}, nil
}

// selectContainers is the one container filter, of ListContainers,
// StreamContainers and the container stats lists: ID and sandbox ID by
// full ID or unique prefix (an unknown one selects nothing), the state if
// given, every selector label.
func (s *Service) selectContainers(id, sandboxID string, state *runtimeapi.ContainerStateValue, labels map[string]string) ([]*containers.Container, error) {
	if sandboxID != "" {
		sb, err := s.Sandboxes.Store().Get(sandboxID)
		if err != nil {
			return nil, unknownSelectsNothing(err)
		}
		sandboxID = sb.ID
	}
	var list []*containers.Container
	if id != "" {
		c, err := s.Containers.Store().Get(id)
		if err != nil {
			return nil, unknownSelectsNothing(err)
		}
		list = []*containers.Container{c}
	} else {
		list = s.Containers.Store().List(sandboxID)
	}
	out := list[:0]
	for _, c := range list {
		if state != nil && c.Status().State != state.GetState() {
			continue
		}
		if sandboxID != "" && c.SandboxID != sandboxID {
			continue
		}
		if labelsMatch(c.Config.GetLabels(), labels) {
			out = append(out, c)
		}
	}
	return out, nil
}

// unknownSelectsNothing: a filter naming an unknown or malformed ID lists
// nothing, as the CRI asks, rather than failing.
func unknownSelectsNothing(err error) error {
	if errdefs.IsNotFound(err) || errdefs.IsInvalidArgument(err) {
		return nil
	}
	return err
}
