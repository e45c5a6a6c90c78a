//go:build !no_btrfs && cgo

package main

import _ "github.com/containerd/containerd/v2/plugins/snapshots/btrfs/plugin"
