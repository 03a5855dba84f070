"""Bounded queues between the observer and the sinks, one worker per sink.

The observer thread must never wait for a disk or journald, or the kernel's
ring buffer fills and records are lost where nobody can see them. Events are
collected per drain of the ring buffer (`emit`) and handed over as one batch
(`commit`) to every sink's own worker thread, so a slow sink (journald under
load, a full disk) costs only its own events: each worker lets at most
`capacity` events wait, drops the rest and counts them. A sink that raises
is counted and keeps receiving later events.

Batches, not single events, cross the thread boundary: one lock round trip
per drain instead of per event keeps the reader's cost per event low.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Protocol

from tetrad.events.model import Event

log = logging.getLogger(__name__)


class Sink(Protocol):
    """What a sink is; one that has an `active` attribute is skipped (not
    counted as dropping) while it is False."""

    name: str

    def write(self, event: Event) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class SinkWorker:
    """One sink, its queue of batches and its thread."""

    def __init__(self, sink: Sink, capacity: int):
        self.sink = sink
        self.capacity = capacity
        self._batches: deque[list[Event]] = deque()
        self._pending = 0
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"tetrad-sink-{sink.name}", daemon=True)
        self.dropped = 0
        self.written = 0
        self.errors = 0

    def start(self) -> None:
        self._thread.start()

    def offer(self, batch: list[Event]) -> None:
        if not getattr(self.sink, "active", True):
            return                  # e.g. the API stream with nobody listening
        with self._cond:
            room = self.capacity - self._pending
            if len(batch) > room:
                self.dropped += len(batch) - max(room, 0)
                batch = batch[:max(room, 0)]
            if batch:
                self._batches.append(batch)
                self._pending += len(batch)
                self._cond.notify()

    @property
    def backlog(self) -> int:
        return self._pending

    def close(self, timeout: float) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._call(self.sink.close)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._batches and not self._closing:
                    self._cond.wait()
                if not self._batches:
                    return
                batch = self._batches.popleft()
            self._write(batch)
            with self._cond:
                self._pending -= len(batch)
                idle = not self._batches
            if idle:
                self._call(self.sink.flush)

    def _write(self, batch: list[Event]) -> None:
        # One try block per batch, not a _call per event: an event that
        # raises is counted and the loop goes on with the next.
        write = self.sink.write
        events = iter(batch)
        while True:
            try:
                for event in events:
                    write(event)
                    self.written += 1
                return
            except Exception as err:
                self._failed(err)

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


class SinkDispatcher:
    def __init__(self, sinks: list[Sink], capacity: int = 65536):
        self._capacity = capacity
        self._workers = [SinkWorker(s, capacity) for s in sinks]
        self._batch: list[Event] = []
        self._started = False
        self.emitted = 0
        self.by_kind: dict[str, int] = {}

    def start(self) -> None:
        for w in self._workers:
            w.start()
        self._started = True

    def emit(self, event: Event) -> None:
        """Called by the observer thread for each event."""
        self._batch.append(event)

    def commit(self) -> None:
        """Hand the events emitted since the last commit to every sink."""
        batch = self._batch
        if not batch:
            return
        self._batch = []
        self.emitted += len(batch)
        by_kind = self.by_kind
        for event in batch:
            by_kind[event.kind] = by_kind.get(event.kind, 0) + 1
        for w in self._workers:
            w.offer(batch)

    def replace(self, sinks: list[Sink], timeout: float = 30.0) -> None:
        """Swap in new sinks (config reload): the old ones finish their
        queues and close; events committed from now on go to the new."""
        old = self._workers
        self._workers = [SinkWorker(s, self._capacity) for s in sinks]
        if self._started:
            for w in self._workers:
                w.start()
        for w in old:
            w.close(timeout)

    @property
    def dropped(self) -> int:
        return sum(w.dropped for w in self._workers)

    @property
    def written(self) -> int:
        """Events the slowest output has written (all outputs, when equal).
        Optional sinks (the API stream: only while someone listens) do not count."""
        outputs = [w.written for w in self._workers if not getattr(w.sink, "optional", False)]
        return min(outputs, default=self.emitted)

    def per_sink(self) -> dict[str, dict[str, int]]:
        """Per sink: written, dropped (queue full), errors, backlog, and
        what the sink counts itself (`counters()`: rotations, filtered, ...)."""
        return {w.sink.name: {"written": w.written, "dropped": w.dropped, "errors": w.errors,
                              "backlog": w.backlog, **getattr(w.sink, "counters", dict)()}
                for w in self._workers}

    @property
    def errors(self) -> dict[str, int]:
        return {w.sink.name: w.errors for w in self._workers}

    def backlog(self) -> int:
        return max((w.backlog for w in self._workers), default=0)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then close every sink."""
        self.commit()
        for w in self._workers:
            w.close(timeout)
