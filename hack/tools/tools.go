//go:build tools

// Package tools pins the test tools nodecri builds from source: crictl (and,
// later, critest) from cri-tools. A module of its own keeps their
// dependencies out of nodecri's go.mod.
package tools

import (
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
)
