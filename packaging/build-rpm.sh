#!/bin/bash
# build-rpm.sh OUT_DIR - build the noarch rpm with rpmbuild (Debian's rpm package
# has it) from the checkout's tracked files.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:?usage: build-rpm.sh OUT_DIR}
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
command -v rpmbuild >/dev/null || {
  apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rpm >/dev/null; }
VERSION=$(sed -n 's/^Version: *//p' "$HERE/packaging/tetrad.spec")
TOP=$(mktemp -d /tmp/tetrad-rpm.XXXXXX)
trap 'rm -rf "$TOP"' EXIT
mkdir -p "$TOP"/{SOURCES,SPECS,BUILD,RPMS,SRPMS} "$TOP/tetrad-$VERSION"
(cd "$HERE" && git ls-files -co --exclude-standard | tar -cf - -T -) | tar -C "$TOP/tetrad-$VERSION" -xf -
tar -C "$TOP" -czf "$TOP/SOURCES/tetrad-$VERSION.tar.gz" "tetrad-$VERSION"
# Debian's rpm has no systemd macros: define the few the spec uses.
rpmbuild -bb --define "_topdir $TOP" --define "_unitdir /usr/lib/systemd/system" \
  --define "systemd_post() :" --define "systemd_preun() :" --define "systemd_postun_with_restart() :" \
  --nodeps "$HERE/packaging/tetrad.spec" >"$TOP/build.log" 2>&1 || { tail -30 "$TOP/build.log" >&2; exit 1; }
mkdir -p "$OUT"
cp "$TOP"/RPMS/noarch/tetrad-*.rpm "$OUT/"
ls "$OUT"/tetrad-[0-9]*.rpm "$OUT"/tetrad-kubernetes-*.rpm
