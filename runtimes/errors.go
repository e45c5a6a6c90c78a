package runtimes

import (
	"errors"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
)

// TaskGone tells whether a task call failed because the task or its shim
// is already gone: for a kill, the process has exited; for a delete, there
// is nothing left to delete.
func TaskGone(err error) bool {
	return err != nil && (errdefs.IsNotFound(err) || errors.Is(err, ttrpc.ErrClosed) ||
		strings.Contains(err.Error(), ttrpc.ErrClosed.Error()))
}
