"""Process sensor records: raw ring buffer bytes -> plain frozen dataclasses.

Owns the arrow "ring buffer -> decode" for exec, clone and exit records.
Pure: no kernel, no cache; the observer calls `decode()` for each record and
the process cache consumes the results.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from tetrad.api.ops import ExitHow, Op
from tetrad.api.records import MsgClone, MsgExec, MsgExit, MsgHeader


class DecodeError(ValueError):
    """A record is shorter than its header says or has an unknown op."""


@dataclass(frozen=True, slots=True)
class ProcKey:
    """A process's identity: its pid and the ktime of its exec (or fork)."""

    pid: int
    ktime: int


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class CloneRecord:
    ktime: int
    proc: ProcKey
    parent: ProcKey | None
    flags: int


@dataclass(frozen=True, slots=True)
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


def _key(raw) -> ProcKey | None:
    return ProcKey(raw.pid, raw.ktime) if raw.pid else None


_EXEC_SIZE = ctypes.sizeof(MsgExec)


def decode_exec(buf: bytes) -> ExecRecord:
    if len(buf) < _EXEC_SIZE:
        raise DecodeError(f"exec record of {len(buf)} bytes, need {_EXEC_SIZE}")
    m = MsgExec.from_buffer_copy(buf)
    data = buf[_EXEC_SIZE:]
    end_args = m.args_len
    end_exe = end_args + m.exe_len
    end_cwd = end_exe + m.cwd_len
    end_file = end_cwd + m.filename_len
    if end_file > len(data):
        raise DecodeError(f"exec record payload of {len(data)} bytes, header says {end_file}")
    argv = tuple(_text(a) for a in data[:end_args].split(b"\0")[:-1]) if end_args else ()
    return ExecRecord(
        ktime=m.hdr.ktime,
        pid=m.pid,
        tid=m.tid,
        uid=m.uid,
        gid=m.gid,
        auid=m.auid,
        flags=m.flags,
        cgroup_id=m.cgroup_id,
        parent=_key(m.parent),
        argv=argv,
        exe=_text(data[end_args:end_exe]),
        cwd=_text(data[end_exe:end_cwd]),
        filename=_text(data[end_cwd:end_file]),
    )


def decode_clone(buf: bytes) -> CloneRecord:
    if len(buf) < ctypes.sizeof(MsgClone):
        raise DecodeError(f"clone record of {len(buf)} bytes")
    m = MsgClone.from_buffer_copy(buf)
    return CloneRecord(ktime=m.hdr.ktime, proc=ProcKey(m.proc.pid, m.proc.ktime),
                       parent=_key(m.parent), flags=m.flags)


def decode_exit(buf: bytes) -> ExitRecord:
    if len(buf) < ctypes.sizeof(MsgExit):
        raise DecodeError(f"exit record of {len(buf)} bytes")
    m = MsgExit.from_buffer_copy(buf)
    proc = ProcKey(m.proc.pid, m.proc.ktime) if m.proc.ktime else None
    return ExitRecord(ktime=m.hdr.ktime, pid=m.pid, tid=m.tid, proc=proc,
                      parent=_key(m.parent), how=ExitHow(m.how), code=m.code,
                      cgroup_id=m.cgroup_id)


DECODERS = {Op.EXEC: decode_exec, Op.CLONE: decode_clone, Op.EXIT: decode_exit}
_HEADER_SIZE = ctypes.sizeof(MsgHeader)


def decode(buf: bytes) -> ExecRecord | CloneRecord | ExitRecord:
    """Decode one process sensor record by its op code."""
    if len(buf) < _HEADER_SIZE:
        raise DecodeError(f"record of {len(buf)} bytes is shorter than a header")
    try:
        decoder = DECODERS[Op(buf[0])]
    except ValueError:
        raise DecodeError(f"unknown op code {buf[0]}") from None
    return decoder(buf)
