package failpoint

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

var hitCall = regexp.MustCompile(`failpoint\.Hit\([^,]+, "([^"]+)"\)`)

// Names is exactly the set of points the managers hit, each hit once: the
// fault tests enumerate Names, so a point missing from it is never tested
// and a stale name would fail for the wrong reason.
func TestNamesMatchHitCalls(t *testing.T) {
	var found []string
	for _, dir := range []string{"../sandbox", "../containers"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range hitCall.FindAllSubmatch(b, -1) {
				found = append(found, string(m[1]))
			}
		}
	}
	for _, n := range found {
		if !slices.Contains(Names, n) {
			t.Errorf("failpoint %q is hit in the source but missing from Names", n)
		}
	}
	seen := map[string]int{}
	for _, n := range found {
		seen[n]++
	}
	for _, n := range Names {
		switch seen[n] {
		case 0:
			t.Errorf("failpoint %q is in Names but never hit in sandbox/ or containers/", n)
		case 1:
		default:
			t.Errorf("failpoint %q is hit %d times; names must be unique", n, seen[n])
		}
	}
}

var sink int

// BenchmarkHit: in a build without the failpoints tag the call is inlined
// away; it costs what BenchmarkNoHit, the same loop without it, costs.
func BenchmarkHit(b *testing.B) {
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		Hit(ctx, "sandbox.run.after-netns")
		sink = i
	}
}

func BenchmarkNoHit(b *testing.B) {
	for i := 0; b.Loop(); i++ {
		sink = i
	}
}
