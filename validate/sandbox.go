package validate

import (
	"net"
	"path/filepath"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// maxNameLen bounds metadata fields; Kubernetes names are at most 253.
const maxNameLen = 253

// name checks a metadata name, namespace or uid: required, bounded,
// never able to act as a path, and one CNI_ARGS value (";" and "=" would
// add arguments, such as host-local's IP=).
func name(field, v string) error {
	switch {
	case v == "":
		return Errorf("%s is required", field)
	case len(v) > maxNameLen:
		return Errorf("%s is longer than %d characters", field, maxNameLen)
	case strings.ContainsAny(v, "/\\\x00") || v == "." || v == "..":
		return Errorf("%s %q must not contain path separators", field, v)
	case strings.ContainsAny(v, ";="):
		return Errorf("%s %q must not contain ; or =", field, v)
	}
	return word(field, v)
}

// maxHostnameLen is the kernel's HOST_NAME_MAX.
const maxHostnameLen = 64

// absPath checks a path the runtime will create or write under.
func absPath(field, p string) error {
	if p == "" {
		return nil
	}
	if len(p) > maxPathLen {
		return Errorf("%s is longer than %d characters", field, maxPathLen)
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p || strings.Contains(p, "\x00") {
		return Errorf("%s %q must be a clean absolute path", field, p)
	}
	return nil
}

// word checks a value written into a line of a pod file (hostname,
// resolv.conf): whitespace or a control character would start another
// entry or line.
func word(field, v string) error {
	for _, c := range v {
		if c <= ' ' || c == 0x7f {
			return Errorf("%s %.70q contains whitespace or a control character", field, v)
		}
	}
	return nil
}

// profile checks a seccomp or AppArmor profile's type; a seccomp profile
// from the host is a path.
func profile(field string, p *runtimeapi.SecurityProfile, isPath bool) error {
	if p == nil {
		return nil
	}
	if _, ok := runtimeapi.SecurityProfile_ProfileType_name[int32(p.ProfileType)]; !ok {
		return Errorf("%s: unknown profile type %d", field, p.ProfileType)
	}
	if p.ProfileType == runtimeapi.SecurityProfile_Localhost && isPath {
		if p.LocalhostRef == "" {
			return Errorf("%s: localhost_ref is required", field)
		}
		return absPath(field+".localhost_ref", p.LocalhostRef)
	}
	return nil
}

// namespaceModes checks the modes of a pod's or container's namespaces; a
// container may target another container's PID namespace, by its full ID
// (ours are 64 hex digits): a short one such as "1" or "self" could name
// a host process's namespace.
func namespaceModes(field string, ns *runtimeapi.NamespaceOption) error {
	for _, f := range []struct {
		name string
		mode runtimeapi.NamespaceMode
	}{{"network", ns.GetNetwork()}, {"pid", ns.GetPid()}, {"ipc", ns.GetIpc()}} {
		if _, ok := runtimeapi.NamespaceMode_name[int32(f.mode)]; !ok {
			return Errorf("%s.%s: unknown mode %d", field, f.name, f.mode)
		}
	}
	if id := ns.GetTargetId(); ns.GetPid() == runtimeapi.NamespaceMode_TARGET && !fullID(id) {
		return Errorf("%s.target_id %.70q is not a container ID", field, id)
	}
	return nil
}

func sandboxConfig(c *runtimeapi.PodSandboxConfig) error {
	if c == nil {
		return Errorf("config is required")
	}
	m := c.GetMetadata()
	if m == nil {
		return Errorf("config.metadata is required")
	}
	// In order: the same request gets the same message.
	for _, f := range [][2]string{{"metadata.name", m.Name}, {"metadata.namespace", m.Namespace}, {"metadata.uid", m.Uid}} {
		if err := name(f[0], f[1]); err != nil {
			return err
		}
	}
	if m.Attempt > 1<<20 {
		return Errorf("metadata.attempt %d is absurd", m.Attempt)
	}
	if len(c.Hostname) > maxHostnameLen || strings.Contains(c.Hostname, "/") {
		return Errorf("hostname %.70q is not a host name of at most %d characters", c.Hostname, maxHostnameLen)
	}
	if err := word("hostname", c.Hostname); err != nil {
		return err
	}
	if err := stringMap("labels", c.Labels); err != nil {
		return err
	}
	if err := stringMap("annotations", c.Annotations); err != nil {
		return err
	}
	if err := absPath("log_directory", c.LogDirectory); err != nil {
		return err
	}
	if err := absPath("linux.cgroup_parent", c.GetLinux().GetCgroupParent()); err != nil {
		return err
	}
	for _, s := range c.GetDnsConfig().GetServers() {
		if net.ParseIP(s) == nil {
			return Errorf("dns_config.servers: %q is not an IP address", s)
		}
	}
	for _, s := range append(append([]string{}, c.GetDnsConfig().GetSearches()...), c.GetDnsConfig().GetOptions()...) {
		if err := word("dns_config", s); err != nil {
			return err
		}
	}
	for _, pm := range c.GetPortMappings() {
		if pm.ContainerPort <= 0 || pm.ContainerPort > 65535 || pm.HostPort < 0 || pm.HostPort > 65535 {
			return Errorf("port_mappings: container port %d / host port %d out of range", pm.ContainerPort, pm.HostPort)
		}
		if _, ok := runtimeapi.Protocol_name[int32(pm.Protocol)]; !ok {
			return Errorf("port_mappings: unknown protocol %d", pm.Protocol)
		}
		if pm.HostIp != "" && net.ParseIP(pm.HostIp) == nil {
			return Errorf("port_mappings: host_ip %q is not an IP address", pm.HostIp)
		}
	}
	sc := c.GetLinux().GetSecurityContext()
	if err := profile("linux.security_context.seccomp", sc.GetSeccomp(), true); err != nil {
		return err
	}
	if err := profile("linux.security_context.apparmor", sc.GetApparmor(), false); err != nil {
		return err
	}
	ns := sc.GetNamespaceOptions()
	if err := namespaceModes("namespace_options", ns); err != nil {
		return err
	}
	if u := ns.GetUsernsOptions(); u != nil {
		if _, ok := runtimeapi.NamespaceMode_name[int32(u.Mode)]; !ok || u.Mode == runtimeapi.NamespaceMode_CONTAINER || u.Mode == runtimeapi.NamespaceMode_TARGET {
			return Errorf("namespace_options.userns_options: mode %v is not POD or NODE", u.Mode)
		}
		if u.Mode == runtimeapi.NamespaceMode_POD && (len(u.Uids) != 1 || len(u.Gids) != 1 || u.Uids[0].Length == 0 || u.Gids[0].Length == 0) {
			return Errorf("namespace_options.userns_options: mode POD needs one non-empty uid and one gid mapping")
		}
	}
	return nil
}

// fullID tells whether id is a whole object ID as we make them.
func fullID(id string) bool {
	if len(id) != 64 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
