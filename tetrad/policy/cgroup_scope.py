"""Keeps the kernel's per-hook cgroup lists in step with the cgroups that exist.

A workload-scoped hook (containerSelector/hostSelector, workloads.py) runs
in the kernel only for tasks whose cgroup v2 id is listed for it in its
program's `cgroup_sel` map. This module decides those lists: it knows every
cgroup v2 directory (one walk of the tree when the first scoped hook loads,
then the process sensor's cgroup mkdir/rmdir records), which container each
one is (tetrad.containers.resolver), and lists each cgroup a hook's
selector accepts. Nothing is tracked while no scoped policy is loaded.

The window, stated plainly: a new container's cgroup is listed once the
main loop has handled its mkdir record and read the container's state
files, typically a few milliseconds after the runtime made it and before
the runtime starts the container's command (runc creates the cgroup, then
waits for `start`). A process that runs in a brand-new cgroup before that
is not seen by a containerSelector policy (nor stopped by one); a process on
the host in a brand-new cgroup (a new login session, a new service) is not
seen by a hostSelector policy for that time either. When the runtime's
state files do not name the container and its API must be asked, name and
image selectors apply once the answer is in (`refresh`, every half second).

Two threads use it: the control thread tracks and untracks hooks as
policies load and unload, the ring-buffer reader reports cgroups as they
come and go. One lock covers both, held only for map writes (never for a
compile), so a hook's list is complete from the moment it is tracked and
no map is written after its program has gone.
"""

from __future__ import annotations

import logging
import threading

from tetrad.containers.resolver import cgroup_tree
from tetrad.decode.cgroup import CgroupRecord

log = logging.getLogger(__name__)

MAX_CGROUPS = 65536             # bounded: beyond this, new cgroups are counted, not tracked


class ScopeFull(Exception):
    """More cgroups are selected than a program's cgroup map holds."""


class CgroupScope:
    def __init__(self, resolver, programs, mount: str):
        self._resolver = resolver          # ContainerResolver: path -> container record
        self._programs = programs          # GenericPrograms: writes cgroup_sel
        self._mount = mount                # where cgroup2 is mounted ("" if nowhere)
        self._cgroups: dict[int, tuple[str, dict | None]] | None = None   # id -> (path, record)
        self._partial: set[int] = set()    # records waiting for the runtime's API
        self._hooks: dict[int, tuple] = {}  # id(attachment) -> (CompiledHook, Attachment)
        self.untracked = 0                 # cgroups not tracked (MAX_CGROUPS reached)
        self.map_full = 0                  # selections the kernel map refused
        self._lock = threading.Lock()

    # ---- hooks (control thread) ---------------------------------------------

    def track(self, ch, att) -> None:
        """List the cgroups a newly attached scoped hook selects now (the
        first call walks the cgroup tree) and keep its list current from
        now on. ScopeFull when its program's map cannot hold them."""
        with self._lock:
            if self._cgroups is None:
                self._walk()
            for cid, (_, record) in self._cgroups.items():
                if ch.workloads.matches(record) and not self._programs.scope_cgroup(att, cid, True):
                    raise ScopeFull("more cgroups selected than the kernel map holds; "
                                    "narrow containerSelector")
            self._hooks[id(att)] = (ch, att)

    def untrack(self, att) -> None:
        with self._lock:
            self._hooks.pop(id(att), None)

    # ---- cgroups ------------------------------------------------------------

    def on_record(self, rec: CgroupRecord, container: dict | None) -> None:
        """A cgroup made or removed (from the process sensor's ring buffer,
        on the reader's thread), with the container the pipeline resolved
        for a new one (None: host)."""
        with self._lock:
            self._on_record(rec, container)

    def _on_record(self, rec: CgroupRecord, container: dict | None) -> None:
        if self._cgroups is None:
            return                         # no scoped policy has been loaded yet
        if not rec.made:
            self._cgroups.pop(rec.id, None)
            self._partial.discard(rec.id)
            for _, att in self._hooks.values():
                self._programs.scope_cgroup(att, rec.id, False)
            return
        if len(self._cgroups) >= MAX_CGROUPS:
            self.untracked += 1
            return
        self._remember(rec.id, rec.path, container)
        self._apply(rec.id)

    def refresh(self) -> None:
        """Re-decide cgroups whose container record was completed by the
        runtime's API since (the resolver asks it on a worker thread)."""
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        if self._cgroups is None:
            return
        for cid in list(self._partial):
            path, _ = self._cgroups.get(cid, ("", None))
            record = self._resolver.for_path(path)
            if record is None or not record.get("partial"):
                self._partial.discard(cid)
                self._cgroups[cid] = (path, record)
                self._apply(cid)

    def _remember(self, cid: int, path: str, record: dict | None) -> None:
        self._cgroups[cid] = (path, record)
        if record is not None and record.get("partial"):
            self._partial.add(cid)

    def _apply(self, cid: int) -> None:
        _, record = self._cgroups[cid]
        for ch, att in self._hooks.values():
            if not self._programs.scope_cgroup(att, cid, ch.workloads.matches(record)):
                self.map_full += 1
                log.warning("policy %s: cgroup map full, %s not selected", ch.policy_name,
                            self._cgroups[cid][0])

    def _walk(self) -> None:
        self._cgroups = {}
        if not self._mount:
            log.warning("no cgroup2 mount: workload-scoped policies select nothing")
            return
        tree = cgroup_tree(self._mount, MAX_CGROUPS + 1)
        if len(tree) > MAX_CGROUPS:
            self.untracked += 1
            tree.popitem()
        for cid, path in tree.items():
            self._remember(cid, path, self._resolver.for_path(path))
        log.info("tracking %d cgroups for workload-scoped policies", len(self._cgroups))
