"""The records of bpf/tetrad_events.h and bpf/execve_map.h, twice over:
ctypes mirrors, for writing records (tests) and map values (seeding
execve_map), and precompiled `struct` formats, which the decoders read
records with (one C call per record, no ctypes objects; native byte order,
padding spelled as `x`).

tests/kernel/test_record_layout.py compiles the headers and checks each
size and field offset of the mirrors, and decodes records laid out by clang
with the formats, so a change on one side that is not made on the other
fails the tests instead of garbling events.
"""

import ctypes
import struct

# ---- struct formats (what the decoders read) ------------------------------

# struct tetrad_msg_header: op, pad0, size, cpu, ktime (only ktime is read).
HEADER = struct.Struct("=8xQ")
# struct tetrad_proc_key inside a record: pid, pad, ktime.
_KEY = "I4xQ"
# struct tetrad_proc_state: known, securebits, uid, gid, suid, sgid, euid,
# egid, fsuid, fsgid, caps[3] (permitted, effective, inheritable),
# user_ns_level, user_ns_owner, user_ns_group, ns[10], pad. Records embed it
# at the end of their fixed part; the formats below skip it and the decoders
# read it from there with PROC_STATE.
PROC_STATE = struct.Struct("=10I3QiII10I4x")
_SKIP_STATE = f"{PROC_STATE.size}x"
# struct tetrad_msg_exec without its data: header, parent, pid, tid, uid, gid,
# auid, flags, cgroup_id, args_len, exe_len, cwd_len, filename_len, (state).
MSG_EXEC = struct.Struct("=8xQ" + _KEY + "IIIIIIQHHHH" + _SKIP_STATE)
# struct tetrad_msg_exit: header, proc, parent, pid, tid, how, code, cgroup_id.
MSG_EXIT = struct.Struct("=8xQ" + _KEY + _KEY + "IIIIQ")
# struct tetrad_msg_clone: header, proc, parent, flags, pad, (state).
MSG_CLONE = struct.Struct("=8xQ" + _KEY + _KEY + "I4x" + _SKIP_STATE)
# struct tetrad_msg_state: header, proc, tid, syscall, (state).
MSG_STATE = struct.Struct("=8xQ" + _KEY + "Ii" + _SKIP_STATE)
CGROUP_PATH_MAX = 512           # TETRAD_CGROUP_PATH_MAX
# struct tetrad_msg_cgroup up to its path: header (only op is read), id,
# level, path_len, pad.
MSG_CGROUP = struct.Struct("=B15xQIH2x")

# ---- ctypes mirrors (what tests and the seeding write) --------------------


class MsgHeader(ctypes.Structure):
    _fields_ = [
        ("op", ctypes.c_uint8),
        ("pad0", ctypes.c_uint8),
        ("size", ctypes.c_uint16),
        ("cpu", ctypes.c_uint32),
        ("ktime", ctypes.c_uint64),
    ]


class ProcKey(ctypes.Structure):
    _fields_ = [
        ("pid", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("ktime", ctypes.c_uint64),
    ]


NS_COUNT = 10                   # TETRAD_NS_COUNT


class ProcState(ctypes.Structure):
    """struct tetrad_proc_state: credentials and namespace inode numbers."""

    _fields_ = [
        ("known", ctypes.c_uint32),
        ("securebits", ctypes.c_uint32),
        ("uid", ctypes.c_uint32),
        ("gid", ctypes.c_uint32),
        ("suid", ctypes.c_uint32),
        ("sgid", ctypes.c_uint32),
        ("euid", ctypes.c_uint32),
        ("egid", ctypes.c_uint32),
        ("fsuid", ctypes.c_uint32),
        ("fsgid", ctypes.c_uint32),
        ("caps", ctypes.c_uint64 * 3),
        ("user_ns_level", ctypes.c_int32),
        ("user_ns_owner", ctypes.c_uint32),
        ("user_ns_group", ctypes.c_uint32),
        ("ns", ctypes.c_uint32 * NS_COUNT),
        ("pad", ctypes.c_uint32),
    ]

    _SAME_NAMES = ("known", "securebits", "uid", "gid", "suid", "sgid", "euid", "egid", "fsuid",
                   "fsgid", "user_ns_level", "user_ns_owner", "user_ns_group")

    def fill(self, state) -> None:
        """Set from a decoded state (tetrad.decode.process.ProcState)."""
        for name in self._SAME_NAMES:
            setattr(self, name, getattr(state, name))
        self.caps[:] = (state.permitted, state.effective, state.inheritable)
        self.ns[:] = state.ns


class MsgExec(ctypes.Structure):
    """Fixed part of an exec record; `data` (args|exe|cwd|filename) follows."""

    _fields_ = [
        ("hdr", MsgHeader),
        ("parent", ProcKey),
        ("pid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("uid", ctypes.c_uint32),
        ("gid", ctypes.c_uint32),
        ("auid", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cgroup_id", ctypes.c_uint64),
        ("args_len", ctypes.c_uint16),
        ("exe_len", ctypes.c_uint16),
        ("cwd_len", ctypes.c_uint16),
        ("filename_len", ctypes.c_uint16),
        ("state", ProcState),
    ]


class MsgExit(ctypes.Structure):
    _fields_ = [
        ("hdr", MsgHeader),
        ("proc", ProcKey),
        ("parent", ProcKey),
        ("pid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("how", ctypes.c_uint32),
        ("code", ctypes.c_uint32),
        ("cgroup_id", ctypes.c_uint64),
    ]


class MsgClone(ctypes.Structure):
    _fields_ = [
        ("hdr", MsgHeader),
        ("proc", ProcKey),
        ("parent", ProcKey),
        ("flags", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("state", ProcState),
    ]


class MsgState(ctypes.Structure):
    _fields_ = [
        ("hdr", MsgHeader),
        ("proc", ProcKey),
        ("tid", ctypes.c_uint32),
        ("syscall", ctypes.c_int32),
        ("state", ProcState),
    ]


BINARY_MAX = 256


class ExecEntry(ctypes.Structure):
    """Value of the kernel's execve_map (bpf/process.c), written when seeding."""

    _fields_ = [
        ("key", ProcKey),
        ("parent", ProcKey),
        ("flags", ctypes.c_uint32),
        ("threads", ctypes.c_int32),
        ("exit_how", ctypes.c_uint32),
        ("exit_code", ctypes.c_uint32),
        ("sig_candidate", ctypes.c_uint32),
        ("thread_code", ctypes.c_uint32),
        ("bin_len", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("binary", ctypes.c_char * BINARY_MAX),
        ("exec_state", ProcState),
        ("state", ProcState),
    ]
