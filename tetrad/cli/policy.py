"""`tetrad policy check FILE...`: validate and compile policies offline.

Reads each file as the daemon does (tetrad.policy.source: regular files
with one link, at most 1 MiB, strict UTF-8), validates it with the
daemon's schema and limits and compiles it; reading tracepoint formats is
the only access to the host. Run as root, it also asks what the daemon's
loader asks before loading (tetrad.policy.kernel.missing_features and
tetrad.sensors.targets.check): whether this kernel has every feature
the policy needs and whether its syscalls, tracepoints and uprobe symbols
exist here, naming each one that does not.

Per file, one verdict line:
  OK PATH: ...                 the daemon would load it (as root: here)
  NOT LOADABLE HERE PATH: ...  valid, but this kernel or machine lacks
                               what it needs (a pod-scoped policy: the
                               Kubernetes plugin); every missing thing named
  REFUSED PATH: ...            valid, but the daemon would refuse the file
                               (ownership or permissions), with the fix
  ERROR PATH: ...              not valid; every problem is listed
Exit status: 0 when every file is OK, 1 when any is REFUSED or ERROR,
3 when all are valid but some cannot load on this machine.
"""

from __future__ import annotations

import os

from tetrad.bpf.mounts import ensure_kernel_mounts
from tetrad.plugins import PluginRegistry
from tetrad.policy import schema, source, workloads
from tetrad.policy.compile import compile_policy
from tetrad.policy.kernel import kernel_facts, missing_features
from tetrad.policy.schema import PolicyError
from tetrad.sensors.targets import check as check_targets

OK, INVALID, NOT_HERE = 0, 1, 3


def check_file(path: str, as_root: bool) -> tuple[int, str]:
    """(OK, INVALID or NOT_HERE, the verdict line)."""
    try:
        f = source.read_file(path)
        policy = schema.parse(f.data, path)
        compiled = compile_policy(policy, kernel_facts())
    except PolicyError as err:
        return INVALID, f"ERROR {err}"
    kinds = ", ".join(f"{ch.target.kind} {ch.target.function_name}" for ch in compiled)
    scope = f"; for {policy.workloads.describe()}" if policy.workloads else ""
    summary = f"policy {policy.name} ({policy.mode}), {len(compiled)} hooks: {kinds}{scope}"
    if f.trust_problem:
        return INVALID, (f"REFUSED {path}: the daemon would refuse this file: {f.trust_problem} "
                         f"(its policy is valid: {summary})")
    if not as_root:
        return OK, f"OK {path}: {summary} (run as root to ask this kernel)"
    problems, skipped = check_targets(compiled)
    missing = missing_features(compiled) + problems
    if policy.workloads is not None and policy.workloads.needs_pods \
            and "kubernetes" not in PluginRegistry.installed().names():
        # Installed, the daemon uses it if [kubernetes] enabled = true (its drop-in's default).
        missing += workloads.admission(False)(policy)
    if missing:
        return NOT_HERE, (f"NOT LOADABLE HERE {path}: {summary}; "
                          + "; ".join(f"{where}: {why}" for where, why in missing))
    left_out = "".join(f"; {ch.hook.path} left out (as its ignore says): {why}" for ch, why in skipped)
    return OK, f"OK {path}: {summary}; loadable on this kernel{left_out}"


def run(args) -> int:
    as_root = os.geteuid() == 0
    if as_root:
        ensure_kernel_mounts()
    verdicts = []
    for path in args.files:
        verdict, line = check_file(path, as_root)
        verdicts.append(verdict)
        print(line)
    invalid, not_here = verdicts.count(INVALID), verdicts.count(NOT_HERE)
    if invalid or not_here:
        print(f"{invalid + not_here} of {len(args.files)} files would not be loaded "
              f"({invalid} invalid or refused, {not_here} not loadable here)")
    return INVALID if invalid else NOT_HERE if not_here else OK
