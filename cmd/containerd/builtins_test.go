package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

const upstreamBuiltins = "github.com/containerd/containerd/v2/cmd/containerd/builtins"

// Our builtin imports are upstream's, minus its CRI: when go.mod moves to a
// containerd that adds or drops a builtin plugin, this fails and names it.
func TestBuiltinsMatchUpstream(t *testing.T) {
	upstream := goList(t, "-tags", "no_cri", "-f", `{{join .Imports "\n"}}`, upstreamBuiltins)
	ours := goList(t, "-f", `{{join .Imports "\n"}}`, ".")
	for _, imp := range upstream {
		if !slices.Contains(ours, imp) {
			t.Errorf("upstream builtin %s is not imported by cmd/containerd", imp)
		}
	}
}

// A plain build never links upstream's CRI, whose plugin ID would clash
// with ours at start.
func TestUpstreamCRINotLinked(t *testing.T) {
	for _, dep := range goList(t, "-deps", ".") {
		if strings.HasPrefix(dep, "github.com/containerd/containerd/v2/plugins/cri") ||
			strings.HasPrefix(dep, "github.com/containerd/containerd/v2/internal/cri") ||
			dep == upstreamBuiltins {
			t.Errorf("cmd/containerd links %s", dep)
		}
	}
}
