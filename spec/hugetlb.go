package spec

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Hugetlb decides which of a request's hugepage limits reach the OCI spec
// (disable_hugetlb_controller, tolerate_missing_hugetlb_controller). The
// kubelet sends a limit for every page size the node has, 0 when the pod
// asks for none, and runc fails the container outright when it cannot
// apply one, so a node whose runtime cannot use the hugetlb controller
// must not pass them on.
type Hugetlb struct {
	disable  bool
	tolerate bool
	usable   bool
	warned   sync.Once
}

// NewHugetlb is the policy for the given keys; usable (see HugetlbUsable)
// is asked once, and only when limits are not disabled.
func NewHugetlb(disable, tolerate bool, usable func() bool) *Hugetlb {
	h := &Hugetlb{disable: disable, tolerate: tolerate}
	if !disable {
		h.usable = usable()
	}
	return h
}

// Limits are the limits to apply: all of them where the controller is
// enabled and usable; none where it is disabled, or missing and tolerated
// (logged once); a FailedPrecondition error where it is missing and not
// tolerated.
func (h *Hugetlb) Limits(ctx context.Context, in []*runtimeapi.HugepageLimit) ([]specs.LinuxHugepageLimit, error) {
	if len(in) == 0 || h.disable {
		return nil, nil
	}
	if !h.usable {
		if !h.tolerate {
			return nil, fmt.Errorf("hugepage limits requested but the hugetlb cgroup controller is not usable on this host "+
				"(set tolerate_missing_hugetlb_controller = true to drop them): %w", errdefs.ErrFailedPrecondition)
		}
		h.warned.Do(func() {
			log.G(ctx).Warn("hugetlb cgroup controller not usable on this host: hugepage limits are dropped (tolerate_missing_hugetlb_controller)")
		})
		return nil, nil
	}
	out := make([]specs.LinuxHugepageLimit, 0, len(in))
	for _, l := range in {
		out = append(out, specs.LinuxHugepageLimit{Pagesize: l.PageSize, Limit: l.Limit})
	}
	return out, nil
}

// HugetlbUsable says whether the OCI runtime's cgroup manager can set
// hugepage limits here. On a cgroup v2 host the controller must be among
// the root's controllers; otherwise (v1, or hybrid as on hosts where
// hugetlb sits on the v2 mount while the runtime manages the v1
// hierarchies) a v1 hierarchy carrying it must be mounted.
func HugetlbUsable() bool {
	if CgroupUnified() {
		b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		return err == nil && slices.Contains(strings.Fields(string(b)), "hugetlb")
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	return err == nil && hugetlbV1Mounted(string(b))
}

// hugetlbV1Mounted looks for a cgroup v1 mount whose super options name
// the hugetlb controller.
func hugetlbV1Mounted(mountinfo string) bool {
	for line := range strings.SplitSeq(mountinfo, "\n") {
		_, post, ok := strings.Cut(line, " - ")
		f := strings.Fields(post)
		if !ok || len(f) < 3 || f[0] != "cgroup" {
			continue
		}
		if slices.Contains(strings.Split(f[2], ","), "hugetlb") {
			return true
		}
	}
	return false
}
