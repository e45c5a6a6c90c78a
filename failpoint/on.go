//go:build failpoints

package failpoint

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/containerd/log"
)

// Enabled tells whether this binary was built with failpoints.
const Enabled = true

var armed = sync.OnceValue(func() map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(os.Getenv(EnvVar), ",") {
		name, action, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok {
			m[name] = action
		}
	}
	return m
})

// Hit runs the action armed for name: "kill" SIGKILLs this process, as a
// crash (or the OOM killer) would, with nothing flushed or cleaned up.
func Hit(ctx context.Context, name string) {
	switch armed()[name] {
	case "":
	case "kill":
		// The marker tells the test that this point, not something else,
		// ended the process.
		fmt.Fprintf(os.Stderr, "failpoint %s: kill\n", name)
		log.G(ctx).WithField("failpoint", name).Warn("failpoint: killing the daemon")
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	default:
		log.G(ctx).WithField("failpoint", name).Errorf("failpoint: unknown action %q", armed()[name])
	}
}
