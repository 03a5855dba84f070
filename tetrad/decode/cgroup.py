"""cgroup records of the process sensor -> `CgroupRecord`. Pure."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from tetrad.api.ops import Op
from tetrad.api.records import MsgCgroup
from tetrad.decode.process import DecodeError

_SIZE = ctypes.sizeof(MsgCgroup)


@dataclass(frozen=True, slots=True)
class CgroupRecord:
    made: bool                  # mkdir (True) or rmdir
    id: int                     # cgroup v2 id, as bpf_get_current_cgroup_id() reports it
    level: int
    path: str                   # relative to the cgroup2 mount, e.g. /libpod_parent/libpod-<id>


def decode_cgroup(buf: bytes) -> CgroupRecord:
    if len(buf) < _SIZE:
        raise DecodeError(f"cgroup record of {len(buf)} bytes, expected {_SIZE}")
    m = MsgCgroup.from_buffer_copy(buf)
    path = bytes(m.path)[: min(m.path_len, len(m.path))]
    return CgroupRecord(m.hdr.op == Op.CGROUP_MKDIR, m.id, m.level,
                        path.decode("utf-8", "backslashreplace") or "/")
