package cni

import (
	"context"
	"fmt"
	"os"
	"time"

	gocni "github.com/containerd/go-cni"
	metrics "github.com/docker/go-metrics"
)

// Metrics is the CNI metrics namespace; the plugin registers it.
var Metrics = metrics.NewNamespace("nodecri", "cni", nil)

var (
	opDuration = Metrics.NewLabeledTimer("operation_duration", "CNI ADD and DEL duration by operation", "operation")
	opErrors   = Metrics.NewLabeledCounter("operation_errors", "failed CNI operations by operation", "operation")
	ops        = Metrics.NewLabeledCounter("operations", "CNI operations by operation", "operation")
)

// Pod is what CNI is told about a pod's network.
type Pod struct {
	SandboxID  string
	NetNS      string
	Name       string
	Namespace  string
	UID        string
	Ports      []gocni.PortMapping
	Bandwidth  *gocni.BandWidth
	DNS        *gocni.DNS
	CgroupPath string
}

func (p *Pod) opts() []gocni.NamespaceOpts {
	opts := []gocni.NamespaceOpts{
		// IgnoreUnknown: plugins that do not know the K8S_POD_* args (such
		// as host-local) would refuse them otherwise.
		gocni.WithLabels(map[string]string{
			"IgnoreUnknown":              "1",
			"K8S_POD_NAMESPACE":          p.Namespace,
			"K8S_POD_NAME":               p.Name,
			"K8S_POD_INFRA_CONTAINER_ID": p.SandboxID,
			"K8S_POD_UID":                p.UID,
		}),
		gocni.WithCapabilityPortMap(p.Ports),
	}
	if p.Bandwidth != nil {
		opts = append(opts, gocni.WithCapabilityBandWidth(*p.Bandwidth))
	}
	if p.DNS != nil {
		opts = append(opts, gocni.WithCapabilityDNS(*p.DNS))
	}
	if p.CgroupPath != "" {
		opts = append(opts, gocni.WithCapabilityCgroupPath(p.CgroupPath))
	}
	return opts
}

// Setup runs CNI ADD for the pod.
func (m *Manager) Setup(ctx context.Context, p *Pod) (*gocni.Result, error) {
	if err := m.Status(); err != nil {
		return nil, err
	}
	start := time.Now()
	ops.WithValues("add").Inc()
	res, err := m.cni.Setup(ctx, p.SandboxID, p.NetNS, p.opts()...)
	opDuration.WithValues("add").UpdateSince(start)
	if err != nil {
		opErrors.WithValues("add").Inc()
		return nil, fmt.Errorf("CNI ADD for sandbox %s: %w", p.SandboxID, err)
	}
	return res, nil
}

// Remove runs CNI DEL for the pod. A namespace already gone is passed as
// empty, as the CNI spec allows, so IPAM still releases the pod's IPs.
func (m *Manager) Remove(ctx context.Context, p *Pod) error {
	netns := p.NetNS
	if netns != "" {
		if _, err := os.Stat(netns); err != nil {
			netns = ""
		}
	}
	start := time.Now()
	ops.WithValues("del").Inc()
	err := m.cni.Remove(ctx, p.SandboxID, netns, p.opts()...)
	opDuration.WithValues("del").UpdateSince(start)
	if err != nil {
		opErrors.WithValues("del").Inc()
		return fmt.Errorf("CNI DEL for sandbox %s: %w", p.SandboxID, err)
	}
	return nil
}
