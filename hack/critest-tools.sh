#!/usr/bin/env bash
# Builds into bin/ critest and the ginkgo CLI, which critest execs for
# -parallel, at the versions hack/tools/go.mod pins (cri-tools, and the
# ginkgo that cri-tools requires, so that the CLI and the suite inside
# critest agree). Present binaries at those versions are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/bin"
mkdir -p "$BIN"
cd hack/tools
# The proxy serves cri-tools without a version list or checksum-db entry,
# hence GONOSUMDB and building from this module rather than `go install`.
export GONOSUMDB=sigs.k8s.io/cri-tools CGO_ENABLED=0

CRI_TOOLS_VERSION=$(go list -m -f '{{.Version}}' sigs.k8s.io/cri-tools)
GINKGO_VERSION=$(go list -m -f '{{.Version}}' github.com/onsi/ginkgo/v2)

# stamp files record the version a binary was built at, as in deps.sh.
want() { # name version
  [ -x "$BIN/$1" ] && [ "$(cat "$BIN/.$1.version" 2>/dev/null)" = "$2" ] && return 1
  return 0
}
stamp() { echo "$2" > "$BIN/.$1.version"; }

if want critest "$CRI_TOOLS_VERSION"; then
  echo "critest-tools: critest $CRI_TOOLS_VERSION"
  # cmd/critest holds only a test: critest is its compiled test binary.
  go test -c -o "$BIN/critest" \
    -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION" sigs.k8s.io/cri-tools/cmd/critest
  stamp critest "$CRI_TOOLS_VERSION"
fi

if want ginkgo "$GINKGO_VERSION"; then
  echo "critest-tools: ginkgo $GINKGO_VERSION"
  go build -o "$BIN/ginkgo" github.com/onsi/ginkgo/v2/ginkgo
  stamp ginkgo "$GINKGO_VERSION"
fi
