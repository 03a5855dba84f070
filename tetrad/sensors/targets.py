"""Whether each hook's target exists on this machine: the syscall (its
tracepoint and its number), the uprobe's binary and symbol, and that the
binary is the one its binaryDigests name. bcc side (it resolves symbols the
way attach_uprobe will).

One code path for `tetrad policy check` and the daemon's loader, so check
never says "loadable" for a policy the daemon refuses: both ask `check()`
(or `unresolved()`), next to tetrad.policy.kernel.missing_features(). The
daemon verifies digests again on the file it attaches to
(sensors/generic.py), so a binary replaced in between is not probed.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from bcc.libbcc import bcc_symbol, bcc_symbol_option, lib

from tetrad import elf
from tetrad.bpf import unistd
from tetrad.bpf.btf import vmlinux
from tetrad.policy.compile import ANY_SYSCALL, CompiledHook, usdt_missing

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


def digest_mismatch(fileobj, digests: tuple[str, ...], binary: str) -> str:
    """Why an open binary matches none of a uprobe's binaryDigests ("" when
    one matches, or there are none)."""
    if not digests:
        return ""
    seen = {}
    for entry in digests:
        algorithm, _, want = entry.partition(":")
        if algorithm not in seen:
            try:
                seen[algorithm] = elf.digest(fileobj, algorithm)
            except ValueError as err:
                seen[algorithm] = f"unreadable ({err})"
        if seen[algorithm] == want:
            return ""
    found = ", ".join(f"{a}:{d}" for a, d in seen.items())
    return (f"{binary} matches none of the policy's binaryDigests ({found}); the uprobe is not "
            "attached to a binary the policy was not written for")


def kernel_function_known(name: str) -> bool:
    """Whether the kernel's BTF has the function (what Tetragon asks for
    ignore.callNotFound); True when there is no BTF to ask."""
    try:
        vmlinux().find(name, "func")
    except KeyError:
        return False
    except OSError:
        return True
    return True


def _check(ch: CompiledHook, digests: dict[str, str]) -> str:
    """Why this hook's target is missing here ("" when it is not)."""
    t = ch.target
    try:
        if t.kind == "syscall" and t.name != ANY_SYSCALL:
            syscall_key(t.name)
        elif t.kind == "kprobe" and ch.hook.ignore_missing and not kernel_function_known(t.name):
            raise TargetMissing(f"no kernel function {t.name} in this kernel's BTF")
        elif t.kind in ("uprobe", "usdt"):
            if t.kind == "uprobe" and t.name:
                resolve_symbol(t.binary, t.name)
            elif not os.path.isfile(t.binary):
                raise TargetMissing(f"{t.kind} binary {t.binary} does not exist (or is not a regular file)")
            if t.kind == "usdt":
                try:
                    with elf.Binary(t.binary) as b:
                        missing = usdt_missing(ch.hook, b.usdt_probes())
                except ValueError as err:
                    missing = str(err)
                if missing:
                    raise TargetMissing(missing)
            if ch.hook.digests:
                key = f"{t.binary}\0{chr(0).join(ch.hook.digests)}"
                if key not in digests:
                    with open(t.binary, "rb") as f:
                        digests[key] = digest_mismatch(f, ch.hook.digests, t.binary)
                if digests[key]:
                    raise TargetMissing(digests[key])
    except TargetMissing as err:
        return str(err)
    except OSError as err:
        return f"cannot read {t.binary}: {err.strerror}"
    return ""


def check(compiled: list[CompiledHook]) -> tuple[list[tuple[str, str]], list[tuple[CompiledHook, str]]]:
    """(problems, skipped): (hook path, reason) for every hook whose target
    is missing here, and the hooks left out instead, with why (Tetragon then
    loads the rest): uprobes whose binary fails its digests when the policy
    says ignore.digestVerificationFailure, kprobes and syscalls missing here
    when it says ignore.callNotFound."""
    problems, skipped, digests = [], [], {}
    for ch in compiled:
        reason = _check(ch, digests)
        if reason and ((ch.hook.ignore_digest and "binaryDigests" in reason)
                       or (ch.hook.ignore_missing and ch.target.kind in ("kprobe", "syscall"))):
            skipped.append((ch, reason))
        elif reason:
            problems.append((ch.hook.path, reason))
    return problems, skipped


def unresolved(compiled: list[CompiledHook]) -> list[tuple[str, str]]:
    """(hook path, reason) for every hook whose target is missing here."""
    return check(compiled)[0]
