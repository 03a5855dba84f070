#!/bin/bash
# inside.sh - runs INSIDE the guest (systemd PID 1, Debian 6.1 kernel with
# matching headers): the guest tests, and again the real-kernel tests whose
# BPF programs or kernel facts depend on the kernel (verifier, struct
# layouts from BTF, helpers, kprobes, LSM, page faults). Results go to
# $TETRAD_OUT/guest-junit.xml.
set -uo pipefail
export TETRAD_IN_GUEST=1 PYTHONDONTWRITEBYTECODE=1
# What the guest's Debian 12 cloud kernel can do, as measured (neither
# CONFIG_FUNCTION_ERROR_INJECTION nor CONFIG_BPF_KPROBE_OVERRIDE: no way to
# make a syscall fail); tests/kernel/test_features.py checks it.
export TETRAD_EXPECT_FEATURES="btf,tracepoints,syscall_tracepoints,raw_syscalls,raw_tracepoints,ftrace_functions,kprobes,kretprobes,uprobes,lsm_active,lsm_loadable,fentry,ringbuf,send_signal,!syscall_kernel_stacks,proc_state,matching_headers,!fmod_ret,!override_return,!syscall_override"
echo "== guest kernel $(uname -r), headers $(readlink /lib/modules/$(uname -r)/build), lsm $(cat /sys/kernel/security/lsm)"
# Emulated execs take ~36 ms: the exec storm runs 1,000 here (10,000 on the host).
export TETRAD_STORM_EXECS=1000
# The image has rsyslog for tests/guest/test_shippers_guest.py, which starts
# its own; the system one Debian enables is only load here (it would copy
# every event to /var/log/syslog).
systemctl stop rsyslog.service syslog.socket 2>/dev/null || true
# Software emulation (TCG, "qemu") makes bcc compiles ~20x slower than native.
[ "$(systemd-detect-virt 2>/dev/null)" = qemu ] && export TETRAD_TIME_FACTOR=20
# The kernel tests of daemon logic that no kernel difference reaches (the
# service, containers and CRI, Kubernetes, metrics, export formats,
# redaction, floods, the wheel, table limits) run on the host only: under
# emulation they would double the guest's time for nothing new.
KERNEL_DEPENDENT=(test_features test_record_layout test_process_sensor test_process_state_map
                  test_credentials test_untouched_pages test_loss test_policies test_state_selectors
                  test_network test_hooks test_kernel_args test_stack_traces test_bpf_cache)
python3 -m pytest -v -rs --durations=10 -p no:cacheprovider -m "kernel or guest" \
  --junitxml="$TETRAD_OUT/guest-junit.xml" tests/guest \
  $(printf "tests/kernel/%s.py " "${KERNEL_DEPENDENT[@]}")
