"""Copies of a compiled program, each bound to one attach point (bcc side).

bpf/generic_hook.c is compiled once per program type; an attach point that
the kernel cannot name at run time (a kprobe, uprobe, tracepoint, LSM hook
or raw tracepoint) gets its own copy of the entry program with the point's
number in place of POINT_MAGIC, a 64-bit immediate the C code loads. An LSM
point also gets copies of the stages bound to a prog array of its own: newer
kernels refuse tail calls between LSM programs of different hooks. bcc
compiled the code and already wrote its maps' descriptors into it; loading
a copy is one more bcc_func_load of patched instructions, with no compile.
"""

from __future__ import annotations

import ctypes
import os
import struct

from bcc import BPF
from bcc.libbcc import lib

POINT_MAGIC = 0x7E7A5E0F7E7A5E0F
LD_IMM64 = 0x18
PSEUDO_MAP_FD = 1
INSN = struct.Struct("<BBhi")
LOG_SIZE = 1 << 20


class LoadError(Exception):
    """The kernel refused a program; the message has the verifier's reason."""


def instructions(bpf: BPF, name: bytes) -> bytes:
    start = lib.bpf_function_start(bpf.module, name)
    if not start:
        raise LoadError(f"no program {name.decode()} in the compiled object")
    return ctypes.string_at(start, lib.bpf_function_size(bpf.module, name))


def patch(insns: bytes, point: int | None = None, maps: dict[int, int] | None = None) -> bytes:
    """The instructions with POINT_MAGIC replaced by `point`, and map
    descriptors replaced as `maps` says (old fd -> new fd). Pure."""
    out = bytearray(insns)
    found = 0
    i = 0
    while i + 16 <= len(out):
        code, regs, _, imm = INSN.unpack_from(out, i)
        if code != LD_IMM64:
            i += 8
            continue
        src = regs >> 4
        imm_hi = INSN.unpack_from(out, i + 8)[3]
        value = (imm & 0xFFFFFFFF) | (imm_hi & 0xFFFFFFFF) << 32
        if src == 0 and point is not None and value == POINT_MAGIC:
            struct.pack_into("<i", out, i + 4, point)
            struct.pack_into("<i", out, i + 12, 0)
            found += 1
        elif src == PSEUDO_MAP_FD and maps and imm in maps:
            struct.pack_into("<i", out, i + 4, maps[imm])
        i += 16
    if point is not None and not found:
        raise LoadError("the program has no point number to patch")
    return bytes(out)


def load(bpf: BPF, key: bytes, prog_type: int, insns: bytes, name: bytes | None = None) -> BPF.Function:
    """Loads instructions as a program of `bpf`, registered with bcc under
    `key`, so that bcc's attach_* calls and cleanup() treat it as their own.
    `name` is what the kernel is told (default: the key); for LSM programs
    it says which hook they are for (lsm__<hook>), as bcc's loader reads it."""
    name = name or key
    buf = ctypes.create_string_buffer(insns, len(insns))
    fd = _load(bpf, name, prog_type, buf, len(insns), 0, None)
    if fd < 0:
        err = ctypes.get_errno()
        # Again with the verifier's log, only to say why.
        log = ctypes.create_string_buffer(LOG_SIZE)
        again = _load(bpf, name, prog_type, buf, len(insns), 1, log)
        if again >= 0:
            os.close(again)
        lines = [ln for ln in log.value.decode(errors="replace").splitlines() if ln.strip()]
        reason = "; ".join(lines[-2:]) if lines else os.strerror(err)
        raise LoadError(f"the kernel refused program {key.decode()}: {reason}")
    fn = BPF.Function(bpf, key, fd)
    bpf.funcs[key] = fn
    return fn


def _load(bpf: BPF, name: bytes, prog_type: int, buf, size: int, log_level: int, log) -> int:
    return lib.bcc_func_load(bpf.module, prog_type, name, ctypes.cast(buf, ctypes.c_void_p), size,
                             lib.bpf_module_license(bpf.module), lib.bpf_module_kern_version(bpf.module),
                             log_level, log, LOG_SIZE if log is not None else 0, None, -1)


def unload(bpf: BPF, fn: BPF.Function) -> None:
    """Closes a copy loaded by `load` (after its attachments are gone)."""
    if bpf.funcs.pop(fn.name, None) is not None:
        os.close(fn.fd)
