"""Policy hook records: raw ring buffer bytes -> PolicyRecord. Pure.

Owns the arrow "ring buffer -> decode" for op TETRAD_OP_GENERIC. Arguments
stay raw here (slot bytes and integers); rendering them by type is the
event builder's job, which knows the policy.

Records are read with the `struct` formats of tetrad.abi.generic, which
spell out `struct g_msg` and `struct g_slot` of bpf/generic.h: one C call
per record and one per slot, no ctypes objects.
"""

from __future__ import annotations

from dataclasses import dataclass

from tetrad.abi import generic as enc
from tetrad.abi.generic import MSG, SLOT, SLOT_SIZE
from tetrad.decode.process import DecodeError


# Not frozen: a frozen dataclass costs ~0.5 µs more to build, once per
# record. Nothing changes a record after decoding.
@dataclass(slots=True)
class Slot:
    ival: int
    data: bytes
    flags: int


@dataclass(slots=True)
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
    kstack: int = enc.NO_STACK  # stack ids (kernelStackTrace, userStackTrace); other
    ustack: int = enc.NO_STACK  # negatives: asked for, the kernel kept none
    nr: int = 0                 # the syscall's number (syscall points)

    @property
    def monitor(self) -> bool:
        return bool(self.flags & enc.MSG_MONITOR)

    @property
    def has_return(self) -> bool:
        return bool(self.flags & enc.MSG_RETURN)


_unpack_msg = MSG.unpack_from
_unpack_slot = SLOT.unpack_from
_SLOTS_AT = MSG.size
_DATA_AT = SLOT.size
_STR_MAX = enc.STR_MAX
_MAX_ARGS = enc.MAX_ARGS


def decode_policy(buf: bytes) -> PolicyRecord:
    """A record carries only its hook's slots (nslots of them)."""
    if len(buf) < _SLOTS_AT:
        raise DecodeError(f"policy record of {len(buf)} bytes, need at least {_SLOTS_AT}")
    (ktime, obj_id, hook_id, pid, tid, proc_ktime, retval, selector, action, flags,
     nslots, kstack, ustack, nr) = _unpack_msg(buf)
    n = min(nslots, _MAX_ARGS)
    if len(buf) < _SLOTS_AT + n * SLOT_SIZE:
        raise DecodeError(f"policy record of {len(buf)} bytes is short for {n} slots")
    # Slot data is sliced from the buffer by its length: buffers and socket
    # addresses contain NULs.
    slots = []
    at = _SLOTS_AT
    for _ in range(n):
        ival, length, slot_flags = _unpack_slot(buf, at)
        start = at + _DATA_AT
        slots.append(Slot(ival, buf[start:start + min(length, _STR_MAX)], slot_flags))
        at += SLOT_SIZE
    return PolicyRecord(ktime, obj_id, hook_id, pid, tid, proc_ktime, retval, selector, action,
                        flags, tuple(slots), kstack, ustack, nr)
