package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"

	"github.com/nodecri/nodecri/integration/daemon"
)

// census is what pods and containers could leave behind, by kind, each a
// sorted list of names: tests take one before and after and compare them
// with diff.
type census map[string][]string

// censusKinds are census's keys, in the order diff reports them.
var censusKinds = []string{
	"pod folders", "pod state folders", "netns pins", "container folders", "fifo folders", "pod log folders",
	"ipam", "veths", "mounts", "shims", "cgroups", "containers", "tasks", "snapshots", "leases",
}

// kubeletOwned are the kinds the kubelet, not the runtime, removes: a
// container's log writer makes the pod's log folder, and only the kubelet
// deletes it.
var kubeletOwned = []string{"pod log folders"}

// takeCensus lists what the daemon on l could leave on the host: the
// plugin's pod and container folders and netns pins, pod log folders,
// IPAM reservations, veths on the pod bridge, mounts under the daemon's
// folder, shims, container cgroups, and containerd's containers, tasks,
// snapshots (active ones and image volume views) and the leases that hold
// something (an empty one pins nothing and expires).
func takeCensus(t testing.TB, l *daemon.Layout) census {
	t.Helper()
	c := census{}
	names := func(key, dir string, keep func(string) bool) {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if keep == nil || keep(e.Name()) {
				c[key] = append(c[key], e.Name())
			}
		}
	}
	names("pod folders", filepath.Join(l.Dir, "root", daemon.CRISection, "sandboxes"), nil)
	names("pod state folders", filepath.Join(l.Dir, "state", daemon.CRISection, "sandboxes"), nil)
	names("netns pins", filepath.Join(l.Dir, "state", daemon.CRISection, "netns"), nil)
	names("container folders", filepath.Join(l.Dir, "root", daemon.CRISection, "containers"), nil)
	names("fifo folders", filepath.Join(l.Dir, "state", daemon.CRISection, "fifo"), nil)
	names("pod log folders", filepath.Join(l.Dir, "pods"), nil)
	// host-local keeps a file per reserved address, next to its own.
	names("ipam", filepath.Join(l.IPAMDir(), l.Network.Name), func(n string) bool { return net.ParseIP(n) != nil })
	names("veths", filepath.Join("/sys/class/net", l.Network.Bridge, "brif"), nil)
	c["mounts"] = daemon.MountsBelow(l.Dir)
	for _, pid := range daemon.Shims(l) {
		c["shims"] = append(c["shims"], strconv.Itoa(pid))
	}
	cgs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/memory", filepath.Base(l.Dir), "*", "*"))
	for _, cg := range cgs {
		if fi, err := os.Stat(cg); err == nil && fi.IsDir() {
			c["cgroups"] = append(c["cgroups"], cg)
		}
	}

	// A client of its own: tests take a census across daemon restarts.
	client, err := containerd.New(l.Socket, containerd.WithDefaultNamespace("k8s.io"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := ctxT(t)
	cs, err := client.Containers(ctx)
	if err != nil {
		t.Fatalf("list containerd containers: %v", err)
	}
	for _, ct := range cs {
		c["containers"] = append(c["containers"], ct.ID())
	}
	ts, err := client.TaskService().List(ctx, &tasksapi.ListTasksRequest{})
	if err != nil {
		t.Fatalf("list tasks: %v", err)
	}
	for _, tk := range ts.Tasks {
		c["tasks"] = append(c["tasks"], tk.ID)
	}
	err = client.SnapshotService("overlayfs").Walk(ctx, func(_ context.Context, i snapshots.Info) error {
		// Committed snapshots are image layers, which pulls and the first
		// pod's unpack add; pods and containers make the others.
		if i.Kind != snapshots.KindCommitted {
			c["snapshots"] = append(c["snapshots"], fmt.Sprintf("%s (%s)", i.Name, i.Kind))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk snapshots: %v", err)
	}
	ls, err := client.LeasesService().List(ctx)
	if err != nil {
		t.Fatalf("list leases: %v", err)
	}
	for _, le := range ls {
		if res, err := client.LeasesService().ListResources(ctx, le); err != nil || len(res) > 0 {
			c["leases"] = append(c["leases"], le.ID)
		}
	}
	for k := range c {
		slices.Sort(c[k])
	}
	return c
}

// count is how many of a kind the census found.
func (c census) count(kind string) int { return len(c[kind]) }

// diff says what after has that c has not, and the reverse, leaving out
// the kinds named in ignore; "" when they agree.
func (c census) diff(after census, ignore ...string) string {
	var b strings.Builder
	for _, k := range censusKinds {
		if slices.Contains(ignore, k) {
			continue
		}
		for _, v := range after[k] {
			if !slices.Contains(c[k], v) {
				fmt.Fprintf(&b, "new %s: %s\n", k, v)
			}
		}
		for _, v := range c[k] {
			if !slices.Contains(after[k], v) {
				fmt.Fprintf(&b, "gone %s: %s\n", k, v)
			}
		}
	}
	return b.String()
}
