"""Whether each hook's target exists on this machine: the syscall (its
tracepoint and its number), the uprobe's binary and symbol. bcc side (it
resolves symbols the way attach_uprobe will).

One code path for `tetrad policy check` and the daemon's loader, so check
never says "loadable" for a policy the daemon refuses: both ask
`unresolved()`, next to tetrad.policy.kernel.missing_features().
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from bcc.libbcc import bcc_symbol, bcc_symbol_option, lib

from tetrad.bpf import unistd
from tetrad.policy.compile import CompiledHook

TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
INDEX_SIZE = 512                # demux keys a policy program holds (G_INDEX_SIZE)


class TargetMissing(LookupError):
    """A hook's target does not exist here; the message says which and why."""


def tracepoint_exists(category: str, event: str) -> bool:
    return any(Path(root, "events", category, event, "id").exists() for root in TRACEFS)


def syscall_key(name: str) -> int:
    """The demux key (syscall number) of a syscall hook, or TargetMissing."""
    if not tracepoint_exists("syscalls", f"sys_enter_{name}"):
        raise TargetMissing(f"no tracepoint syscalls:sys_enter_{name} on this kernel "
                            f"(unknown syscall, or not traced by this kernel)")
    try:
        number = unistd.number(name)
    except unistd.UnknownSyscall as err:
        raise TargetMissing(str(err)) from None
    if not 0 <= number < INDEX_SIZE:
        raise TargetMissing(f"syscall {name} is number {number}, beyond the {INDEX_SIZE} a "
                            f"policy program's index holds")
    return number


def resolve_symbol(binary: str, symbol: str) -> None:
    """TargetMissing unless `symbol` can be found in `binary` (an ELF file)."""
    if not os.path.isfile(binary):
        raise TargetMissing(f"uprobe binary {binary} does not exist (or is not a regular file)")
    sym = bcc_symbol()
    if lib.bcc_resolve_symname(os.fsencode(binary), symbol.encode(), 0, 0,
                               ctypes.cast(None, ctypes.POINTER(bcc_symbol_option)),
                               ctypes.byref(sym)) < 0:
        raise TargetMissing(f"no symbol {symbol!r} in {binary}")
    lib.bcc_procutils_free(sym.module)


def unresolved(compiled: list[CompiledHook]) -> list[tuple[str, str]]:
    """(hook path, reason) for every hook whose target is missing here."""
    problems = []
    for ch in compiled:
        try:
            if ch.target.kind == "syscall":
                syscall_key(ch.target.name)
            elif ch.target.kind == "uprobe":
                resolve_symbol(ch.target.binary, ch.target.name)
        except TargetMissing as err:
            problems.append((ch.hook.path, str(err)))
    return problems
