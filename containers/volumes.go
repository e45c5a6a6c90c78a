package containers

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/image-spec/identity"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// imageVolumePrefix names the read-only views image volumes are mounted
// from, per container: "<container id>-imgvol-<n>".
const imageVolumePrefix = "-imgvol-"

func (m *Manager) containerDir(id string) string { return filepath.Join(m.RootDir, "containers", id) }

// mountImageVolumes mounts each image the request mounts (Mount.image) as
// a read-only view of its snapshot under the container's folder, and
// returns the mounts with those turned into read-only binds of it. Images
// must be present (the kubelet pulls them first).
func (m *Manager) mountImageVolumes(ctx context.Context, id, snapshotter string, mounts []*runtimeapi.Mount) ([]*runtimeapi.Mount, error) {
	out := make([]*runtimeapi.Mount, 0, len(mounts))
	sn := m.Client.SnapshotService(snapshotter)
	for i, mnt := range mounts {
		if mnt.GetImage() == nil {
			out = append(out, mnt)
			continue
		}
		ref := mnt.GetImage().GetImage()
		img, err := m.Images.Resolve(ref)
		if err != nil {
			return nil, fmt.Errorf("image volume %s: %w", ref, err)
		}
		var unpacked bool
		for n := range img.Refs {
			if ci, err := m.Client.GetImage(ctx, n); err == nil {
				if ok, _ := ci.IsUnpacked(ctx, snapshotter); !ok {
					if err := ci.Unpack(ctx, snapshotter); err != nil {
						return nil, fmt.Errorf("unpack image volume %s: %w", ref, err)
					}
				}
				unpacked = true
				break
			}
		}
		if !unpacked {
			return nil, fmt.Errorf("image volume %s has no usable record: %w", ref, errdefs.ErrNotFound)
		}
		key := fmt.Sprintf("%s%s%d", id, imageVolumePrefix, i)
		views, err := sn.View(ctx, key, identity.ChainID(img.Spec.RootFS.DiffIDs).String())
		if err != nil {
			return nil, fmt.Errorf("image volume %s: view: %w", ref, err)
		}
		dir := filepath.Join(m.containerDir(id), key)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		if err := mount.All(views, dir); err != nil {
			return nil, fmt.Errorf("image volume %s: mount: %w", ref, err)
		}
		bind := proto.Clone(mnt).(*runtimeapi.Mount)
		bind.Image, bind.HostPath, bind.Readonly = nil, dir, true
		if sub := mnt.GetImageSubPath(); sub != "" {
			p := filepath.Join(dir, filepath.Clean("/"+sub))
			if !strings.HasPrefix(p, dir+"/") {
				return nil, fmt.Errorf("image volume %s: sub path %q leaves the image: %w", ref, sub, errdefs.ErrInvalidArgument)
			}
			bind.HostPath = p
		}
		out = append(out, bind)
	}
	return out, nil
}

// releaseImageVolumes unmounts a container's image volumes and removes
// their views; what is already gone is fine.
func (m *Manager) releaseImageVolumes(ctx context.Context, id, snapshotter string) error {
	dirs, _ := filepath.Glob(filepath.Join(m.containerDir(id), id+imageVolumePrefix+"*"))
	for _, dir := range dirs {
		if err := mount.UnmountAll(dir, 0); err != nil {
			return fmt.Errorf("unmount image volume %s: %w", dir, err)
		}
		if err := m.Client.SnapshotService(snapshotter).Remove(ctx, filepath.Base(dir)); err != nil && !errdefs.IsNotFound(err) {
			log.G(ctx).WithError(err).WithField("view", filepath.Base(dir)).Warn("removing image volume view")
		}
	}
	return os.RemoveAll(m.containerDir(id))
}
