"""Builders of raw sensor records for unit tests (the kernel's byte layout,
written through the ctypes mirrors)."""

import ctypes

from tetrad.abi.ops import Op
from tetrad.abi.records import MsgClone, MsgExec, MsgExit, MsgState


def exec_bytes(*, pid, ktime, argv=(), exe="", cwd="", filename="", parent=(0, 0),
               uid=0, gid=0, auid=0xFFFFFFFF, flags=1, tid=None, cgroup_id=0,
               state=None) -> bytes:
    """`state`: a tetrad.decode.process.ProcState, or None for none known."""
    m = MsgExec()
    if state is not None:
        m.state.fill(state)
    m.hdr.op = Op.EXEC
    m.hdr.ktime = ktime
    m.pid, m.tid = pid, pid if tid is None else tid
    m.uid, m.gid, m.auid, m.flags, m.cgroup_id = uid, gid, auid, flags, cgroup_id
    m.parent.pid, m.parent.ktime = parent
    args = b"".join(a.encode() + b"\0" for a in argv)
    pieces = [args, exe.encode(), cwd.encode(), filename.encode()]
    m.args_len, m.exe_len, m.cwd_len, m.filename_len = (len(p) for p in pieces)
    m.hdr.size = ctypes.sizeof(m) + sum(len(p) for p in pieces)
    return bytes(m) + b"".join(pieces)


def clone_bytes(*, pid, ktime, parent=(0, 0), flags=0x800, state=None) -> bytes:
    m = MsgClone()
    if state is not None:
        m.state.fill(state)
    m.hdr.op, m.hdr.ktime, m.hdr.size = Op.CLONE, ktime, ctypes.sizeof(m)
    m.proc.pid, m.proc.ktime = pid, ktime
    m.parent.pid, m.parent.ktime = parent
    m.flags = flags
    return bytes(m)


def exit_bytes(*, pid, ktime, proc_ktime, parent=(0, 0), how=1, code=0, tid=None) -> bytes:
    m = MsgExit()
    m.hdr.op, m.hdr.ktime, m.hdr.size = Op.EXIT, ktime, ctypes.sizeof(m)
    m.proc.pid, m.proc.ktime = pid, proc_ktime
    m.parent.pid, m.parent.ktime = parent
    m.pid, m.tid = pid, pid if tid is None else tid
    m.how, m.code = how, code
    return bytes(m)


def state_bytes(*, pid, ktime, proc_ktime, state, tid=None, syscall=105) -> bytes:
    m = MsgState()
    m.hdr.op, m.hdr.ktime, m.hdr.size = Op.STATE, ktime, ctypes.sizeof(m)
    m.proc.pid, m.proc.ktime = pid, proc_ktime
    m.tid, m.syscall = pid if tid is None else tid, syscall
    if state is not None:
        m.state.fill(state)
    return bytes(m)
