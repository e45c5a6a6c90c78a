package spec

import (
	"context"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// What the kubelet sends: a limit for each of the node's page sizes, 0 when
// the pod asks for no hugepages.
var kubeletLimits = []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}, {PageSize: "1GB", Limit: 0}}

func TestHugetlbPolicy(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name                      string
		disable, tolerate, usable bool
		want                      int
		failed                    bool
	}{
		{name: "disabled (default)", disable: true, tolerate: true, usable: true, want: 0},
		{name: "disabled, controller missing, not tolerated", disable: true, tolerate: false, usable: false, want: 0},
		{name: "enabled and usable", disable: false, tolerate: true, usable: true, want: 2},
		{name: "enabled, missing, tolerated", disable: false, tolerate: true, usable: false, want: 0},
		{name: "enabled, missing, not tolerated", disable: false, tolerate: false, usable: false, failed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked := false
			h := NewHugetlb(tc.disable, tc.tolerate, func() bool { asked = true; return tc.usable })
			if asked == tc.disable {
				t.Errorf("usable asked %v with disable %v", asked, tc.disable)
			}
			got, err := h.Limits(ctx, kubeletLimits)
			if tc.failed {
				if !errdefs.IsFailedPrecondition(err) {
					t.Fatalf("want FailedPrecondition, got %v", err)
				}
				return
			}
			if err != nil || len(got) != tc.want {
				t.Fatalf("got %v, %v; want %d limits", got, err, tc.want)
			}
			if tc.want > 0 && (got[0].Pagesize != "2MB" || got[0].Limit != 0 || got[1].Pagesize != "1GB") {
				t.Errorf("limits %+v", got)
			}
			// No limits asked for: nothing to refuse, whatever the host.
			if none, err := h.Limits(ctx, nil); none != nil || err != nil {
				t.Errorf("no limits: %v, %v", none, err)
			}
		})
	}
}

func TestHugetlbV1Mounted(t *testing.T) {
	// This VM: hugetlb is on the v2 mount, absent from the v1 hierarchies.
	hybrid := `31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
41 22 0:38 / /tmp/hugetlb-named rw,relatime - tmpfs hugetlb rw`
	if hugetlbV1Mounted(hybrid) {
		t.Error("hybrid host without a v1 hugetlb hierarchy: reported mounted")
	}
	v1 := hybrid + "\n42 30 0:39 / /sys/fs/cgroup/hugetlb rw,nosuid - cgroup cgroup rw,hugetlb\n"
	if !hugetlbV1Mounted(v1) {
		t.Error("v1 hugetlb hierarchy not found")
	}
	combined := "43 30 0:40 / /sys/fs/cgroup/net_cls,hugetlb rw - cgroup cgroup rw,net_cls,hugetlb"
	if !hugetlbV1Mounted(combined) {
		t.Error("hugetlb co-mounted with another controller not found")
	}
}
