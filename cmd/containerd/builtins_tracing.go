//go:build !no_tracing

package main

import _ "github.com/containerd/containerd/v2/pkg/tracing/plugin"
