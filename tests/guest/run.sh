#!/bin/bash
# run.sh OUT_DIR - boot the Debian test guest once (../shared/vm) and run the
# kernel and guest tests inside it, on a distro kernel with kprobes, BPF LSM,
# matching headers and systemd. JUnit XML comes back as OUT_DIR/guest-junit.xml.
set -uo pipefail
HERE=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:?usage: run.sh OUT_DIR}
VM=${TETRAD_VM_DIR:-$HERE/../shared/vm}
[ -x "$VM/ci-run.sh" ] || { echo "guest harness not found at $VM (set TETRAD_VM_DIR)" >&2; exit 125; }
# Packages the guest needs beyond the harness's list (part of its image cache key).
export EXTRA_PKGS=${EXTRA_PKGS:-"gcc libc6-dev systemtap-sdt-dev python3-pyelftools python3-yaml python3-pytest python3-hypothesis bpftool podman runc busybox-static python3-grpcio python3-protobuf python3-prometheus-client rsyslog bash-completion python3-venv python3-pip python3-setuptools python3-wheel"}

STAGE=$(mktemp -d /tmp/tetrad-guest-stage.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
# The tree without .git and caches: it is copied onto the guest's share disk.
tar -C "$HERE" --exclude=.git --exclude=__pycache__ --exclude=.pytest_cache -cf - . \
  | tar -C "$STAGE" -xf -
# The .deb the guest installs (tests/guest/test_package_guest.py).
"$HERE/packaging/build-deb.sh" "$STAGE/dist" >&2 || echo "guest: building the .deb failed" >&2

# 4 GiB: several daemons compiling with clang at once outgrow the default 2 GiB.
"$VM/ci-run.sh" -o "$OUT/guest" -t "${TETRAD_GUEST_TIMEOUT:-2400}" -m 4096 "$STAGE" -- bash tests/guest/inside.sh
rc=$?
cp "$OUT/guest/out/guest-junit.xml" "$OUT/guest-junit.xml" 2>/dev/null \
  || echo "guest: no test results came back (rc=$rc); see $OUT/guest/console.log" >&2
exit $rc
