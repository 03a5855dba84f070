"""Records -> events, for every record the kernel sends: process records
-> cache -> events (state records only update the cache); policy records -> their hook and process -> events;
cgroup records -> the container resolver and whoever else listens (policy
scopes). Events then go to `emit` (filters and sinks, tetrad/sinks).

Owns the arrows after decoding. Runs on the ring-buffer reader's thread:
the cache must see every record, in order, so nothing here may drop; the
only place events can be dropped is the bounded sink queue behind `emit`,
which counts what it drops. What policies are loaded comes from the
loader's published hook table (tetrad/sensors/policies.py), read without
waiting: a record of a hook unloaded meanwhile is counted, not an error.
"""

from __future__ import annotations

from typing import Callable, Mapping, Protocol

from tetrad.abi.ops import ExitHow, Op
from tetrad.decode import process as process_decode
from tetrad.abi.generic import NO_STACK, OP_GENERIC
from tetrad.decode.cgroup import CgroupRecord, decode_cgroup
from tetrad.decode.generic import PolicyRecord, decode_policy
from tetrad.decode.process import CloneRecord, ExecRecord, ExitRecord, ProcKey
from tetrad.events.model import Event, exec_event, exit_event
from tetrad.events.policy import policy_event, user_actions
from tetrad.timefmt import KtimeClock
from tetrad.process.cache import ProcessCache

Emit = Callable[[Event], None]


class ProcessEvents:
    """Turns process sensor records into process_exec/process_exit events."""

    def __init__(self, cache: ProcessCache, clock: KtimeClock, emit: Emit, containers=None):
        self._cache = cache
        self._clock = clock
        self._emit = emit
        self._containers = containers      # ContainerResolver, or None
        # Called with each cgroup record and, for a new cgroup, its container
        # (None: the host); e.g. the policy scopes.
        self.cgroup_listeners: list[Callable[[CgroupRecord, dict | None], None]] = []

    def routes(self):
        """(op, decoder, handler) triples for Observer.register()."""
        return (
            (Op.EXEC, process_decode.decode_exec, self.on_exec),
            (Op.CLONE, process_decode.decode_clone, self.on_clone),
            (Op.EXIT, process_decode.decode_exit, self.on_exit),
            (Op.STATE, process_decode.decode_state_record, self._cache.on_state),
            (Op.CGROUP_MKDIR, decode_cgroup, self.on_cgroup),
            (Op.CGROUP_RMDIR, decode_cgroup, self.on_cgroup),
        )

    def on_cgroup(self, rec: CgroupRecord) -> None:
        container = None
        if rec.made and self._containers is not None:
            container = self._containers.learn(rec.id, rec.path)
        for listener in self.cgroup_listeners:
            listener(rec, container)

    def on_exec(self, rec: ExecRecord) -> None:
        proc, parent = self._cache.on_exec(rec)
        if self._containers is not None and rec.cgroup_id:
            proc.set_container(self._containers.for_cgroup_id(rec.cgroup_id))
        self._emit(exec_event(self._clock.wall_ns(rec.ktime), proc, parent))

    def on_clone(self, rec: CloneRecord) -> None:
        proc = self._cache.on_clone(rec)
        parent = self._cache.get(rec.parent)
        if parent is not None and parent.container:
            proc.set_container(parent.container)

    def on_exit(self, rec: ExitRecord) -> None:
        proc, parent = self._cache.on_exit(rec)
        status = rec.code if rec.how == ExitHow.CODE else None
        sig = rec.code if rec.how == ExitHow.SIGNAL else None
        self._emit(exit_event(self._clock.wall_ns(rec.ktime), proc, parent, status, sig))


# What the loader publishes: (program id, hook id) -> (CompiledHook, HookPlan).
HookTable = Callable[[], Mapping[tuple[int, int], tuple]]


class StackFrames(Protocol):
    """Stack ids of a record -> Tetragon's frames (tetrad/sensors/stacks.py)."""

    def kernel(self, obj_id: int, stack_id: int) -> list[dict]: ...

    def user(self, obj_id: int, stack_id: int, pid: int) -> list[dict]: ...


class PolicyEvents:
    """Turns policy hook records into process_kprobe/tracepoint/lsm/uprobe
    events."""

    def __init__(self, cache: ProcessCache, clock: KtimeClock, emit: Emit, hooks: HookTable,
                 stacks: StackFrames | None = None, actions=None):
        self._cache = cache
        self._clock = clock
        self._emit = emit
        self._hooks = hooks
        self._stacks = stacks
        self._actions = actions          # UserActions (GetUrl, DnsLookup), or None
        self.unknown_hook = 0            # records of hooks unloaded since the kernel sent them

    def routes(self):
        return ((OP_GENERIC, decode_policy, self.on_record),)

    def on_record(self, rec: PolicyRecord) -> None:
        hook = self._hooks().get((rec.obj_id, rec.hook_id))
        if hook is None:
            self.unknown_hook += 1
            return
        process = self._cache.for_event(ProcKey(rec.pid, rec.proc_ktime) if rec.proc_ktime else None,
                                        rec.pid)
        parent = self._cache.get(process.parent_key)
        stacks = {}
        if self._stacks is not None:
            if rec.kstack != NO_STACK:
                stacks["kernel_stack_trace"] = self._stacks.kernel(rec.obj_id, rec.kstack)
            if rec.ustack != NO_STACK:
                stacks["user_stack_trace"] = self._stacks.user(rec.obj_id, rec.ustack, rec.pid)
        self._emit(policy_event(rec, hook[1], self._clock.wall_ns(rec.ktime), process, parent, stacks))
        if self._actions is not None and hook[1].user_actions:
            todo = user_actions(rec, hook[1])
            if todo:
                self._actions.submit(todo)
