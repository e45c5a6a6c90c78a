package validate

import (
	"path/filepath"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func containerConfig(c *runtimeapi.ContainerConfig) error {
	if c == nil {
		return Errorf("config is required")
	}
	if err := name("metadata.name", c.GetMetadata().GetName()); err != nil {
		return err
	}
	if a := c.GetMetadata().GetAttempt(); a > 1<<20 {
		return Errorf("metadata.attempt %d is absurd", a)
	}
	if err := imageRef("image.image", c.GetImage().GetImage(), true); err != nil {
		return err
	}
	// The log path is relative to the pod's log directory and must name a
	// file in it: not the directory itself (".").
	if p := c.GetLogPath(); p != "" {
		if len(p) > maxPathLen {
			return Errorf("log_path is longer than %d characters", maxPathLen)
		}
		if filepath.IsAbs(p) || strings.Contains(p, "\x00") || filepath.Clean(p) != p || p == "." || p == ".." || strings.HasPrefix(p, "../") {
			return Errorf("log_path %q must be a clean path inside the pod's log directory", p)
		}
	}
	if err := stringMap("labels", c.Labels); err != nil {
		return err
	}
	if err := stringMap("annotations", c.Annotations); err != nil {
		return err
	}
	if err := argv("command and args", append(append([]string{}, c.Command...), c.Args...), c.Envs); err != nil {
		return err
	}
	if c.GetWorkingDir() != "" && !filepath.IsAbs(c.GetWorkingDir()) {
		return Errorf("working_dir %q must be absolute", c.GetWorkingDir())
	}
	for _, m := range c.GetMounts() {
		if !filepath.IsAbs(m.ContainerPath) {
			return Errorf("mount container_path %q must be absolute", m.ContainerPath)
		}
		if m.GetImage() == nil && !filepath.IsAbs(m.HostPath) {
			return Errorf("mount host_path %q must be absolute", m.HostPath)
		}
		if _, ok := runtimeapi.MountPropagation_name[int32(m.Propagation)]; !ok {
			return Errorf("mount %s: unknown propagation %d", m.ContainerPath, m.Propagation)
		}
		// Recursive read-only is read-only all the way down: it needs
		// readonly, and no propagation could bring writable mounts in.
		if m.RecursiveReadOnly && (!m.Readonly || m.Propagation != runtimeapi.MountPropagation_PROPAGATION_PRIVATE) {
			return Errorf("mount %s: recursive_read_only needs readonly and private propagation", m.ContainerPath)
		}
	}
	for _, d := range c.GetDevices() {
		if !filepath.IsAbs(d.HostPath) || !filepath.IsAbs(d.ContainerPath) {
			return Errorf("device %q -> %q: paths must be absolute", d.HostPath, d.ContainerPath)
		}
		if strings.Trim(d.Permissions, "rwm") != "" {
			return Errorf("device %s: permissions %q are not a subset of rwm", d.HostPath, d.Permissions)
		}
	}
	sc := c.GetLinux().GetSecurityContext()
	if sc.GetRunAsGroup() != nil && sc.GetRunAsUser() == nil && sc.GetRunAsUsername() == "" {
		return Errorf("run_as_group needs run_as_user or run_as_username")
	}
	if err := namespaceModes("linux.security_context.namespace_options", sc.GetNamespaceOptions()); err != nil {
		return err
	}
	if err := profile("linux.security_context.seccomp", sc.GetSeccomp(), true); err != nil {
		return err
	}
	if err := profile("linux.security_context.apparmor", sc.GetApparmor(), false); err != nil {
		return err
	}
	if _, ok := runtimeapi.SupplementalGroupsPolicy_name[int32(sc.GetSupplementalGroupsPolicy())]; !ok {
		return Errorf("supplemental_groups_policy %d is unknown", sc.GetSupplementalGroupsPolicy())
	}
	if _, ok := runtimeapi.Signal_name[int32(c.GetStopSignal())]; !ok {
		return Errorf("stop_signal %d is unknown", c.GetStopSignal())
	}
	return nil
}
