"""The process cache: every live process, and recently ended ones, by identity.

Owns the arrow "decode -> process cache". Records from the process sensor
arrive in kernel order; the cache turns them into Process objects with
exec_ids and parents, so every later event (exec, exit, policy hits) can name
its process and parent the way Tetragon does.

Memory is bounded: live processes are kept while they live (up to
`capacity`); a process that exited, or whose pid exec'd a new image, moves to
a retired list of at most `retired_capacity` entries, kept so that late
events and orphaned children can still name it. Past either bound the oldest
entry is evicted and counted. A lookup that finds nothing is counted as a
miss; the event still carries the exec_id computed from the key.

Arguments are redacted here (tetrad.process.redaction), once per exec and
per /proc entry, so no event or sink ever holds the clear text; a clone
shares its parent's redacted text.

Credentials and namespaces come with exec and clone records and the /proc
scan; a state record (a change after exec: setuid, unshare, ...) replaces
the live process with a copy holding the new values, so the events that
follow (its policy events, its exit, its children's `parent`) carry them
and the events made before keep theirs. The Annotator renders them into
Tetragon's JSON fields once per distinct state.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from tetrad.abi.ops import ProcFlag, flag_names
from tetrad.decode.process import (CloneRecord, ExecRecord, ExitRecord, ProcKey, ProcState,
                                   StateRecord)
from tetrad.timefmt import KtimeClock
from tetrad.process.annotate import Annotator
from tetrad.process.exec_id import exec_id
from tetrad.process.model import Process, binary_path, join_arguments
from tetrad.process.redaction import Redaction


@dataclass(frozen=True, slots=True)
class ProcfsEntry:
    """A process found in /proc at start-up (see tetrad.process.procfs)."""

    pid: int
    ktime: int
    start_time_ns: int
    ppid: int
    parent_ktime: int
    uid: int
    gid: int
    auid: int
    cwd: str
    binary: str
    argv: tuple[str, ...]
    cgroup: str = ""           # cgroup v2 path ("0::" line of /proc/PID/cgroup)
    state: ProcState | None = None   # credentials and namespaces, as /proc shows them


@dataclass(slots=True)
class CacheStats:
    size: int
    capacity: int
    misses: int
    evictions: int
    state_misses: int = 0      # state records of processes not (or no longer) live


class ProcessCache:
    def __init__(self, node_name: str, clock: KtimeClock, capacity: int = 65536,
                 retired_capacity: int = 8192, redaction: Redaction = Redaction(),
                 annotator: Annotator = Annotator()):
        self._node = node_name
        self._redact = redaction.apply
        self._annotate = annotator
        self._clock = clock
        self._capacity = capacity
        self._retired_capacity = retired_capacity
        self._live: OrderedDict[int, Process] = OrderedDict()      # tgid -> image
        self._retired: OrderedDict[ProcKey, Process] = OrderedDict()
        self.misses = 0
        self.evictions = 0
        self.state_misses = 0

    # ---- lookups ---------------------------------------------------------

    def get(self, key: ProcKey | None) -> Process | None:
        """The process with this identity, live or retired; counts misses."""
        if key is None:
            return None
        proc = self._live.get(key.pid)
        if proc is not None and proc.key == key:
            return proc
        proc = self._retired.get(key)
        if proc is None:
            self.misses += 1
        return proc

    def by_pid(self, pid: int) -> Process | None:
        """The live image currently holding `pid`, if any."""
        return self._live.get(pid)

    def for_event(self, key: ProcKey | None, pid: int) -> Process:
        """The process an event (a policy hit) names: by identity when the
        kernel knew it, else the image holding the pid, else a placeholder
        flagged `miss` (not cached)."""
        proc = self.get(key) if key else None
        if proc is None:
            proc = self._live.get(pid)
        if proc is None:
            if key is None:
                self.misses += 1
            key = key or ProcKey(pid, 0)
            proc = Process(exec_id=exec_id(self._node, key.ktime, pid), key=key, pid=pid, tid=pid,
                           uid=0, gid=0, auid=0xFFFFFFFF, cwd="", binary="", arguments="",
                           flags=flag_names(ProcFlag.MISS), start_time_ns=0)
        return proc

    def stats(self) -> CacheStats:
        return CacheStats(len(self._live) + len(self._retired), self._capacity,
                          self.misses, self.evictions, self.state_misses)

    # ---- updates from the sensor ----------------------------------------

    def on_exec(self, rec: ExecRecord) -> tuple[Process, Process | None]:
        parent_key = rec.parent
        if parent_key is None:
            # The kernel never learned this process (it predates the sensor
            # and the /proc scan missed it): use what the image we hold knew.
            previous = self._live.get(rec.pid)
            parent_key = previous.parent_key if previous else None
        parent = self.get(parent_key)
        key = ProcKey(rec.pid, rec.ktime)
        binary = binary_path(rec.exe, rec.filename, rec.cwd)
        proc = Process(
            exec_id=exec_id(self._node, rec.ktime, rec.pid),
            key=key,
            pid=rec.pid,
            tid=rec.tid,
            uid=rec.uid,
            gid=rec.gid,
            auid=rec.auid,
            cwd=rec.cwd,
            binary=binary,
            arguments=self._redact(binary, join_arguments(rec.argv[1:])),
            flags=flag_names(rec.flags),
            start_time_ns=self._clock.wall_ns(rec.ktime),
            parent_exec_id=self._exec_id(parent_key),
            parent_key=parent_key,
            cgroup_id=rec.cgroup_id,
            state=rec.state,
            annotation=self._annotate(rec.state),
        )
        self._install(proc)
        return proc, parent

    def on_clone(self, rec: CloneRecord) -> Process:
        parent = self.get(rec.parent)
        proc = self._from_parent(rec.proc, parent, rec.parent, rec.flags, rec.state)
        self._install(proc)
        return proc

    def on_state(self, rec: StateRecord) -> Process | None:
        """New credentials or namespaces of a live process: a copy of it
        with them takes its place (None, counted, if it is not live)."""
        proc = self._live.get(rec.proc.pid)
        if proc is None or proc.key != rec.proc:
            self.state_misses += 1
            return None
        if rec.state == proc.state:
            return proc
        proc = proc.with_state(rec.state, self._annotate(rec.state))
        self._live[proc.pid] = proc
        return proc

    def on_exit(self, rec: ExitRecord) -> tuple[Process, Process | None]:
        proc = self.get(rec.proc) if rec.proc else self._live.get(rec.pid)
        if proc is None:
            key = rec.proc or ProcKey(rec.pid, 0)
            parent = self.get(rec.parent)
            proc = self._from_parent(key, parent, rec.parent, ProcFlag.MISS)
        else:
            parent = self.get(proc.parent_key)
        self._retire(proc)
        return proc, parent

    def add_procfs(self, entry: ProcfsEntry) -> Process:
        """Install a process found in /proc; events for it already in the
        kernel's queue (newer) are applied after and win."""
        parent_key = ProcKey(entry.ppid, entry.parent_ktime) if entry.ppid else None
        flags = ProcFlag.PROCFS | (ProcFlag.ROOT_CWD if entry.cwd == "/" else 0)
        proc = Process(
            exec_id=exec_id(self._node, entry.ktime, entry.pid),
            key=ProcKey(entry.pid, entry.ktime),
            pid=entry.pid,
            tid=entry.pid,
            uid=entry.uid,
            gid=entry.gid,
            auid=entry.auid,
            cwd=entry.cwd,
            binary=entry.binary,
            arguments=self._redact(entry.binary, join_arguments(entry.argv[1:])),
            flags=flag_names(flags),
            start_time_ns=entry.start_time_ns,
            parent_exec_id=self._exec_id(parent_key),
            parent_key=parent_key,
            state=entry.state,
            annotation=self._annotate(entry.state),
        )
        self._install(proc)
        return proc

    # ---- internals -------------------------------------------------------

    def _exec_id(self, key: ProcKey | None) -> str:
        return exec_id(self._node, key.ktime, key.pid) if key and key.ktime else ""

    def _from_parent(self, key: ProcKey, parent: Process | None,
                     parent_key: ProcKey | None, flags: int,
                     state: ProcState | None = None) -> Process:
        """A process that has not exec'd runs its parent's image; its own
        credentials and namespaces when the kernel said, else its parent's."""
        flags |= ProcFlag.CLONE
        if state is None and parent is not None:
            state = parent.state
        return Process(
            exec_id=exec_id(self._node, key.ktime, key.pid),
            key=key,
            pid=key.pid,
            tid=key.pid,
            uid=parent.uid if parent else 0,
            gid=parent.gid if parent else 0,
            auid=parent.auid if parent else 0xFFFFFFFF,
            cwd=parent.cwd if parent else "",
            binary=parent.binary if parent else "",
            arguments=parent.arguments if parent else "",
            flags=flag_names(flags),
            start_time_ns=self._clock.wall_ns(key.ktime),
            parent_exec_id=self._exec_id(parent_key),
            parent_key=parent_key,
            cgroup_id=parent.cgroup_id if parent else 0,
            state=state,
            annotation=self._annotate(state),
        )

    def _install(self, proc: Process) -> None:
        previous = self._live.pop(proc.pid, None)
        if previous is not None and previous.key != proc.key:
            self._remember(previous)
        self._live[proc.pid] = proc
        while len(self._live) > self._capacity:
            self._live.popitem(last=False)
            self.evictions += 1

    def _retire(self, proc: Process) -> None:
        proc.exited = True
        live = self._live.get(proc.pid)
        if live is proc:
            del self._live[proc.pid]
        self._remember(proc)

    def _remember(self, proc: Process) -> None:
        self._retired[proc.key] = proc
        self._retired.move_to_end(proc.key)
        while len(self._retired) > self._retired_capacity:
            self._retired.popitem(last=False)
            self.evictions += 1
