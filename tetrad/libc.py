"""The C library, loaded once for the few calls Python's os module lacks
(mount, syscall, ioctl, open_by_handle_at, malloc_trim).

Named directly: ctypes.util.find_library("c") runs `ldconfig -p` in a child
process on every call, which the daemon would then report as an exec of its
own. tetrad targets glibc systems (Debian, Fedora/RHEL), where it is libc.so.6.
"""

import ctypes

libc = ctypes.CDLL("libc.so.6", use_errno=True)
