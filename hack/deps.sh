#!/usr/bin/env bash
# Installs the companions every make target uses: containerd's shim and ctr at
# the version go.mod pins, runc (with idmapped-mount support), crictl, and from
# Debian: crun, the CNI plugins, iptables, and the prometheus and promtool
# binaries. Idempotent: present tools are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/bin"
mkdir -p "$BIN"

CONTAINERD_VERSION=$(go list -m -f '{{.Version}}' github.com/containerd/containerd/v2)
RUNC_VERSION=${RUNC_VERSION:-v1.5.2}
CRI_TOOLS_VERSION=$(cd hack/tools && go list -m -f '{{.Version}}' sigs.k8s.io/cri-tools)

apt_pkgs=()
command -v crun >/dev/null || apt_pkgs+=(crun)
[ -x /usr/sbin/runc ] || apt_pkgs+=(runc) # Debian's runc 1.1: the second runtime handler (runc-debian)
[ -x /usr/lib/cni/bridge ] || apt_pkgs+=(containernetworking-plugins)
command -v iptables >/dev/null || apt_pkgs+=(iptables)
[ -f /usr/include/seccomp.h ] || apt_pkgs+=(libseccomp-dev)
command -v pkg-config >/dev/null || apt_pkgs+=(pkg-config)
command -v ip >/dev/null || apt_pkgs+=(iproute2)
command -v ping >/dev/null || apt_pkgs+=(iputils-ping)
command -v curl >/dev/null || apt_pkgs+=(curl)
dpkg -s busybox >/dev/null 2>&1 || apt_pkgs+=(busybox) # dynamic, not busybox-static: integration/testimages
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || apt_pkgs+=(libc6-dev) # gcc -static for the pause image
command -v gcc >/dev/null || apt_pkgs+=(gcc)
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then echo "deps: need root to install ${apt_pkgs[*]}" >&2; exit 1; fi
  echo "deps: apt-get install ${apt_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
fi

# stamp files record the version a binary was built at, so a bump rebuilds it.
want() { # name version
  [ -x "$BIN/$1" ] && [ "$(cat "$BIN/.$1.version" 2>/dev/null)" = "$2" ] && return 1
  return 0
}
stamp() { echo "$2" > "$BIN/.$1.version"; }

if want containerd-shim-runc-v2 "$CONTAINERD_VERSION" || want ctr "$CONTAINERD_VERSION"; then
  echo "deps: containerd-shim-runc-v2 and ctr $CONTAINERD_VERSION"
  GOBIN="$BIN" CGO_ENABLED=0 go install \
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION"
  stamp containerd-shim-runc-v2 "$CONTAINERD_VERSION"; stamp ctr "$CONTAINERD_VERSION"
fi

if want runc "$RUNC_VERSION"; then
  echo "deps: runc $RUNC_VERSION"
  GOBIN="$BIN" CGO_ENABLED=1 go install -tags seccomp "github.com/opencontainers/runc@$RUNC_VERSION"
  stamp runc "$RUNC_VERSION"
fi

if want crictl "$CRI_TOOLS_VERSION"; then
  echo "deps: crictl $CRI_TOOLS_VERSION"
  # cri-tools is pinned in hack/tools/go.mod; the proxy serves no version
  # list for it, so `go install ...@version` cannot be used.
  (cd hack/tools && GONOSUMDB=sigs.k8s.io/cri-tools CGO_ENABLED=0 go build -o "$BIN/crictl" \
    -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION" sigs.k8s.io/cri-tools/cmd/crictl)
  stamp crictl "$CRI_TOOLS_VERSION"
fi
# Prometheus and promtool, for integration/prometheus_test.go. Only the two
# binaries are taken out of Debian's package (apt-get download + dpkg -x),
# never installed: the package's maintainer scripts add a system user and
# enable and start a service on :9090 (invoke-rc.d now, and at every boot
# under sysvinit, with or without systemd), and it drags in a dozen JS
# packages for the web UI. A policy-rc.d would stop only the start now, is
# host-wide (it also silences other packages' services, and must not
# clobber one already there), and leaves the boot-time service behind. The
# binaries link only libc; the test runs them with its own port and data dir.
if [ ! -x "$BIN/prometheus" ] || [ ! -x "$BIN/promtool" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  chown _apt "$tmp" 2>/dev/null || true # apt downloads as _apt when it can
  # A fresh machine may have no package lists yet.
  (cd "$tmp" && apt-get download -qq prometheus 2>/dev/null) ||
    { apt-get update -qq && (cd "$tmp" && apt-get download -qq prometheus); }
  deb=$(ls "$tmp"/prometheus_*.deb)
  echo "deps: prometheus and promtool from $(basename "$deb")"
  dpkg -x "$deb" "$tmp/x"
  install -m 0755 "$tmp/x/usr/bin/prometheus" "$tmp/x/usr/bin/promtool" "$BIN/"
  dpkg-deb -f "$deb" Version > "$BIN/.prometheus.version" # a record only: any 2.x will do
fi

echo "deps: ok ($BIN: $(cd "$BIN" && ls | tr '\n' ' '))"
