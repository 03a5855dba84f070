"""`tetrad policy check FILE...`: validate and compile policies offline.

Checks the schema, Tetragon's limits and what tetrad can compile; reading
tracepoint formats is the only access to the host. Run as root, it also
says whether this kernel could load each policy, naming any missing
feature. Exits 1 if any file has an error.
"""

from __future__ import annotations

import os

from tetrad.bpf.mounts import ensure_kernel_mounts
from tetrad.policy.kernel import check, missing_features
from tetrad.policy.schema import PolicyError


def _kernel_verdict(compiled) -> str:
    missing = missing_features(compiled)
    if missing:
        return "refused on this kernel: " + "; ".join(f"{path}: {why}" for path, why in missing)
    return "loadable on this kernel"


def run(args) -> int:
    failed = 0
    as_root = os.geteuid() == 0
    if as_root:
        ensure_kernel_mounts()
    for path in args.files:
        try:
            policy, compiled = check(path)
        except PolicyError as err:
            failed += 1
            print(f"ERROR {err}")
            continue
        kinds = ", ".join(f"{ch.target.kind} {ch.target.function_name}" for ch in compiled)
        verdict = f"; {_kernel_verdict(compiled)}" if as_root else ""
        scope = f"; for {policy.workloads.describe()}" if policy.workloads else ""
        print(f"OK {path}: policy {policy.name} ({policy.mode}), {len(compiled)} hooks: "
              f"{kinds}{scope}{verdict}")
    if failed:
        print(f"{failed} of {len(args.files)} files have errors")
    return 1 if failed else 0
