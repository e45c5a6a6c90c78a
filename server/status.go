package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodecri/nodecri/runtimes"
)

const networkNotReadyReason = "NetworkPluginNotReady"

func (s *runtimeService) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	network := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: true}
	netErr := s.CNI.Status()
	if netErr != nil {
		network.Status = false
		network.Reason = networkNotReadyReason
		network.Message = fmt.Sprintf("Network plugin returns error: %v", netErr)
	}
	resp := &runtimeapi.StatusResponse{
		Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
			{Type: runtimeapi.RuntimeReady, Status: true},
			network,
		}},
		RuntimeHandlers: runtimeHandlers(s.Runtimes),
		Features: &runtimeapi.RuntimeFeatures{
			// Supplemental groups are resolved from the container image's
			// /etc/group by us, not by the OCI runtime, so every handler
			// honours the policy.
			SupplementalGroupsPolicy: true,
		},
	}
	if req.GetVerbose() {
		info, err := s.verboseInfo(netErr)
		if err != nil {
			return nil, err
		}
		resp.Info = info
	}
	return resp, nil
}

// runtimeHandlers lists every handler, plus the default under the empty
// name, which is how the kubelet looks up a pod without a RuntimeClass.
func runtimeHandlers(set *runtimes.Set) []*runtimeapi.RuntimeHandler {
	toCRI := func(name string, h *runtimes.Handler) *runtimeapi.RuntimeHandler {
		return &runtimeapi.RuntimeHandler{
			Name: name,
			Features: &runtimeapi.RuntimeHandlerFeatures{
				RecursiveReadOnlyMounts: h.Features.RecursiveReadOnlyMounts,
				UserNamespaces:          h.Features.UserNamespaces,
			},
		}
	}
	out := []*runtimeapi.RuntimeHandler{toCRI("", set.Default())}
	for _, h := range set.All() {
		out = append(out, toCRI(h.Name, h))
	}
	return out
}

// statusExtras follow the configuration's own keys in the "config" object
// of verbose Status. critest reads stateDir from it.
type statusExtras struct {
	ContainerdRootDir string                       `json:"containerdRootDir"`
	RootDir           string                       `json:"rootDir"`
	StateDir          string                       `json:"stateDir"`
	PodCIDRs          []string                     `json:"podCIDRs"`
	RuntimeFeatures   map[string]runtimes.Features `json:"runtimeFeatures"`
}

func (s *Service) verboseInfo(netErr error) (map[string]string, error) {
	s.mu.Lock()
	cidrs := append([]string(nil), s.podCIDRs...)
	s.mu.Unlock()
	feats := map[string]runtimes.Features{}
	for _, h := range s.Runtimes.All() {
		feats[h.Name] = h.Features
	}
	cfg, err := statusConfig(s.StatusConfig, statusExtras{
		ContainerdRootDir: s.ContainerdRootDir,
		RootDir:           s.RootDir,
		StateDir:          s.StateDir,
		PodCIDRs:          cidrs,
		RuntimeFeatures:   feats,
	})
	if err != nil {
		return nil, err
	}
	cniCfg, err := json.Marshal(s.CNI.Config())
	if err != nil {
		return nil, fmt.Errorf("marshal cni config: %w", err)
	}
	lastCNI := "OK"
	if netErr != nil {
		lastCNI = netErr.Error()
	}
	return map[string]string{
		"config":            string(cfg),
		"cniconfig":         string(cniCfg),
		"lastCNILoadStatus": lastCNI,
	}, nil
}

// statusConfig is the effective configuration as Status shows it: cfg's
// members, then extras', in one object, as a struct embedding both would
// marshal. A nil cfg adds nothing.
func statusConfig(cfg any, extras statusExtras) ([]byte, error) {
	a, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("marshal config: %w", err)
	}
	b, err := json.Marshal(extras)
	if err != nil {
		return nil, fmt.Errorf("marshal config: %w", err)
	}
	if bytes.Equal(a, []byte("null")) || bytes.Equal(a, []byte("{}")) {
		return b, nil
	}
	if len(a) < 2 || a[0] != '{' || a[len(a)-1] != '}' {
		return nil, errors.New("marshal config: the configuration is not a JSON object")
	}
	out := append(a[:len(a)-1:len(a)-1], ',')
	return append(out, b[1:]...), nil
}
