"""cgroup records of the process sensor -> `CgroupRecord`. Pure.

Read with a precompiled `struct` format of `struct tetrad_msg_cgroup`
(bpf/tetrad_events.h), like the other records (decode/process.py);
tests/kernel/test_record_layout.py decodes a record laid out by clang.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tetrad.api.ops import Op
from tetrad.decode.process import DecodeError

PATH_MAX = 512                  # TETRAD_CGROUP_PATH_MAX
# header (op, pad0, size, cpu, ktime: only op is read), id, level, path_len, pad.
MSG_CGROUP = struct.Struct("=B15xQIH2x")
_SIZE = MSG_CGROUP.size + PATH_MAX


@dataclass(frozen=True, slots=True)
class CgroupRecord:
    made: bool                  # mkdir (True) or rmdir
    id: int                     # cgroup v2 id, as bpf_get_current_cgroup_id() reports it
    level: int
    path: str                   # relative to the cgroup2 mount, e.g. /libpod_parent/libpod-<id>


def decode_cgroup(buf: bytes) -> CgroupRecord:
    if len(buf) < _SIZE:
        raise DecodeError(f"cgroup record of {len(buf)} bytes, expected {_SIZE}")
    op, cgroup_id, level, path_len = MSG_CGROUP.unpack_from(buf)
    start = MSG_CGROUP.size
    path = buf[start:start + min(path_len, PATH_MAX)]
    return CgroupRecord(op == Op.CGROUP_MKDIR, cgroup_id, level,
                        path.decode("utf-8", "backslashreplace") or "/")
