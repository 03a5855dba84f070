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

MAX_ARGS = 5            # arguments of one hook (record slots)
MAX_SLOTS = 8           # values read at one point
MAX_ARGV = 8            # raw call arguments fetched (6 used)
MAX_SEL = 8             # array sizes; the logical limits are in policy.schema
MAX_VALUES = 8
MAX_ACTIONS = 4
MAX_IPREDS = 32         # integer predicates of one point
WORDS = 4               # predicate bits of one point: 64 * WORDS
POINT_HOOKS = 16        # hooks attached at one point
MAX_SPREDS = 16         # credential/namespace predicates of one point
SPRED_VALUES = 4        # namespace inode numbers of one predicate
STR_MAX = 256
LPM_STR = 248
POSTFIX_MAX = 128
NO_SLOT = 0xFF
MAX_OPS = 64            # struct walk steps of one point's slots
SLOT_OPS = 16           # steps of one slot (walk and gather)
IOVEC_MAX = 8           # iovec entries of a char_iovec read

# argument read strategies
GA = {"none": 0, "int": 1, "ustr": 2, "ubuf": 3, "fd": 4, "file": 5, "path": 6, "sock": 7,
      "usockaddr": 8, "gather": 9, "kstr": 10, "dataloc": 11, "dentry": 12, "iovec": 13, "buf": 14,
      "iter": 15, "skb": 20, "socket": 21, "ksockaddr": 22, "usockaddr_un": 23, "ksockaddr_un": 24,
      "netdev": 25}
# struct walk steps (g_op.code)
GO_DEREF, GO_LOAD, GO_ADD, GO_COPY, GO_STR, GO_BASE = 1, 2, 3, 4, 5, 6
GO_USER = 0x80
# slot descriptor flags
GS_FWD, GS_REV, GS_SADDR, GS_DADDR, GS_SIGNED, GS_RETCOPY, GS_USER, GS_RETVAL = (
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80)

SLOT_TRUNC, SLOT_ERROR, SLOT_PATH_TRUNC, SLOT_UNREADABLE, SLOT_BADPTR, SLOT_ABSTRACT = (
    0x1, 0x2, 0x4, 0x8, 0x10, 0x20)
SLOT_DEPTH_SHIFT = 8            # BADPTR: the flags' high byte is the depth

# integer predicate operators
IOPS = {"Equal": 1, "Mask": 7, "GreaterThan": 8, "LessThan": 9, "InRange": 10,
        "SPort": 16, "DPort": 18, "Protocol": 20, "Family": 21, "State": 22}
ACTIONS = {"Post": 1, "NoPost": 2, "Sigkill": 3, "Signal": 4, "Override": 5, "FollowFD": 6,
           "UnfollowFD": 7, "TrackSock": 8, "UntrackSock": 9, "GetUrl": 10, "DnsLookup": 11,
           "NotifyEnforcer": 12}
ACTION_NAMES = {v: k for k, v in ACTIONS.items()}

HOOK_MONITOR, HOOK_ACTIVE, HOOK_CGROUPS, HOOK_UNREADABLE_NOMATCH, HOOK_RETURN, HOOK_RETSLOT = (
    0x1, 0x2, 0x4, 0x8, 0x10, 0x20)
POINT_ACTIVE, POINT_BINARY, POINT_PIDS, POINT_FORKS, POINT_NSPID, POINT_RETRY = (
    0x1, 0x2, 0x4, 0x8, 0x10, 0x20)
POINT_STATE, POINT_BASE = 0x40, 0x80
# state predicates (g_spred.kind) and selector change flags
SP_NS, SP_CAPS_IN, SP_CAPS_NOTIN, SP_NSCHG, SP_CAPCHG_IN, SP_CAPCHG_NOTIN = 1, 2, 3, 4, 5, 6
SEL_NSCHG, SEL_CAPCHG = 0x1, 0x2
POINT_SYSNR = 0x100
STACK_KERNEL, STACK_USER = 0x1, 0x2
NO_STACK = -65536       # a record's kstack/ustack when its action asked for none
POINT_RETVAL = 0x200
POINT_BIN_REV = 0x400
GSX_OPENED = 0x1          # g_slot_desc.xflags: an open-family syscall's path
RET_SRC = MAX_ARGV - 1          # the argument index a return-value slot names (unused by calls)
MSG_MONITOR, MSG_RETURN = 0x1, 0x2

# trie ids: point << 8 | table << 4 | slot; slot 15 is the binary
TRIE_FWD, TRIE_REV, TRIE_SADDR, TRIE_DADDR = 0, 1, 2, 3
BINARY_SLOT = 15


def trie_id(point: int, table: int, slot: int) -> int:
    return point << 8 | table << 4 | slot


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
        ("mark", ctypes.c_uint32),
        ("priority", ctypes.c_uint32),
        ("hash", ctypes.c_uint32),
        ("cookie", ctypes.c_uint64),
        ("len", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    ]


class Slot(ctypes.Structure):
    _fields_ = [
        ("ival", ctypes.c_int64),
        ("len", ctypes.c_uint16),
        ("flags", ctypes.c_uint16),
        ("pad", ctypes.c_uint32),
        ("data", ctypes.c_char * STR_MAX),
    ]


class SlotDesc(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("size", ctypes.c_uint8),
        ("sizesrc", ctypes.c_uint8),
        ("src", ctypes.c_uint16),
        ("op_at", ctypes.c_uint8),
        ("nwalk", ctypes.c_uint8),
        ("ngather", ctypes.c_uint8),
        ("pad", ctypes.c_uint8),
        ("xflags", ctypes.c_uint16),
    ]


class Op(ctypes.Structure):
    _fields_ = [
        ("off", ctypes.c_uint32),
        ("code", ctypes.c_uint8),
        ("size", ctypes.c_uint8),
        ("dst", ctypes.c_uint8),
        ("depth", ctypes.c_uint8),
    ]


class IPred(ctypes.Structure):
    _fields_ = [
        ("slot", ctypes.c_uint8),
        ("op", ctypes.c_uint8),
        ("nvals", ctypes.c_uint8),
        ("bit", ctypes.c_uint8),
        ("negate", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 3),
        ("vals", ctypes.c_int64 * MAX_VALUES),
    ]


class SPred(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_uint8),
        ("index", ctypes.c_uint8),
        ("nvals", ctypes.c_uint8),
        ("bit", ctypes.c_uint8),
        ("userns", ctypes.c_uint32),
        ("mask", ctypes.c_uint64),
        ("vals", ctypes.c_uint32 * SPRED_VALUES),
    ]


class Point(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint32),
        ("nslots", ctypes.c_uint8),
        ("npreds", ctypes.c_uint8),
        ("nhooks", ctypes.c_uint8),
        ("nspreds", ctypes.c_uint8),
        ("slot", SlotDesc * MAX_SLOTS),
        ("slot_bits", ctypes.c_uint64 * (WORDS * MAX_SLOTS)),
        ("hooks", ctypes.c_uint16 * POINT_HOOKS),
        ("pred", IPred * MAX_IPREDS),
        ("spred", SPred * MAX_SPREDS),
        ("ops", Op * MAX_OPS),
    ]


class Action(ctypes.Structure):
    _fields_ = [
        ("action", ctypes.c_uint8),
        ("stack", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 2),
        ("arg", ctypes.c_int32),
        ("arg2", ctypes.c_uint32),
        ("rate_limit_s", ctypes.c_uint32),
    ]


class Selector(ctypes.Structure):
    _fields_ = [
        ("nact", ctypes.c_uint8),
        ("nret_act", ctypes.c_uint8),
        ("has_ret", ctypes.c_uint8),
        ("chg", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 4),
        ("cpos", ctypes.c_uint64),
        ("cneg", ctypes.c_uint64),
        ("pos", ctypes.c_uint64 * WORDS),
        ("neg", ctypes.c_uint64 * WORDS),
        ("ret", IPred),
        ("act", Action * MAX_ACTIONS),
        ("ret_act", Action * MAX_ACTIONS),
    ]


class Hook(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("nsel", ctypes.c_uint8),
        ("nargs", ctypes.c_uint8),
        ("ret_action", ctypes.c_uint8),
        ("sockargs", ctypes.c_uint8),
        ("track", ctypes.c_uint16),
        ("pad", ctypes.c_uint8 * 2),
        ("argslot", ctypes.c_uint8 * 8),
        ("sel", Selector * MAX_SEL),
    ]


class LpmStrKey(ctypes.Structure):
    _fields_ = [("prefixlen", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("data", ctypes.c_char * LPM_STR)]


class LpmAddrKey(ctypes.Structure):
    _fields_ = [("prefixlen", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("family", ctypes.c_uint8), ("addr", ctypes.c_uint8 * 16)]


class Bits(ctypes.Structure):
    _fields_ = [("w", ctypes.c_uint64 * WORDS)]


class PidKey(ctypes.Structure):
    _fields_ = [("point", ctypes.c_uint32), ("pid", ctypes.c_uint32)]


class PidBits(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_uint64), ("forks", ctypes.c_uint64), ("nspid", ctypes.c_uint64)]


class CgroupKey(ctypes.Structure):
    _fields_ = [("cgroup_id", ctypes.c_uint64), ("hook_id", ctypes.c_uint32),
                ("pad", ctypes.c_uint32)]


class SockKey(ctypes.Structure):
    _fields_ = [("sk", ctypes.c_uint64), ("scope", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


class SockOwner(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_uint32), ("tid", ctypes.c_uint32), ("ktime", ctypes.c_uint64)]


USDT_KINDS = {"none": 0, "const": 1, "reg": 2, "deref": 3, "sib": 4}


class UsdtArg(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_uint8),
        ("size", ctypes.c_uint8),
        ("is_signed", ctypes.c_uint8),
        ("scale", ctypes.c_uint8),
        ("reg", ctypes.c_uint16),
        ("idx", ctypes.c_uint16),
        ("val", ctypes.c_int64),
    ]


class Usdt(ctypes.Structure):
    _fields_ = [("arg", UsdtArg * MAX_ARGV)]


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
        ("kstack", ctypes.c_int32),
        ("ustack", ctypes.c_int32),
        ("nr", ctypes.c_uint32),
        ("slots", Slot * MAX_ARGS),
    ]


class HookStats(ctypes.Structure):
    _fields_ = [("posted", ctypes.c_uint64), ("enforced", ctypes.c_uint64),
                ("monitored", ctypes.c_uint64), ("rate_limited", ctypes.c_uint64),
                ("dropped", ctypes.c_uint64), ("shed", ctypes.c_uint64),
                ("deferred", ctypes.c_uint64), ("unreadable", ctypes.c_uint64)]


# struct g_msg up to its slots: the header (op, pad0, size, cpu skipped),
# obj_id, hook_id, pid, tid, proc_ktime, retval, selector, action, flags,
# nslots, kstack, ustack, nr.
MSG = struct.Struct("=8xQIIIIQqBBBBiiI")
# struct g_slot without its data: ival, len, flags, pad.
SLOT = struct.Struct("=qHH4x")
SLOT_SIZE = SLOT.size + STR_MAX
