// Package plugin registers nodecri in containerd's plugin graph as the
// io.containerd.grpc.v1 "cri" plugin and wires its parts together.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/containerd/v2/version"
	"github.com/containerd/log"
	"github.com/containerd/platforms"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"
	metrics "github.com/docker/go-metrics"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/nodecri/nodecri/cni"
	"github.com/nodecri/nodecri/config"
	"github.com/nodecri/nodecri/containers"
	"github.com/nodecri/nodecri/events"
	"github.com/nodecri/nodecri/images"
	"github.com/nodecri/nodecri/runtimes"
	"github.com/nodecri/nodecri/sandbox"
	"github.com/nodecri/nodecri/server"
	"github.com/nodecri/nodecri/spec"
	"github.com/nodecri/nodecri/stats"
	"github.com/nodecri/nodecri/streaming"
)

// ID is the plugin's ID; with its type it is the section name operators
// know: [plugins."io.containerd.grpc.v1.cri"].
const ID = "cri"

func init() {
	// containerd 2.x's two CRI sections are plugins of their own, so that
	// containerd reads them (it skips sections of unregistered plugins);
	// each hands its decoded section to the CRI plugin.
	registry.Register(&plugin.Registration{
		Type:   plugins.CRIServicePlugin,
		ID:     "runtime",
		Config: ptr(config.DefaultRuntime()),
		InitFn: func(ic *plugin.InitContext) (any, error) { return ic.Config.(*config.RuntimeConfig), nil },
	})
	registry.Register(&plugin.Registration{
		Type:   plugins.CRIServicePlugin,
		ID:     "images",
		Config: ptr(config.DefaultImages()),
		InitFn: func(ic *plugin.InitContext) (any, error) { return ic.Config.(*config.ImageConfig), nil },
	})
	registry.Register(&plugin.Registration{
		Type: plugins.GRPCPlugin,
		ID:   ID,
		Requires: []plugin.Type{
			plugins.CRIServicePlugin,
			plugins.EventPlugin,
			plugins.ServicePlugin,
			plugins.LeasePlugin,
			plugins.SandboxStorePlugin,
			plugins.TransferPlugin,
			plugins.MountManagerPlugin,
			plugins.SandboxControllerPlugin,
		},
		Config:          ptr(config.DefaultServer()),
		ConfigMigration: migrateConfig,
		InitFn:          initPlugin,
	})
}

func ptr[T any](v T) *T { return &v }

// migrateConfig moves a 1.x layout (a file of version 3 or older) into
// 2.x's sections before containerd decodes them, as upstream does, but
// refuses a key set in both layouts instead of keeping one silently.
func migrateConfig(ctx context.Context, fileVersion int, sections map[string]any) error {
	if fileVersion >= version.ConfigVersion {
		return nil
	}
	warnings, err := config.Migrate(sections)
	for _, w := range warnings {
		log.G(ctx).WithField("key", w).Warn("cri config: ignoring unknown key")
	}
	return err
}

// loadConfig assembles the plugin's configuration from its own section and
// the two CRI sections, and validates it.
func loadConfig(ic *plugin.InitContext) (*config.Config, error) {
	rt, err := ic.GetByID(plugins.CRIServicePlugin, "runtime")
	if err != nil {
		return nil, fmt.Errorf("cri runtime section: %w", err)
	}
	img, err := ic.GetByID(plugins.CRIServicePlugin, "images")
	if err != nil {
		return nil, fmt.Errorf("cri images section: %w", err)
	}
	cfg, warnings, err := config.Assemble(*ic.Config.(*config.ServerConfig), *rt.(*config.RuntimeConfig), *img.(*config.ImageConfig))
	for _, w := range warnings {
		log.G(ic.Context).Warn("cri config: " + w)
	}
	if err != nil {
		return nil, err
	}
	for _, key := range cfg.Deprecated() {
		log.G(ic.Context).WithField("key", key.Key).Warn("cri config: " + key.Why)
	}
	if err := cfg.Validate(); err != nil {
		return nil, oneLine(err)
	}
	return cfg, nil
}

var registerMetrics sync.Once

func initPlugin(ic *plugin.InitContext) (any, error) {
	// Background work (CNI watch, usage collection) runs for the daemon's
	// life, in the CRI's namespace.
	ctx := namespaces.WithNamespace(ic.Context, config.Namespace)
	cfg, err := loadConfig(ic)
	if err != nil {
		return nil, err
	}
	rootDir, stateDir := ic.Properties[plugins.PropertyRootDir], ic.Properties[plugins.PropertyStateDir]
	for _, d := range []string{rootDir, stateDir} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("create plugin dir: %w", err)
		}
	}
	snapshotRoot, err := snapshotterRoot(ic, cfg)
	if err != nil {
		return nil, err
	}

	client, err := containerd.New("",
		containerd.WithDefaultNamespace(config.Namespace),
		containerd.WithDefaultPlatform(platforms.Default()),
		containerd.WithInMemoryServices(ic),
	)
	if err != nil {
		return nil, fmt.Errorf("create in-process containerd client: %w", err)
	}
	if cfg.EnableCDI {
		// Spec files that fail to parse are reported at injection time.
		if err := cdi.Configure(cdi.WithSpecDirs(cfg.CDISpecDirs...)); err != nil {
			log.G(ctx).WithError(err).Warn("CDI spec directories")
		}
	}
	rtOpts, err := runtimeOptions(cfg)
	if err != nil {
		return nil, err
	}
	rts, err := runtimes.New(ctx, rtOpts, runtimes.ProbeBinary)
	if err != nil {
		return nil, err
	}
	net, err := cni.New(ctx, cni.Config{
		ConfDir:    cfg.CNI.ConfDir,
		BinDirs:    cfg.CNI.BinDirs,
		MaxConfNum: cfg.CNI.MaxConfNum,
		Template:   cfg.CNI.ConfTemplate,
	})
	if err != nil {
		return nil, err
	}
	fsinfo := images.NewFSInfo(client.SnapshotService(cfg.Snapshotter), snapshotRoot, cfg.StatsPeriod())
	// pinned_images.sandbox is the pause image.
	var pinned []string
	for _, ref := range cfg.PinnedImages {
		pinned = append(pinned, ref)
	}
	imgs, err := images.NewService(client, fsinfo, images.Options{
		ConfigPath:             cfg.Registry.ConfigPath,
		MaxConcurrentDownloads: cfg.MaxConcurrentDownloads,
		ProgressTimeout:        cfg.PullProgressTimeout(),
		Pinned:                 pinned,
	})
	if err != nil {
		return nil, err
	}
	if err := imgs.Start(ctx); err != nil {
		return nil, err
	}

	pipeline := events.New(client)
	pipeline.Subscribe(ctx)
	// Both managers tell of their transitions through one notifier, which
	// reaches the CRI service once it is built.
	notifier := &serviceNotifier{}
	sandboxes := sandbox.NewManager(sandbox.Options{
		Client:            client,
		Runtimes:          rts,
		CNI:               net,
		Images:            imgs,
		Events:            pipeline,
		SandboxImage:      cfg.SandboxImage,
		RootDir:           rootDir,
		StateDir:          stateDir,
		RestrictOOM:       cfg.RestrictOOMScoreAdj,
		UnprivilegedPorts: cfg.EnableUnprivilegedPorts,
		UnprivilegedICMP:  cfg.EnableUnprivilegedICMP,
		Namespace:         config.Namespace,
		Notifier:          notifier,
	})

	ctrs := containers.NewManager(containers.Options{
		Client:         client,
		Runtimes:       rts,
		Images:         imgs,
		Events:         pipeline,
		Sandboxes:      sandboxes,
		MaxLogLineSize: cfg.MaxContainerLogLineSize,
		EnableCDI:      cfg.EnableCDI,
		RootDir:        rootDir,
		StateDir:       stateDir,
		RestrictOOM:    cfg.RestrictOOMScoreAdj,
		Hugetlb:        spec.NewHugetlb(cfg.DisableHugetlbController, cfg.TolerateMissingHugetlbController, spec.HugetlbUsable),
		Namespace:      config.Namespace,
		Notifier:       notifier,
	})
	sandboxes.SetContainers(ctrs)
	// Rebuild state from containerd's records before serving: the event
	// pipeline is already subscribed, so no exit in between is missed.
	if err := sandboxes.Recover(ctx); err != nil {
		return nil, err
	}
	if err := ctrs.Recover(ctx); err != nil {
		return nil, err
	}

	registerMetrics.Do(func() {
		// Added before registering: the registry checks what a
		// collector reports against what it described then.
		sandbox.Metrics.Add(sandbox.StateCollector(sandboxes.Store()))
		containers.Metrics.Add(containers.StateCollector(ctrs.Store()))
		for _, ns := range []*metrics.Namespace{server.Metrics, images.Metrics, cni.Metrics, sandbox.Metrics, containers.Metrics, stats.Metrics, events.Metrics} {
			metrics.Register(ns)
		}
	})
	go net.Run(ctx)
	go fsinfo.Run(ctx)
	collector := stats.New(stats.Options{
		Tasks:        client.TaskService(),
		Snapshotter:  client.SnapshotService,
		Layers:       writableLayers(ic, sandboxes, ctrs, rts),
		SamplePeriod: cfg.SamplePeriod(),
		LayerPeriod:  cfg.StatsPeriod(),
	})
	go collector.Run(ctx)

	// Streaming (exec, attach, port-forward): listen now, so a bad address
	// or a taken port fails the plugin; serve for the daemon's life.
	st, err := streaming.New(streaming.Options{
		Address:  cfg.StreamServerAddress,
		Port:     cfg.StreamServerPort,
		TLS:      cfg.EnableTLSStreaming,
		CertFile: cfg.X509KeyPairStreaming.TLSCertFile,
		KeyFile:  cfg.X509KeyPairStreaming.TLSKeyFile,
	}, ctrs, sandboxes)
	if err != nil {
		return nil, err
	}
	go func() {
		if err := st.Serve(ctx); err != nil {
			log.G(ctx).WithError(err).Error("streaming server stopped")
		}
	}()

	svc := server.New(server.Options{
		Client:            client,
		Runtimes:          rts,
		CNI:               net,
		FSInfo:            fsinfo,
		Images:            imgs,
		Sandboxes:         sandboxes,
		Containers:        ctrs,
		Stats:             collector,
		Streaming:         st,
		RootDir:           rootDir,
		StateDir:          stateDir,
		ContainerdRootDir: filepath.Dir(rootDir),
		Namespace:         config.Namespace,
		SandboxImage:      cfg.SandboxImage,
		StatusConfig:      cfg,
	})
	// Lifecycle transitions become GetContainerEvents events from now on;
	// no client could have subscribed to those of recovery.
	notifier.connect(svc)
	for _, h := range rts.All() {
		log.G(ctx).WithFields(log.Fields{
			"handler": h.Name, "type": h.Type, "snapshotter": h.Snapshotter,
			"rro": h.Features.RecursiveReadOnlyMounts, "userns": h.Features.UserNamespaces,
		}).Info("runtime handler")
	}
	ic.RegisterReadiness()()
	return &criPlugin{svc: svc}, nil
}

// criPlugin is what containerd's gRPC server plugin picks up and serves.
type criPlugin struct{ svc *server.Service }

func (p *criPlugin) Register(s *grpc.Server) error {
	p.svc.Register(s)
	return nil
}

// serviceNotifier is the managers' Notifier: it hands each transition to
// the CRI service, which publishes it to GetContainerEvents. The managers
// are built, and recover, before the service is; until connect, which the
// plugin calls once the service is built, transitions go nowhere.
type serviceNotifier struct {
	svc atomic.Pointer[server.Service]
}

func (n *serviceNotifier) connect(svc *server.Service) { n.svc.Store(svc) }

func (n *serviceNotifier) Notify(t runtimeapi.ContainerEventType, containerID string, sb *sandbox.Sandbox) {
	if svc := n.svc.Load(); svc != nil {
		svc.Notify(t, containerID, sb)
	}
}

// runtimeOptions gives the runtimes package the configured handlers, each
// handler's [options] table decoded into what its shim takes.
func runtimeOptions(cfg *config.Config) (runtimes.Options, error) {
	opts := runtimes.Options{
		Handlers:    make(map[string]runtimes.Config, len(cfg.Containerd.Runtimes)),
		Default:     cfg.Containerd.DefaultRuntimeName,
		Snapshotter: cfg.Snapshotter,
	}
	for name, r := range cfg.Containerd.Runtimes {
		shimOpts, err := config.DecodeOptions(r.Type, r.Options)
		if err != nil {
			return runtimes.Options{}, fmt.Errorf("runtime %q: %w", name, err)
		}
		opts.Handlers[name] = runtimes.Config{
			Type:                 r.Type,
			Path:                 r.Path,
			Snapshotter:          r.Snapshotter,
			PodAnnotations:       r.PodAnnotations,
			ContainerAnnotations: r.ContainerAnnotations,
			Options:              shimOpts,
		}
	}
	return opts, nil
}

// snapshotterRoot checks that every snapshotter the config names is loaded
// and returns the default one's root folder (ImageFsInfo's mountpoint).
func snapshotterRoot(ic *plugin.InitContext, cfg *config.Config) (string, error) {
	check := func(key, name string) (*plugin.Plugin, error) {
		p := ic.Plugins().Get(plugins.SnapshotPlugin, name)
		if p == nil {
			return nil, &config.Error{Key: key, Value: name, Why: "no such snapshotter plugin"}
		}
		if err := p.Err(); err != nil {
			return nil, &config.Error{Key: key, Value: name, Why: fmt.Sprintf("snapshotter did not load: %v", err)}
		}
		return p, nil
	}
	p, err := check("snapshotter", cfg.Snapshotter)
	if err != nil {
		return "", err
	}
	for _, name := range cfg.RuntimeNames() {
		if sn := cfg.Containerd.Runtimes[name].Snapshotter; sn != "" {
			if _, err := check("containerd.runtimes."+name+".snapshotter", sn); err != nil {
				return "", err
			}
		}
	}
	return p.Meta.Exports["root"], nil
}

// writableLayers lists every container's writable layer for the stats
// collector: the snapshot named by the container's ID, in its runtime
// handler's snapshotter, whose root is the filesystem the kubelet is told.
func writableLayers(ic *plugin.InitContext, sbs *sandbox.Manager, ctrs *containers.Manager, rts *runtimes.Set) func() []stats.Layer {
	roots := map[string]string{}
	for _, h := range rts.All() {
		if p := ic.Plugins().Get(plugins.SnapshotPlugin, h.Snapshotter); p != nil {
			roots[h.Snapshotter] = p.Meta.Exports["root"]
		}
	}
	return func() []stats.Layer {
		list := ctrs.Store().List("")
		out := make([]stats.Layer, 0, len(list))
		for _, c := range list {
			h := rts.Default()
			if sb, err := sbs.Store().Get(c.SandboxID); err == nil {
				if sh, err := rts.Get(sb.Handler); err == nil {
					h = sh
				}
			}
			out = append(out, stats.Layer{ID: c.ID, Snapshotter: h.Snapshotter, Mountpoint: roots[h.Snapshotter]})
		}
		return out
	}
}

// oneLine joins every config error into one log line.
func oneLine(err error) error {
	var parts []string
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			parts = append(parts, e.Error())
		}
	} else {
		parts = []string{err.Error()}
	}
	return errors.New(strings.Join(parts, "; "))
}
