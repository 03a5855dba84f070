"""Policy files for tests of the watched directory (unit and real-kernel)."""

from __future__ import annotations

import os
from pathlib import Path


def lseek_equal(name: str, value) -> str:
    """A policy reporting lseek calls whose offset equals `value`."""
    return f"""apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: "{name}"
spec:
  kprobes:
  - call: "sys_lseek"
    syscall: true
    args:
    - index: 1
      type: long
    selectors:
    - matchArgs:
      - index: 1
        operator: Equal
        values: ["{value}"]
"""


def put(directory: Path, fname: str, text: str, mode: int = 0o644) -> Path:
    """Write as editors and config management do: a temp file renamed over the target."""
    tmp = directory / f".{fname}.tmp"
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.rename(tmp, directory / fname)
    return directory / fname
