#!/bin/bash
# inside.sh - runs INSIDE the guest (systemd PID 1, Debian 6.1 kernel with
# matching headers): the real-kernel tests again, on a distro kernel, plus the
# tests that need it. Results go to $TETRAD_OUT/guest-junit.xml.
set -uo pipefail
export TETRAD_IN_GUEST=1 PYTHONDONTWRITEBYTECODE=1
# What the guest's Debian 12 cloud kernel can do, as measured (no
# CONFIG_BPF_KPROBE_OVERRIDE); tests/kernel/test_features.py checks it.
export TETRAD_EXPECT_FEATURES="btf,tracepoints,syscall_tracepoints,raw_syscalls,kprobes,kretprobes,uprobes,lsm_active,lsm_loadable,fentry,ringbuf,send_signal,matching_headers,!override_return"
echo "== guest kernel $(uname -r), headers $(readlink /lib/modules/$(uname -r)/build), lsm $(cat /sys/kernel/security/lsm)"
# Emulated execs take ~36 ms: the exec storm runs 1,000 here (10,000 on the host).
export TETRAD_STORM_EXECS=1000
# The image has containerd for tests/kernel/test_cri_containerd.py, Prometheus
# for tests/kernel/test_metrics_prometheus.py and rsyslog for
# tests/guest/test_shippers_guest.py, which start their own; the system ones
# Debian enables are only load here (rsyslog would copy every event to
# /var/log/syslog).
systemctl stop containerd.service prometheus.service rsyslog.service syslog.socket 2>/dev/null || true
# Software emulation (TCG, "qemu") makes bcc compiles ~20x slower than native.
[ "$(systemd-detect-virt 2>/dev/null)" = qemu ] && export TETRAD_TIME_FACTOR=20
python3 -m pytest -v -rs --durations=10 -p no:cacheprovider -m "kernel or guest" \
  --junitxml="$TETRAD_OUT/guest-junit.xml" tests
