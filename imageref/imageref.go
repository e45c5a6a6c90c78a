// Package imageref parses image references and IDs as the CRI gives them:
// the one parser that request validation and the image service share.
package imageref

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// Normalize turns a user's image reference into the canonical form images
// are stored under: busybox → docker.io/library/busybox:latest. A reference
// with both tag and digest keeps only the digest, which is what is pulled.
func Normalize(ref string) (string, error) {
	if ref == "" {
		return "", fmt.Errorf("image reference is required: %w", errdefs.ErrInvalidArgument)
	}
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", fmt.Errorf("invalid image reference %q: %v: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	// The parser takes an uppercase first component ("UPPER/case") for a
	// registry host; a dotless, portless one that is not localhost is far
	// more likely a mistyped repository, which must be lowercase.
	if d := reference.Domain(named); d != "localhost" && !strings.ContainsAny(d, ".:") && d != strings.ToLower(d) {
		return "", fmt.Errorf("invalid image reference %q: repository name must be lowercase: %w", ref, errdefs.ErrInvalidArgument)
	}
	return named.String(), nil
}

// IsID tells whether s is an image ID: "sha256:<64 hex>".
func IsID(s string) bool {
	d, err := digest.Parse(s)
	return err == nil && d.Algorithm() == digest.SHA256
}

// Kind classifies a stored image name for the CRI's repo tags and digests.
// Names that are image IDs (kept so an untagged image is still referenced)
// are neither.
func Kind(name string) (tag, dgst bool) {
	if IsID(name) {
		return false, false
	}
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return false, false
	}
	if _, ok := named.(reference.Digested); ok {
		return false, true
	}
	if _, ok := named.(reference.Tagged); ok {
		return true, false
	}
	return false, false
}

// RepoDigest is name's repository at the given manifest digest; "" when
// name does not parse.
func RepoDigest(name string, d digest.Digest) string {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return ""
	}
	return reference.TrimNamed(named).String() + "@" + d.String()
}

// IsIDPrefix tells whether s could be an image ID or a unique prefix of
// one, with or without "sha256:".
func IsIDPrefix(s string) bool {
	s = strings.TrimPrefix(s, "sha256:")
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
