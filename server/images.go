package server

import (
	"context"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/images"
)

func (s *imageService) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	h, err := s.Runtimes.Get(req.GetImage().GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	var creds *images.Credentials
	if a := req.GetAuth(); a != nil {
		creds = &images.Credentials{
			Username: a.Username, Password: a.Password, Auth: a.Auth,
			IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken, ServerAddress: a.ServerAddress,
		}
		if err := creds.Validate(); err != nil {
			return nil, err
		}
	}
	id, err := s.Images.Pull(ctx, req.GetImage().GetImage(), creds, h.Snapshotter)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PullImageResponse{ImageRef: id}, nil
}

func (s *imageService) ListImages(ctx context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	items, err := s.listImages(req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListImagesResponse{Images: items}, nil
}

// listImages answers ListImages and StreamImages.
func (s *Service) listImages(f *runtimeapi.ImageFilter) ([]*runtimeapi.Image, error) {
	var list []images.Image
	if ref := f.GetImage().GetImage(); ref != "" {
		img, err := s.Images.Resolve(ref)
		if err != nil && !errdefs.IsNotFound(err) {
			return nil, err
		}
		if err == nil {
			list = append(list, img)
		}
	} else {
		list = s.Images.List()
	}
	items := make([]*runtimeapi.Image, 0, len(list))
	for i := range list {
		items = append(items, s.toCRIImage(&list[i]))
	}
	return items, nil
}

// ImageStatus answers an empty response for an unknown image, as the CRI
// requires: the kubelet then pulls.
func (s *imageService) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	img, err := s.Images.Resolve(req.GetImage().GetImage())
	if errdefs.IsNotFound(err) {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ImageStatusResponse{Image: s.toCRIImage(&img)}
	if req.GetVerbose() {
		info, err := images.ConfigJSON(&img)
		if err != nil {
			return nil, err
		}
		resp.Info = map[string]string{"info": info}
	}
	return resp, nil
}

// RemoveImage removes the image and every tag of it; an unknown image is
// success.
func (s *imageService) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	if err := s.Images.Remove(ctx, req.GetImage().GetImage()); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}

func (s *Service) toCRIImage(img *images.Image) *runtimeapi.Image {
	out := &runtimeapi.Image{
		Id:          img.ID,
		RepoTags:    img.RepoTags(),
		RepoDigests: img.RepoDigests(),
		Size:        uint64(img.Size),
		Spec:        &runtimeapi.ImageSpec{Image: img.ID},
		Pinned:      s.Images.Pinned(img),
	}
	// The image's user decides the kubelet's runAsNonRoot check: a numeric
	// user is a UID, anything else a name resolved in the container.
	user, _, _ := strings.Cut(img.Spec.Config.User, ":")
	if uid, err := strconv.ParseInt(user, 10, 64); err == nil {
		out.Uid = &runtimeapi.Int64Value{Value: uid}
	} else {
		out.Username = user
	}
	return out
}
