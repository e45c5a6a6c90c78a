// Command containerd is containerd's own daemon with nodecri as its CRI
// plugin. Upstream's CRI is never linked: the builtin plugins are imported
// one by one in builtins_linux.go, not through containerd's builtins package
// (which would pull upstream's CRI in unless built with -tags no_cri, and
// then panic at start on the duplicate "cri" plugin ID).
package main

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/containerd/containerd/v2/cmd/containerd/command"
	"github.com/containerd/containerd/v2/version"

	_ "github.com/nodecri/nodecri/plugin"
)

func init() {
	// Report containerd's own version (the CRI Version RPC and --version
	// show it) even from a plain `go build`, which sets no -X flags.
	if strings.HasSuffix(version.Version, "+unknown") {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, d := range bi.Deps {
				if d.Path == "github.com/containerd/containerd/v2" {
					version.Version = d.Version
				}
			}
		}
	}
}

func main() {
	if err := command.App().Run(context.Background(), os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "containerd:", err)
		os.Exit(1)
	}
}
