//go:build !failpoints

package failpoint

import "context"

// Hit does nothing in a normal build: the compiler inlines the empty call
// away, so the named points cost nothing (see BenchmarkHit).
func Hit(context.Context, string) {}

// Enabled tells whether this binary was built with failpoints.
const Enabled = false
