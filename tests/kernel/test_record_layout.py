"""The kernel ABI of tetrad/abi/ (ctypes mirrors and struct formats) matches
bpf/*.h.

bcc builds its own ctypes type for each map value from clang's view of the
C struct; a map per record struct gives us clang's layout to compare field
by field (the alignchecker idea). A field moved on one side only fails here.
"""

import ctypes
import itertools
import sys

import pytest

from tetrad.abi import generic as encoding
from tetrad.abi import records
from tetrad.abi.ops import ExitHow, Op
from tetrad.decode import cgroup, generic, process
from tetrad.paths import bpf_dir

pytestmark = pytest.mark.kernel

PAIRS = {
    "tetrad_msg_header": records.MsgHeader,
    "tetrad_proc_key": records.ProcKey,
    "tetrad_msg_exec": records.MsgExec,
    "tetrad_msg_exit": records.MsgExit,
    "tetrad_msg_clone": records.MsgClone,
    "tetrad_msg_state": records.MsgState,
    "tetrad_proc_state": records.ProcState,
    "tetrad_exec_entry": records.ExecEntry,
    "g_sockinfo": encoding.SockInfo,
    "g_slot": encoding.Slot,
    "g_slot_desc": encoding.SlotDesc,
    "g_op": encoding.Op,
    "g_ipred": encoding.IPred,
    "g_spred": encoding.SPred,
    "g_point": encoding.Point,
    "g_action": encoding.Action,
    "g_selector": encoding.Selector,
    "g_hook": encoding.Hook,
    "g_lpm_str_key": encoding.LpmStrKey,
    "g_lpm_addr_key": encoding.LpmAddrKey,
    "g_bits": encoding.Bits,
    "g_pid_key": encoding.PidKey,
    "g_pid_bits": encoding.PidBits,
    "g_cgroup_key": encoding.CgroupKey,
    "g_sock_key": encoding.SockKey,
    "g_sock_owner": encoding.SockOwner,
    "g_msg": encoding.Msg,
    "g_hook_stats": encoding.HookStats,
    "g_usdt_arg": encoding.UsdtArg,
    "g_usdt": encoding.Usdt,
}
# Read only through a decoder's struct format (no ctypes mirror).
FORMAT_ONLY = ("tetrad_msg_cgroup",)


@pytest.fixture(scope="module")
def compiled():
    from bcc import BPF
    text = '#include "execve_map.h"\n#include "generic.h"\n' + "".join(
        f"BPF_ARRAY(layout_{name}, struct {name}, 1);\n" for name in (*PAIRS, *FORMAT_ONLY))
    text += "int unused(void *ctx) { return 0; }\n"
    b = BPF(text=text.encode(), cflags=[f"-I{bpf_dir()}"])
    yield b
    b.cleanup()


def layout(ctype):
    # bcc spells out trailing padding as __pad_* fields; sizes are compared too
    return [(name, getattr(ctype, name).offset, ctypes.sizeof(t)) for name, t in ctype._fields_
            if not name.startswith("__pad")]


@pytest.mark.parametrize("name", PAIRS)
def test_mirror_matches_compiled_struct(compiled, name):
    mirror = PAIRS[name]
    clang = compiled[f"layout_{name}".encode()].Leaf
    assert ctypes.sizeof(mirror) == ctypes.sizeof(clang)
    assert layout(mirror) == layout(clang)


# ---- the decoders' struct formats read clang's layout ------------------------------

def fill(obj, counter) -> None:
    """Give every byte of every integer field (pads too) its own value, so a
    format that reads a field at a wrong offset or size reads a wrong value."""
    for name, ctype in obj._fields_:
        value = getattr(obj, name)
        if isinstance(value, ctypes.Structure):
            fill(value, counter)
        elif isinstance(value, ctypes.Array):
            if issubclass(ctype._type_, ctypes.Structure):
                for item in value:
                    fill(item, counter)
            else:                                 # integer arrays
                for i in range(len(value)):
                    raw = bytes(next(counter) % 255 + 1 for _ in range(ctypes.sizeof(ctype._type_)))
                    value[i] = int.from_bytes(raw, sys.byteorder)
        elif not isinstance(value, bytes):        # char arrays are set by each test
            raw = bytes(next(counter) % 255 + 1 for _ in range(ctypes.sizeof(ctype)))
            setattr(obj, name, int.from_bytes(raw, sys.byteorder))


def clang_record(compiled, name):
    m = compiled[f"layout_{name}".encode()].Leaf()
    fill(m, itertools.count())
    return m


def test_record_formats_match_compiled_structs(compiled):
    def sizeof(name):
        return ctypes.sizeof(compiled[f"layout_{name}".encode()].Leaf)
    assert records.HEADER.size == sizeof("tetrad_msg_header")
    assert records.MSG_EXEC.size == sizeof("tetrad_msg_exec")
    assert records.MSG_EXIT.size == sizeof("tetrad_msg_exit")
    assert records.MSG_CLONE.size == sizeof("tetrad_msg_clone")
    assert records.MSG_STATE.size == sizeof("tetrad_msg_state")
    assert records.PROC_STATE.size == sizeof("tetrad_proc_state")


def test_execve_map_entry_only_grows_at_its_end(compiled):
    """Policy programs read key, parent, bin_len and binary at the offsets
    they had before credentials and namespaces were appended."""
    clang = compiled[b"layout_tetrad_exec_entry"].Leaf
    assert (clang.key.offset, clang.parent.offset, clang.bin_len.offset, clang.binary.offset) == \
        (0, 16, 56, 64)
    assert clang.exec_state.offset == 320
    assert clang.state.offset == 320 + ctypes.sizeof(records.ProcState)


def assert_state(decoded, clang_state) -> None:
    s = clang_state
    assert decoded == process.ProcState(
        known=s.known, securebits=s.securebits, uid=s.uid, gid=s.gid, suid=s.suid, sgid=s.sgid,
        euid=s.euid, egid=s.egid, fsuid=s.fsuid, fsgid=s.fsgid, permitted=s.caps[0],
        effective=s.caps[1], inheritable=s.caps[2], user_ns_level=s.user_ns_level,
        user_ns_owner=s.user_ns_owner, user_ns_group=s.user_ns_group, ns=tuple(s.ns))


def test_exec_format_reads_compiled_layout(compiled):
    m = clang_record(compiled, "tetrad_msg_exec")
    m.hdr.op = Op.EXEC
    m.args_len, m.exe_len, m.cwd_len, m.filename_len = 4, 3, 2, 1
    rec = process.decode_exec(bytes(m) + b"a\0b\0" + b"exe" + b"/x" + b"f")
    assert (rec.ktime, rec.pid, rec.tid, rec.uid, rec.gid, rec.auid, rec.flags, rec.cgroup_id) == \
        (m.hdr.ktime, m.pid, m.tid, m.uid, m.gid, m.auid, m.flags, m.cgroup_id)
    assert rec.parent == process.ProcKey(m.parent.pid, m.parent.ktime)
    assert (rec.argv, rec.exe, rec.cwd, rec.filename) == (("a", "b"), "exe", "/x", "f")
    assert_state(rec.state, m.state)


def test_exit_format_reads_compiled_layout(compiled):
    m = clang_record(compiled, "tetrad_msg_exit")
    m.hdr.op, m.how = Op.EXIT, ExitHow.SIGNAL
    rec = process.decode_exit(bytes(m))
    assert (rec.ktime, rec.pid, rec.tid, rec.how, rec.code, rec.cgroup_id) == \
        (m.hdr.ktime, m.pid, m.tid, ExitHow.SIGNAL, m.code, m.cgroup_id)
    assert rec.proc == process.ProcKey(m.proc.pid, m.proc.ktime)
    assert rec.parent == process.ProcKey(m.parent.pid, m.parent.ktime)


def test_clone_format_reads_compiled_layout(compiled):
    m = clang_record(compiled, "tetrad_msg_clone")
    m.hdr.op = Op.CLONE
    rec = process.decode_clone(bytes(m))
    assert (rec.ktime, rec.flags) == (m.hdr.ktime, m.flags)
    assert rec.proc == process.ProcKey(m.proc.pid, m.proc.ktime)
    assert rec.parent == process.ProcKey(m.parent.pid, m.parent.ktime)
    assert_state(rec.state, m.state)


def test_state_format_reads_compiled_layout(compiled):
    m = clang_record(compiled, "tetrad_msg_state")
    m.hdr.op = Op.STATE
    rec = process.decode_state_record(bytes(m))
    assert (rec.ktime, rec.tid, rec.syscall) == (m.hdr.ktime, m.tid, m.syscall)
    assert rec.proc == process.ProcKey(m.proc.pid, m.proc.ktime)
    assert_state(rec.state, m.state)


def test_policy_record_format_reads_compiled_layout(compiled):
    clang_msg = compiled[b"layout_g_msg"].Leaf
    clang_slot = compiled[b"layout_g_slot"].Leaf
    assert encoding.MSG.size == clang_msg.slots.offset
    assert encoding.SLOT.size == clang_slot.data.offset
    assert encoding.SLOT_SIZE == ctypes.sizeof(clang_slot)
    m = clang_record(compiled, "g_msg")
    m.hdr.op, m.nslots = encoding.OP_GENERIC, 2
    for i, slot in enumerate(m.slots[:2]):
        slot.len = 3 + i
        slot.data = b"xyz" + b"\0" * i
    # a record carries only its nslots slots
    rec = generic.decode_policy(bytes(m)[:clang_msg.slots.offset + 2 * ctypes.sizeof(clang_slot)])
    assert (rec.ktime, rec.obj_id, rec.hook_id, rec.pid, rec.tid, rec.proc_ktime, rec.retval,
            rec.selector, rec.action, rec.flags) == \
        (m.hdr.ktime, m.obj_id, m.hook_id, m.pid, m.tid, m.proc_ktime, m.retval,
         m.selector, m.action, m.flags)
    assert [(s.ival, s.data, s.flags) for s in rec.slots] == \
        [(m.slots[0].ival, b"xyz", m.slots[0].flags), (m.slots[1].ival, b"xyz\0", m.slots[1].flags)]


def test_cgroup_format_reads_compiled_layout(compiled):
    clang = compiled[b"layout_tetrad_msg_cgroup"].Leaf
    assert records.MSG_CGROUP.size == clang.path.offset
    assert records.CGROUP_PATH_MAX == clang.path.size
    m = clang_record(compiled, "tetrad_msg_cgroup")
    m.hdr.op = Op.CGROUP_MKDIR
    m.path_len, m.path = 9, b"/a/b.scope"[:9]
    rec = cgroup.decode_cgroup(bytes(m))
    assert (rec.made, rec.id, rec.level, rec.path) == (True, m.id, m.level, "/a/b.scop")
    m.hdr.op = Op.CGROUP_RMDIR
    assert not cgroup.decode_cgroup(bytes(m)).made
