"""Policies into the kernel and out again, as units (bcc side).

Owns the arrow "compile -> load/attach" for whole policies; the registry
(tetrad/policy/registry.py) decides what should be loaded and calls
  load(policy)    every hook of the policy attaches, or none stays attached
  unload(handle)  detach everything of a loaded policy
A policy that needs something this kernel lacks is refused before anything
is loaded, naming every missing feature (tetrad.policy.kernel). Two versions
of one policy may be loaded at once (the new loads, then the old unloads):
nothing here is keyed by policy name.

Runs on the daemon's control thread. The ring-buffer reader, on its own
thread, needs two things from here, and gets them without waiting:
  hooks           {(program id, hook id): (CompiledHook, plan)}, replaced as a
                  whole on every change (readers see the old or the new
                  table, never one being changed); `plan` is what `prepare`
                  made of the hook at load time (the event builder's
                  rendering plan), so nothing is worked out per record
  scope           the cgroup lists of workload-scoped hooks, which the
                  reader's cgroup records update under the scope's lock
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, ContextManager

from tetrad.abi import generic as enc
from tetrad.policy.cgroup_scope import CgroupScope, ScopeFull
from tetrad.policy.compile import CompiledHook, compile_policy
from tetrad.policy.kernel import kernel_facts, missing_features
from tetrad.policy.schema import Policy, PolicyError
from tetrad.sensors.enforcers import Enforcers
from tetrad.sensors.generic import AttachError, Attachment, GenericPrograms
from tetrad.sensors.targets import check as check_targets

log = logging.getLogger(__name__)

# Entered around each hook's load (which may wait for a compile): the daemon
# sends EXTEND_TIMEOUT_USEC and keeps the watchdog fed meanwhile, and
# publishes its status, so a long load shows progress.
Progress = Callable[[str], ContextManager]
HookKey = tuple[int, int]            # (program id, hook id), as records carry them


@dataclass
class LoadedPolicy:
    policy: Policy
    hooks: list[tuple[CompiledHook, Attachment]] = field(default_factory=list)
    enforcers: list[str] = field(default_factory=list)     # syscall functions acquired
    load_seconds: float = 0.0
    track: int = 0                  # its socktrack scope, when it tracks socks

    @property
    def name(self) -> str:
        return self.policy.name


class PolicyLoader:
    def __init__(self, programs: GenericPrograms, enforcers: Enforcers, scope: CgroupScope,
                 prepare: Callable[[CompiledHook], object], progress: Progress | None = None):
        self._programs = programs
        self._enforcers = enforcers
        self.scope = scope
        self._prepare = prepare
        self._progress = progress or (lambda what: contextlib.nullcontext())
        self._loaded: list[LoadedPolicy] = []
        self._gone = {name: 0 for name, _ in enc.HookStats._fields_}   # of policies unloaded
        self.hooks: dict[HookKey, tuple[CompiledHook, object]] = {}

    def load(self, policy: Policy) -> LoadedPolicy:
        started = time.monotonic()
        compiled = compile_policy(policy, kernel_facts())
        problems, skipped = check_targets(compiled)
        missing = missing_features(compiled) + problems
        if missing:
            raise PolicyError(policy.source, missing)
        for ch, why in skipped:
            log.warning("policy %s: %s not attached: %s (the policy says to ignore that)",
                        policy.name, ch.hook.path, why)
        compiled = [ch for ch in compiled if all(ch is not s for s, _ in skipped)]
        log.info("loading policy %s from %s: %d hooks", policy.name, policy.source, len(compiled))
        loaded = LoadedPolicy(policy)
        ch = None
        try:
            if policy.tracks_socks:
                loaded.track = self._programs.track_scope()
            for ch in compiled:
                with self._progress(f"loading policy {policy.name} ({ch.hook.path})"):
                    # The enforcers first: a note must never wait for one.
                    for function, nr in ch.enforced:
                        self._enforcers.acquire(function, nr)
                        loaded.enforcers.append(function)
                    att = self._programs.add(ch, loaded.track)
                loaded.hooks.append((ch, att))
                if ch.workloads is not None:
                    self.scope.track(ch, att)
        except (AttachError, ScopeFull) as err:
            self._detach(loaded)
            raise PolicyError(policy.source, [(ch.hook.path if ch else "spec", str(err))]) from None
        except BaseException:
            self._detach(loaded)
            raise
        loaded.load_seconds = time.monotonic() - started
        self._loaded.append(loaded)
        self._publish()
        scope = f", for {policy.workloads.describe()}" if policy.workloads else ""
        log.info("policy %s loaded from %s: %d hooks in %.2fs (%s mode%s)", policy.name, policy.source,
                 len(compiled), loaded.load_seconds, policy.mode, scope)
        return loaded

    def unload(self, loaded: LoadedPolicy) -> None:
        if loaded.hooks:
            for name, n in self.counters(loaded).items():
                self._gone[name] += n
        self._detach(loaded)
        if loaded in self._loaded:
            self._loaded.remove(loaded)
        self._publish()
        log.info("policy %s unloaded", loaded.name)

    def _detach(self, loaded: LoadedPolicy) -> None:
        # The scope lets go of a hook before its program can go away: the
        # reader must never write the cgroup map of a closed program.
        for _, att in loaded.hooks:
            self.scope.untrack(att)
            self._programs.remove(att)
        loaded.hooks.clear()
        for function in loaded.enforcers:
            self._enforcers.release(function)
        loaded.enforcers.clear()
        if loaded.track:
            self._programs.release_scope(loaded.track)
            loaded.track = 0

    def _publish(self) -> None:
        table = {}
        for lp in self._loaded:
            for ch, att in lp.hooks:
                table[(att.obj.obj_id, att.hook_id)] = (ch, self._prepare(ch))
        self.hooks = table

    def counters(self, loaded: LoadedPolicy) -> dict[str, int]:
        total = {name: 0 for name, _ in enc.HookStats._fields_}
        for _, att in loaded.hooks:
            stats = self._programs.stats(att)
            for name in total:
                total[name] += getattr(stats, name)
        return total

    def totals(self) -> dict[str, int]:
        """Every hook counter summed over the daemon's lifetime (policies
        since unloaded included): posted, enforced, ..., dropped (ring
        buffer full), shed (user space could not take it)."""
        total = dict(self._gone)
        for lp in self._loaded:
            for name, n in self.counters(lp).items():
                total[name] += n
        return total

    def tracepoint_fds(self) -> list[int]:
        """Every tracepoint attachment of every hook (for teardown at stop)."""
        return self._programs.tracepoint_fds()

    def close(self) -> None:
        """At stop: every program goes at once, not policy by policy (the
        caller has closed their tracepoints together: sensors/teardown.py)."""
        self._loaded.clear()
        self.hooks = {}
        self._enforcers.close()
        self._programs.close()
