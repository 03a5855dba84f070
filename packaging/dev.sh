#!/bin/bash
# dev.sh - run tetrad or its tests from a checkout on a fresh Debian 12 machine.
#
#   sudo packaging/dev.sh run [tetrad run options]   daemon in the foreground
#   sudo packaging/dev.sh test [pytest options]      the whole test suite
#
# Each installs what it needs first: Debian's python3-* libraries (bcc is
# python3-bpfcc, not a PyPI package) and kernel headers for bcc. When the
# distro has no headers package for the running kernel, the distro's closest
# headers are linked as /lib/modules/$(uname -r)/{build,source}; bcc then
# compiles, and tetrad reads kernel structs at offsets from the kernel's own
# BTF, never from those headers.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
log() { printf 'dev.sh: %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { log "needs root (BPF, apt): sudo $0 $*"; exit 1; }
cmd=${1:-}; shift || true
case $cmd in run|test) ;; *) sed -n '2,6p' "$0" >&2; exit 2;; esac

RUNTIME_PKGS=(python3 python3-bpfcc python3-systemd python3-watchdog python3-toml
              python3-psutil python3-sdnotify python3-yaml python3-prometheus-client
              python3-pyelftools)
# The tests also start a real Prometheus, rsyslogd and bash-completion, and
# build a wheel into a venv (pip, setuptools, wheel, venv); they drive
# containerd's CRI (grpcio, protobuf), check that the committed CRI modules
# are what protoc and grpc_tools make of their .proto, serve TLS (openssl),
# and build a program with USDT probes (gcc, sys/sdt.h).
TEST_PKGS=(python3-pytest python3-hypothesis python3-grpcio python3-protobuf podman runc busybox-static
           containerd prometheus rsyslog bash-completion python3-pip python3-setuptools python3-wheel
           python3-venv protobuf-compiler python3-grpc-tools openssl gcc systemtap-sdt-dev)
KVER=$(uname -r)

missing_pkgs() {
  local p
  for p in "$@"; do
    dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
  done
}

apt_install() {
  [ $# -gt 0 ] || return 0
  log "installing $*"
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_headers() {
  local build=/lib/modules/$KVER/build
  [ -e "$build/include" ] && return 0
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  if apt-cache show "linux-headers-$KVER" >/dev/null 2>&1; then
    apt_install "linux-headers-$KVER"
    return 0
  fi
  local arch flavour dir common
  arch=$(dpkg --print-architecture)
  flavour=$arch; [ "$arch" = amd64 ] && flavour=cloud-amd64
  dir=$(ls -d /usr/src/linux-headers-*-"$flavour" 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$dir" ]; then
    apt_install "linux-headers-$flavour"
    dir=$(ls -d /usr/src/linux-headers-*-"$flavour" | sort -V | tail -1)
  fi
  common=${dir%-"$flavour"}-common
  mkdir -p "/lib/modules/$KVER"
  ln -sfn "$dir" "$build"
  ln -sfn "$common" "/lib/modules/$KVER/source"
  log "no headers package for kernel $KVER: linked $(basename "$dir") for bcc (struct offsets come from BTF)"
}

pkgs=("${RUNTIME_PKGS[@]}")
[ "$cmd" = test ] && pkgs+=("${TEST_PKGS[@]}")
mapfile -t need < <(missing_pkgs "${pkgs[@]}")
apt_install "${need[@]}"
ensure_headers

cd "$HERE"
case $cmd in
  run)
    # The shipped config and example policies of this checkout; flags given win.
    exec "$PY" -m tetrad run --policy-dir "$HERE/etc/policies.d" "$@"
    ;;
  test)
    exec "$HERE/tests/run.sh" "$@"
    ;;
esac
