package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Bad requests are refused with InvalidArgument before anything is made:
// path traversal in IDs, names and paths, absurd sizes, missing fields,
// malformed image references and unknown enum values. (foundation, sandbox
// and images tests check a few codes; here every case also checks that the
// host holds nothing new afterwards.)
func TestBadInputRefusedWithoutSideEffects(t *testing.T) {
	p := newPod(t)
	d, l := p.d, p.l

	mb := strings.Repeat("x", 1<<20)
	hugeLabels := map[string]string{}
	for i := range 100000 {
		hugeLabels[fmt.Sprintf("label-%06d", i)] = "value"
	}
	var hugeArgs []string
	for range 30 {
		hugeArgs = append(hugeArgs, strings.Repeat("a", 100<<10)) // 3 MB in all
	}

	// Each request has a name of its own, so that one wrongly accepted
	// does not hide the next behind AlreadyExists.
	var seq int
	pod := func(change func(c *runtimeapi.PodSandboxConfig)) func(context.Context) error {
		seq++
		name := fmt.Sprintf("bad-%d", seq)
		return func(ctx context.Context) error {
			cfg := podConfig(l, name)
			change(cfg)
			_, err := d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
			return err
		}
	}
	ctr := func(change func(r *runtimeapi.CreateContainerRequest)) func(context.Context) error {
		seq++
		name := fmt.Sprintf("bad-%d", seq)
		return func(ctx context.Context) error {
			r := &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: busybox(name, "sleep", "1000"), SandboxConfig: p.cfg}
			change(r)
			_, err := d.Runtime.CreateContainer(ctx, r)
			return err
		}
	}
	secCtx := func(c *runtimeapi.PodSandboxConfig) *runtimeapi.LinuxSandboxSecurityContext {
		c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{}}
		return c.Linux.SecurityContext
	}
	cSecCtx := func(r *runtimeapi.CreateContainerRequest) *runtimeapi.LinuxContainerSecurityContext {
		return r.Config.Linux.SecurityContext
	}

	cases := []struct {
		name string
		call func(context.Context) error
	}{
		// Pods: traversal.
		{"pod name ..", pod(func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Name = ".." })},
		{"pod namespace traversal", pod(func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Namespace = "../../etc" })},
		{"pod name adding a CNI arg", pod(func(c *runtimeapi.PodSandboxConfig) {
			c.Metadata.Name = "p;IP=" + strings.TrimSuffix(l.Network.Subnet, "0/24") + "77"
		})},
		{"pod namespace with newline", pod(func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Namespace = "ns\nx" })},
		{"pod uid with slash", pod(func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Uid = "a/b" })},
		{"pod log directory relative", pod(func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = "../pods/x" })},
		{"pod log directory with ..", pod(func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = l.Dir + "/../../etc" })},
		{"pod cgroup parent with ..", pod(func(c *runtimeapi.PodSandboxConfig) { c.Linux.CgroupParent = "/a/../../b" })},
		{"pod hostname with newline", pod(func(c *runtimeapi.PodSandboxConfig) { c.Hostname = "h\nevil" })},
		{"pod dns search with newline", pod(func(c *runtimeapi.PodSandboxConfig) {
			c.DnsConfig = &runtimeapi.DNSConfig{Searches: []string{"svc\nnameserver 1.2.3.4"}}
		})},
		{"pod seccomp profile relative", pod(func(c *runtimeapi.PodSandboxConfig) {
			secCtx(c).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "../profile.json"}
		})},
		// Pods: absurd sizes.
		{"pod name of 1 MB", pod(func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Name = mb })},
		{"pod hostname of 65 bytes", pod(func(c *runtimeapi.PodSandboxConfig) { c.Hostname = strings.Repeat("h", 65) })},
		{"pod with 100000 labels", pod(func(c *runtimeapi.PodSandboxConfig) { c.Labels = hugeLabels })},
		{"pod annotation of 1 MB", pod(func(c *runtimeapi.PodSandboxConfig) { c.Annotations = map[string]string{"big": mb} })},
		// Pods: missing fields.
		{"pod without config", func(ctx context.Context) error {
			_, err := d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{})
			return err
		}},
		{"pod without metadata", pod(func(c *runtimeapi.PodSandboxConfig) { c.Metadata = nil })},
		{"pod without uid", pod(func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Uid = "" })},
		{"pod label with empty key", pod(func(c *runtimeapi.PodSandboxConfig) { c.Labels = map[string]string{"": "x"} })},
		// Pods: unknown enum values and out-of-range numbers.
		{"pod network mode 99", pod(func(c *runtimeapi.PodSandboxConfig) { secCtx(c).NamespaceOptions.Network = 99 })},
		{"pod pid mode 99", pod(func(c *runtimeapi.PodSandboxConfig) { secCtx(c).NamespaceOptions.Pid = 99 })},
		{"pod userns mode CONTAINER", pod(func(c *runtimeapi.PodSandboxConfig) {
			secCtx(c).NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}
		})},
		{"pod seccomp type 99", pod(func(c *runtimeapi.PodSandboxConfig) { secCtx(c).Seccomp = &runtimeapi.SecurityProfile{ProfileType: 99} })},
		{"port protocol 99", pod(func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 80, HostPort: 8080, Protocol: 99}}
		})},
		{"port 70000", pod(func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 70000}}
		})},
		{"dns server not an IP", pod(func(c *runtimeapi.PodSandboxConfig) { c.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"../x"}} })},

		// Containers: traversal.
		{"container in sandbox ../<id>", ctr(func(r *runtimeapi.CreateContainerRequest) { r.PodSandboxId = "../" + p.id })},
		{"container name traversal", ctr(func(r *runtimeapi.CreateContainerRequest) { r.Config.Metadata.Name = "../c" })},
		{"log path traversal", ctr(func(r *runtimeapi.CreateContainerRequest) { r.Config.LogPath = "../../../../etc/cron.d/x" })},
		{"log path .. inside", ctr(func(r *runtimeapi.CreateContainerRequest) { r.Config.LogPath = "a/../../x.log" })},
		{"log path absolute", ctr(func(r *runtimeapi.CreateContainerRequest) { r.Config.LogPath = "/tmp/x.log" })},
		{"log path the log folder", ctr(func(r *runtimeapi.CreateContainerRequest) { r.Config.LogPath = "." })},
		{"pid target traversal", ctr(func(r *runtimeapi.CreateContainerRequest) {
			cSecCtx(r).NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "../1"}
		})},
		{"pid target the host's init", ctr(func(r *runtimeapi.CreateContainerRequest) {
			cSecCtx(r).NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "1"}
		})},
		// Containers: absurd sizes.
		{"container name of 1 MB", ctr(func(r *runtimeapi.CreateContainerRequest) { r.Config.Metadata.Name = mb })},
		{"container annotation of 1 MB", ctr(func(r *runtimeapi.CreateContainerRequest) { r.Config.Annotations = map[string]string{"big": mb} })},
		{"container with 100000 labels", ctr(func(r *runtimeapi.CreateContainerRequest) { r.Config.Labels = hugeLabels })},
		{"command line of 3 MB", ctr(func(r *runtimeapi.CreateContainerRequest) { r.Config.Args = hugeArgs })},
		{"argument of 1 MB", ctr(func(r *runtimeapi.CreateContainerRequest) { r.Config.Command = []string{"echo", mb} })},
		{"env value of 1 MB", ctr(func(r *runtimeapi.CreateContainerRequest) {
			r.Config.Envs = []*runtimeapi.KeyValue{{Key: "BIG", Value: []byte(mb)}}
		})},
		// Containers: missing or malformed fields.
		{"container without sandbox", ctr(func(r *runtimeapi.CreateContainerRequest) { r.PodSandboxId = "" })},
		{"container without config", ctr(func(r *runtimeapi.CreateContainerRequest) { r.Config = nil })},
		{"container without name", ctr(func(r *runtimeapi.CreateContainerRequest) { r.Config.Metadata = nil })},
		{"container without image", ctr(func(r *runtimeapi.CreateContainerRequest) { r.Config.Image = nil })},
		{"image with uppercase repository", ctr(func(r *runtimeapi.CreateContainerRequest) { r.Config.Image.Image = "UPPER/case" })},
		{"image with a bad digest", ctr(func(r *runtimeapi.CreateContainerRequest) { r.Config.Image.Image = "busybox@sha256:zz" })},
		{"image as a path", ctr(func(r *runtimeapi.CreateContainerRequest) { r.Config.Image.Image = "../../etc/passwd" })},
		{"env key with =", ctr(func(r *runtimeapi.CreateContainerRequest) {
			r.Config.Envs = []*runtimeapi.KeyValue{{Key: "A=B", Value: []byte("c")}}
		})},
		{"working dir relative", ctr(func(r *runtimeapi.CreateContainerRequest) { r.Config.WorkingDir = "tmp" })},
		// Containers: unknown enum values.
		{"container pid mode 99", ctr(func(r *runtimeapi.CreateContainerRequest) { cSecCtx(r).NamespaceOptions.Pid = 99 })},
		{"container ipc mode 99", ctr(func(r *runtimeapi.CreateContainerRequest) { cSecCtx(r).NamespaceOptions.Ipc = 99 })},
		{"mount propagation 99", ctr(func(r *runtimeapi.CreateContainerRequest) {
			r.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: l.Dir, Propagation: 99}}
		})},
		{"stop signal 99", ctr(func(r *runtimeapi.CreateContainerRequest) { r.Config.StopSignal = 99 })},
		{"supplemental groups policy 99", ctr(func(r *runtimeapi.CreateContainerRequest) { cSecCtx(r).SupplementalGroupsPolicy = 99 })},
		{"apparmor type 99", ctr(func(r *runtimeapi.CreateContainerRequest) {
			cSecCtx(r).Apparmor = &runtimeapi.SecurityProfile{ProfileType: 99}
		})},

		// Other RPCs naming objects by a path-like ID, or too big.
		{"ContainerStatus ../x", func(ctx context.Context) error {
			_, err := d.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: "../" + p.id})
			return err
		}},
		{"ReopenContainerLog ..", func(ctx context.Context) error {
			_, err := d.Runtime.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: ".."})
			return err
		}},
		{"RemovePodSandbox with NUL", func(ctx context.Context) error {
			_, err := d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id + "\x00"})
			return err
		}},
		{"ListContainers filter ../", func(ctx context.Context) error {
			_, err := d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: "../" + p.id}})
			return err
		}},
		{"ExecSync with a 3 MB command", func(ctx context.Context) error {
			_, err := d.Runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: p.id, Cmd: hugeArgs})
			return err
		}},
		{"Exec into ../", func(ctx context.Context) error {
			_, err := d.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "../" + p.id, Cmd: []string{"sh"}, Stdout: true})
			return err
		}},
		{"PortForward port 0", func(ctx context.Context) error {
			_, err := d.Runtime.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: p.id, Port: []int32{0}})
			return err
		}},
		{"PullImage of a 5000-byte reference", func(ctx context.Context) error {
			_, err := d.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox:" + strings.Repeat("a", 5000)}})
			return err
		}},
	}

	if r := takeCensus(t, l); r.count("containers") != 1 || r.count("netns pins") != 1 {
		t.Fatalf("expected the one pod: %v", r)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := takeCensus(t, l)
			err := tc.call(ctxT(t))
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("got %v, want InvalidArgument", err)
			}
			if diff := before.diff(takeCensus(t, l)); diff != "" {
				t.Errorf("the refused request left:\n%s", diff)
			}
		})
	}
	// The pod the bad requests named is unharmed.
	if st, _ := podStatus(t, d, p.id); st.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("pod state after the bad requests: %v", st.State)
	}
}
