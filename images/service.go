package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	dockerconfig "github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/platforms"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/singleflight"

	"github.com/nodecri/nodecri/imageref"
)

// managedLabel marks image records the CRI created, as upstream does, so
// node tooling can tell them apart.
const managedLabel = "io.cri-containerd.image"

// Options configure the image service.
type Options struct {
	// ConfigPath is registry.config_path: folders of hosts.toml files.
	ConfigPath             string
	MaxConcurrentDownloads int
	ProgressTimeout        time.Duration // 0: none
	// Pinned are references the kubelet's GC must keep (the sandbox image
	// and pinned_images).
	Pinned []string
}

// Service pulls, indexes and removes the images in the CRI's namespace.
type Service struct {
	client *containerd.Client
	opts   Options
	store  *Store
	fsinfo *FSInfo
	pinned map[string]bool // normalised references
	pulls  singleflight.Group
}

// NewService returns the image service; Start loads what containerd has.
func NewService(client *containerd.Client, fsinfo *FSInfo, opts Options) (*Service, error) {
	s := &Service{client: client, opts: opts, store: NewStore(), fsinfo: fsinfo, pinned: map[string]bool{}}
	for _, p := range opts.Pinned {
		n, err := imageref.Normalize(p)
		if err != nil {
			return nil, fmt.Errorf("pinned image %q: %w", p, err)
		}
		s.pinned[n] = true
	}
	return s, nil
}

// Start indexes every image in the namespace, including those loaded with
// `ctr -n k8s.io images import`, and keeps the index current from
// containerd's image events until ctx ends. It subscribes before listing so
// that nothing created in between is missed.
func (s *Service) Start(ctx context.Context) error {
	evs, errs := s.client.Subscribe(ctx, `topic~="/images/"`)
	list, err := s.client.ImageService().List(ctx)
	if err != nil {
		return fmt.Errorf("list images: %w", err)
	}
	for _, img := range list {
		s.index(ctx, img)
	}
	log.G(ctx).WithField("images", len(s.store.List())).Info("image index loaded")
	go s.follow(ctx, evs, errs)
	return nil
}

func (s *Service) follow(ctx context.Context, evs <-chan *events.Envelope, errs <-chan error) {
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-errs:
			if ctx.Err() != nil {
				return
			}
			log.G(ctx).WithError(err).Error("image event subscription ended; restarting it")
			time.Sleep(time.Second)
			if err := s.Start(ctx); err != nil {
				log.G(ctx).WithError(err).Error("reloading image index")
			}
			return
		case e := <-evs:
			if ns, _ := namespaces.Namespace(ctx); e.Namespace != ns {
				continue
			}
			ev, err := typeurl.UnmarshalAny(e.Event)
			if err != nil {
				log.G(ctx).WithError(err).Warn("undecodable image event")
				continue
			}
			switch ev := ev.(type) {
			case *eventstypes.ImageCreate:
				s.indexName(ctx, ev.Name)
			case *eventstypes.ImageUpdate:
				s.indexName(ctx, ev.Name)
			case *eventstypes.ImageDelete:
				s.store.DeleteRef(ev.Name)
			}
		}
	}
}

func (s *Service) indexName(ctx context.Context, name string) {
	img, err := s.client.ImageService().Get(ctx, name)
	if err != nil {
		if errdefs.IsNotFound(err) {
			s.store.DeleteRef(name)
			return
		}
		log.G(ctx).WithError(err).WithField("image", name).Warn("reading image record")
		return
	}
	s.index(ctx, img)
}

// index reads an image record's config for this platform and files it
// under its name. Records whose content is incomplete are skipped.
func (s *Service) index(ctx context.Context, rec images.Image) {
	img, err := s.inspect(ctx, rec)
	if err != nil {
		log.G(ctx).WithError(err).WithField("image", rec.Name).Debug("image not indexed")
		return
	}
	s.store.Put(rec.Name, rec.Target.Digest, img)
}

func (s *Service) inspect(ctx context.Context, rec images.Image) (Image, error) {
	cs := s.client.ContentStore()
	platform := platforms.Default()
	manifest, err := images.Manifest(ctx, cs, rec.Target, platform)
	if err != nil {
		return Image{}, err
	}
	b, err := content.ReadBlob(ctx, cs, manifest.Config)
	if err != nil {
		return Image{}, err
	}
	var spec ocispec.Image
	if err := json.Unmarshal(b, &spec); err != nil {
		return Image{}, fmt.Errorf("image config: %w", err)
	}
	size, err := rec.Size(ctx, cs, platform)
	if err != nil {
		return Image{}, err
	}
	return Image{
		ID:      manifest.Config.Digest.String(),
		Size:    size,
		ChainID: identity.ChainID(spec.RootFS.DiffIDs),
		Spec:    spec,
	}, nil
}

// Resolve finds an image by ID, reference or unique ID prefix.
func (s *Service) Resolve(ref string) (Image, error) { return s.store.Resolve(ref) }

// List returns every image.
func (s *Service) List() []Image { return s.store.List() }

// Pinned tells whether the kubelet's GC must keep img.
func (s *Service) Pinned(img *Image) bool {
	for name := range img.Refs {
		if s.pinned[name] {
			return true
		}
	}
	return false
}

// Remove deletes every name of the image ref resolves to, so the image and
// all its tags, across repositories, are gone. An unknown image is success.
func (s *Service) Remove(ctx context.Context, ref string) error {
	img, err := s.store.Resolve(ref)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	is := s.client.ImageService()
	names := make([]string, 0, len(img.Refs))
	for name := range img.Refs {
		names = append(names, name)
	}
	for i, name := range names {
		var opts []images.DeleteOpt
		if i == len(names)-1 {
			// Wait for the garbage collector once, after the last name,
			// so ImageFsInfo and the caller see the space freed.
			opts = append(opts, images.SynchronousDelete())
		}
		if err := is.Delete(ctx, name, opts...); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete image %s: %w", name, err)
		}
		s.store.DeleteRef(name)
	}
	s.fsinfo.Refresh()
	return nil
}

// Pull fetches ref and unpacks it into snapshotter, returning the image ID.
// Concurrent pulls of one reference, for one snapshotter and with the same
// credentials, share one fetch. The fetch runs detached from any one
// caller, so a kubelet that gives up does not waste what others wait for;
// image_pull_progress_timeout bounds a stalled registry.
func (s *Service) Pull(ctx context.Context, ref string, creds *Credentials, snapshotter string) (string, error) {
	name, err := imageref.Normalize(ref)
	if err != nil {
		return "", err
	}
	key := name + "\x00" + snapshotter + "\x00" + creds.key()
	ch := s.pulls.DoChan(key, func() (any, error) {
		return s.pull(context.WithoutCancel(ctx), name, creds, snapshotter)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (s *Service) pull(ctx context.Context, name string, creds *Credentials, snapshotter string) (_ string, retErr error) {
	start := time.Now()
	pullsInFlight.Inc(1)
	defer func() {
		pullsInFlight.Dec(1)
		result := "success"
		if retErr != nil {
			result = "failure"
		}
		pullsTotal.WithValues(result).Inc()
		pullDuration.WithValues(result).UpdateSince(start)
	}()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	prog := newProgress(s.opts.ProgressTimeout, cancel, func(n int) { pullBytes.Inc(float64(n)) })
	defer prog.stop()

	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: dockerconfig.ConfigureHosts(ctx, dockerconfig.HostOptions{
			HostDir:     s.hostDir,
			Credentials: creds.forHost,
			UpdateClient: func(c *http.Client) error {
				base := c.Transport
				if base == nil {
					base = http.DefaultTransport
				}
				c.Transport = &transport{base: base, p: prog, token: creds.registryToken}
				return nil
			},
		}),
	})
	labels := map[string]string{managedLabel: "managed"}
	img, err := s.client.Pull(ctx, name,
		containerd.WithResolver(resolver),
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(snapshotter),
		containerd.WithMaxConcurrentDownloads(s.opts.MaxConcurrentDownloads),
		containerd.WithPullLabels(labels),
	)
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, errNoProgress) {
			return "", fmt.Errorf("pull %s cancelled: %v: %w", name, cause, errdefs.ErrAborted)
		}
		if errors.Is(err, docker.ErrInvalidAuthorization) {
			return "", fmt.Errorf("pull %s: the registry answered 401 Unauthorized (missing or wrong credentials): %w", name, err)
		}
		return "", fmt.Errorf("pull %s: %w", name, err)
	}

	rec := img.Metadata()
	info, err := s.inspect(ctx, rec)
	if err != nil {
		return "", fmt.Errorf("read pulled image %s: %w", name, err)
	}
	// Also name the image by repo digest and by ID, as upstream does: the
	// digest name keeps a pull-by-tag reachable by digest, the ID name keeps
	// the image (untagged) when its tag moves to a newer one.
	names := []string{name, info.ID}
	if tag, _ := imageref.Kind(name); tag {
		names = append(names, imageref.RepoDigest(name, rec.Target.Digest))
	}
	for _, n := range names[1:] {
		if err := s.ensureRecord(ctx, n, rec.Target, labels); err != nil {
			return "", err
		}
	}
	for _, n := range names {
		s.store.Put(n, rec.Target.Digest, info)
	}
	s.fsinfo.Refresh()
	return info.ID, nil
}

func (s *Service) ensureRecord(ctx context.Context, name string, target ocispec.Descriptor, labels map[string]string) error {
	is := s.client.ImageService()
	rec := images.Image{Name: name, Target: target, Labels: labels}
	if _, err := is.Create(ctx, rec); err != nil {
		if !errdefs.IsAlreadyExists(err) {
			return fmt.Errorf("create image record %s: %w", name, err)
		}
		if _, err := is.Update(ctx, rec, "target", "labels."+managedLabel); err != nil {
			return fmt.Errorf("update image record %s: %w", name, err)
		}
	}
	return nil
}

// hostDir finds host's hosts.toml folder in the first config_path root
// that has one.
func (s *Service) hostDir(host string) (string, error) {
	if s.opts.ConfigPath == "" {
		return "", errdefs.ErrNotFound
	}
	for _, root := range filepath.SplitList(s.opts.ConfigPath) {
		dir, err := dockerconfig.HostDirFromRoot(root)(host)
		if err == nil || !errdefs.IsNotFound(err) {
			return dir, err
		}
	}
	return "", errdefs.ErrNotFound
}

// ConfigJSON is the image's config for verbose status.
func ConfigJSON(img *Image) (string, error) {
	b, err := json.Marshal(struct {
		ChainID   digest.Digest `json:"chainID"`
		ImageSpec ocispec.Image `json:"imageSpec"`
	}{img.ChainID, img.Spec})
	return string(b), err
}
