package containers

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/containerd/log"
)

// splitShims counts containers whose task landed in a shim other than
// their pause's. The runc shim groups a pod's tasks behind one socket;
// a new task's `shim start` reuses it only if it can connect within
// 100 ms, and a CPU-starved start misses that, removes the socket and
// starts a second shim on its path. Nothing breaks until containerd
// restarts: it then finds the pause's bundle pointing at the second shim,
// which does not know the pause, and kills the pause as leaked. The pod
// goes NotReady and the kubelet recreates it. This is containerd's shim
// (upstream's CRI has it too); the counter lets an operator see it coming.
var splitShims = Metrics.NewCounter("split_shims", "containers whose task was started by a shim other than their pod's pause's (the pod will not survive a containerd restart)")

// checkShim compares the shim (the parent process, which adopts each
// task's init as subreaper) of a just-created task with the pause's.
// Only runc-like shims run tasks as host processes; others are skipped.
// It reports whether the shims differ.
func checkShim(ctx context.Context, shimType, containerID string, pid, pausePid uint32) bool {
	if shimType != "io.containerd.runc.v2" || pid == 0 || pausePid == 0 {
		return false
	}
	shim, err1 := parentPid(pid)
	pauseShim, err2 := parentPid(pausePid)
	if err1 != nil || err2 != nil || shim == pauseShim {
		return false
	}
	splitShims.Inc(1)
	log.G(ctx).WithFields(log.Fields{"container": containerID, "shim": shim, "pauseShim": pauseShim}).
		Warn("container task started by a second shim (containerd-shim-runc-v2 could not reach the pod's shim in time); its pod will be lost on the next containerd restart")
	return true
}

// parentPid reads PPid from /proc/<pid>/status.
func parentPid(pid uint32) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("no PPid in /proc/%d/status", pid)
}
