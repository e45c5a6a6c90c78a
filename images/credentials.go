package images

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"

	"github.com/containerd/errdefs"
)

// Credentials are what the kubelet sends with a pull (the CRI AuthConfig).
type Credentials struct {
	Username, Password string
	// Auth is base64("user:password"), the docker config form.
	Auth string
	// IdentityToken is an OAuth2 refresh token for the registry.
	IdentityToken string
	// RegistryToken is a bearer token sent to the registry as is.
	RegistryToken string
	// ServerAddress, when set, limits the credentials to that registry.
	ServerAddress string
}

// Validate decodes Auth into Username and Password.
func (c *Credentials) Validate() error {
	if c == nil || c.Auth == "" {
		return nil
	}
	b, err := base64.StdEncoding.DecodeString(c.Auth)
	if err != nil {
		return fmt.Errorf("auth is not base64: %w", errdefs.ErrInvalidArgument)
	}
	user, pass, ok := strings.Cut(string(b), ":")
	if !ok {
		return fmt.Errorf("auth is not base64(user:password): %w", errdefs.ErrInvalidArgument)
	}
	c.Username, c.Password = user, pass
	return nil
}

// key tells pulls with different credentials apart without keeping the
// secrets themselves in a map key.
func (c *Credentials) key() string {
	if c == nil {
		return ""
	}
	h := sha256.Sum256([]byte(strings.Join([]string{c.Username, c.Password, c.IdentityToken, c.RegistryToken, c.ServerAddress}, "\x00")))
	return hex.EncodeToString(h[:])
}

// applies tells whether the credentials are for host: all hosts of the
// pull (mirrors included) unless a server address narrows them.
func (c *Credentials) applies(host string) bool {
	if c == nil {
		return false
	}
	if c.ServerAddress == "" {
		return true
	}
	server := c.ServerAddress
	if u, err := url.Parse(server); err == nil && u.Host != "" {
		server = u.Host
	} else {
		server, _, _ = strings.Cut(server, "/")
	}
	return canonicalHost(server) == canonicalHost(host)
}

// canonicalHost folds Docker Hub's many names into one.
func canonicalHost(h string) string {
	switch h {
	case "docker.io", "index.docker.io", "registry-1.docker.io":
		return "docker.io"
	}
	return h
}

// forHost is containerd's credentials callback: username and secret, or an
// empty username and the identity token as secret (a refresh token).
func (c *Credentials) forHost(host string) (string, string, error) {
	if !c.applies(host) {
		return "", "", nil
	}
	if c.IdentityToken != "" {
		return "", c.IdentityToken, nil
	}
	return c.Username, c.Password, nil
}

func (c *Credentials) registryToken(host string) string {
	if !c.applies(host) {
		return ""
	}
	return c.RegistryToken
}
