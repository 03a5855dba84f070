"""Bounded queues between the ring-buffer reader and the sinks, one worker
thread per sink.

The reader must never wait for a disk or journald, or the kernel's ring
buffer fills and records are lost where nobody can see them. Events are
collected per batch of records (`emit`) and handed over as one batch
(`commit`, also as soon as BATCH_MAX events are waiting) to every sink's
own worker, so a slow sink (journald under load, a full disk) costs only
its own events: each worker lets at most `capacity` events, and at most
`capacity_bytes` of their estimated memory (`queued_bytes`), wait, drops
the rest and counts them. Counting alone would not bound memory: an exec's
event holds its command line (up to 4 KiB, and its parent's), and 65,536
of them stalled behind journald would be half a gigabyte. A sink that raises is counted and keeps receiving
later events. Batches, not single events, cross the thread boundary: one
lock round trip per batch keeps the reader's cost per event low.

Latency: each worker puts every event it wrote into its sink's histogram,
from the kernel's timestamp of the record (the event's time, which
tetrad/timefmt.py made wall-clock from ktime) to the moment the sink's
write() returned (for the JSON file, its buffer, which reaches the kernel
within the batch or when its 64 KiB chunk fills). Both ends are measured on
CLOCK_MONOTONIC through the same offset, so clock steps do not show.

A reload swaps sinks (`replace`, on the control thread) without waiting:
each old worker writes what it holds and then closes its own sink, and the
new worker of the same name starts writing once its predecessor is done
(two writers never share a file). Only a worker's own thread closes its
sink. Every counter is monotonic for the life of the process: what retired
workers counted stays in the totals.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left
from collections import deque
from typing import Protocol

from tetrad.events.model import Event
from tetrad.timefmt import KtimeClock

log = logging.getLogger(__name__)


# Estimated bytes of Python objects a queued event holds beyond its
# strings (the event, its fields dict, their small values; measured with
# bench/queue_memory), and per argument of a policy event (a slot's 256
# bytes of data at most, as a dict with its key).
EVENT_BYTES = 1024
ARG_BYTES = 512


def queued_bytes(event: Event) -> int:
    """What queueing `event` may cost in memory, erring high: its process's
    and parent's command lines count in full though the process cache may
    share them."""
    size = EVENT_BYTES + len(event.process.arguments)
    if event.parent is not None:
        size += len(event.parent.arguments)
    args = event.fields.get("args")
    return size + ARG_BYTES * len(args) if args else size


class Sink(Protocol):
    """What a sink is; one that has an `active` attribute is skipped (not
    counted as dropping) while it is False. `write()` raises (OSError, ...)
    exactly when the event it was given is lost, so the worker never counts
    a lost event as written; an event write() accepted may be written later
    (buffered), and a sink that loses such events counts them itself
    (`counters()["lost_lines"]`)."""

    name: str

    def write(self, event: Event) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


BATCH_MAX = 1024                 # events handed over at once, at most
# Upper bounds of the latency histogram's buckets, in seconds: the reader
# drains every 20 ms, so a healthy sink writes within tens of milliseconds;
# seconds mean a backlog.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class LatencyHistogram:
    """Event latency of one sink name: counts per bucket (the last one past
    every bound) and the sum, in ns. Only the worker that currently owns the
    sink name writes it (a reload's new worker starts once its predecessor
    is done), so counting needs no lock; readers copy it (`read`)."""

    def __init__(self, bounds_s: tuple[float, ...] = LATENCY_BUCKETS_S):
        self.bounds_s = bounds_s
        self.bounds_ns = [round(b * 1e9) for b in bounds_s]
        self.counts = [0] * (len(bounds_s) + 1)
        self.sum_ns = 0

    def read(self) -> dict:
        """{"bounds_s": [...], "counts": [...] (per bucket, not cumulative), "sum_s": ...}"""
        return {"bounds_s": list(self.bounds_s), "counts": list(self.counts),
                "sum_s": self.sum_ns / 1e9}


class SinkWorker:
    """One sink, its queue of batches and its thread."""

    def __init__(self, sink: Sink, capacity: int, after: "SinkWorker | None" = None,
                 latency: LatencyHistogram | None = None, clock: KtimeClock | None = None,
                 capacity_bytes: int = 64 << 20):
        self.sink = sink
        self.capacity = capacity
        self.capacity_bytes = capacity_bytes
        self.latency = latency or LatencyHistogram()
        # Wall-clock ns of CLOCK_MONOTONIC's zero, as event times were made.
        self._wall_offset = (clock or KtimeClock()).wall_ns(0)
        self._after = after              # the retired worker of the same sink, if any
        self._batches: deque[tuple[list[Event], int]] = deque()     # (events, their bytes)
        self._pending = 0
        self._pending_bytes = 0
        self._cond = threading.Condition()
        self._closing = False
        self._abandon = False
        self._thread = threading.Thread(target=self._run, name=f"tetrad-sink-{sink.name}", daemon=True)
        self.dropped = 0
        self.written = 0
        self.errors = 0

    def start(self) -> None:
        self._thread.start()

    @property
    def done(self) -> bool:
        """Its sink is closed (or its thread never ran)."""
        return not self._thread.is_alive() and (self._thread.ident is not None or self._closing)

    def offer(self, batch: list[Event], sizes: list[int]) -> None:
        """Queue what fits of `batch` (`sizes`: queued_bytes of each), in
        order; the rest is dropped and counted."""
        if not getattr(self.sink, "active", True):
            return                  # e.g. the API stream with nobody listening
        with self._cond:
            if self._closing:
                self.dropped += len(batch)
                return
            fit = min(len(batch), max(self.capacity - self._pending, 0))
            room_bytes = self.capacity_bytes - self._pending_bytes
            taken = 0
            for i in range(fit):
                if taken + sizes[i] > room_bytes:
                    fit = i
                    break
                taken += sizes[i]
            if fit < len(batch):
                self.dropped += len(batch) - fit
                batch = batch[:fit]
            if batch:
                self._batches.append((batch, taken))
                self._pending += len(batch)
                self._pending_bytes += taken
                self._cond.notify()

    def room(self) -> int:
        """Events that could still be queued, by count and by bytes (at the
        queued events' mean size)."""
        by_count = self.capacity - self._pending
        mean = max(EVENT_BYTES, self._pending_bytes // self._pending) if self._pending else EVENT_BYTES
        return min(by_count, (self.capacity_bytes - self._pending_bytes) // mean)

    @property
    def backlog(self) -> int:
        return self._pending

    def retire(self) -> None:
        """Write what is queued, then close the sink, on the worker's thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread.ident is None:          # never started: nothing else owns it
            self._call(self.sink.close)

    def abandon(self) -> None:
        """Drop what is still queued (counted) and close after the batch
        being written: a stop that cannot wait for a slow sink."""
        with self._cond:
            self._abandon = self._closing = True
            self._cond.notify()

    def join(self, timeout: float) -> bool:
        """Wait for the worker to close its sink; False when it is still at it."""
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        if self._after is not None:
            self._after.wait()
            self._after = None
        while True:
            with self._cond:
                while not self._batches and not self._closing:
                    self._cond.wait()
                if self._abandon:
                    self.dropped += self._pending
                    self._batches.clear()
                    self._pending = self._pending_bytes = 0
                if not self._batches:
                    break
                batch, size = self._batches.popleft()
            self._write(batch)
            with self._cond:
                self._pending -= len(batch)
                self._pending_bytes -= size
                idle = not self._batches
            if idle:
                self._call(self.sink.flush)
        self._call(self.sink.close)

    def wait(self) -> None:
        if self._thread.ident is not None:
            self._thread.join()

    def _write(self, batch: list[Event]) -> None:
        # One try block per batch, not a _call per event: an event that
        # raises is counted and the loop goes on with the next. abandon()
        # stops a batch between two events; the rest is counted as dropped.
        # The latency bookkeeping is inlined: it runs for every event
        # (~250 ns here). Event times come from the same monotonic clock, so
        # `took` is never negative.
        write = self.sink.write
        events = iter(batch)
        done = 0
        now = time.monotonic_ns
        offset = self._wall_offset
        bounds, counts = self.latency.bounds_ns, self.latency.counts
        total = 0
        try:
            while True:
                try:
                    for event in events:
                        if self._abandon:
                            self.dropped += len(batch) - done
                            return
                        done += 1
                        write(event)
                        self.written += 1
                        took = now() + offset - event.time_ns
                        counts[bisect_left(bounds, took)] += 1
                        total += took
                    return
                except Exception as err:
                    self._failed(err)
        finally:
            self.latency.sum_ns += total

    def _call(self, method, *args) -> bool:
        try:
            method(*args)
            return True
        except Exception as err:
            self._failed(err)
            return False

    def _failed(self, err: Exception) -> None:
        self.errors += 1
        if self.errors == 1 or self.errors % 1000 == 0:
            log.error("sink %s failed (%d errors so far): %s", self.sink.name, self.errors, err)

    def counts(self) -> dict[str, int]:
        return {"written": self.written, "dropped": self.dropped, "errors": self.errors,
                **getattr(self.sink, "counters", dict)()}



class SinkDispatcher:
    def __init__(self, sinks: list[Sink], capacity: int = 65536, clock: KtimeClock | None = None,
                 capacity_bytes: int = 64 << 20):
        self._capacity = capacity
        self._capacity_bytes = capacity_bytes
        self._clock = clock or KtimeClock()
        # One histogram per sink name for the life of the process: a
        # reload's new worker goes on counting where the old one stopped.
        self._latency: dict[str, LatencyHistogram] = {}
        self._workers = [self._worker(s) for s in sinks]
        self._retired: list[SinkWorker] = []
        self._totals: dict[str, dict[str, int]] = {}     # what finished retired workers counted
        self._lock = threading.Lock()
        self._batch: list[Event] = []
        self._started = False
        self.emitted = 0
        self.by_kind: dict[str, int] = {}

    def _worker(self, sink: Sink, after: SinkWorker | None = None) -> SinkWorker:
        latency = self._latency.setdefault(sink.name, LatencyHistogram())
        return SinkWorker(sink, self._capacity, after, latency, self._clock, self._capacity_bytes)

    def start(self) -> None:
        for w in self._workers:
            w.start()
        self._started = True

    def emit(self, event: Event) -> None:
        """Called by the reader thread for each event."""
        batch = self._batch
        batch.append(event)
        if len(batch) >= BATCH_MAX:
            self.commit()

    def commit(self) -> None:
        """Hand the events emitted since the last commit to every sink."""
        batch = self._batch
        if not batch:
            return
        self._batch = []
        self.emitted += len(batch)
        by_kind = self.by_kind
        sizes = []
        for event in batch:
            by_kind[event.kind] = by_kind.get(event.kind, 0) + 1
            sizes.append(queued_bytes(event))
        with self._lock:
            for w in self._workers:
                w.offer(batch, sizes)

    def replace(self, sinks: list[Sink]) -> None:
        """Swap in new sinks (config reload) without waiting: events
        committed from now on go to the new ones; the old ones finish
        their queues and close on their own threads."""
        predecessor = {w.sink.name: w for w in self._workers}
        new = [self._worker(s, predecessor.get(s.name)) for s in sinks]
        with self._lock:
            old, self._workers = self._workers, new
        for w in old:
            w.retire()
        self._retired += old
        if self._started:
            for w in new:
                w.start()

    def room(self) -> int:
        """Events the emptiest output could still queue (optional and
        inactive sinks aside); -1 when there is no such output."""
        rooms = [w.room() for w in self._workers
                 if not getattr(w.sink, "optional", False) and getattr(w.sink, "active", True)]
        return max(rooms, default=-1)

    def _fold_retired(self) -> None:
        for w in [w for w in self._retired if w.done]:
            total = self._totals.setdefault(w.sink.name, {})
            for key, n in w.counts().items():
                total[key] = total.get(key, 0) + n
            self._retired.remove(w)

    def per_sink(self) -> dict[str, dict[str, int]]:
        """Per sink name, over the process's life: written, dropped (queue
        full), errors, and what the sink counts itself (`counters()`:
        rotations, filtered, ...); backlog now."""
        self._fold_retired()
        rows: dict[str, dict[str, int]] = {}
        for name, total in self._totals.items():
            rows[name] = dict(total)
        for w in [*self._retired, *self._workers]:
            row = rows.setdefault(w.sink.name, {})
            for key, n in w.counts().items():
                row[key] = row.get(key, 0) + n
        for row in rows.values():
            row.setdefault("backlog", 0)
        for w in self._workers:
            rows[w.sink.name]["backlog"] = w.backlog
        return rows

    def latency(self) -> dict[str, dict]:
        """Per sink name, the latency histogram (LatencyHistogram.read)."""
        return {name: h.read() for name, h in sorted(self._latency.items())}

    def _sum(self, key: str) -> int:
        return sum(row[key] for row in self.per_sink().values())

    @property
    def dropped(self) -> int:
        return self._sum("dropped")

    @property
    def written(self) -> int:
        """Events the slowest output has written (all outputs, when equal).
        Optional sinks (the API stream: only while someone listens) do not count."""
        optional = {w.sink.name for w in self._workers if getattr(w.sink, "optional", False)}
        rows = self.per_sink()
        return min((row["written"] for name, row in rows.items() if name not in optional),
                   default=self.emitted)

    @property
    def errors(self) -> dict[str, int]:
        return {name: row["errors"] for name, row in self.per_sink().items()}

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued within `timeout`, then close every sink;
        what a sink could not write by then is dropped and counted (a stop
        must not wait for a slow disk or journald)."""
        self.commit()
        workers = [*self._retired, *self._workers]
        for w in workers:
            w.retire()
        deadline = time.monotonic() + timeout
        for w in workers:
            w.join(max(0.0, deadline - time.monotonic()))
        for w in workers:
            if not w.join(0):
                backlog = w.backlog
                w.abandon()
                if not w.join(1.0):
                    log.warning("sink %s is stuck in a write; it closes when that returns", w.sink.name)
                log.warning("sink %s: %d events not written in the %.1fs a stop allows (counted as "
                            "dropped)", w.sink.name, backlog, timeout)
