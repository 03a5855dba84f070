"""Policy files for tests (unit and real-kernel)."""

from __future__ import annotations

import os
from pathlib import Path

from tetrad.policy.schema import PolicyError


def syscall_matching(name: str, call: str, args: dict[int, str], index: int, operator: str,
                     value) -> str:
    """A policy reporting the syscall `call` (args: index -> type) when
    argument `index` matches `value`."""
    arg_lines = "".join(f"    - index: {i}\n      type: {t}\n" for i, t in args.items())
    return f"""apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: "{name}"
spec:
  kprobes:
  - call: "{call}"
    syscall: true
    args:
{arg_lines}    selectors:
    - matchArgs:
      - index: {index}
        operator: {operator}
        values: ["{value}"]
"""


def lseek_equal(name: str, value) -> str:
    """A policy reporting lseek calls whose offset equals `value`."""
    return syscall_matching(name, "sys_lseek", {1: "long"}, 1, "Equal", value)


def openat_matching(name: str, operator: str, value) -> str:
    """A policy reporting openat calls whose path matches `value`."""
    return syscall_matching(name, "sys_openat", {0: "int", 1: "string"}, 1, operator, value)


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
