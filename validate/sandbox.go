package validate

import (
	"net"
	"path/filepath"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// maxNameLen bounds metadata fields; Kubernetes names are at most 253.
const maxNameLen = 253

// name checks a metadata name, namespace or uid: required, bounded, and
// never able to act as a path.
func name(field, v string) error {
	switch {
	case v == "":
		return Errorf("%s is required", field)
	case len(v) > maxNameLen:
		return Errorf("%s is longer than %d characters", field, maxNameLen)
	case strings.ContainsAny(v, "/\\\x00") || v == "." || v == "..":
		return Errorf("%s %q must not contain path separators", field, v)
	}
	return nil
}

// absPath checks a path the runtime will create or write under.
func absPath(field, p string) error {
	if p == "" {
		return nil
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p || strings.Contains(p, "\x00") {
		return Errorf("%s %q must be a clean absolute path", field, p)
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
	for field, v := range map[string]string{"metadata.name": m.Name, "metadata.namespace": m.Namespace, "metadata.uid": m.Uid} {
		if err := name(field, v); err != nil {
			return err
		}
	}
	if m.Attempt > 1<<20 {
		return Errorf("metadata.attempt %d is absurd", m.Attempt)
	}
	if len(c.Hostname) > 253 || strings.ContainsAny(c.Hostname, "/ \x00") {
		return Errorf("hostname %q is not a host name", c.Hostname)
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
	ns := c.GetLinux().GetSecurityContext().GetNamespaceOptions()
	for field, mode := range map[string]runtimeapi.NamespaceMode{"network": ns.GetNetwork(), "pid": ns.GetPid(), "ipc": ns.GetIpc()} {
		if _, ok := runtimeapi.NamespaceMode_name[int32(mode)]; !ok {
			return Errorf("namespace_options.%s: unknown mode %d", field, mode)
		}
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
