"""cgroup records of the process sensor -> `CgroupRecord`. Pure.

Read with the `struct` format of `struct tetrad_msg_cgroup` in
tetrad.abi.records, like the other records.
"""

from __future__ import annotations

from dataclasses import dataclass

from tetrad.abi.ops import Op
from tetrad.abi.records import CGROUP_PATH_MAX as PATH_MAX
from tetrad.abi.records import MSG_CGROUP
from tetrad.decode.process import DecodeError
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
