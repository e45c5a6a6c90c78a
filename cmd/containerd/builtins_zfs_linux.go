//go:build !no_zfs

package main

import _ "github.com/containerd/zfs/v2/plugin"
