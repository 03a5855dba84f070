#!/bin/bash
# run.sh - the whole test suite: unit and real-kernel tests on this machine,
# then the tests that need a distro kernel (kprobes, BPF LSM, matching
# headers, systemd) inside the Debian guest, booted once. Prints one total
# over both runs at the end. Called by `packaging/dev.sh test` (which
# installs what it needs first); arguments go to the host pytest run.
#   TETRAD_SKIP_GUEST=1   run only on this machine (prints that it did)
set -uo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(mktemp -d /tmp/tetrad-tests.XXXXXX)
cd "$HERE"

/usr/bin/python3 -m pytest -v -rs --durations=10 --junitxml="$OUT/host-junit.xml" tests "$@"
host_rc=$?

guest_rc=0
if [ -n "${TETRAD_SKIP_GUEST:-}" ]; then
  echo "run.sh: TETRAD_SKIP_GUEST set: guest tests NOT run" >&2
else
  tests/guest/run.sh "$OUT"
  guest_rc=$?
fi

/usr/bin/python3 tests/summary.py "$OUT"/*-junit.xml
sum_rc=$?
[ $host_rc = 0 ] && [ $guest_rc = 0 ] && [ $sum_rc = 0 ]
