"""Process sensor records: raw ring buffer bytes -> plain frozen dataclasses.

Owns the arrow "ring buffer -> decode" for exec, clone, exit and state
records (credentials and namespaces, struct tetrad_proc_state).
Pure: no kernel, no cache; the observer calls `decode()` for each record and
the process cache consumes the results.

Records are read with precompiled `struct` formats that spell out the
structs of bpf/tetrad_events.h (native byte order, padding as `x`); the
ctypes mirrors in tetrad.abi.records are for writing records and map
values. tests/kernel/test_record_layout.py decodes records laid out by
clang with these formats, so a field moved in the header fails there.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from tetrad.abi.ops import ExitHow, Op
from tetrad.abi.records import HEADER, MSG_CLONE, MSG_EXEC, MSG_EXIT, MSG_STATE, PROC_STATE


class DecodeError(ValueError):
    """A record is shorter than its header says or has an unknown op."""


@dataclass(frozen=True, slots=True)
class ProcKey:
    """A process's identity: its pid and the ktime of its exec (or fork)."""

    pid: int
    ktime: int


# Bits of ProcState.known (TETRAD_STATE_* in bpf/tetrad_events.h).
STATE_CREDS = 0x1
STATE_NS = 0x2
STATE_SECUREBITS = 0x4
STATE_USER_NS = 0x8
# ProcState.ns, in Tetragon's order (TETRAD_NS_*; proto field names).
NAMESPACES = ("uts", "ipc", "mnt", "pid", "pid_for_children", "net", "time",
              "time_for_children", "cgroup", "user")


@dataclass(frozen=True, slots=True)
class ProcState:
    """A process's credentials and namespace inode numbers (struct
    tetrad_proc_state). Ids are the kernel's, as seen from the initial user
    namespace; `known` says which parts hold values (STATE_*). Hashable:
    processes share a few states, which are decoded and rendered once."""

    known: int
    securebits: int
    uid: int
    gid: int
    suid: int
    sgid: int
    euid: int
    egid: int
    fsuid: int
    fsgid: int
    permitted: int
    effective: int
    inheritable: int
    user_ns_level: int
    user_ns_owner: int
    user_ns_group: int
    ns: tuple[int, ...]          # inode numbers in NAMESPACES order; 0 unknown


@functools.lru_cache(maxsize=4096)
def decode_state(raw: bytes) -> ProcState | None:
    """A struct tetrad_proc_state; None when the kernel knew nothing (no BTF).
    Memoized on the bytes: most processes share their parent's state."""
    values = PROC_STATE.unpack(raw)
    if not values[0]:
        return None
    return ProcState(*values[:16], ns=values[16:26])


# Records are not frozen (ProcKey is: it is a dict key): building a frozen
# dataclass costs ~0.5 µs more, once per record. Nothing changes a record
# after decoding.
@dataclass(slots=True)
class ExecRecord:
    ktime: int
    pid: int
    tid: int
    uid: int
    gid: int
    auid: int
    flags: int
    cgroup_id: int
    parent: ProcKey | None
    argv: tuple[str, ...]
    exe: str
    cwd: str
    filename: str
    state: ProcState | None = None


@dataclass(slots=True)
class CloneRecord:
    ktime: int
    proc: ProcKey
    parent: ProcKey | None
    flags: int
    state: ProcState | None = None


@dataclass(slots=True)
class StateRecord:
    """Credentials or namespaces of a process changed after its exec."""

    ktime: int
    proc: ProcKey
    tid: int
    syscall: int
    state: ProcState | None


@dataclass(slots=True)
class ExitRecord:
    ktime: int
    pid: int
    tid: int
    proc: ProcKey | None
    parent: ProcKey | None
    how: ExitHow
    code: int
    cgroup_id: int


def _text(raw: bytes) -> str:
    # Paths and arguments are bytes to the kernel; keep undecodable bytes
    # visible as \xNN rather than dropping or replacing them.
    return raw.decode("utf-8", "backslashreplace")


def _key(pid: int, ktime: int) -> ProcKey | None:
    return ProcKey(pid, ktime) if pid else None


_EXEC_SIZE = MSG_EXEC.size
_STATE_SIZE = PROC_STATE.size


def _state_at_end(buf: bytes, fixed: int) -> ProcState | None:
    """The state that ends a record's fixed part of `fixed` bytes."""
    return decode_state(bytes(buf[fixed - _STATE_SIZE:fixed]))


def decode_exec(buf: bytes) -> ExecRecord:
    if len(buf) < _EXEC_SIZE:
        raise DecodeError(f"exec record of {len(buf)} bytes, need {_EXEC_SIZE}")
    (ktime, ppid, pktime, pid, tid, uid, gid, auid, flags, cgroup_id,
     args_len, exe_len, cwd_len, filename_len) = MSG_EXEC.unpack_from(buf)
    data = buf[_EXEC_SIZE:]
    end_args = args_len
    end_exe = end_args + exe_len
    end_cwd = end_exe + cwd_len
    end_file = end_cwd + filename_len
    if end_file > len(data):
        raise DecodeError(f"exec record payload of {len(data)} bytes, header says {end_file}")
    argv = tuple(_text(a) for a in data[:end_args].split(b"\0")[:-1]) if end_args else ()
    return ExecRecord(
        ktime=ktime,
        pid=pid,
        tid=tid,
        uid=uid,
        gid=gid,
        auid=auid,
        flags=flags,
        cgroup_id=cgroup_id,
        parent=_key(ppid, pktime),
        argv=argv,
        exe=_text(data[end_args:end_exe]),
        cwd=_text(data[end_exe:end_cwd]),
        filename=_text(data[end_cwd:end_file]),
        state=_state_at_end(buf, _EXEC_SIZE),
    )


def decode_clone(buf: bytes) -> CloneRecord:
    if len(buf) < MSG_CLONE.size:
        raise DecodeError(f"clone record of {len(buf)} bytes")
    ktime, pid, pktime, ppid, parent_ktime, flags = MSG_CLONE.unpack_from(buf)
    return CloneRecord(ktime=ktime, proc=ProcKey(pid, pktime), parent=_key(ppid, parent_ktime),
                       flags=flags, state=_state_at_end(buf, MSG_CLONE.size))


def decode_state_record(buf: bytes) -> StateRecord:
    if len(buf) < MSG_STATE.size:
        raise DecodeError(f"state record of {len(buf)} bytes")
    ktime, pid, pktime, tid, syscall = MSG_STATE.unpack_from(buf)
    return StateRecord(ktime=ktime, proc=ProcKey(pid, pktime), tid=tid, syscall=syscall,
                       state=_state_at_end(buf, MSG_STATE.size))


def decode_exit(buf: bytes) -> ExitRecord:
    if len(buf) < MSG_EXIT.size:
        raise DecodeError(f"exit record of {len(buf)} bytes")
    (ktime, proc_pid, proc_ktime, ppid, parent_ktime, pid, tid, how, code,
     cgroup_id) = MSG_EXIT.unpack_from(buf)
    proc = ProcKey(proc_pid, proc_ktime) if proc_ktime else None
    return ExitRecord(ktime=ktime, pid=pid, tid=tid, proc=proc, parent=_key(ppid, parent_ktime),
                      how=ExitHow(how), code=code, cgroup_id=cgroup_id)


DECODERS = {Op.EXEC: decode_exec, Op.CLONE: decode_clone, Op.EXIT: decode_exit,
            Op.STATE: decode_state_record}
_HEADER_SIZE = HEADER.size


def decode(buf: bytes) -> ExecRecord | CloneRecord | ExitRecord | StateRecord:
    """Decode one process sensor record by its op code."""
    if len(buf) < _HEADER_SIZE:
        raise DecodeError(f"record of {len(buf)} bytes is shorter than a header")
    try:
        decoder = DECODERS[Op(buf[0])]
    except ValueError:
        raise DecodeError(f"unknown op code {buf[0]}") from None
    return decoder(buf)
