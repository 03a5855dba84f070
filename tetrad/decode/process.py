"""Process sensor records: raw ring buffer bytes -> plain frozen dataclasses.

Owns the arrow "ring buffer -> decode" for exec, clone and exit records.
Pure: no kernel, no cache; the observer calls `decode()` for each record and
the process cache consumes the results.

Records are read with precompiled `struct` formats that spell out the
structs of bpf/tetrad_events.h (native byte order, padding as `x`); the
ctypes mirrors in tetrad.abi.records are for writing records and map
values. tests/kernel/test_record_layout.py decodes records laid out by
clang with these formats, so a field moved in the header fails there.
"""

from __future__ import annotations

from dataclasses import dataclass

from tetrad.abi.ops import ExitHow, Op
from tetrad.abi.records import HEADER, MSG_CLONE, MSG_EXEC, MSG_EXIT


class DecodeError(ValueError):
    """A record is shorter than its header says or has an unknown op."""


@dataclass(frozen=True, slots=True)
class ProcKey:
    """A process's identity: its pid and the ktime of its exec (or fork)."""

    pid: int
    ktime: int


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


@dataclass(slots=True)
class CloneRecord:
    ktime: int
    proc: ProcKey
    parent: ProcKey | None
    flags: int


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
    )


def decode_clone(buf: bytes) -> CloneRecord:
    if len(buf) < MSG_CLONE.size:
        raise DecodeError(f"clone record of {len(buf)} bytes")
    ktime, pid, pktime, ppid, parent_ktime, flags = MSG_CLONE.unpack_from(buf)
    return CloneRecord(ktime=ktime, proc=ProcKey(pid, pktime), parent=_key(ppid, parent_ktime),
                       flags=flags)


def decode_exit(buf: bytes) -> ExitRecord:
    if len(buf) < MSG_EXIT.size:
        raise DecodeError(f"exit record of {len(buf)} bytes")
    (ktime, proc_pid, proc_ktime, ppid, parent_ktime, pid, tid, how, code,
     cgroup_id) = MSG_EXIT.unpack_from(buf)
    proc = ProcKey(proc_pid, proc_ktime) if proc_ktime else None
    return ExitRecord(ktime=ktime, pid=pid, tid=tid, proc=proc, parent=_key(ppid, parent_ktime),
                      how=ExitHow(how), code=code, cgroup_id=cgroup_id)


DECODERS = {Op.EXEC: decode_exec, Op.CLONE: decode_clone, Op.EXIT: decode_exit}
_HEADER_SIZE = HEADER.size


def decode(buf: bytes) -> ExecRecord | CloneRecord | ExitRecord:
    """Decode one process sensor record by its op code."""
    if len(buf) < _HEADER_SIZE:
        raise DecodeError(f"record of {len(buf)} bytes is shorter than a header")
    try:
        decoder = DECODERS[Op(buf[0])]
    except ValueError:
        raise DecodeError(f"unknown op code {buf[0]}") from None
    return decoder(buf)
