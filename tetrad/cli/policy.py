"""`tetrad policy check FILE...`: validate and compile policies offline.

Reads each file as the daemon does (tetrad.policy.source: regular files
with one link, at most 1 MiB, strict UTF-8), validates it with the
daemon's schema and limits and compiles it; reading tracepoint formats is
the only access to the host. Run as root, it also says whether this kernel
could load each policy, naming any missing feature.

Per file, one verdict line:
  OK PATH: ...            the daemon would load it
  REFUSED PATH: ...       valid, but the daemon would refuse the file
                          (ownership or permissions), with the fix
  ERROR PATH: ...         not loadable; every problem is listed
Exit status: 0 when every file is OK, 1 when any is REFUSED or ERROR.
"""

from __future__ import annotations

import os

from tetrad.bpf import features
from tetrad.policy import schema, source
from tetrad.policy.compile import compile_policy
from tetrad.policy.manager import kernel_facts, required_features
from tetrad.policy.schema import PolicyError


def _kernel_verdict(compiled) -> str:
    for ch in compiled:
        for name, why in required_features(ch):
            feature = features.get(name)
            if not feature.available:
                return f"refused on this kernel: {features.MissingFeature(feature, why)}"
    return "loadable on this kernel"


def check_file(path: str, as_root: bool) -> tuple[bool, str]:
    """(whether the daemon would load it, the verdict line)."""
    try:
        f = source.read_file(path)
        policy = schema.parse(f.data, path)
        compiled = compile_policy(policy, kernel_facts())
    except PolicyError as err:
        return False, f"ERROR {err}"
    kinds = ", ".join(f"{ch.target.kind} {ch.target.function_name}" for ch in compiled)
    verdict = f"; {_kernel_verdict(compiled)}" if as_root else ""
    scope = f"; for {policy.workloads.describe()}" if policy.workloads else ""
    summary = (f"policy {policy.name} ({policy.mode}), {len(compiled)} hooks: "
               f"{kinds}{scope}{verdict}")
    if f.trust_problem:
        return False, (f"REFUSED {path}: the daemon would refuse this file: {f.trust_problem} "
                       f"(its policy is valid: {summary})")
    return True, f"OK {path}: {summary}"


def run(args) -> int:
    failed = 0
    as_root = os.geteuid() == 0
    if as_root:
        from tetrad.bpf.mounts import ensure_kernel_mounts
        ensure_kernel_mounts()
    for path in args.files:
        ok, line = check_file(path, as_root)
        failed += not ok
        print(line)
    if failed:
        print(f"{failed} of {len(args.files)} files would not be loaded")
    return 1 if failed else 0
