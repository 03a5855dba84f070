"""Tetragon's exec_id: base64 of "<node>:<ktime>:<pid>".

The ktime is the kernel's monotonic clock at the exec (or fork, for a clone;
or the process start time, for processes found in /proc at start-up), so the
id is unique across pid reuse and across nodes, and tools written for
Tetragon's JSON can join events on it.
"""

import base64


def exec_id(node_name: str, ktime: int, pid: int) -> str:
    return base64.b64encode(f"{node_name}:{ktime}:{pid}".encode()).decode("ascii")


def parse_exec_id(value: str) -> tuple[str, int, int]:
    """(node, ktime, pid) of an exec_id; ValueError if it is not one."""
    try:
        node, ktime, pid = base64.b64decode(value, validate=True).decode().rsplit(":", 2)
        return node, int(ktime), int(pid)
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"not an exec_id: {value!r}") from err
