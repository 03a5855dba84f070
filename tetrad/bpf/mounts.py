"""The kernel filesystems BPF tooling needs, mounted when a host lacks them.

systemd mounts tracefs, debugfs, securityfs and the BPF filesystem on every
boot; containers and minimal VMs without systemd may not, and then bcc finds
no tracepoints and the LSM list is unreadable. `ensure_kernel_mounts()`
mounts what is missing with mount(2) (never a shell) and is a no-op
elsewhere.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

# (filesystem type, mount point)
KERNEL_MOUNTS = (
    ("tracefs", "/sys/kernel/tracing"),
    ("debugfs", "/sys/kernel/debug"),
    ("securityfs", "/sys/kernel/security"),
    ("bpf", "/sys/fs/bpf"),
)

from tetrad.libc import libc as _libc
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                        ctypes.c_ulong, ctypes.c_void_p)
MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8


def mounted_points(mounts_file: str = "/proc/self/mounts") -> set[str]:
    with open(mounts_file) as f:
        return {line.split()[1] for line in f if len(line.split()) > 2}


def ensure_kernel_mounts() -> list[str]:
    """Mount the missing kernel filesystems; returns the points mounted.
    Failures are logged, not raised: the feature probe reports what is then
    unavailable."""
    present = mounted_points()
    done = []
    for fstype, point in KERNEL_MOUNTS:
        if point in present or not os.path.isdir(point):
            continue
        rc = _libc.mount(fstype.encode(), point.encode(), fstype.encode(),
                         MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
        if rc == 0:
            done.append(point)
        else:
            err = ctypes.get_errno()
            log.warning("cannot mount %s at %s: %s", fstype, point, os.strerror(err))
    return done
