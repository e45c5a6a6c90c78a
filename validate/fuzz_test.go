package validate

import (
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The fuzz targets check what the rest of the runtime relies on: the
// validator never panics, refuses only with InvalidArgument, answers the
// same request the same way, and what it accepts as an ID, a name or a
// path cannot leave the folder it is joined to. Seeds are in
// testdata/fuzz/<target>; `make fuzz` runs each target longer.

// checkTwice runs check twice: the answers must be identical, and a
// refusal must be InvalidArgument.
func checkTwice(t *testing.T, what string, check func() error) error {
	t.Helper()
	err := check()
	again := check()
	if (err == nil) != (again == nil) || err != nil && err.Error() != again.Error() {
		t.Fatalf("%s: not deterministic: %v, then %v", what, err, again)
	}
	if err != nil && !errdefs.IsInvalidArgument(err) {
		t.Fatalf("%s: refused with %v, not InvalidArgument", what, err)
	}
	return err
}

// component asserts that an accepted ID or name is one path component:
// joined to a folder it names an entry of that folder, nothing else.
func component(t *testing.T, what, v string) {
	t.Helper()
	const root = "/var/lib/nodecri/sandboxes"
	if v == "" || v == "." || v == ".." || strings.ContainsAny(v, "/\\\x00") {
		t.Fatalf("%s %q accepted", what, v)
	}
	if p := filepath.Join(root, v); filepath.Dir(p) != root || filepath.Base(p) != v {
		t.Fatalf("%s %q accepted, but joined to %s it is %s", what, v, root, p)
	}
}

// inside asserts that an accepted relative path stays under the folder
// it is joined to, and names something other than the folder itself.
func inside(t *testing.T, what, p string) {
	t.Helper()
	const root = "/var/log/pods/ns_pod_uid"
	if filepath.IsAbs(p) || strings.Contains(p, "\x00") {
		t.Fatalf("%s %q accepted", what, p)
	}
	if j := filepath.Join(root, p); !strings.HasPrefix(j, root+"/") {
		t.Fatalf("%s %q accepted, but joined to %s it is %s", what, p, root, j)
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			t.Fatalf("%s %q accepted with a .. component", what, p)
		}
	}
}

// absolute asserts that an accepted absolute path is clean: no .. or .
// components, no NUL, so a prefix check on it means what it says.
func absolute(t *testing.T, what, p string) {
	t.Helper()
	if p == "" {
		return
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p || strings.Contains(p, "\x00") {
		t.Fatalf("%s %q accepted", what, p)
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." || c == "." {
			t.Fatalf("%s %q accepted with a %s component", what, p, c)
		}
	}
}

// line asserts that an accepted value cannot add a line or an entry to a
// file it is written into.
func line(t *testing.T, what, v string) {
	t.Helper()
	if strings.ContainsAny(v, " \t\r\n\x00") {
		t.Fatalf("%s %q accepted", what, v)
	}
}

// cniArg asserts that an accepted pod name, namespace or uid is one
// CNI_ARGS value: it cannot add an argument.
func cniArg(t *testing.T, what, v string) {
	t.Helper()
	line(t, what, v)
	if strings.ContainsAny(v, ";=") {
		t.Fatalf("%s %q accepted", what, v)
	}
}

func FuzzID(f *testing.F) {
	f.Fuzz(func(t *testing.T, id string) {
		if checkTwice(t, "ID", func() error { return ID("container_id", id) }) == nil {
			component(t, "ID", id)
		}
	})
}

func FuzzName(f *testing.F) {
	f.Fuzz(func(t *testing.T, v string) {
		if checkTwice(t, "name", func() error { return name("metadata.name", v) }) == nil {
			component(t, "name", v)
			cniArg(t, "name", v)
			if len(v) > maxNameLen {
				t.Fatalf("name of %d bytes accepted", len(v))
			}
		}
	})
}

// validContainer is a CreateContainer request the validator accepts;
// targets change one field of it.
func validContainer() *runtimeapi.CreateContainerRequest {
	return &runtimeapi.CreateContainerRequest{
		PodSandboxId: strings.Repeat("ab", 32),
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
			Image:    &runtimeapi.ImageSpec{Image: "busybox:1.36"},
			Command:  []string{"sleep", "1000"},
			LogPath:  "c/0.log",
		},
	}
}

func validSandbox() *runtimeapi.RunPodSandboxRequest {
	return &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u1"},
		Hostname:     "p",
		LogDirectory: "/var/log/pods/ns_p_u1",
		Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "/kubepods/podu1"},
	}}
}

func FuzzLogPath(f *testing.F) {
	if err := Request(validContainer()); err != nil {
		f.Fatalf("base request refused: %v", err)
	}
	f.Fuzz(func(t *testing.T, p string) {
		req := validContainer()
		req.Config.LogPath = p
		if checkTwice(t, "log_path", func() error { return Request(req) }) == nil && p != "" {
			inside(t, "log_path", p)
		}
	})
}

// FuzzSandboxPaths changes the pod's paths and the values written into
// its files.
func FuzzSandboxPaths(f *testing.F) {
	if err := Request(validSandbox()); err != nil {
		f.Fatalf("base request refused: %v", err)
	}
	f.Fuzz(func(t *testing.T, logDir, cgroupParent, hostname, search string) {
		req := validSandbox()
		c := req.Config
		c.LogDirectory, c.Linux.CgroupParent, c.Hostname = logDir, cgroupParent, hostname
		c.DnsConfig = &runtimeapi.DNSConfig{Searches: []string{search}, Options: []string{search}}
		if checkTwice(t, "sandbox", func() error { return Request(req) }) != nil {
			return
		}
		absolute(t, "log_directory", logDir)
		absolute(t, "cgroup_parent", cgroupParent)
		line(t, "hostname", hostname)
		line(t, "dns search", search)
		if strings.Contains(hostname, "/") || len(hostname) > maxHostnameLen {
			t.Fatalf("hostname %q accepted", hostname)
		}
	})
}

func FuzzImageRef(f *testing.F) {
	f.Fuzz(func(t *testing.T, ref string) {
		pull := &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}
		st := &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}}
		perr := checkTwice(t, "PullImage", func() error { return Request(pull) })
		serr := checkTwice(t, "ImageStatus", func() error { return Request(st) })
		// ImageStatus takes an ID prefix besides every pullable reference.
		if perr == nil && serr != nil {
			t.Fatalf("%q pullable but refused by ImageStatus: %v", ref, serr)
		}
		if perr == nil || serr == nil {
			if ref == "" || !utf8.ValidString(ref) || strings.ContainsAny(ref, " \t\r\n\x00\\") {
				t.Fatalf("image %q accepted", ref)
			}
		}
	})
}

// requestKinds are the messages FuzzRequest decodes its input into,
// chosen by its first argument.
var requestKinds = []func() proto.Message{
	func() proto.Message { return &runtimeapi.RunPodSandboxRequest{} },
	func() proto.Message { return &runtimeapi.CreateContainerRequest{} },
	func() proto.Message { return &runtimeapi.StopPodSandboxRequest{} },
	func() proto.Message { return &runtimeapi.RemoveContainerRequest{} },
	func() proto.Message { return &runtimeapi.ListContainersRequest{} },
	func() proto.Message { return &runtimeapi.ExecSyncRequest{} },
	func() proto.Message { return &runtimeapi.ExecRequest{} },
	func() proto.Message { return &runtimeapi.AttachRequest{} },
	func() proto.Message { return &runtimeapi.PortForwardRequest{} },
	func() proto.Message { return &runtimeapi.UpdateRuntimeConfigRequest{} },
	func() proto.Message { return &runtimeapi.PullImageRequest{} },
}

// FuzzRequest decodes whole requests from protobuf bytes, so every field
// and every enum value (known or not) is reached.
func FuzzRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		req := requestKinds[int(kind)%len(requestKinds)]()
		if proto.Unmarshal(data, req) != nil {
			return
		}
		what := string(req.ProtoReflect().Descriptor().Name())
		if checkTwice(t, what, func() error { return Request(req) }) != nil {
			return
		}
		switch r := req.(type) {
		case *runtimeapi.RunPodSandboxRequest:
			m := r.Config.Metadata
			for _, v := range []string{m.Name, m.Namespace, m.Uid} {
				component(t, "metadata", v)
				cniArg(t, "metadata", v)
			}
			absolute(t, "log_directory", r.Config.LogDirectory)
			absolute(t, "cgroup_parent", r.Config.GetLinux().GetCgroupParent())
			line(t, "hostname", r.Config.Hostname)
			ns := r.Config.GetLinux().GetSecurityContext().GetNamespaceOptions()
			for _, mode := range []runtimeapi.NamespaceMode{ns.GetNetwork(), ns.GetPid(), ns.GetIpc()} {
				if runtimeapi.NamespaceMode_name[int32(mode)] == "" {
					t.Fatalf("namespace mode %d accepted", mode)
				}
			}
			for _, pm := range r.Config.PortMappings {
				if runtimeapi.Protocol_name[int32(pm.Protocol)] == "" {
					t.Fatalf("protocol %d accepted", pm.Protocol)
				}
			}
		case *runtimeapi.CreateContainerRequest:
			component(t, "pod_sandbox_id", r.PodSandboxId)
			component(t, "metadata.name", r.Config.Metadata.Name)
			if p := r.Config.LogPath; p != "" {
				inside(t, "log_path", p)
			}
			ns := r.Config.GetLinux().GetSecurityContext().GetNamespaceOptions()
			if ns.GetPid() == runtimeapi.NamespaceMode_TARGET {
				if !fullID(ns.GetTargetId()) {
					t.Fatalf("target_id %q accepted", ns.GetTargetId())
				}
			}
		case *runtimeapi.StopPodSandboxRequest:
			component(t, "pod_sandbox_id", r.PodSandboxId)
		case *runtimeapi.ListContainersRequest:
			for _, id := range []string{r.GetFilter().GetId(), r.GetFilter().GetPodSandboxId()} {
				if id != "" {
					component(t, "filter", id)
				}
			}
		case *runtimeapi.RemoveContainerRequest:
			component(t, "container_id", r.ContainerId)
		case *runtimeapi.ExecSyncRequest:
			component(t, "container_id", r.ContainerId)
		case *runtimeapi.ExecRequest:
			component(t, "container_id", r.ContainerId)
		case *runtimeapi.AttachRequest:
			component(t, "container_id", r.ContainerId)
		case *runtimeapi.PortForwardRequest:
			component(t, "pod_sandbox_id", r.PodSandboxId)
		}
	})
}
