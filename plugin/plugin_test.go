package plugin

import (
	"strings"
	"testing"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"

	"github.com/nodecri/nodecri/config"
)

func TestRuntimeOptions(t *testing.T) {
	cfg := config.Default()
	cfg.Containerd.Runtimes["crun"] = config.Runtime{Type: config.RuncRuntimeType, Snapshotter: "native",
		Options: map[string]any{"BinaryName": "crun", "SystemdCgroup": true}}
	opts, err := runtimeOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Default != "runc" || opts.Snapshotter != "overlayfs" || len(opts.Handlers) != 2 {
		t.Errorf("options = %+v", opts)
	}
	crun := opts.Handlers["crun"]
	o, ok := crun.Options.(*runcoptions.Options)
	if !ok || o.BinaryName != "crun" || !o.SystemdCgroup || crun.Snapshotter != "native" {
		t.Errorf("crun = %+v", crun)
	}
	if _, ok := opts.Handlers["runc"].Options.(*runcoptions.Options); !ok {
		t.Errorf("runc's options = %T, want runc's", opts.Handlers["runc"].Options)
	}

	cfg.Containerd.Runtimes["crun"] = config.Runtime{Type: config.RuncRuntimeType, Options: map[string]any{"NoSuchOption": 1}}
	if _, err := runtimeOptions(cfg); err == nil || !strings.Contains(err.Error(), `runtime "crun"`) {
		t.Errorf("bad option: %v", err)
	}
}
