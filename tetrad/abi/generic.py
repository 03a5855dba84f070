"""bpf/generic.h: compiled policies and policy records, as ctypes mirrors
(what the compiler writes into maps) and the `struct` formats the decoder
reads records with.

Checked field by field against clang's layout of the header in
tests/kernel/test_record_layout.py. Constants carry the header's names.
"""

import ctypes
import struct

from tetrad.abi.records import MsgHeader

OP_GENERIC = 10

MAX_ARGS = 5
MAX_SEL = 8             # array sizes; the logical limits are in policy.schema
MAX_MATCH = 8
MAX_VALUES = 8
MAX_ACTIONS = 4
MAX_PIDS = 4
HOOKS_PER_KEY = 1
STR_MAX = 256
LPM_STR = 248
POSTFIX_MAX = 128
RETURN_SLOT = 7

# argument read strategies
GA = {"none": 0, "int": 1, "ustr": 2, "ubuf": 3, "fd": 4, "file": 5, "path": 6, "sock": 7,
      "usockaddr": 8, "binprm": 9, "kstr": 10, "dataloc": 11}

SLOT_TRUNC, SLOT_ERROR, SLOT_PATH_TRUNC, SLOT_UNREADABLE = 0x1, 0x2, 0x4, 0x8

OPS = {"Equal": 1, "NotEqual": 2, "Prefix": 3, "NotPrefix": 4, "Postfix": 5, "NotPostfix": 6,
       "Mask": 7, "GreaterThan": 8, "LessThan": 9, "InRange": 10, "NotInRange": 11,
       "SAddr": 12, "NotSAddr": 13, "DAddr": 14, "NotDAddr": 15, "SPort": 16, "NotSPort": 17,
       "DPort": 18, "NotDPort": 19, "Protocol": 20, "Family": 21, "StrEqual": 22,
       "StrNotEqual": 23}
ACTIONS = {"Post": 1, "NoPost": 2, "Sigkill": 3, "Signal": 4, "Override": 5, "FollowFD": 6,
           "UnfollowFD": 7}
ACTION_NAMES = {v: k for k, v in ACTIONS.items()}
SETS = {"In": 1, "NotIn": 2, "Prefix": 3, "NotPrefix": 4, "Postfix": 5, "NotPostfix": 6}

HOOK_MONITOR, HOOK_ACTIVE, HOOK_CGROUPS, HOOK_UNREADABLE_NOMATCH = 0x1, 0x2, 0x4, 0x8
MSG_MONITOR, MSG_RETURN = 0x1, 0x2


class SockInfo(ctypes.Structure):
    _fields_ = [
        ("family", ctypes.c_uint16),
        ("type", ctypes.c_uint16),
        ("protocol", ctypes.c_uint16),
        ("sport", ctypes.c_uint16),
        ("dport", ctypes.c_uint16),
        ("state", ctypes.c_uint16),
        ("saddr", ctypes.c_uint8 * 16),
        ("daddr", ctypes.c_uint8 * 16),
    ]


class Slot(ctypes.Structure):
    _fields_ = [
        ("ival", ctypes.c_int64),
        ("len", ctypes.c_uint16),
        ("flags", ctypes.c_uint16),
        ("pad", ctypes.c_uint32),
        ("data", ctypes.c_char * STR_MAX),
    ]


class Match(ctypes.Structure):
    _fields_ = [
        ("slot", ctypes.c_uint8),
        ("op", ctypes.c_uint8),
        ("nvals", ctypes.c_uint8),
        ("pad", ctypes.c_uint8),
        ("id", ctypes.c_uint32),
        ("vals", ctypes.c_int64 * MAX_VALUES),
    ]


class Action(ctypes.Structure):
    _fields_ = [
        ("action", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 3),
        ("arg", ctypes.c_int32),
        ("arg2", ctypes.c_uint32),
        ("rate_limit_s", ctypes.c_uint32),
    ]


class Selector(ctypes.Structure):
    _fields_ = [
        ("nmatch", ctypes.c_uint8),
        ("has_ret", ctypes.c_uint8),
        ("nact", ctypes.c_uint8),
        ("nret_act", ctypes.c_uint8),
        ("pid_op", ctypes.c_uint8),
        ("npids", ctypes.c_uint8),
        ("follow_forks", ctypes.c_uint8),
        ("ns_pid", ctypes.c_uint8),
        ("pids", ctypes.c_uint32 * MAX_PIDS),
        ("bin_op", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 3),
        ("bin_id", ctypes.c_uint32),
        ("match", Match * MAX_MATCH),
        ("ret_match", Match),
        ("act", Action * MAX_ACTIONS),
        ("ret_act", Action * MAX_ACTIONS),
    ]


class Hook(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("nsel", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("sel", Selector * MAX_SEL),
    ]


class HookList(ctypes.Structure):
    _fields_ = [("n", ctypes.c_uint32), ("ids", ctypes.c_uint32 * HOOKS_PER_KEY)]


class StrKey(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("data", ctypes.c_char * STR_MAX)]


class CgroupKey(ctypes.Structure):
    _fields_ = [("cgroup_id", ctypes.c_uint64), ("hook_id", ctypes.c_uint32),
                ("pad", ctypes.c_uint32)]


class LpmStrKey(ctypes.Structure):
    _fields_ = [("prefixlen", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("data", ctypes.c_char * LPM_STR)]


class LpmAddrKey(ctypes.Structure):
    _fields_ = [("prefixlen", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("family", ctypes.c_uint8), ("addr", ctypes.c_uint8 * 16)]


class Msg(ctypes.Structure):
    _fields_ = [
        ("hdr", MsgHeader),
        ("obj_id", ctypes.c_uint32),
        ("hook_id", ctypes.c_uint32),
        ("pid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("proc_ktime", ctypes.c_uint64),
        ("retval", ctypes.c_int64),
        ("selector", ctypes.c_uint8),
        ("action", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("nslots", ctypes.c_uint8),
        ("pad", ctypes.c_uint32),
        ("slots", Slot * MAX_ARGS),
    ]


class HookStats(ctypes.Structure):
    _fields_ = [("posted", ctypes.c_uint64), ("enforced", ctypes.c_uint64),
                ("monitored", ctypes.c_uint64), ("rate_limited", ctypes.c_uint64),
                ("dropped", ctypes.c_uint64), ("shed", ctypes.c_uint64),
                ("deferred", ctypes.c_uint64), ("unreadable", ctypes.c_uint64)]


# struct g_msg up to its slots: the header (op, pad0, size, cpu skipped),
# obj_id, hook_id, pid, tid, proc_ktime, retval, selector, action, flags,
# nslots, pad.
MSG = struct.Struct("=8xQIIIIQqBBBB4x")
# struct g_slot without its data: ival, len, flags, pad.
SLOT = struct.Struct("=qHH4x")
SLOT_SIZE = SLOT.size + STR_MAX
