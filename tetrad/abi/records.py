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
# struct tetrad_msg_exec without its data: header, parent, pid, tid, uid, gid,
# auid, flags, cgroup_id, args_len, exe_len, cwd_len, filename_len.
MSG_EXEC = struct.Struct("=8xQ" + _KEY + "IIIIIIQHHHH")
# struct tetrad_msg_exit: header, proc, parent, pid, tid, how, code, cgroup_id.
MSG_EXIT = struct.Struct("=8xQ" + _KEY + _KEY + "IIIIQ")
# struct tetrad_msg_clone: header, proc, parent, flags, pad.
MSG_CLONE = struct.Struct("=8xQ" + _KEY + _KEY + "I4x")
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
    ]
