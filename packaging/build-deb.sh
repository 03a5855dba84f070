#!/bin/bash
# build-deb.sh OUT_DIR - build tetrad_<version>_all.deb (and the Kubernetes
# plugin's tetrad-kubernetes_<version>_all.deb) from the checkout's
# tracked files (a clean copy, so local build artefacts never leak in), and
# run lintian on it. Installs the build dependencies it lacks (Debian 12).
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:?usage: build-deb.sh OUT_DIR}
export PATH=/usr/sbin:/usr/bin:/sbin:/bin     # Debian's python3, not a pyenv one
need=()
for p in dpkg-dev debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools lintian fakeroot; do
  dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "build-deb.sh: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
WORK=$(mktemp -d /tmp/tetrad-deb.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/tetrad"
(cd "$HERE" && git ls-files -co --exclude-standard 2>/dev/null || find . -path ./.git -prune -o \( -type f -o -type l \) -print) \
  | (cd "$HERE" && tar -cf - -T -) | tar -C "$WORK/tetrad" -xf -
(cd "$WORK/tetrad" && dpkg-buildpackage -us -uc -b >"$WORK/build.log" 2>&1) \
  || { tail -30 "$WORK/build.log" >&2; exit 1; }
mkdir -p "$OUT"
cp "$WORK"/tetrad_*_all.deb "$WORK"/tetrad-kubernetes_*_all.deb "$OUT/"
lintian --fail-on error,warning "$WORK"/tetrad_*.changes
ls "$OUT"/tetrad-kubernetes_*_all.deb "$OUT"/tetrad_*_all.deb
