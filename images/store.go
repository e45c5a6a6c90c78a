package images

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nodecri/nodecri/imageref"
)

// Image is one image as the CRI sees it: identified by its config digest,
// known under every containerd image name that points at it.
type Image struct {
	ID string // sha256 of the config
	// Refs maps each containerd image name to the manifest (or index) it
	// points at.
	Refs    map[string]digest.Digest
	Size    int64
	ChainID digest.Digest
	Spec    ocispec.Image
}

// RepoTags are the image's tagged names, sorted.
func (i *Image) RepoTags() []string {
	var out []string
	for name := range i.Refs {
		if tag, _ := imageref.Kind(name); tag {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// RepoDigests are repo@digest for every repository the image is known in,
// whether it was pulled by tag or by digest.
func (i *Image) RepoDigests() []string {
	set := map[string]struct{}{}
	for name, target := range i.Refs {
		tag, dg := imageref.Kind(name)
		switch {
		case dg:
			set[name] = struct{}{}
		case tag:
			if rd := imageref.RepoDigest(name, target); rd != "" {
				set[rd] = struct{}{}
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

func (i *Image) clone() Image {
	c := *i
	c.Refs = maps.Clone(i.Refs)
	return c
}

// Store is the in-memory index of images: by ID, and by every name.
type Store struct {
	mu    sync.RWMutex
	byID  map[string]*Image
	byRef map[string]string // name → ID
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{byID: map[string]*Image{}, byRef: map[string]string{}}
}

// Put records that name points at img (whose Refs are ignored): a name moved
// to another image leaves the old one, which is dropped once nameless.
func (s *Store) Put(name string, target digest.Digest, img Image) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteRefLocked(name)
	cur, ok := s.byID[img.ID]
	if !ok {
		c := img
		c.Refs = map[string]digest.Digest{}
		cur = &c
		s.byID[img.ID] = cur
	}
	cur.Refs[name] = target
	s.byRef[name] = img.ID
}

// DeleteRef forgets one name.
func (s *Store) DeleteRef(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteRefLocked(name)
}

func (s *Store) deleteRefLocked(name string) {
	id, ok := s.byRef[name]
	if !ok {
		return
	}
	delete(s.byRef, name)
	if img := s.byID[id]; img != nil {
		delete(img.Refs, name)
		if len(img.Refs) == 0 {
			delete(s.byID, id)
		}
	}
}

// Get returns the image with exactly this ID.
func (s *Store) Get(id string) (Image, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	img, ok := s.byID[id]
	if !ok {
		return Image{}, false
	}
	return img.clone(), true
}

// Resolve finds an image by ID ("sha256:…" or bare hex), by any reference
// (normalised: busybox is docker.io/library/busybox:latest), or by a unique
// ID prefix, in that order, as the CRI allows.
func (s *Store) Resolve(ref string) (Image, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if img, ok := s.byID[ref]; ok {
		return img.clone(), nil
	}
	if img, ok := s.byID["sha256:"+ref]; ok {
		return img.clone(), nil
	}
	if name, err := imageref.Normalize(ref); err == nil {
		if id, ok := s.byRef[name]; ok {
			return s.byID[id].clone(), nil
		}
	}
	if imageref.IsIDPrefix(ref) {
		prefix := "sha256:" + strings.TrimPrefix(ref, "sha256:")
		var found *Image
		for id, img := range s.byID {
			if strings.HasPrefix(id, prefix) {
				if found != nil {
					return Image{}, fmt.Errorf("image ID prefix %q is ambiguous: %w", ref, errdefs.ErrInvalidArgument)
				}
				found = img
			}
		}
		if found != nil {
			return found.clone(), nil
		}
	}
	return Image{}, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
}

// List returns every image, sorted by ID.
func (s *Store) List() []Image {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Image, 0, len(s.byID))
	for _, img := range s.byID {
		out = append(out, img.clone())
	}
	slices.SortFunc(out, func(a, b Image) int { return strings.Compare(a.ID, b.ID) })
	return out
}
