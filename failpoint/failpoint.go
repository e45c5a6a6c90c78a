// Package failpoint names the step boundaries of the sandbox and container
// lifecycles, where a crash must leave state that recovery can finish or
// undo. The fault-injection tests (integration/faults_test.go) kill the
// daemon at each of them.
//
// Hit is an empty, inlined function unless the binary is built with the
// `failpoints` build tag (`make build-failpoints`, bin/containerd-failpoints,
// used only by tests): then NODECRI_FAILPOINTS=name=kill[,name=kill...]
// makes the process SIGKILL itself when it reaches a named point.
package failpoint

// EnvVar arms failpoints in a binary built with the failpoints tag.
const EnvVar = "NODECRI_FAILPOINTS"

// Names lists every failpoint, in lifecycle order; a unit test checks it
// against the Hit calls in the source, so the fault tests reach them all.
var Names = []string{
	// RunPodSandbox (sandbox.Manager.create).
	"sandbox.run.after-files",
	"sandbox.run.after-netns",
	"sandbox.run.after-record",
	"sandbox.run.after-cni-add",
	"sandbox.run.after-pause-start",
	"sandbox.run.after-ready",
	// StopPodSandbox (sandbox.Manager.stop; the network points are also
	// on RemovePodSandbox's way when the pod was not stopped).
	"sandbox.stop.after-containers",
	"sandbox.stop.after-pause-kill",
	"sandbox.network.after-cni-del",
	"sandbox.network.after-netns-remove",
	// RemovePodSandbox (sandbox.Manager.Remove and teardown).
	"sandbox.remove.after-containers",
	"sandbox.teardown.after-pause-kill",
	"sandbox.teardown.after-network",
	"sandbox.teardown.after-record-delete",
	"sandbox.remove.after-teardown",
	// CreateContainer (containers.Manager.create).
	"container.create.after-image-volumes",
	"container.create.after-record",
	// StartContainer (containers.Manager.start).
	"container.start.after-task-create",
	"container.start.after-task-start",
	// RemoveContainer (containers.Manager.Remove).
	"container.remove.after-stop",
	"container.remove.after-record-delete",
	"container.remove.after-image-volumes",
}
