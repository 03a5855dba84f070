"""ctypes mirrors of the record structs in bpf/tetrad_events.h, for writing
records (tests) and map values (seeding execve_map). The decoders read
records with struct formats of their own (tetrad.decode.process).

tests/kernel/test_record_layout.py compiles the header and checks that each
size and field offset here matches, so a change on one side that is not made
on the other fails the tests instead of garbling events.
"""

import ctypes


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
