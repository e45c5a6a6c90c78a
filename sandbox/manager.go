package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/netns"
	"github.com/containerd/errdefs"
	gocni "github.com/containerd/go-cni"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/cni"
	"github.com/nodecri/nodecri/events"
	"github.com/nodecri/nodecri/failpoint"
	"github.com/nodecri/nodecri/images"
	"github.com/nodecri/nodecri/names"
	"github.com/nodecri/nodecri/runtimes"
)

// kindLabel marks containerd containers by what they are to the CRI.
const (
	kindLabel   = "io.cri-containerd.kind"
	kindSandbox = "sandbox"
)

// abandonGrace is how long a sandbox finished after its caller gave up
// waits for the kubelet's retry before it is removed.
const abandonGrace = 3 * time.Minute

// cleanupTimeout bounds the teardown of a half-made or removed sandbox; it
// runs on a context of its own, never the (possibly cancelled) caller's.
const cleanupTimeout = 2 * time.Minute

// Options are the manager's dependencies.
type Options struct {
	Client       *containerd.Client
	Runtimes     *runtimes.Set
	CNI          *cni.Manager
	Images       *images.Service
	Events       *events.Pipeline
	SandboxImage string
	RootDir      string // the plugin's root: per-pod files
	StateDir     string // the plugin's state: netns pins, shm mounts
	RestrictOOM  bool
	// UnprivilegedPorts and UnprivilegedICMP are enable_unprivileged_ports
	// and enable_unprivileged_icmp.
	UnprivilegedPorts bool
	UnprivilegedICMP  bool
	Namespace         string // containerd namespace, for work no request carries
	// Notifier is told of the sandboxes' transitions; nil for none.
	Notifier Notifier
}

// Manager creates, stops and removes sandboxes.
type Manager struct {
	Options
	store      *Store
	names      *names.Registry
	containers Containers
}

// Notifier is told of every lifecycle transition of a sandbox, or of a
// container in it, once made (the CRI's container events): t is the
// transition, containerID the container's, or the sandbox's own ID for the
// sandbox's transitions. It is called with no lock held and must not
// block.
type Notifier interface {
	Notify(t runtimeapi.ContainerEventType, containerID string, sb *Sandbox)
}

// notify tells the notifier, if any, of a transition of sb.
func (m *Manager) notify(t runtimeapi.ContainerEventType, sb *Sandbox) {
	if m.Notifier != nil {
		m.Notifier.Notify(t, sb.ID, sb)
	}
}

// Containers stops and removes a pod's containers, before the pod itself.
type Containers interface {
	StopAll(ctx context.Context, sandboxID string) error
	RemoveAll(ctx context.Context, sandboxID string) error
}

// SetContainers tells the manager who runs the pods' containers.
func (m *Manager) SetContainers(c Containers) { m.containers = c }

// NewManager returns a manager with no sandboxes.
func NewManager(opts Options) *Manager {
	return &Manager{Options: opts, store: NewStore(), names: names.New("sandbox", abandonGrace)}
}

// Store is the manager's index of sandboxes.
func (m *Manager) Store() *Store { return m.store }

func (m *Manager) Files(id string) Files {
	return Files{root: filepath.Join(m.RootDir, "sandboxes", id), state: filepath.Join(m.StateDir, "sandboxes", id)}
}

func (m *Manager) netnsDir() string { return filepath.Join(m.StateDir, "netns") }

func newID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Run creates and starts a sandbox, returning its ID. The work runs
// detached from the caller: when the kubelet's call times out the sandbox
// is still finished, and the kubelet's retry under the same name is handed
// it instead of failing on the reserved name.
func (m *Manager) Run(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (string, error) {
	h, err := m.Runtimes.Get(handler)
	if err != nil {
		return "", err
	}
	name := Name(cfg.GetMetadata())
	return m.names.Create(ctx, name, newID(), func(ctx context.Context, id string) error {
		return m.create(ctx, id, name, cfg, h)
	}, m.abandon)
}

func (m *Manager) abandon(id string) {
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), m.Namespace), cleanupTimeout)
	defer cancel()
	log.G(ctx).WithField("sandbox", id).Warn("sandbox never claimed by a RunPodSandbox retry; removing it")
	if err := m.Remove(ctx, id); err != nil {
		log.G(ctx).WithError(err).WithField("sandbox", id).Error("removing abandoned sandbox")
	}
}

// create makes the sandbox. Its records come first: the netns is pinned,
// then the pause container's record is written with "network setup
// started", and only then do CNI ADD and the pause task run, together. A
// failure anywhere tears down what was made, through the same path as
// RemovePodSandbox.
func (m *Manager) create(ctx context.Context, id, name string, cfg *runtimeapi.PodSandboxConfig, h *runtimes.Handler) (retErr error) {
	start := time.Now()
	sb := &Sandbox{ID: id, Name: name, Config: cfg, Handler: h.Name, CreatedAt: start, status: Status{Phase: PhaseCreating}}
	defer func() {
		if retErr != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			defer cancel()
			if err := m.teardown(cctx, sb); err != nil {
				log.G(ctx).WithError(err).WithField("sandbox", id).Error("cleaning up a failed RunPodSandbox")
			}
		}
	}()

	img, err := m.ensureImage(ctx, h.Snapshotter)
	if err != nil {
		return err
	}
	hostNet := sb.HostNetwork()
	hostIPC := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetIpc() == runtimeapi.NamespaceMode_NODE
	f := m.Files(id)
	if err := f.write(cfg, hostNet, hostIPC); err != nil {
		return fmt.Errorf("sandbox files: %w", err)
	}
	failpoint.Hit(ctx, "sandbox.run.after-files")

	if !hostNet {
		t := time.Now()
		ns, err := netns.NewNetNS(m.netnsDir())
		if err != nil {
			return fmt.Errorf("create network namespace: %w", err)
		}
		phaseDuration.WithValues("netns").UpdateSince(t)
		// Not a transition: nothing else sees the sandbox before its
		// first record, which is written with it.
		sb.mu.Lock()
		sb.status.NetNSPath = ns.GetPath()
		sb.mu.Unlock()
		failpoint.Hit(ctx, "sandbox.run.after-netns")
	}

	opts, err := pauseSpec(specInput{id: id, cfg: cfg, image: &img, imageName: m.SandboxImage, handler: h,
		files: f, netnsPath: sb.Status().NetNSPath, restrictOOM: m.RestrictOOM,
		unprivilegedPorts: m.UnprivilegedPorts, unprivilegedICMP: m.UnprivilegedICMP})
	if err != nil {
		return fmt.Errorf("pause spec: %w", err)
	}
	meta, err := sb.metadata(sb.Status())
	if err != nil {
		return err
	}
	cimg, err := m.Client.GetImage(ctx, m.SandboxImage)
	if err != nil {
		return fmt.Errorf("sandbox image %s: %w", m.SandboxImage, err)
	}
	snapshot, err := Rootfs(ctx, m.Client, id, cimg, h.Snapshotter, cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions())
	if err != nil {
		return err
	}
	t := time.Now()
	container, err := m.Client.NewContainer(ctx, id,
		containerd.WithContainerLabels(map[string]string{kindLabel: kindSandbox}),
		containerd.WithImageName(m.SandboxImage),
		containerd.WithSnapshotter(h.Snapshotter),
		snapshot,
		h.WithRuntime(),
		containerd.WithNewSpec(opts...),
		containerd.WithContainerExtension(MetadataExtension, meta),
	)
	if err != nil {
		return fmt.Errorf("create pause container: %w", err)
	}
	failpoint.Hit(ctx, "sandbox.run.after-record")
	phaseDuration.WithValues("pause_create").UpdateSince(t)

	// CNI ADD and the pause task proceed together: both only need the
	// namespace, which exists.
	var (
		wg     sync.WaitGroup
		cniRes *gocni.Result
		cniErr error
	)
	if !hostNet {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.Now()
			cniRes, cniErr = m.CNI.Setup(ctx, m.pod(sb))
			failpoint.Hit(ctx, "sandbox.run.after-cni-add")
			phaseDuration.WithValues("cni_add").UpdateSince(t)
		}()
	}
	m.Events.Watch(id, m)
	pid, taskErr := m.startPause(ctx, container)
	failpoint.Hit(ctx, "sandbox.run.after-pause-start")
	wg.Wait()
	if err := errors.Join(taskErr, cniErr); err != nil {
		return err
	}

	err = m.update(ctx, sb, func(st *Status) error {
		st.Phase = PhaseReady
		st.Pid = pid
		if !hostNet {
			st.CNIResult = cniRes
			st.IPs = podIPs(cniRes)
		}
		return nil
	})
	if err != nil {
		return err
	}
	failpoint.Hit(ctx, "sandbox.run.after-ready")
	m.store.Add(sb)
	m.notify(runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, sb)
	m.notify(runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, sb)
	phaseDuration.WithValues("total").UpdateSince(start)
	return nil
}

// Rootfs prepares a container's snapshot; in a pod with its own user
// namespace the files are mapped to its IDs, by idmapped mounts where the
// snapshotter can, else by a remapped copy.
func Rootfs(ctx context.Context, client *containerd.Client, id string, img containerd.Image, snapshotter string, u *runtimeapi.UserNamespace) (containerd.NewContainerOpts, error) {
	uids, gids := idMappings(u)
	if uids == nil {
		return containerd.WithNewSnapshot(id, img), nil
	}
	if len(uids) != 1 || len(gids) != 1 {
		return nil, fmt.Errorf("user namespace needs exactly one uid and one gid mapping: %w", errdefs.ErrInvalidArgument)
	}
	caps, err := client.GetSnapshotterCapabilities(ctx, snapshotter)
	if err != nil {
		return nil, err
	}
	if slices.Contains(caps, "remap-ids") {
		return containerd.WithNewSnapshot(id, img, containerd.WithRemapperLabels(
			uids[0].ContainerID, uids[0].HostID, gids[0].ContainerID, gids[0].HostID, uids[0].Size)), nil
	}
	return containerd.WithUserNSRemappedSnapshot(id, img, uids, gids), nil
}

func (m *Manager) startPause(ctx context.Context, c containerd.Container) (uint32, error) {
	t := time.Now()
	task, err := c.NewTask(ctx, cio.NullIO)
	if err != nil {
		return 0, fmt.Errorf("create pause task: %w", err)
	}
	if err := task.Start(ctx); err != nil {
		return 0, fmt.Errorf("start pause task: %w", err)
	}
	phaseDuration.WithValues("pause_start").UpdateSince(t)
	return task.Pid(), nil
}

// ensureImage returns the sandbox image, pulling it when missing.
func (m *Manager) ensureImage(ctx context.Context, snapshotter string) (images.Image, error) {
	img, err := m.Images.Resolve(m.SandboxImage)
	if err == nil {
		if ci, err := m.Client.GetImage(ctx, m.SandboxImage); err == nil {
			if ok, _ := ci.IsUnpacked(ctx, snapshotter); ok {
				return img, nil
			}
		}
	}
	if _, err := m.Images.Pull(ctx, m.SandboxImage, nil, snapshotter); err != nil {
		return images.Image{}, fmt.Errorf("sandbox image %s: %w", m.SandboxImage, err)
	}
	return m.Images.Resolve(m.SandboxImage)
}

// update changes sb's status through fn, its record first (see
// Sandbox.update).
func (m *Manager) update(ctx context.Context, sb *Sandbox, fn func(*Status) error) error {
	return sb.update(ctx, m.persist, fn)
}

// persist writes the sandbox's metadata to its pause container's record.
// What it records has happened: it is written even when the caller has
// gone.
func (m *Manager) persist(ctx context.Context, sb *Sandbox, meta *Metadata) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	c, err := m.Client.LoadContainer(ctx, sb.ID)
	if err != nil {
		return fmt.Errorf("load sandbox record: %w", err)
	}
	return c.Update(ctx, func(ctx context.Context, _ *containerd.Client, rec *containers.Container) error {
		return setExtension(rec, meta)
	})
}

func (m *Manager) pod(sb *Sandbox) *cni.Pod {
	md := sb.Config.GetMetadata()
	p := &cni.Pod{
		SandboxID:  sb.ID,
		NetNS:      sb.Status().NetNSPath,
		Name:       md.GetName(),
		Namespace:  md.GetNamespace(),
		UID:        md.GetUid(),
		Ports:      portMappings(sb.Config.GetPortMappings()),
		CgroupPath: sb.Config.GetLinux().GetCgroupParent(),
	}
	if dns := sb.Config.GetDnsConfig(); dns != nil {
		p.DNS = &gocni.DNS{Servers: dns.Servers, Searches: dns.Searches, Options: dns.Options}
	}
	p.Bandwidth = bandwidth(sb.Config.GetAnnotations())
	return p
}

func portMappings(pms []*runtimeapi.PortMapping) []gocni.PortMapping {
	var out []gocni.PortMapping
	for _, pm := range pms {
		if pm.HostPort <= 0 {
			continue
		}
		proto := "tcp"
		switch pm.Protocol {
		case runtimeapi.Protocol_UDP:
			proto = "udp"
		case runtimeapi.Protocol_SCTP:
			proto = "sctp"
		}
		out = append(out, gocni.PortMapping{HostPort: pm.HostPort, ContainerPort: pm.ContainerPort, Protocol: proto, HostIP: pm.HostIp})
	}
	return out
}

// podIPs lists the pod's addresses on its primary interface, IPv4 first.
func podIPs(r *gocni.Result) []string {
	if r == nil {
		return nil
	}
	var v4, v6 []string
	for name, iface := range r.Interfaces {
		if name != "eth0" || iface == nil {
			continue
		}
		for _, c := range iface.IPConfigs {
			if c.IP.To4() != nil {
				v4 = append(v4, c.IP.String())
			} else {
				v6 = append(v6, c.IP.String())
			}
		}
	}
	return append(v4, v6...)
}

// Stop stops the pause task and tears the pod's network down. Stopping a
// stopped or unknown sandbox succeeds.
func (m *Manager) Stop(ctx context.Context, id string) error {
	sb, err := m.store.Get(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !m.lockOp(sb) {
		return nil // removed meanwhile
	}
	defer sb.opMu.Unlock()
	return m.stop(ctx, sb)
}

// lockOp takes sb's operation lock, unless a RemovePodSandbox that held it
// first removed the sandbox: the caller found it before that, and must act
// as if it had come after.
func (m *Manager) lockOp(sb *Sandbox) bool {
	sb.opMu.Lock()
	if cur, err := m.store.Get(sb.ID); err != nil || cur != sb {
		sb.opMu.Unlock()
		return false
	}
	return true
}

func (m *Manager) stop(ctx context.Context, sb *Sandbox) error {
	if m.containers != nil {
		if err := m.containers.StopAll(ctx, sb.ID); err != nil {
			return fmt.Errorf("stop the pod's containers: %w", err)
		}
	}
	failpoint.Hit(ctx, "sandbox.stop.after-containers")
	if sb.Status().Phase == PhaseStopped {
		return nil
	}
	if err := m.killPause(ctx, sb.ID); err != nil {
		return err
	}
	failpoint.Hit(ctx, "sandbox.stop.after-pause-kill")
	if err := m.teardownNetwork(ctx, sb); err != nil {
		return err
	}
	var was Phase
	err := m.update(ctx, sb, func(st *Status) error {
		was, st.Phase = st.Phase, PhaseStopped
		return nil
	})
	if err != nil {
		// Nothing changed: a retry kills, deletes (CNI DEL is
		// idempotent) and records again.
		return err
	}
	if was == PhaseReady {
		m.notify(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, sb)
	}
	return nil
}

// setExited marks a ready sandbox's pause gone, telling the notifier:
// the pause exit and RemovePodSandbox get here (StopPodSandbox goes
// further, to stopped). The record reads the same (a restart tells the
// two apart by the pause task), so nothing is written and nothing can
// fail but a bug.
func (m *Manager) setExited(ctx context.Context, sb *Sandbox) {
	was := PhaseExited
	err := m.update(ctx, sb, func(st *Status) error {
		if st.Phase == PhaseReady {
			was, st.Phase = st.Phase, PhaseExited
		}
		return nil
	})
	if err != nil {
		log.G(ctx).WithError(err).WithField("sandbox", sb.ID).Error("marking sandbox not ready")
		return
	}
	if was == PhaseReady {
		m.notify(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, sb)
	}
}

// killPause kills the pause task, waits for it and deletes it.
func (m *Manager) killPause(ctx context.Context, id string) error {
	c, err := m.Client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load pause task: %w", err)
	}
	exited, err := task.Wait(ctx)
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("wait pause task: %w", err)
	}
	if err == nil {
		if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
			if !runtimes.TaskGone(err) {
				return fmt.Errorf("kill pause task: %w", err)
			}
		} else {
			select {
			case <-exited:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !runtimes.TaskGone(err) {
		return fmt.Errorf("delete pause task: %w", err)
	}
	return nil
}

// teardownNetwork runs CNI DEL (retried: an IP must not leak) and removes
// the namespace pin. It is owed from the moment setup was recorded started.
func (m *Manager) teardownNetwork(ctx context.Context, sb *Sandbox) error {
	st := sb.Status()
	if st.Network() == NetworkNone || st.Network() == NetworkTornDown {
		return nil
	}
	var err error
	for attempt := range 3 {
		if err = m.CNI.Remove(ctx, m.pod(sb)); err == nil {
			break
		}
		log.G(ctx).WithError(err).WithField("sandbox", sb.ID).WithField("attempt", attempt+1).Warn("CNI DEL failed")
		select {
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err != nil {
		return err
	}
	failpoint.Hit(ctx, "sandbox.network.after-cni-del")
	if err := netns.LoadNetNS(st.NetNSPath).Remove(); err != nil {
		return fmt.Errorf("remove network namespace: %w", err)
	}
	failpoint.Hit(ctx, "sandbox.network.after-netns-remove")
	return nil
}

// teardown undoes everything a sandbox has, whatever state it got to: the
// one cleanup path for RunPodSandbox failures and RemovePodSandbox.
func (m *Manager) teardown(ctx context.Context, sb *Sandbox) error {
	m.Events.Unwatch(sb.ID)
	if err := m.killPause(ctx, sb.ID); err != nil {
		return err
	}
	failpoint.Hit(ctx, "sandbox.teardown.after-pause-kill")
	if err := m.teardownNetwork(ctx, sb); err != nil {
		return err
	}
	failpoint.Hit(ctx, "sandbox.teardown.after-network")
	if c, err := m.Client.LoadContainer(ctx, sb.ID); err == nil {
		RemoveCgroup(ctx, c)
		if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete pause container: %w", err)
		}
	} else if !errdefs.IsNotFound(err) {
		return err
	}
	failpoint.Hit(ctx, "sandbox.teardown.after-record-delete")
	return m.Files(sb.ID).remove()
}

// Remove stops the sandbox if needed and deletes everything it has.
// Removing an unknown sandbox succeeds.
func (m *Manager) Remove(ctx context.Context, id string) error {
	sb, err := m.store.Get(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !m.lockOp(sb) {
		return nil // removed meanwhile
	}
	defer sb.opMu.Unlock()
	// Creates under way finish first, and none starts: the pod's
	// containers are all in the store for RemoveAll.
	sb.createMu.Lock()
	defer sb.createMu.Unlock()
	if m.containers != nil {
		if err := m.containers.RemoveAll(ctx, sb.ID); err != nil {
			return fmt.Errorf("remove the pod's containers: %w", err)
		}
	}
	failpoint.Hit(ctx, "sandbox.remove.after-containers")
	if err := m.teardown(ctx, sb); err != nil {
		return err
	}
	failpoint.Hit(ctx, "sandbox.remove.after-teardown")
	m.setExited(ctx, sb) // removed without a stop
	m.store.Delete(sb.ID)
	m.names.Release(sb.Name, sb.ID)
	m.notify(runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, sb)
	return nil
}

// OnExit: the pause process died, so the pod is NotReady.
func (m *Manager) OnExit(ctx context.Context, e events.Exit) {
	sb, err := m.store.Get(e.ContainerID)
	if err != nil {
		return
	}
	m.setExited(ctx, sb)
	log.G(ctx).WithField("sandbox", e.ContainerID).WithField("status", e.Status).Info("pause process exited; sandbox not ready")
}

// OnOOM: nothing to do for the pause process.
func (m *Manager) OnOOM(context.Context, events.OOM) {}

// IPs returns the sandbox's primary and additional IPs for status.
func (st Status) Primary() (string, []string) {
	if len(st.IPs) == 0 {
		return "", nil
	}
	return st.IPs[0], st.IPs[1:]
}

func setExtension(rec *containers.Container, meta *Metadata) error {
	a, err := typeurl.MarshalAny(meta)
	if err != nil {
		return fmt.Errorf("encode sandbox metadata: %w", err)
	}
	if rec.Extensions == nil {
		rec.Extensions = map[string]typeurl.Any{}
	}
	rec.Extensions[MetadataExtension] = a
	return nil
}
