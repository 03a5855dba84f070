"""Just enough of bpf(2) and perf_event_open(2) to try kernel features.

The feature probe must answer "can this kernel do X" by doing X with a
program of a few instructions — in milliseconds, without compiling C through
bcc (a second or more per program). Everything returns an `Fd` that closes
itself; failures raise OSError with the kernel's errno.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

# syscall numbers by machine (uname -m)
_SYSCALLS = {"x86_64": {"bpf": 321, "perf_event_open": 298},
             "aarch64": {"bpf": 280, "perf_event_open": 241}}

BPF_MAP_CREATE, BPF_MAP_LOOKUP_ELEM, BPF_PROG_LOAD, BPF_RAW_TRACEPOINT_OPEN = 0, 1, 5, 17
MAP_ARRAY, MAP_STACK_TRACE, MAP_RINGBUF = 2, 7, 27
PROG_KPROBE, PROG_TRACEPOINT, PROG_RAW_TRACEPOINT, PROG_TRACING, PROG_LSM = 2, 5, 17, 26, 29
ATTACH_TRACE_FENTRY, ATTACH_MODIFY_RETURN, ATTACH_LSM_MAC = 24, 26, 27
HELPER_MAP_UPDATE_ELEM, HELPER_GET_STACKID, HELPER_OVERRIDE_RETURN, HELPER_SEND_SIGNAL = 2, 27, 58, 109
PERF_TYPE_TRACEPOINT = 2
PERF_FLAG_FD_CLOEXEC = 8
PERF_EVENT_IOC_SET_BPF = 0x40042408

from tetrad.libc import libc as _libc
_libc.syscall.restype = ctypes.c_long
_libc.ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong)


def _nr(name: str) -> int:
    try:
        return _SYSCALLS[platform.machine()][name]
    except KeyError:
        raise OSError(errno.ENOSYS, f"no {name} syscall number for {platform.machine()}") from None


class Fd:
    """A file descriptor that is closed when the `with` block ends."""

    def __init__(self, fd: int):
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "Fd":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _call(name: str, *args) -> int:
    ret = _libc.syscall(_nr(name), *args)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def _bpf(cmd: int, attr: bytearray) -> Fd:
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    return Fd(_call("bpf", ctypes.c_int(cmd), buf, ctypes.c_uint(len(attr))))


# ---- instructions ---------------------------------------------------------

def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def mov_reg(dst: int, src: int) -> bytes:
    return insn(0xBF, dst=dst, src=src)          # BPF_ALU64 | BPF_MOV | BPF_X


def add_imm(reg: int, imm: int) -> bytes:
    return insn(0x07, dst=reg, imm=imm)          # BPF_ALU64 | BPF_ADD | BPF_K


def store_reg64(base: int, off: int, src: int) -> bytes:
    return insn(0x7B, dst=base, src=src, off=off)    # BPF_STX | BPF_MEM | BPF_DW


def store_imm32(base: int, off: int, imm: int) -> bytes:
    return insn(0x62, dst=base, off=off, imm=imm)    # BPF_ST | BPF_MEM | BPF_W


def load_map_fd(reg: int, fd: int) -> bytes:
    """The two-slot ld_imm64 that the verifier turns into the map's address."""
    return insn(0x18, dst=reg, src=1, imm=fd) + insn(0)     # BPF_PSEUDO_MAP_FD


def mov_imm(reg: int, imm: int) -> bytes:
    return insn(0xB7, dst=reg, imm=imm)          # BPF_ALU64 | BPF_MOV | BPF_K


def call(helper: int) -> bytes:
    return insn(0x85, imm=helper)                # BPF_JMP | BPF_CALL


def exit_() -> bytes:
    return insn(0x95)                            # BPF_JMP | BPF_EXIT


RETURN_ZERO = mov_imm(0, 0) + exit_()


# ---- commands ---------------------------------------------------------------

def map_create(map_type: int, key_size: int, value_size: int, max_entries: int,
               flags: int = 0, name: str = "") -> Fd:
    attr = bytearray(72)
    struct.pack_into("<IIIII", attr, 0, map_type, key_size, value_size, max_entries, flags)
    raw = name.encode()[:15]
    attr[28:28 + len(raw)] = raw        # map_name (after inner_map_fd and numa_node)
    return _bpf(BPF_MAP_CREATE, attr)


def map_lookup(m: Fd, key: bytes, value_size: int) -> bytes:
    key_buf = ctypes.create_string_buffer(key, len(key))
    value = ctypes.create_string_buffer(value_size)
    attr = bytearray(32)
    struct.pack_into("<IIQQ", attr, 0, m.fd, 0, ctypes.addressof(key_buf), ctypes.addressof(value))
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    _call("bpf", ctypes.c_int(BPF_MAP_LOOKUP_ELEM), buf, ctypes.c_uint(len(attr)))
    return value.raw


def prog_load(prog_type: int, insns: bytes, *, expected_attach_type: int = 0,
              attach_btf_id: int = 0, log_size: int = 0) -> Fd:
    """Load a program; with log_size the verifier's log is appended to the
    OSError's message on failure."""
    code = ctypes.create_string_buffer(insns, len(insns))
    license_ = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(log_size) if log_size else None
    attr = bytearray(128)
    struct.pack_into("<IIQQIIQ", attr, 0, prog_type, len(insns) // 8, ctypes.addressof(code),
                     ctypes.addressof(license_), 1 if log else 0, log_size,
                     ctypes.addressof(log) if log else 0)
    struct.pack_into("<I", attr, 68, expected_attach_type)
    struct.pack_into("<I", attr, 108, attach_btf_id)
    try:
        return _bpf(BPF_PROG_LOAD, attr)
    except OSError as err:
        reason = verifier_reason(log.value.decode(errors="replace")) if log is not None else ""
        if reason:
            raise OSError(err.errno, f"{err.strerror}: {reason}") from None
        raise


def verifier_reason(log: str) -> str:
    """The verifier's own words from its log: the last line that is not an
    instruction dump, a register state or the statistics line."""
    for line in reversed(log.splitlines()):
        line = line.strip()
        if line and not line[0].isdigit() and not line.startswith((";", "processed ")):
            return line
    return ""


def raw_tracepoint_open(prog: Fd, name: bytes | None = None) -> Fd:
    """Attach LSM/fentry programs (name None) or raw tracepoints."""
    name_buf = ctypes.create_string_buffer(name) if name else None
    attr = bytearray(16)
    struct.pack_into("<QI", attr, 0, ctypes.addressof(name_buf) if name_buf else 0, prog.fd)
    return _bpf(BPF_RAW_TRACEPOINT_OPEN, attr)


def perf_event_open(pmu_type: int, config: int, config1: int = 0, config2: int = 0,
                    this_process: bool = False) -> Fd:
    """A system-wide event on CPU 0, or (this_process) one on this process
    on any CPU."""
    attr = bytearray(128)
    struct.pack_into("<IIQ", attr, 0, pmu_type, len(attr), config)
    struct.pack_into("<QQ", attr, 56, config1, config2)
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    pid, cpu = (0, -1) if this_process else (-1, 0)
    return Fd(_call("perf_event_open", buf, ctypes.c_int(pid), ctypes.c_int(cpu),
                    ctypes.c_int(-1), ctypes.c_ulong(PERF_FLAG_FD_CLOEXEC)))


def probe_pmu_event(pmu: str, target: bytes, offset_or_zero: int, retprobe: bool = False) -> Fd:
    """perf_event_open on the kprobe or uprobe PMU (target = function name
    or binary path); raises OSError(ENOENT) if the PMU does not exist."""
    base = f"/sys/bus/event_source/devices/{pmu}"
    try:
        with open(f"{base}/type") as f:
            pmu_type = int(f.read())
    except OSError as err:
        raise OSError(err.errno, f"no {pmu} PMU ({base})") from None
    config = 0
    if retprobe:
        with open(f"{base}/format/retprobe") as f:          # e.g. "config:0"
            config = 1 << int(f.read().split(":")[1])
    name = ctypes.create_string_buffer(target)
    return perf_event_open(pmu_type, config, ctypes.addressof(name), offset_or_zero)


def attach_perf_event(event: Fd, prog: Fd) -> None:
    if _libc.ioctl(event.fd, PERF_EVENT_IOC_SET_BPF, prog.fd) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
