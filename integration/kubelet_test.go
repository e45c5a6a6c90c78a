package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/integration/daemon"
)

// Requests shaped the way kubelet v1.37's kuberuntime sends them (cgroupfs
// driver, a Burstable pod with a CPU and memory limit), not the way crictl
// does: every field the kubelet sets that crictl leaves out is here, and
// each has a check a node operator would make.

// withCRIKey sets one key of the plugin's section.
func withCRIKey(key string, value any) podOpt {
	return func(_ testing.TB, l *daemon.Layout) { l.CRI()[key] = value }
}

// kubeletPod is a pod as the kubelet has prepared it: its log folder made,
// its cgroup under kubepods/burstable, the kubelet's labels, annotations,
// pod-level resources and the default seccomp profile (Unconfined).
type kubeletPod struct {
	*pod
	dir string // the kubelet's /var/lib/kubelet/pods/<uid>
}

func newKubeletPod(t *testing.T, opts ...podOpt) *kubeletPod {
	t.Helper()
	d, l := podEnv(t, opts...)
	u := uid()
	name, ns := "web-"+u[:6], "default"
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: ns, Uid: u, Attempt: 0},
		Hostname:     name,
		LogDirectory: filepath.Join(l.Dir, "var/log/pods", ns+"_"+name+"_"+u),
		DnsConfig:    &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{ns + ".svc.cluster.local", "svc.cluster.local", "cluster.local"}, Options: []string{"ndots:5"}},
		Labels: map[string]string{"app": "web", "io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": ns,
			"io.kubernetes.pod.uid": u},
		Annotations: map[string]string{"kubernetes.io/config.seen": "2026-12-04T16:00:00.000000000Z", "kubernetes.io/config.source": "file"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: filepath.Join("/", filepath.Base(l.Dir), "kubepods", "burstable", "pod"+u),
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD},
				Seccomp:          &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined},
			},
			Resources: &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 102, MemoryLimitInBytes: 64 << 20},
			Overhead:  &runtimeapi.LinuxContainerResources{},
		},
	}
	// The kubelet makes the pod's log folder before RunPodSandbox.
	if err := os.MkdirAll(cfg.LogDirectory, 0o755); err != nil {
		t.Fatal(err)
	}
	kp := &kubeletPod{pod: &pod{d: d, l: l, cfg: cfg}, dir: filepath.Join(l.Dir, "var/lib/kubelet/pods", u)}
	kp.id = runPod(t, d, cfg)
	return kp
}

// hostHugepageLimits is what the kubelet sends for a pod that asks for no
// hugepages: limit 0 for every page size the node has, sized as the
// kubelet names them ("2MB", "1GB").
func hostHugepageLimits(t *testing.T, limit uint64) []*runtimeapi.HugepageLimit {
	t.Helper()
	dirs, err := filepath.Glob("/sys/kernel/mm/hugepages/hugepages-*kB")
	if err != nil {
		t.Fatal(err)
	}
	var out []*runtimeapi.HugepageLimit
	for _, d := range dirs {
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(d), "hugepages-"), "kB"), 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		out = append(out, &runtimeapi.HugepageLimit{PageSize: pageSizeName(kb), Limit: limit})
	}
	return out
}

// pageSizeName writes a page size the way the kubelet and the cgroup files
// do: 2048 kB is "2MB", 1048576 kB "1GB".
func pageSizeName(kb uint64) string {
	switch {
	case kb >= 1<<20 && kb%(1<<20) == 0:
		return fmt.Sprintf("%dGB", kb>>20)
	case kb >= 1<<10 && kb%(1<<10) == 0:
		return fmt.Sprintf("%dMB", kb>>10)
	}
	return fmt.Sprintf("%dKB", kb)
}

// kubeletContainer is a container as the kubelet creates it, with the
// files it has written beside the pod: /etc/hosts, the termination log and
// a service-account token volume.
func (kp *kubeletPod) kubeletContainer(t *testing.T, name, imageID string, script string) *runtimeapi.ContainerConfig {
	t.Helper()
	md := kp.cfg.Metadata
	hosts := filepath.Join(kp.dir, "etc-hosts")
	termLog := filepath.Join(kp.dir, "containers", name, "3c8e5a1f")
	sa := filepath.Join(kp.dir, "volumes/kubernetes.io~projected/kube-api-access-x7k2p")
	for path, content := range map[string]string{
		hosts:                          "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n10.244.0.9\t" + md.Name + "\n",
		termLog:                        "",
		filepath.Join(sa, "token"):     "eyJhbGciOiJSUzI1NiJ9.token",
		filepath.Join(sa, "namespace"): md.Namespace,
		filepath.Join(sa, "ca.crt"):    "-----BEGIN CERTIFICATE-----\n",
		filepath.Join(kp.cfg.LogDirectory, name, ".keep"): "", // the kubelet makes the container's log folder
	} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return &runtimeapi.ContainerConfig{
		Metadata:   &runtimeapi.ContainerMetadata{Name: name, Attempt: 0},
		Image:      &runtimeapi.ImageSpec{Image: imageID, UserSpecifiedImage: "busybox:1.36"},
		Command:    []string{"sh", "-c", script},
		WorkingDir: "",
		Envs: []*runtimeapi.KeyValue{
			{Key: "KUBERNETES_SERVICE_HOST", Value: []byte("10.96.0.1")},
			{Key: "KUBERNETES_SERVICE_PORT", Value: []byte("443")},
			{Key: "KUBERNETES_PORT", Value: []byte("tcp://10.96.0.1:443")},
		},
		Mounts: []*runtimeapi.Mount{
			{ContainerPath: "/var/run/secrets/kubernetes.io/serviceaccount", HostPath: sa, Readonly: true,
				Propagation: runtimeapi.MountPropagation_PROPAGATION_PRIVATE},
			{ContainerPath: "/etc/hosts", HostPath: hosts, SelinuxRelabel: true},
			{ContainerPath: "/dev/termination-log", HostPath: termLog, SelinuxRelabel: true},
		},
		Labels: map[string]string{"io.kubernetes.container.name": name, "io.kubernetes.pod.name": md.Name,
			"io.kubernetes.pod.namespace": md.Namespace, "io.kubernetes.pod.uid": md.Uid},
		Annotations: map[string]string{
			"io.kubernetes.container.hash":                     "7a4b1c2d",
			"io.kubernetes.container.restartCount":             "0",
			"io.kubernetes.container.terminationMessagePath":   "/dev/termination-log",
			"io.kubernetes.container.terminationMessagePolicy": "File",
			"io.kubernetes.pod.terminationGracePeriod":         "30",
		},
		LogPath: filepath.Join(name, "0.log"),
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: kubeletResources(t, 50000, 64<<20),
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions:         &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD},
				Seccomp:                  &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined},
				MaskedPaths:              []string{"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"},
				ReadonlyPaths:            []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
				SupplementalGroupsPolicy: runtimeapi.SupplementalGroupsPolicy_Merge,
			},
		},
	}
}

// kubeletResources are a Burstable container's resources as the kubelet
// sends them at create and at an in-place resize: CPU period, quota and
// shares, memory limit, oom_score_adj, a zero hugepage limit for each of
// the node's page sizes and an empty unified map.
func kubeletResources(t *testing.T, quota, memory int64) *runtimeapi.LinuxContainerResources {
	var swap int64
	// The kubelet's NoSwap on cgroup v1 with swap accounting: swap limit
	// equal to the memory limit.
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"); err == nil {
		swap = memory
	}
	return &runtimeapi.LinuxContainerResources{
		CpuPeriod: 100000, CpuQuota: quota, CpuShares: 102,
		MemoryLimitInBytes: memory, MemorySwapLimitInBytes: swap,
		OomScoreAdj:    969, // Burstable: 1000 - 1000*request/capacity
		HugepageLimits: hostHugepageLimits(t, 0),
		Unified:        map[string]string{},
	}
}

func (kp *kubeletPod) createIn(t *testing.T, cfg *runtimeapi.ContainerConfig) (string, error) {
	t.Helper()
	r, err := kp.d.Runtime.CreateContainer(ctxT(t), &runtimeapi.CreateContainerRequest{PodSandboxId: kp.id, Config: cfg, SandboxConfig: kp.cfg})
	return r.GetContainerId(), err
}

// cgroupValue reads a container's cgroup file from inside it, the way an
// operator checks a limit took effect: v1 keeps one folder per
// controller; v2 (its own cgroup namespace) one for all.
func cgroupValue(t *testing.T, p *pod, id, v1, v2 string) string {
	t.Helper()
	path := "/sys/fs/cgroup/" + v1
	if hostCgroupV2() {
		path = "/sys/fs/cgroup/" + v2
	}
	return strings.TrimSpace(p.mustExec(t, id, "cat", path))
}

func hostCgroupV2() bool {
	var st unix.Statfs_t
	return unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// The real-kubelet failure: zero hugepage limits for every page size made
// runc fail StartContainer on a host whose hugetlb controller it cannot
// use. With the defaults the container starts, and every other field the
// kubelet sends takes effect.
func TestKubeletShapedContainerRuns(t *testing.T) {
	kp := newKubeletPod(t)
	imageID := mustPull(t, kp.d, "busybox:1.36")
	cfg := kp.kubeletContainer(t, "app", imageID,
		`trap 'echo stopping; exit 0' TERM; echo started; echo "bye" > /dev/termination-log; while true; do sleep 1; done`)
	id, err := kp.createIn(t, cfg)
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := kp.d.Runtime.StartContainer(ctxT(t), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer with the kubelet's hugepage limits: %v", err)
	}
	st := kp.status(t, id)
	if st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("state %v, reason %q, message %q", st.State, st.Reason, st.Message)
	}

	// What the kubelet reads of the pod it made: its labels and
	// annotations back, Ready with an IP; and what its containers see of
	// it: the cluster DNS settings and the pod's hostname.
	t.Run("pod status, DNS and hostname", func(t *testing.T) {
		ps, _ := podStatus(t, kp.d, kp.id)
		if ps.State != runtimeapi.PodSandboxState_SANDBOX_READY || ps.GetNetwork().GetIp() == "" {
			t.Errorf("pod state %v ip %q", ps.State, ps.GetNetwork().GetIp())
		}
		for k, v := range kp.cfg.Labels {
			if ps.Labels[k] != v {
				t.Errorf("pod label %s = %q, want %q", k, ps.Labels[k], v)
			}
		}
		for k, v := range kp.cfg.Annotations {
			if ps.Annotations[k] != v {
				t.Errorf("pod annotation %s = %q, want %q", k, ps.Annotations[k], v)
			}
		}
		resolv := kp.mustExec(t, id, "cat", "/etc/resolv.conf")
		for _, want := range []string{"nameserver 10.96.0.10", "search default.svc.cluster.local svc.cluster.local cluster.local", "options ndots:5"} {
			if !strings.Contains(resolv, want) {
				t.Errorf("/etc/resolv.conf lacks %q:\n%s", want, resolv)
			}
		}
		if got := strings.TrimSpace(kp.mustExec(t, id, "hostname")); got != kp.cfg.Hostname {
			t.Errorf("hostname %q, want %q", got, kp.cfg.Hostname)
		}
	})
	logPath := filepath.Join(kp.cfg.LogDirectory, "app", "0.log")
	// What the kubelet reads back to reconcile: its labels and
	// annotations (restart count, hash), the full log path, the image the
	// user wrote.
	t.Run("status fields the kubelet reads", func(t *testing.T) {
		for k, v := range cfg.Annotations {
			if st.Annotations[k] != v {
				t.Errorf("status annotation %s = %q, want %q", k, st.Annotations[k], v)
			}
		}
		for k, v := range cfg.Labels {
			if st.Labels[k] != v {
				t.Errorf("status label %s = %q, want %q", k, st.Labels[k], v)
			}
		}
		if st.LogPath != logPath {
			t.Errorf("status log path %q, want %q", st.LogPath, logPath)
		}
		if st.GetImage().GetUserSpecifiedImage() != "busybox:1.36" || st.ImageRef == "" {
			t.Errorf("status image %v ref %q", st.GetImage(), st.ImageRef)
		}
		if r := st.GetResources().GetLinux(); r.GetCpuQuota() != 50000 || r.GetMemoryLimitInBytes() != 64<<20 {
			t.Errorf("status resources %v", r)
		}
	})
	// Resources: CPU quota and shares, memory limit, oom_score_adj.
	t.Run("cgroup limits and oom_score_adj", func(t *testing.T) {
		if hostCgroupV2() {
			if got := cgroupValue(t, kp.pod, id, "", "cpu.max"); got != "50000 100000" {
				t.Errorf("cpu.max %q", got)
			}
		} else {
			if got := cgroupValue(t, kp.pod, id, "cpu/cpu.cfs_quota_us", ""); got != "50000" {
				t.Errorf("cpu.cfs_quota_us %q, want 50000", got)
			}
			if got := cgroupValue(t, kp.pod, id, "cpu/cpu.shares", ""); got != "102" {
				t.Errorf("cpu.shares %q, want 102", got)
			}
		}
		if got := cgroupValue(t, kp.pod, id, "memory/memory.limit_in_bytes", "memory.max"); got != strconv.Itoa(64<<20) {
			t.Errorf("memory limit %q, want %d", got, 64<<20)
		}
		if got := strings.TrimSpace(kp.mustExec(t, id, "cat", "/proc/1/oom_score_adj")); got != "969" {
			t.Errorf("oom_score_adj %q, want 969", got)
		}
	})
	// No hugepage limit reached the spec (disable_hugetlb_controller).
	t.Run("no hugepage limits in the spec", func(t *testing.T) {
		spec, _ := kp.verboseInfo(t, id)["runtimeSpec"].(map[string]any)
		linux, _ := spec["linux"].(map[string]any)
		res, _ := linux["resources"].(map[string]any)
		if h, ok := res["hugepageLimits"]; ok {
			t.Errorf("hugepage limits in the spec by default: %v", h)
		}
	})
	// Mounts: the kubelet's /etc/hosts, the termination log it reads
	// after exit, a read-only token volume; env; masked paths.
	t.Run("kubelet mounts, env and masked paths", func(t *testing.T) {
		if got := kp.mustExec(t, id, "cat", "/etc/hosts"); !strings.Contains(got, "Kubernetes-managed hosts file") {
			t.Errorf("/etc/hosts is not the kubelet's file: %q", got)
		}
		if got := kp.mustExec(t, id, "cat", "/var/run/secrets/kubernetes.io/serviceaccount/namespace"); got != "default" {
			t.Errorf("token volume namespace %q", got)
		}
		if r, err := kp.exec(t, id, 10, "sh", "-c", "echo x > /var/run/secrets/kubernetes.io/serviceaccount/token"); err != nil || r.ExitCode == 0 {
			t.Errorf("token volume is writable: %v exit %d", err, r.GetExitCode())
		}
		if got := kp.mustExec(t, id, "sh", "-c", "echo $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"); strings.TrimSpace(got) != "10.96.0.1:443" {
			t.Errorf("env %q", got)
		}
		if got := kp.mustExec(t, id, "cat", "/proc/keys"); got != "" {
			t.Errorf("/proc/keys is not masked: %q", got)
		}
	})
	// UpdateContainerResources as the kubelet sends it for an in-place
	// resize: every field again, hugepage limits included.
	t.Run("UpdateContainerResources resize", func(t *testing.T) {
		resize := kubeletResources(t, 100000, 128<<20)
		if _, err := kp.d.Runtime.UpdateContainerResources(ctxT(t), &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: resize}); err != nil {
			t.Fatalf("UpdateContainerResources (resize): %v", err)
		}
		if got := cgroupValue(t, kp.pod, id, "memory/memory.limit_in_bytes", "memory.max"); got != strconv.Itoa(128<<20) {
			t.Errorf("memory limit after resize %q, want %d", got, 128<<20)
		}
	})
	// ... and as the CPU manager sends it: cpuset_cpus alone, which must
	// leave the other limits as they are, in the cgroup and in status.
	t.Run("UpdateContainerResources cpuset only", func(t *testing.T) {
		if _, err := kp.d.Runtime.UpdateContainerResources(ctxT(t), &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id,
			Linux: &runtimeapi.LinuxContainerResources{CpusetCpus: "0"}}); err != nil {
			t.Fatalf("UpdateContainerResources (cpuset only): %v", err)
		}
		if got := cgroupValue(t, kp.pod, id, "cpuset/cpuset.cpus", "cpuset.cpus"); got != "0" {
			t.Errorf("cpuset.cpus %q, want 0", got)
		}
		if got := cgroupValue(t, kp.pod, id, "memory/memory.limit_in_bytes", "memory.max"); got != strconv.Itoa(128<<20) {
			t.Errorf("memory limit after a cpuset-only update %q, want %d", got, 128<<20)
		}
		if r := kp.status(t, id).GetResources().GetLinux(); r.GetCpusetCpus() != "0" || r.GetCpuQuota() != 100000 || r.GetMemoryLimitInBytes() != 128<<20 || r.GetCpuShares() != 102 {
			t.Errorf("status after a cpuset-only update: %v", r)
		}
	})
	// Bad values answer InvalidArgument and change nothing; no Linux
	// resources (a Windows-shaped request) is a no-op.
	t.Run("UpdateContainerResources bad input", func(t *testing.T) {
		_, err := kp.d.Runtime.UpdateContainerResources(ctxT(t), &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id,
			Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -5}})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("negative memory limit: %v, want InvalidArgument", err)
		}
		if _, err := kp.d.Runtime.UpdateContainerResources(ctxT(t), &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id}); err != nil {
			t.Errorf("no Linux resources: %v", err)
		}
		if got := cgroupValue(t, kp.pod, id, "memory/memory.limit_in_bytes", "memory.max"); got != strconv.Itoa(128<<20) {
			t.Errorf("memory limit after refused updates %q, want %d", got, 128<<20)
		}
	})

	// StopContainer with the pod's grace period, as the kubelet stops it;
	// then what it reads: the exit, the termination message file, the log.
	t.Run("StopContainer, termination log and log file", func(t *testing.T) {
		if _, err := kp.d.Runtime.StopContainer(ctxT(t), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 30}); err != nil {
			t.Fatalf("StopContainer: %v", err)
		}
		st = kp.waitExit(t, id)
		if st.ExitCode != 0 || st.Reason != "Completed" {
			t.Errorf("exit %d reason %q", st.ExitCode, st.Reason)
		}
		if b, _ := os.ReadFile(cfg.Mounts[2].HostPath); string(b) != "bye\n" {
			t.Errorf("termination log %q", b)
		}
		logs := readLog(t, logPath)
		if !strings.Contains(logs["stdout"], "started") || !strings.Contains(logs["stdout"], "stopping") {
			t.Errorf("container log %v", logs)
		}
	})
}

// With disable_hugetlb_controller = false, limits reach the spec where the
// controller works and are dropped where it does not (tolerated, the
// default); the container runs either way.
func TestHugetlbEnabledToleratesMissingController(t *testing.T) {
	kp := newKubeletPod(t, withCRIKey("disable_hugetlb_controller", false))
	imageID := mustPull(t, kp.d, "busybox:1.36")
	id, err := kp.createIn(t, kp.kubeletContainer(t, "app", imageID, "sleep 3600"))
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := kp.d.Runtime.StartContainer(ctxT(t), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	spec, _ := kp.verboseInfo(t, id)["runtimeSpec"].(map[string]any)
	linux, _ := spec["linux"].(map[string]any)
	res, _ := linux["resources"].(map[string]any)
	limits, _ := res["hugepageLimits"].([]any)
	if usable := hugetlbUsableHere(t); usable != (len(limits) > 0) {
		t.Errorf("hugetlb usable on this host %v, hugepage limits in the spec %v", usable, limits)
	}
	if !hugetlbUsableHere(t) && !strings.Contains(kp.d.LogTail(400), "hugepage limits are dropped") {
		t.Error("dropped limits were not logged")
	}
}

// tolerate_missing_hugetlb_controller = false makes CreateContainer fail
// where the controller is missing, with FailedPrecondition and nothing
// left behind.
func TestHugetlbMissingControllerNotTolerated(t *testing.T) {
	if hugetlbUsableHere(t) {
		t.Skip("the hugetlb controller is usable on this host: nothing to refuse")
	}
	kp := newKubeletPod(t, withCRIKey("disable_hugetlb_controller", false), withCRIKey("tolerate_missing_hugetlb_controller", false))
	imageID := mustPull(t, kp.d, "busybox:1.36")
	cfg := kp.kubeletContainer(t, "app", imageID, "sleep 3600")
	_, err := kp.createIn(t, cfg)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "tolerate_missing_hugetlb_controller") {
		t.Fatalf("CreateContainer: %v, want FailedPrecondition naming tolerate_missing_hugetlb_controller", err)
	}
	list, err := kp.d.Runtime.ListContainers(ctxT(t), &runtimeapi.ListContainersRequest{})
	if err != nil || len(list.Containers) != 0 {
		t.Errorf("containers after a refused create: %v %v", list.GetContainers(), err)
	}
	out, err := exec.Command(filepath.Join(binDir, "ctr"), "--address", kp.l.Socket, "-n", "k8s.io", "containers", "ls", "-q").Output()
	if err != nil || strings.Count(string(out), "\n") != 1 { // the pause container only
		t.Errorf("containerd records after a refused create: %q %v", out, err)
	}
	// Without hugepage limits the same pod's containers still start.
	cfg.Linux.Resources.HugepageLimits = nil
	if _, err := kp.createIn(t, cfg); err != nil {
		t.Errorf("CreateContainer without hugepage limits: %v", err)
	}
}

// Where the controller works, an enabled limit is applied to the
// container's cgroup. On a host whose hugetlb controller is free (on no
// hierarchy in use, as on this VM's v2 mount without controllers), the
// test mounts a v1 hierarchy for it, the way such a node is set up, and
// unmounts it afterwards.
func TestHugetlbLimitApplied(t *testing.T) {
	root := hugetlbHierarchy(t)
	kp := newKubeletPod(t, withCRIKey("disable_hugetlb_controller", false), withCRIKey("tolerate_missing_hugetlb_controller", false))
	imageID := mustPull(t, kp.d, "busybox:1.36")
	cfg := kp.kubeletContainer(t, "app", imageID, "sleep 3600")
	limits := hostHugepageLimits(t, 0)
	limits[0].Limit = 4 << 20
	cfg.Linux.Resources.HugepageLimits = limits
	id, err := kp.createIn(t, cfg)
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := kp.d.Runtime.StartContainer(ctxT(t), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	if root == "" { // v2: the container's own cgroup namespace
		if got := strings.TrimSpace(kp.mustExec(t, id, "cat", "/sys/fs/cgroup/hugetlb."+limits[0].PageSize+".max")); got != strconv.Itoa(4<<20) {
			t.Errorf("hugetlb.%s.max %q, want %d", limits[0].PageSize, got, 4<<20)
		}
		return
	}
	file := filepath.Join(root, kp.cfg.Linux.CgroupParent, id, "hugetlb."+limits[0].PageSize+".limit_in_bytes")
	if b, err := os.ReadFile(file); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(4<<20) {
		t.Errorf("%s = %q (%v), want %d", file, b, err, 4<<20)
	}
}

// hugetlbUsableHere reports, independently of the daemon's own probe,
// whether runc can set hugepage limits: a v1 hugetlb hierarchy is mounted,
// or on cgroup v2 the root offers the controller.
func hugetlbUsableHere(t *testing.T) bool {
	t.Helper()
	if hostCgroupV2() {
		b, _ := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		return strings.Contains(" "+string(b)+" ", " hugetlb ")
	}
	return hugetlbMountpoint() != ""
}

func hugetlbMountpoint() string {
	for _, m := range daemon.Mounts() {
		if m.FSType == "cgroup" && strings.Contains(","+m.SuperOptions+",", ",hugetlb,") {
			return m.Point
		}
	}
	return ""
}

// hugetlbHierarchy gives the test a usable hugetlb controller: the host's
// when it has one ("" on cgroup v2), else a v1 hierarchy mounted for the
// test, removed with its cgroups at the end. It skips when neither can be
// had.
func hugetlbHierarchy(t *testing.T) string {
	t.Helper()
	if hugetlbUsableHere(t) {
		return hugetlbMountpoint()
	}
	if hostCgroupV2() {
		t.Skip("cgroup v2 host without the hugetlb controller")
	}
	// runc looks for v1 hierarchies beside the cpu one only.
	dir := "/sys/fs/cgroup/hugetlb"
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("hugetlb controller not usable here, and %s cannot be made for it: %v", dir, err)
	}
	if err := syscall.Mount("cgroup", dir, "cgroup", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "hugetlb"); err != nil {
		os.Remove(dir)
		t.Skipf("hugetlb controller not usable here and cannot be mounted as a v1 hierarchy: %v", err)
	}
	// Registered before the test starts its daemon, so it runs after the
	// daemon's cleanup (last-in first-out): the pods' cgroups are gone.
	t.Cleanup(func() {
		// The kernel gives the controller back to the v2 hierarchy when
		// the v1 one is unmounted with no cgroup left in it, dying ones
		// included; left on v1 it would change the host for later tests
		// (crun refuses a hybrid host only while a controller sits on
		// v2). A cgroup removed just now may still be dying: mount and
		// unmount again until the kernel lets go.
		daemon.RemoveCgroupTree(dir)
		for try := 0; try < 20; try++ {
			if err := syscall.Unmount(dir, 0); err != nil {
				t.Errorf("unmount the test's hugetlb hierarchy: %v", err)
				break
			}
			time.Sleep(250 * time.Millisecond)
			if hugetlbHierarchyID() == 0 {
				break
			}
			if err := syscall.Mount("cgroup", dir, "cgroup", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "hugetlb"); err != nil {
				break
			}
		}
		if id := hugetlbHierarchyID(); id != 0 {
			t.Logf("the hugetlb controller stays on v1 hierarchy %d (cgroups still in it)", id)
		}
		os.Remove(dir)
	})
	return dir
}

// hugetlbHierarchyID is the hugetlb controller's hierarchy in
// /proc/cgroups: 0 when it is on the v2 hierarchy (or none).
func hugetlbHierarchyID() int {
	b, _ := os.ReadFile("/proc/cgroups")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "hugetlb" {
			id, _ := strconv.Atoi(f[1])
			return id
		}
	}
	return 0
}
