"""Policy files for tests of the watched directory (unit and real-kernel)."""

from __future__ import annotations

import os
from pathlib import Path

from tetrad.policy.schema import PolicyError


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


class FakeLoader:
    """Stands in for the kernel side of loading (a Loader of
    tetrad/policy/registry.py): records loads and unloads of lseek_equal
    policies by (name, value); refuses values in `refuse` as a verifier
    would, and raises a plain exception for values in `crash`."""

    def __init__(self):
        self.loaded, self.log = [], []
        self.refuse, self.crash = set(), set()

    def load(self, policy):
        value = policy.hooks[0].selectors[0].match_args[0].values[0]
        if value in self.refuse:
            raise PolicyError(policy.source, [("", "the kernel refused it")])
        if value in self.crash:
            raise RuntimeError("a loader bug")
        handle = (policy.name, value)
        self.loaded.append(handle)
        self.log.append(("load", handle))
        return handle

    def unload(self, handle):
        self.loaded.remove(handle)
        self.log.append(("unload", handle))
