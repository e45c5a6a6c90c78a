// Package validate is the one request validator: every CRI request passes
// through Request before its handler runs, so IDs, names and paths are
// checked once, the same way, and bad input is answered InvalidArgument
// without side effects.
package validate

import (
	"bytes"
	"fmt"
	"net"
	"strings"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/imageref"
)

// Request checks the fields of a CRI request that handlers rely on. Requests
// of RPCs it does not know pass unchanged.
func Request(req any) error {
	switch r := req.(type) {
	case *runtimeapi.UpdateRuntimeConfigRequest:
		return podCIDRs(r.GetRuntimeConfig().GetNetworkConfig().GetPodCidr())
	case *runtimeapi.RunPodSandboxRequest:
		return sandboxConfig(r.GetConfig())
	case *runtimeapi.StopPodSandboxRequest:
		return ID("pod_sandbox_id", r.GetPodSandboxId())
	case *runtimeapi.RemovePodSandboxRequest:
		return ID("pod_sandbox_id", r.GetPodSandboxId())
	case *runtimeapi.PodSandboxStatusRequest:
		return ID("pod_sandbox_id", r.GetPodSandboxId())
	case *runtimeapi.UpdatePodSandboxResourcesRequest:
		if err := ID("pod_sandbox_id", r.GetPodSandboxId()); err != nil {
			return err
		}
		if err := linuxResources("overhead", r.GetOverhead()); err != nil {
			return err
		}
		return linuxResources("resources", r.GetResources())
	case *runtimeapi.ListPodSandboxRequest:
		return optionalID("filter.id", r.GetFilter().GetId())
	case *runtimeapi.StreamPodSandboxesRequest:
		return optionalID("filter.id", r.GetFilter().GetId())
	case *runtimeapi.CreateContainerRequest:
		if err := ID("pod_sandbox_id", r.GetPodSandboxId()); err != nil {
			return err
		}
		return containerConfig(r.GetConfig())
	case *runtimeapi.StartContainerRequest:
		return ID("container_id", r.GetContainerId())
	case *runtimeapi.StopContainerRequest:
		if r.GetTimeout() < 0 {
			return Errorf("timeout %d is negative", r.GetTimeout())
		}
		return ID("container_id", r.GetContainerId())
	case *runtimeapi.RemoveContainerRequest:
		return ID("container_id", r.GetContainerId())
	case *runtimeapi.ContainerStatusRequest:
		return ID("container_id", r.GetContainerId())
	case *runtimeapi.UpdateContainerResourcesRequest:
		if err := ID("container_id", r.GetContainerId()); err != nil {
			return err
		}
		return linuxResources("linux", r.GetLinux())
	case *runtimeapi.ReopenContainerLogRequest:
		return ID("container_id", r.GetContainerId())
	case *runtimeapi.ExecSyncRequest:
		if len(r.GetCmd()) == 0 {
			return Errorf("cmd is required")
		}
		if err := argv("cmd", r.GetCmd(), nil); err != nil {
			return err
		}
		if r.GetTimeout() < 0 {
			return Errorf("timeout %d is negative", r.GetTimeout())
		}
		return ID("container_id", r.GetContainerId())
	case *runtimeapi.ListContainersRequest:
		return containerFilter(r.GetFilter().GetId(), r.GetFilter().GetPodSandboxId())
	case *runtimeapi.StreamContainersRequest:
		return containerFilter(r.GetFilter().GetId(), r.GetFilter().GetPodSandboxId())
	case *runtimeapi.ContainerStatsRequest:
		return ID("container_id", r.GetContainerId())
	case *runtimeapi.ListContainerStatsRequest:
		return containerFilter(r.GetFilter().GetId(), r.GetFilter().GetPodSandboxId())
	case *runtimeapi.StreamContainerStatsRequest:
		return containerFilter(r.GetFilter().GetId(), r.GetFilter().GetPodSandboxId())
	case *runtimeapi.PodSandboxStatsRequest:
		return ID("pod_sandbox_id", r.GetPodSandboxId())
	case *runtimeapi.ListPodSandboxStatsRequest:
		return optionalID("filter.id", r.GetFilter().GetId())
	case *runtimeapi.StreamPodSandboxStatsRequest:
		return optionalID("filter.id", r.GetFilter().GetId())
	case *runtimeapi.PullImageRequest:
		return imageRef("image", r.GetImage().GetImage(), false)
	case *runtimeapi.ImageStatusRequest:
		return imageRef("image", r.GetImage().GetImage(), true)
	case *runtimeapi.RemoveImageRequest:
		return imageRef("image", r.GetImage().GetImage(), true)
	case *runtimeapi.ListImagesRequest:
		return imageFilter(r.GetFilter())
	case *runtimeapi.StreamImagesRequest:
		return imageFilter(r.GetFilter())
	case *runtimeapi.ExecRequest:
		return Exec(r)
	case *runtimeapi.AttachRequest:
		return Attach(r)
	case *runtimeapi.PortForwardRequest:
		return PortForward(r)
	}
	return nil
}

func optionalID(field, id string) error {
	if id == "" {
		return nil
	}
	return ID(field, id)
}

func containerFilter(id, sandboxID string) error {
	if err := optionalID("filter.id", id); err != nil {
		return err
	}
	return optionalID("filter.pod_sandbox_id", sandboxID)
}

func imageFilter(f *runtimeapi.ImageFilter) error {
	if ref := f.GetImage().GetImage(); ref != "" {
		return imageRef("filter.image", ref, true)
	}
	return nil
}

// Errorf returns an InvalidArgument error.
func Errorf(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

// PodCIDRs splits the kubelet's comma-separated pod CIDR list.
func PodCIDRs(s string) []string {
	var out []string
	for _, c := range strings.Split(s, ",") {
		if c = strings.TrimSpace(c); c != "" {
			out = append(out, c)
		}
	}
	return out
}

func podCIDRs(s string) error {
	cidrs := PodCIDRs(s)
	if len(cidrs) > 2 {
		return Errorf("pod_cidr %q: at most one IPv4 and one IPv6 range", s)
	}
	for _, c := range cidrs {
		if _, _, err := net.ParseCIDR(c); err != nil {
			return Errorf("pod_cidr %q: %q is not a CIDR", s, c)
		}
	}
	return nil
}

// ID checks an object ID a caller names (sandbox, container): IDs are
// ours, but Stop and Remove of an unknown one must succeed, so any short
// name-like string passes; what could act as a path does not.
func ID(field, id string) error {
	if id == "" {
		return Errorf("%s is required", field)
	}
	if len(id) > 128 {
		return Errorf("%s %.70q is longer than 128 characters", field, id)
	}
	if id == "." || id == ".." {
		return Errorf("%s %q is not an ID", field, id)
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_' || c == '.') {
			return Errorf("%s %q has characters no ID has", field, id)
		}
	}
	return nil
}

// Bounds on what a request may carry. gRPC lets up to 16 MiB through;
// these keep absurd values out of our records and the OCI spec, and fail
// them before anything is made rather than at exec or mount time.
const (
	// maxMapBytes bounds labels, and annotations, each: Kubernetes allows
	// 256 KiB of annotations, and the kubelet adds a few of its own.
	maxMapBytes = 512 << 10
	// maxArgLen is the kernel's MAX_ARG_STRLEN (32 pages, with the NUL).
	maxArgLen = 32*4096 - 1
	// maxArgvBytes is exec's ARG_MAX under the usual 8 MiB stack limit:
	// arguments and environment together, each with its NUL.
	maxArgvBytes = 2 << 20
	// maxPathLen is PATH_MAX.
	maxPathLen = 4096
)

// stringMap checks labels or annotations: keys are required, and the map
// is bounded in bytes.
func stringMap(field string, m map[string]string) error {
	n := 0
	for k, v := range m {
		if k == "" {
			return Errorf("%s: empty key", field)
		}
		n += len(k) + len(v)
	}
	if n > maxMapBytes {
		return Errorf("%s: %d bytes, more than %d", field, n, maxMapBytes)
	}
	return nil
}

// argv checks a command line (and environment) the kernel will be asked
// to exec: no NUL inside a string, and within exec's limits.
func argv(field string, args []string, env []*runtimeapi.KeyValue) error {
	n := 0
	for _, a := range args {
		if len(a) > maxArgLen {
			return Errorf("%s: an argument of %d bytes, more than %d", field, len(a), maxArgLen)
		}
		if strings.Contains(a, "\x00") {
			return Errorf("%s: argument %.70q contains NUL", field, a)
		}
		n += len(a) + 1
	}
	for _, e := range env {
		if e.Key == "" || strings.ContainsAny(e.Key, "=\x00") {
			return Errorf("env key %.70q is invalid", e.Key)
		}
		if bytes.IndexByte(e.Value, 0) >= 0 {
			return Errorf("env %s: value contains NUL", e.Key)
		}
		if l := len(e.Key) + 1 + len(e.Value); l > maxArgLen {
			return Errorf("env %s: %d bytes, more than %d", e.Key, l, maxArgLen)
		}
		n += len(e.Key) + len(e.Value) + 2
	}
	if n > maxArgvBytes {
		return Errorf("%s: %d bytes of arguments and environment, more than %d", field, n, maxArgvBytes)
	}
	return nil
}

// imageRef checks an image reference; where the RPC accepts one, an image
// ID or a unique prefix of one is accepted too.
func imageRef(field, ref string, idOK bool) error {
	if ref == "" {
		return Errorf("%s is required", field)
	}
	if len(ref) > 4096 {
		return Errorf("%s is longer than 4096 characters", field)
	}
	if idOK && imageref.IsIDPrefix(ref) {
		return nil
	}
	if _, err := imageref.Normalize(ref); err != nil {
		return err
	}
	return nil
}
