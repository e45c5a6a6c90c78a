package server

import (
	"encoding/json"
	"testing"

	"github.com/nodecri/nodecri/runtimes"
)

// statusConfig must give what embedding the configuration in the extras
// gave before the service stopped importing the config package.
func TestStatusConfigFlattens(t *testing.T) {
	type cfg struct {
		SandboxImage string            `json:"sandboxImage"`
		Pinned       map[string]string `json:"pinnedImages"`
		Hidden       any               `json:"-"`
	}
	type embedded struct {
		*cfg
		statusExtras
	}
	extras := statusExtras{
		ContainerdRootDir: "/var/lib/containerd", RootDir: "/r", StateDir: "/s",
		PodCIDRs: []string{"10.0.0.0/24"}, RuntimeFeatures: map[string]runtimes.Features{"runc": {UserNamespaces: true}},
	}
	for _, c := range []*cfg{{SandboxImage: "pause", Pinned: map[string]string{"a": "b"}, Hidden: 1}, nil} {
		want, err := json.Marshal(embedded{c, extras})
		if err != nil {
			t.Fatal(err)
		}
		var in any = c
		if c == nil {
			in = nil
		}
		got, err := statusConfig(in, extras)
		if err != nil || string(got) != string(want) {
			t.Errorf("statusConfig(%v) = %s, %v; want %s", c, got, err, want)
		}
	}
	if _, err := statusConfig([]string{"x"}, extras); err == nil {
		t.Error("a configuration that is not an object was accepted")
	}
}
