"""Syscall numbers of this architecture, from the kernel headers' unistd tables.

A policy program attached to `syscalls:sys_enter_NAME` finds its hook by the
number the tracepoint hands it, so user space needs NAME's number. The
kernel exposes no table of them (tracefs formats name the arguments, not
the number; x86-64 since 6.9 dispatches through a switch, not a symbol
table), but numbers are ABI: once assigned, a syscall keeps its number on
every later kernel. So the headers bcc compiles against (linked as
/lib/modules/$(uname -r)/build) or the libc's kernel headers give the right
number for every syscall they know; a syscall newer than both is refused by
name with what to install. No child process is run (bcc's table runs
`ausyscall`, whose exit the daemon would report as its own first event).
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

# Per machine: header files that list __NR_* for the native 64-bit ABI.
TABLES = {
    "x86_64": ("arch/x86/include/generated/uapi/asm/unistd_64.h",
               "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    "aarch64": ("arch/arm64/include/generated/uapi/asm/unistd_64.h",
                "include/uapi/asm-generic/unistd.h",
                "/usr/include/aarch64-linux-gnu/asm/unistd_64.h",
                "/usr/include/asm-generic/unistd.h"),
}
# Tetragon's name of this machine's native syscall ABI (SyscallId.abi).
NATIVE_ABI = {"x86_64": "x64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
DEFINE = re.compile(r"^\s*#\s*define\s+__NR(?:3264)?_(\w+)\s+(\w+)\s*$")


class UnknownSyscall(LookupError):
    """No number for a syscall name on this machine; the message says why."""


def parse(text: str) -> dict[str, int]:
    """`#define __NR_name 257` lines (and asm-generic's __NR3264_ aliases)
    -> {name: number}."""
    raw: dict[str, str] = {}
    for line in text.splitlines():
        m = DEFINE.match(line)
        if m:
            raw.setdefault(m.group(1), m.group(2))
    table = {}
    for name, value in raw.items():
        for _ in range(3):                  # __NR_fcntl -> __NR3264_fcntl -> 25
            if value.isdigit():
                table[name] = int(value)
                break
            alias = re.fullmatch(r"__NR(?:3264)?_(\w+)", value)
            if not alias or alias.group(1) not in raw:
                break
            value = raw[alias.group(1)]
    return table


def candidates(machine: str, release: str) -> list[Path]:
    build = Path("/lib/modules", release, "build")
    return [Path(p) if p.startswith("/") else build / p for p in TABLES.get(machine, ())]


@functools.cache
def table() -> tuple[dict[str, int], tuple[str, ...]]:
    """Every number the headers here know, and the files read."""
    uname = os.uname()
    numbers: dict[str, int] = {}
    read = []
    for path in candidates(uname.machine, uname.release):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        read.append(str(path))
        for name, number in parse(text).items():
            numbers.setdefault(name, number)
    return numbers, tuple(read)


@functools.cache
def names() -> dict[int, str]:
    """Number -> name of the native ABI's syscalls (of two names for one
    number, the first in sorted order)."""
    out: dict[int, str] = {}
    for name, nr in sorted(table()[0].items()):
        out.setdefault(nr, name)
    return out


def number(name: str) -> int:
    numbers, read = table()
    if name in numbers:
        return numbers[name]
    machine = os.uname().machine
    if not read:
        where = ", ".join(str(p) for p in candidates(machine, os.uname().release)) or \
            f"none known for {machine}"
        raise UnknownSyscall(f"no syscall table for {machine} (looked for {where}); install the "
                             f"kernel headers (linux-headers-$(uname -r) or linux-libc-dev)")
    raise UnknownSyscall(f"syscall {name!r} is not in {' or '.join(read)}: unknown on {machine}, "
                         f"or newer than these headers (install newer kernel headers)")
