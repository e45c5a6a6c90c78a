//go:build tools

// Package tools pins the test tools nodecri builds from source: crictl and
// critest from cri-tools, and the ginkgo CLI that critest execs for
// -parallel (at the ginkgo version cri-tools requires, so that the CLI and
// the suite compiled into critest agree). A module of its own keeps their
// dependencies out of nodecri's go.mod.
package tools

import (
	_ "github.com/onsi/ginkgo/v2/ginkgo"
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
	_ "sigs.k8s.io/cri-tools/cmd/critest"
)
