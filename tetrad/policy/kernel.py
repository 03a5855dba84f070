"""Loading and unloading policies as units, and turning their records into events.

The daemon's one entry point to the policy engine:
  check(path)              parse, validate and compile offline (no kernel)
  PolicyManager.load(p)    every hook of p attaches, or none stays attached
  PolicyManager.unload(l)  detach everything of a loaded policy
  PolicyManager.loaded()   what is in force, with per-policy counters

A policy that needs something this kernel lacks is refused before anything
is loaded, with the feature probe's reason (tetrad.bpf.features). Two
versions of one policy may be loaded at once (load the new, then unload the
old): nothing here is keyed by policy name.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from tetrad.bpf import features
from tetrad.decode.generic import PolicyRecord, decode_policy
from tetrad.decode.process import ProcKey
from tetrad.events.policy import policy_event
from tetrad.abi import generic as enc
from tetrad.policy import schema
from tetrad.policy.cgroup_scope import CgroupScope
from tetrad.policy.compile import CompiledHook, KernelFacts, compile_policy, parse_tracepoint_format
from tetrad.policy.schema import Policy, PolicyError

log = logging.getLogger(__name__)

TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
STRUCT_TYPES = {"fd", "file", "path", "sock", "linux_binprm"}


def tracepoint_fields(subsys: str, event: str):
    for root in TRACEFS:
        path = Path(root, "events", subsys, event, "format")
        if path.exists():
            return parse_tracepoint_format(path.read_text())
    raise FileNotFoundError(2, f"no tracefs format for {subsys}:{event}")


def kernel_facts() -> KernelFacts:
    arch = {"x86_64": "__x64_", "aarch64": "__arm64_"}.get(os.uname().machine, "")
    return KernelFacts(arch_prefix=arch, tracepoint_fields=tracepoint_fields)


def check(path: str) -> tuple[Policy, list[CompiledHook]]:
    """Parse, validate and compile a policy file without touching the
    kernel (tracepoint formats are read from tracefs when it is there)."""
    policy = schema.read(path)
    return policy, compile_policy(policy, kernel_facts())


def required_features(ch: CompiledHook) -> list[tuple[str, str]]:
    """(feature, why) pairs this hook needs from the kernel."""
    what = f"{ch.hook.path} ({ch.target.kind} {ch.target.function_name})"
    kind, ret = ch.target.kind, ch.layout.has_return
    need = {
        "syscall": [("syscall_tracepoints", what)],
        "tracepoint": [("tracepoints", what)],
        "kprobe": [("kprobes", what)] + ([("kretprobes", f"{what} return")] if ret else []),
        "lsm": [("lsm_active", what), ("lsm_loadable", what)],
        "uprobe": [("uprobes", what)],
    }[kind]
    if ch.layout.override_return:
        need.append(("override_return", f"{what} Override"))
    actions = {a.action for s in ch.hook.selectors for a in s.actions + s.return_actions}
    if actions & {"Sigkill", "Signal"} and not ch.monitor:
        need.append(("send_signal", f"{what} {'/'.join(sorted(actions & {'Sigkill', 'Signal'}))}"))
    types = {a.type for a in ch.hook.args}
    ns_pid = any(p.is_namespace_pid for s in ch.hook.selectors for p in s.match_pids)
    if types & STRUCT_TYPES or ns_pid:
        need.append(("btf", f"{what} {'isNamespacePID' if ns_pid else '/'.join(sorted(types & STRUCT_TYPES))}"))
    return need


@dataclass
class LoadedPolicy:
    policy: Policy
    hooks: list = field(default_factory=list)        # (CompiledHook, Attachment)
    loaded_at: float = 0.0
    load_seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.policy.name

    @property
    def source(self) -> str:
        return self.policy.source

    @property
    def mode(self) -> str:
        return self.policy.mode


class PolicyManager:
    def __init__(self, observer, emit, cache, clock, containers, programs=None):
        from tetrad.sensors.generic import GenericPrograms   # bcc, only when policies are used
        self._programs = programs or GenericPrograms()
        self._emit = emit
        self._cache = cache
        self._clock = clock
        self._loaded: list[LoadedPolicy] = []
        self.unknown_records = 0
        self.dropped_before = 0      # ring-buffer drops of policies since unloaded
        self.scope = CgroupScope(containers, self._programs, containers.cgroup2_mount)
        observer.register(enc.OP_GENERIC, decode_policy, self._on_record)

    # ---- loading -----------------------------------------------------------------

    def load(self, policy: Policy) -> LoadedPolicy:
        from tetrad.sensors.generic import AttachError
        started = time.monotonic()
        compiled = compile_policy(policy, kernel_facts())
        missing = []
        for ch in compiled:
            for name, why in required_features(ch):
                feature = features.get(name)
                if not feature.available:
                    missing.append((ch.hook.path, str(features.MissingFeature(feature, why))))
                    break
        if missing:
            raise PolicyError(policy.source, missing)
        loaded = LoadedPolicy(policy, loaded_at=time.time())
        try:
            for ch in compiled:
                scoped = ch.workloads is not None
                att = self._programs.add(ch, self.scope.selected(ch) if scoped else ())
                loaded.hooks.append((ch, att))
                if scoped:
                    self.scope.track(ch, att)
        except AttachError as err:
            for _, att in loaded.hooks:
                self.scope.untrack(att)
                self._programs.remove(att)
            raise PolicyError(policy.source, [(ch.hook.path, str(err))]) from None
        loaded.load_seconds = time.monotonic() - started
        self._loaded.append(loaded)
        scope = f", for {policy.workloads.describe()}" if policy.workloads else ""
        log.info("policy %s loaded from %s: %d hooks in %.2fs (%s mode%s)", policy.name, policy.source,
                 len(compiled), loaded.load_seconds, policy.mode, scope)
        return loaded

    def unload(self, loaded: LoadedPolicy) -> None:
        if loaded.hooks:
            self.dropped_before += self.counters(loaded)["dropped"]
        for _, att in loaded.hooks:
            self.scope.untrack(att)
            self._programs.remove(att)
        loaded.hooks.clear()
        if loaded in self._loaded:
            self._loaded.remove(loaded)
        log.info("policy %s unloaded", loaded.name)

    def loaded(self) -> list[LoadedPolicy]:
        return list(self._loaded)

    def counters(self, loaded: LoadedPolicy) -> dict[str, int]:
        total = {name: 0 for name, _ in enc.HookStats._fields_}
        for _, att in loaded.hooks:
            stats = self._programs.stats(att)
            for name in total:
                total[name] += getattr(stats, name)
        return total

    def dropped(self) -> int:
        """Policy records the kernel could not queue (ring buffer full),
        over the daemon's lifetime."""
        return self.dropped_before + sum(self.counters(lp)["dropped"] for lp in self._loaded)

    def close(self) -> None:
        for loaded in list(self._loaded):
            self.unload(loaded)
        self._programs.close()

    # ---- records -> events --------------------------------------------------

    def _on_record(self, rec: PolicyRecord) -> None:
        program = self._programs.by_obj(rec.obj_id)
        ch = program.hooks.get(rec.hook_id) if program else None
        if ch is None:
            self.unknown_records += 1     # its policy was unloaded meanwhile
            return
        process = self._cache.for_event(ProcKey(rec.pid, rec.proc_ktime) if rec.proc_ktime else None,
                                        rec.pid)
        parent = self._cache.get(process.parent_key)
        self._emit(policy_event(rec, ch, self._clock.wall_ns(rec.ktime), process, parent))
