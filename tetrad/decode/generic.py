"""Policy hook records: raw ring buffer bytes -> PolicyRecord. Pure.

Owns the arrow "ring buffer -> decode" for op TETRAD_OP_GENERIC. Arguments
stay raw here (slot bytes and integers); rendering them by type is the
event builder's job, which knows the policy.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from tetrad.decode.process import DecodeError
from tetrad.policy import encoding as enc


@dataclass(frozen=True, slots=True)
class Slot:
    ival: int
    data: bytes
    flags: int


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    ktime: int
    obj_id: int
    hook_id: int
    pid: int
    tid: int
    proc_ktime: int
    retval: int
    selector: int
    action: int
    flags: int
    slots: tuple[Slot, ...]

    @property
    def monitor(self) -> bool:
        return bool(self.flags & enc.MSG_MONITOR)

    @property
    def has_return(self) -> bool:
        return bool(self.flags & enc.MSG_RETURN)


_SIZE = ctypes.sizeof(enc.Msg)
_SLOTS_AT = enc.Msg.slots.offset
_SLOT_SIZE = ctypes.sizeof(enc.Slot)
_DATA_AT = enc.Slot.data.offset
_NSLOTS_AT = enc.Msg.nslots.offset


def decode_policy(buf: bytes) -> PolicyRecord:
    """A record carries only its hook's slots (nslots of them)."""
    if len(buf) < _SLOTS_AT:
        raise DecodeError(f"policy record of {len(buf)} bytes, need at least {_SLOTS_AT}")
    n = min(buf[_NSLOTS_AT], enc.MAX_ARGS)
    if len(buf) < _SLOTS_AT + n * _SLOT_SIZE:
        raise DecodeError(f"policy record of {len(buf)} bytes is short for {n} slots")
    m = enc.Msg.from_buffer_copy(buf.ljust(_SIZE, b"\0"))
    # Slot data is sliced from the buffer: ctypes would cut char arrays at
    # the first NUL, and buffers and socket addresses contain NULs.
    slots = []
    for i in range(n):
        s = m.slots[i]
        start = _SLOTS_AT + i * _SLOT_SIZE + _DATA_AT
        slots.append(Slot(s.ival, buf[start:start + min(s.len, enc.STR_MAX)], s.flags))
    slots = tuple(slots)
    return PolicyRecord(m.hdr.ktime, m.obj_id, m.hook_id, m.pid, m.tid, m.proc_ktime, m.retval,
                        m.selector, m.action, m.flags, slots)
