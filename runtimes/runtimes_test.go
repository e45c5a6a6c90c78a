package runtimes

import (
	"context"
	"os"
	"testing"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
)

func load(t *testing.T, name string) Features {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	f, err := parseFeatures(b)
	if err != nil {
		t.Fatal(err)
	}
	return Features{RecursiveReadOnlyMounts: runtimeHasRRO(f), UserNamespaces: runtimeHasIDMappedUserns(f)}
}

// runc 1.5 reports rro and idmapped mounts; runc 1.1 neither.
func TestRuntimeFeatures(t *testing.T) {
	if f := load(t, "runc-1.5.2-features.json"); !f.RecursiveReadOnlyMounts || !f.UserNamespaces {
		t.Errorf("runc 1.5.2: %+v, want both", f)
	}
	if f := load(t, "runc-1.1-features.json"); f.RecursiveReadOnlyMounts || f.UserNamespaces {
		t.Errorf("runc 1.1: %+v, want neither", f)
	}
}

func TestMissingBinaryHasNoFeatures(t *testing.T) {
	if f := ProbeBinary(context.Background(), "nodecri-no-such-runtime"); f != (Features{}) {
		t.Errorf("missing runtime reported %+v", f)
	}
}

func TestSet(t *testing.T) {
	opts := Options{Default: "runc", Snapshotter: "overlayfs", Handlers: map[string]Config{
		"runc": {Type: "io.containerd.runc.v2", Options: &runcoptions.Options{}},
		"crun": {Type: "io.containerd.runc.v2", Snapshotter: "native",
			Options: &runcoptions.Options{BinaryName: "crun", SystemdCgroup: true}},
		// Another shim's options name no OCI runtime binary to probe.
		"kata": {Type: "io.containerd.kata.v2"},
	}}
	// Probes run concurrently, one per handler.
	probe := func(_ context.Context, bin string) Features {
		if bin != "runc" && bin != "crun" {
			t.Errorf("probed %q", bin)
		}
		return Features{UserNamespaces: bin == "crun"}
	}
	s, err := New(context.Background(), opts, probe)
	if err != nil {
		t.Fatal(err)
	}
	def, err := s.Get("")
	if err != nil || def.Name != "runc" || def.Snapshotter != "overlayfs" || def.SystemdCgroup() {
		t.Errorf("default handler = %+v, %v", def, err)
	}
	crun, err := s.Get("crun")
	if err != nil || crun.Snapshotter != "native" || !crun.SystemdCgroup() || !crun.Features.UserNamespaces {
		t.Errorf("crun handler = %+v, %v", crun, err)
	}
	if kata, err := s.Get("kata"); err != nil || kata.Snapshotter != "overlayfs" || kata.Features != (Features{}) {
		t.Errorf("kata handler = %+v, %v", kata, err)
	}
	if _, err := s.Get("gvisor"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("unknown handler: %v, want InvalidArgument", err)
	}
	if n := len(s.All()); n != 3 {
		t.Errorf("All() has %d handlers", n)
	}
}
