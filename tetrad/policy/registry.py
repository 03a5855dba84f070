"""The one owner of policy state: every policy the daemon knows, where it
came from, what the user wants of it, and what is in force.

Tetragon keeps this in one collection per policy (policy, enabled, error;
pkg/sensors/handler.go); so does tetrad. Nothing else holds policy state:
the policy directory only scans files into a desired set, the API maps each
request to one call here, and status, metrics and `tetra policy list` read
`rows()`.

An entry is keyed by its source, which provides at most one policy: a file
of the policy directory, a file named with `--policy`, or a document added
through the API (`api:NAME`). Per entry:

  wanted     the version the source holds now (parsed), or None when it
             does not parse; `digest` is its content hash
  enabled    the user's wish (`tetra policy disable` clears it)
  loaded     the version in force, with the loader's handle, or None
  error      why the wanted version is not in force ("" when it is)

Transitions, all on the daemon's control thread:
  reconcile  a source's new version loads before the old one unloads (never
             a moment with neither); a version that fails keeps the old one
             in force; a source that is gone unloads; a disabled entry only
             remembers the new version, which `enable` then loads
  add        an API document: loaded, or refused with nothing kept
  delete     API documents only (files are deleted by removing the file)
  disable    unload, remember the wish
  enable     load the wanted version (the file as it is now, not as it was
             when it was disabled)
Names are unique across sources: a second source declaring a name in use
is that source's error, as Tetragon refuses a duplicate name.

Any exception from the loader is that policy's error, never the daemon's.
Before loading, `admit` may refuse a policy for what this daemon lacks
that the kernel does not decide (a pod-scoped policy without the
Kubernetes plugin: tetrad.policy.workloads.admission).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from tetrad.policy.schema import Policy, PolicyError

log = logging.getLogger(__name__)

DIRECTORY, FILE, API = "directory", "file", "api"


class Loader(Protocol):
    """What puts a policy into the kernel (tetrad.sensors.policies)."""

    def load(self, policy: Policy) -> object: ...
    def unload(self, handle: object) -> None: ...


class RequestError(Exception):
    """A request the registry refuses; the message says what to do instead."""


@dataclass(frozen=True)
class Desired:
    """What a source holds now: a parsed policy, or why there is none."""

    source: str
    digest: str                      # content hash; "" when it could not be read
    policy: Policy | None = None
    error: str = ""


@dataclass(frozen=True)
class Loaded:
    handle: object
    policy: Policy
    digest: str
    since: float                     # wall clock, when it came into force


@dataclass
class Entry:
    source: str
    origin: str                      # DIRECTORY, FILE or API
    digest: str = ""
    wanted: Policy | None = None
    enabled: bool = True
    loaded: Loaded | None = None
    error: str = ""
    conflict: bool = False           # the error is a name another source holds
    last_name: str = ""              # of the last version that parsed

    @property
    def name(self) -> str:
        if self.wanted is not None:
            return self.wanted.name
        return self.loaded.policy.name if self.loaded else self.last_name

    @property
    def state(self) -> str:
        if not self.enabled:
            return "disabled"
        if self.loaded is not None:
            return "enabled"
        return "error" if self.error else "pending"


def api_source(name: str) -> str:
    return f"{API}:{name}"


# Policy -> its problems as (YAML path, reason) pairs; empty: may be loaded.
Admission = Callable[[Policy], list[tuple[str, str]]]


class PolicyRegistry:
    def __init__(self, loader: Loader, admit: Admission = lambda policy: []):
        self._loader = loader
        self._admit = admit
        self._entries: dict[str, Entry] = {}
        self.errors = 0                  # problems reported, over the daemon's life

    # ---- reading --------------------------------------------------------------

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def find(self, name: str) -> Entry | None:
        return next((e for e in self._entries.values() if e.name == name), None)

    def loaded(self) -> list[Loaded]:
        return [e.loaded for e in self._entries.values() if e.loaded is not None]

    # ---- sources ----------------------------------------------------------------

    def reconcile(self, origin: str, desired: list[Desired], retry: bool = False) -> None:
        """Make the entries of `origin` follow `desired` (every source of
        that origin, as it is now). With `retry` (a reload), versions that
        failed are tried again even if unchanged."""
        now = {d.source: d for d in desired}
        for entry in [e for e in self._entries.values() if e.origin == origin and e.source not in now]:
            self._remove(entry)
        for source in sorted(now):
            self._update(origin, now[source], retry)

    def _update(self, origin: str, d: Desired, retry: bool) -> None:
        entry = self._entries.get(d.source)
        if entry is None:
            entry = self._entries[d.source] = Entry(d.source, origin)
        unchanged = d.digest and d.digest == entry.digest
        if unchanged and not ((retry and entry.error) or entry.conflict):
            return
        entry.digest = d.digest
        entry.wanted = d.policy
        if d.policy is not None:
            entry.last_name = d.policy.name
        if d.policy is None:
            self._fail(entry, d.error or "cannot be read")
            return
        owner = self._owner_of(d.policy.name, entry)
        entry.conflict = owner is not None
        if owner is not None:
            self._fail(entry, f"{d.source}: metadata.name: policy {d.policy.name!r} is already "
                              f"loaded from {owner.source}; names must be unique")
            return
        if not entry.enabled:
            entry.error = ""                 # remembered; `enable` loads it
            return
        self._swap(entry)

    # ---- requests ---------------------------------------------------------------

    def add(self, policy: Policy, digest: str = "") -> Entry:
        """A policy document from the API; loaded now or refused (nothing kept)."""
        owner = self._owner_of(policy.name, None)
        if owner is not None:
            what = "edit that file instead" if owner.origin != API else "delete it first"
            raise RequestError(f"policy {policy.name!r} is already loaded from {owner.source}; {what}")
        entry = Entry(api_source(policy.name), API, digest, policy, last_name=policy.name)
        self._swap(entry)
        if entry.loaded is None:
            raise RequestError(entry.error)
        self._entries[entry.source] = entry
        return entry

    def delete(self, name: str) -> None:
        entry = self._named(name)
        if entry.origin != API:
            raise RequestError(f"policy {name!r} comes from {entry.source}; remove that file to delete it")
        self._remove(entry)

    def disable(self, name: str) -> None:
        entry = self._named(name)
        if not entry.enabled:
            raise RequestError(f"policy {name!r} is already disabled")
        if entry.loaded is None:
            raise RequestError(f"policy {name!r} is not loaded ({entry.error or entry.state}); "
                               f"nothing to disable")
        entry.enabled = False
        self._unload(entry)
        entry.error = ""

    def enable(self, name: str) -> None:
        entry = self._named(name)
        if entry.enabled:
            raise RequestError(f"policy {name!r} is not disabled")
        if entry.wanted is None:
            raise RequestError(f"policy {name!r}: {entry.source} does not hold a valid policy now "
                               f"({entry.error or 'cannot be read'}); fix it first")
        self._swap(entry)
        if entry.loaded is None:
            error, entry.error = entry.error, ""
            raise RequestError(error)
        entry.enabled = True

    # ---- helpers ----------------------------------------------------------------

    def _named(self, name: str) -> Entry:
        entry = self.find(name)
        if entry is None:
            raise RequestError(f"no policy named {name!r} (see: tetra policy list)")
        return entry

    def _owner_of(self, name: str, asking: Entry | None) -> Entry | None:
        """Another entry that holds `name` (in force, wanted or disabled)."""
        for e in self._entries.values():
            if e is not asking and name in (e.name, e.loaded.policy.name if e.loaded else None):
                return e
        return None

    def _swap(self, entry: Entry) -> None:
        """Load the wanted version; on success unload the one it replaces."""
        policy = entry.wanted
        try:
            refused = self._admit(policy)
            if refused:
                raise PolicyError(policy.source, refused)
            handle = self._loader.load(policy)
        except PolicyError as err:
            self._fail(entry, str(err))
            return
        except Exception as err:          # a loader bug is this policy's error
            log.warning("loading policy %s from %s failed", policy.name, entry.source, exc_info=True)
            self._fail(entry, f"{entry.source}: internal error while loading: {err!r}")
            return
        old, entry.loaded = entry.loaded, Loaded(handle, policy, entry.digest, time.time())
        entry.error = ""
        if old is not None:
            self._unload_handle(old)
            log.info("policy %s replaced by the new version in %s", policy.name, entry.source)

    def _fail(self, entry: Entry, message: str) -> None:
        if message == entry.error:
            return                       # the same problem again: reported once
        entry.error = message
        self.errors += 1
        kept = f" (the version loaded before stays in force: {entry.loaded.policy.name})" \
            if entry.loaded else ""
        log.error("policy %s%s", message, kept)

    def _remove(self, entry: Entry) -> None:
        self._unload(entry)
        del self._entries[entry.source]
        if entry.origin != API:
            log.info("policy %s removed with %s", entry.name, entry.source)

    def _unload(self, entry: Entry) -> None:
        if entry.loaded is not None:
            loaded, entry.loaded = entry.loaded, None
            self._unload_handle(loaded)

    def _unload_handle(self, loaded: Loaded) -> None:
        try:
            self._loader.unload(loaded.handle)
        except Exception:
            log.warning("unloading policy %s failed", loaded.policy.name, exc_info=True)
