#!/usr/bin/env bash
# Builds upstream containerd, with its own CRI, at the version go.mod pins,
# into _output/upstream/bin/containerd: the reference `make bench` measures
# bin/containerd against. Built once per version (a clean build takes about
# 3.5 min on 2 cores); a stamp file records the version.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="$PWD/_output/upstream/bin"
VERSION=$(go list -m -f '{{.Version}}' github.com/containerd/containerd/v2)

if [ -x "$OUT/containerd" ] && [ "$(cat "$OUT/.containerd.version" 2>/dev/null)" = "$VERSION" ]; then
  exit 0
fi
echo "upstream: containerd $VERSION (with its CRI) into $OUT"
mkdir -p "$OUT"
# Outside our module, so that `go install pkg@version` resolves containerd's
# own go.mod and never touches ours.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && GOBIN="$OUT" go install "github.com/containerd/containerd/v2/cmd/containerd@$VERSION")
echo "$VERSION" > "$OUT/.containerd.version"
