#!/bin/bash
# inside.sh - runs INSIDE the guest (systemd PID 1, Debian 6.1 kernel with
# matching headers): the real-kernel tests again, on a distro kernel, plus the
# tests that need it. Results go to $TETRAD_OUT/guest-junit.xml.
set -uo pipefail
export TETRAD_IN_GUEST=1 PYTHONDONTWRITEBYTECODE=1
echo "== guest kernel $(uname -r), headers $(readlink /lib/modules/$(uname -r)/build), lsm $(cat /sys/kernel/security/lsm)"
python3 -m pytest -v -rs -p no:cacheprovider -m "kernel or guest" \
  --junitxml="$TETRAD_OUT/guest-junit.xml" tests
