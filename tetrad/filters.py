"""Export filters and the export rate limit, with Tetragon's semantics.

A filter is a JSON object; its keys AND, the values listed under one key
OR; a list of filters ORs. An event is exported when the allow list is empty
or one allow filter matches, and no deny filter matches (deny wins). Keys:
  event_set            ["PROCESS_EXEC", "PROCESS_EXIT", "PROCESS_KPROBE", ...]
  binary_regex         regexes on process.binary (re.search, like RE2 Find)
  parent_binary_regex  regexes on parent.binary
  arguments_regex      regexes on process.arguments
  pid                  pids
  policy_names         policy names of policy events
  container_id         container id prefixes
  container_name_regex regexes on the container name
  namespace            Kubernetes namespaces of the process's pod; "" for host
                       processes (in no container: Tetragon counts every
                       process outside a pod, containers too)
  pod_regex            regexes on the pod name
The rate limit lets N events through per minute and drops the rest; every
minute with drops yields one `rate_limit_info` record saying how many.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

from tetrad.events.model import Event
from tetrad.timefmt import rfc3339

EVENT_SET = {"PROCESS_EXEC": "process_exec", "PROCESS_EXIT": "process_exit",
             "PROCESS_KPROBE": "process_kprobe", "PROCESS_TRACEPOINT": "process_tracepoint",
             "PROCESS_UPROBE": "process_uprobe", "PROCESS_LSM": "process_lsm",
             # Tetragon's kinds tetrad does not make (for `tetra` reading its files).
             "PROCESS_LOADER": "process_loader", "PROCESS_USDT": "process_usdt",
             "PROCESS_THROTTLE": "process_throttle"}


class FilterError(ValueError):
    pass


def _regexes(values, key: str) -> list[re.Pattern]:
    try:
        return [re.compile(v) for v in values]
    except re.error as err:
        raise FilterError(f"{key}: bad regex: {err}") from None


@dataclass(frozen=True)
class Filter:
    """One filter object; None means the key is absent (matches all)."""

    event_set: frozenset | None = None
    binary: tuple | None = None
    parent_binary: tuple | None = None
    arguments: tuple | None = None
    pids: frozenset | None = None
    policy_names: frozenset | None = None
    container_ids: tuple | None = None
    container_names: tuple | None = None
    namespaces: frozenset | None = None
    pods: tuple | None = None

    @classmethod
    def parse(cls, text: str | dict) -> "Filter":
        try:
            raw = json.loads(text) if isinstance(text, str) else text
        except json.JSONDecodeError as err:
            raise FilterError(f"not a JSON object: {err}") from None
        if not isinstance(raw, dict):
            raise FilterError("a filter is a JSON object")
        known = {"event_set", "binary_regex", "parent_binary_regex", "arguments_regex", "pid",
                 "policy_names", "container_id", "container_name_regex", "namespace", "pod_regex"}
        unknown = set(raw) - known
        if unknown:
            raise FilterError(f"unknown filter keys {sorted(unknown)} (known: {', '.join(sorted(known))})")
        for key, value in raw.items():
            if not isinstance(value, list):
                raise FilterError(f"{key} must be a list")
        events = raw.get("event_set")
        if events is not None:
            bad = [e for e in events if e not in EVENT_SET]
            if bad:
                raise FilterError(f"event_set: unknown {bad} (known: {', '.join(EVENT_SET)})")
        get = raw.get
        return cls(
            event_set=frozenset(EVENT_SET[e] for e in events) if events is not None else None,
            binary=tuple(_regexes(get("binary_regex"), "binary_regex")) if "binary_regex" in raw else None,
            parent_binary=tuple(_regexes(get("parent_binary_regex"), "parent_binary_regex"))
            if "parent_binary_regex" in raw else None,
            arguments=tuple(_regexes(get("arguments_regex"), "arguments_regex"))
            if "arguments_regex" in raw else None,
            pids=frozenset(int(p) for p in get("pid")) if "pid" in raw else None,
            policy_names=frozenset(get("policy_names")) if "policy_names" in raw else None,
            container_ids=tuple(get("container_id")) if "container_id" in raw else None,
            container_names=tuple(_regexes(get("container_name_regex"), "container_name_regex"))
            if "container_name_regex" in raw else None,
            namespaces=frozenset(get("namespace")) if "namespace" in raw else None,
            pods=tuple(_regexes(get("pod_regex"), "pod_regex")) if "pod_regex" in raw else None,
        )

    def matches(self, event: Event) -> bool:
        proc = event.process
        if self.event_set is not None and event.kind not in self.event_set:
            return False
        if self.binary is not None and not any(r.search(proc.binary) for r in self.binary):
            return False
        if self.parent_binary is not None:
            parent = event.parent.binary if event.parent else ""
            if not any(r.search(parent) for r in self.parent_binary):
                return False
        if self.arguments is not None and not any(r.search(proc.arguments) for r in self.arguments):
            return False
        if self.pids is not None and proc.pid not in self.pids:
            return False
        if self.policy_names is not None and event.policy_name not in self.policy_names:
            return False
        container = proc.container or {}
        if self.container_ids is not None and not any(
                container.get("id", "").startswith(c) for c in self.container_ids if c):
            return False
        if self.container_names is not None and not any(
                r.search(container.get("name", "")) for r in self.container_names):
            return False
        pod = container.get("pod") or {}
        # "" is the host; a container outside Kubernetes is in no namespace.
        if self.namespaces is not None and (pod.get("namespace") if container else "") \
                not in self.namespaces:
            return False
        if self.pods is not None and not ("name" in pod and any(r.search(pod["name"]) for r in self.pods)):
            return False
        return True


class ExportFilter:
    """allow/deny lists of filters; `keep(event)` decides."""

    def __init__(self, allow: list, deny: list):
        self._allow = [Filter.parse(f) for f in allow]
        self._deny = [Filter.parse(f) for f in deny]

    def keep(self, event: Event) -> bool:
        if self._allow and not any(f.matches(event) for f in self._allow):
            return False
        return not any(f.matches(event) for f in self._deny)


class RateLimit:
    """At most `per_minute` events per minute; counts what it drops."""

    def __init__(self, per_minute: int, clock=time.monotonic):
        self._limit = per_minute
        self._clock = clock
        self._window = clock()
        self._count = 0
        self.dropped_in_window = 0
        self.dropped_total = 0

    def allow(self) -> bool:
        if self._limit < 0:
            return True
        now = self._clock()
        if now - self._window >= 60:
            self._window, self._count = now, 0
        if self._count < self._limit:
            self._count += 1
            return True
        self.dropped_in_window += 1
        self.dropped_total += 1
        return False

    def take_report(self) -> int:
        """Drops since the last report, once a minute has passed since the
        window opened; 0 otherwise."""
        if self.dropped_in_window and self._clock() - self._window >= 60:
            dropped, self.dropped_in_window = self.dropped_in_window, 0
            return dropped
        return 0


def rate_limit_info(dropped: int, node_name: str, time_ns: int) -> str:
    """Tetragon's rate_limit_info record, as a JSON line (the count is a
    uint64: a string in protojson)."""
    return json.dumps({"rate_limit_info": {"number_of_dropped_process_events": str(dropped)},
                       "node_name": node_name, "time": rfc3339(time_ns)}, separators=(",", ":"))


class FilteredSink:
    """A sink behind the export filters and rate limit; reports rate-limit
    drops into the sink itself (sinks accept `write_raw` of a JSON line)."""

    def __init__(self, sink, export_filter: ExportFilter, limit: RateLimit, node_name: str):
        self._sink = sink
        self._filter = export_filter
        self._limit = limit
        self._node = node_name
        self.name = sink.name
        self.filtered = 0

    def write(self, event: Event) -> None:
        if not self._filter.keep(event):
            self.filtered += 1
            return
        dropped = self._limit.take_report()
        if dropped:
            self._sink.write_raw(rate_limit_info(dropped, self._node, time.time_ns()))
        if self._limit.allow():
            self._sink.write(event)

    def counters(self) -> dict[str, int]:
        """What the filters kept out, and what the sink behind them says."""
        inner = getattr(self._sink, "counters", dict)()
        return {**inner, "filtered": self.filtered, "rate_limited": self._limit.dropped_total}

    def flush(self) -> None:
        self._sink.flush()

    def close(self) -> None:
        self._sink.close()
