package runtimes

import (
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"golang.org/x/sys/unix"
)

// ProbeBinary asks an OCI runtime for its features (`<binary> features`, the
// OCI runtime-spec's features document) and combines them with what this
// kernel can do. A runtime without the subcommand supports neither feature.
func ProbeBinary(ctx context.Context, binary string) Features {
	path, err := exec.LookPath(binary)
	if err != nil {
		log.G(ctx).WithField("runtime", binary).Warn("OCI runtime not found on PATH; reporting no optional features")
		return Features{}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var version string
	if out, err := exec.CommandContext(ctx, path, "--version").Output(); err == nil {
		version = parseSpecVersion(out)
	}
	out, err := exec.CommandContext(ctx, path, "features").Output()
	if err != nil {
		log.G(ctx).WithError(err).WithField("runtime", path).Info("OCI runtime has no features subcommand; reporting no optional features")
		return Features{SpecVersion: version}
	}
	f, err := parseFeatures(out)
	if err != nil {
		log.G(ctx).WithError(err).WithField("runtime", path).Warn("cannot parse OCI runtime features")
		return Features{SpecVersion: version}
	}
	if f.OCIVersionMax != "" {
		version = f.OCIVersionMax
	}
	return Features{
		RecursiveReadOnlyMounts: runtimeHasRRO(f) && kernelHasMountSetattr(),
		UserNamespaces:          runtimeHasIDMappedUserns(f) && kernelHasMountSetattr(),
		SpecVersion:             version,
	}
}

// parseSpecVersion reads the "spec: 1.0.0" line runc and crun print for
// --version.
func parseSpecVersion(out []byte) string {
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "spec:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func parseFeatures(b []byte) (*features.Features, error) {
	var f features.Features
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// runtimeHasRRO: the runtime knows the "rro" mount option (recursive
// read-only, via mount_setattr(2)).
func runtimeHasRRO(f *features.Features) bool {
	return slices.Contains(f.MountOptions, "rro")
}

// runtimeHasIDMappedUserns: user namespaces with idmapped mounts, which pods
// with a user namespace need for their volumes.
func runtimeHasIDMappedUserns(f *features.Features) bool {
	l := f.Linux
	if l == nil || !slices.Contains(l.Namespaces, "user") {
		return false
	}
	m := l.MountExtensions
	return m != nil && m.IDMap != nil && m.IDMap.Enabled != nil && *m.IDMap.Enabled
}

// kernelHasMountSetattr tells whether mount_setattr(2) exists (Linux 5.12+),
// which both recursive read-only and idmapped mounts need. A call on a bad
// fd answers EBADF where the syscall exists and ENOSYS where it does not.
func kernelHasMountSetattr() bool {
	err := unix.MountSetattr(-1, "", 0, &unix.MountAttr{})
	return !errors.Is(err, unix.ENOSYS)
}
