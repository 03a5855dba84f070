"""The bounded queue between the observer and the sinks.

The observer thread must never wait for a disk or journald, or the kernel's
ring buffer fills and records are lost where nobody can see them. So events
are collected per drain of the ring buffer (`emit`), handed over as one batch
(`commit`), and a writer thread feeds each sink in turn. At most `capacity`
events wait; what does not fit is dropped and counted (`dropped`). A sink
that raises is counted per sink and the others still get the event.

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
    name: str

    def write(self, event: Event) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class SinkDispatcher:
    def __init__(self, sinks: list[Sink], capacity: int = 65536):
        self._sinks = sinks
        self._capacity = capacity
        self._batch: list[Event] = []
        self._batches: deque[list[Event]] = deque()
        self._pending = 0
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="tetrad-sinks", daemon=True)
        self.dropped = 0
        self.written = 0
        self.errors: dict[str, int] = {s.name: 0 for s in sinks}

    def start(self) -> None:
        self._thread.start()

    def emit(self, event: Event) -> None:
        """Called by the observer thread for each event."""
        self._batch.append(event)

    def commit(self) -> None:
        """Hand the events emitted since the last commit to the writer."""
        batch = self._batch
        if not batch:
            return
        self._batch = []
        with self._cond:
            room = self._capacity - self._pending
            if len(batch) > room:
                self.dropped += len(batch) - max(room, 0)
                batch = batch[:max(room, 0)]
            if batch:
                self._batches.append(batch)
                self._pending += len(batch)
                self._cond.notify()

    def backlog(self) -> int:
        return self._pending

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then close every sink."""
        self.commit()
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        for sink in self._sinks:
            try:
                sink.close()
            except Exception:
                log.exception("closing sink %s", sink.name)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._batches and not self._closing:
                    self._cond.wait()
                if not self._batches:
                    return
                batch = self._batches.popleft()
            for event in batch:
                for sink in self._sinks:
                    self._call(sink, sink.write, event)
            self.written += len(batch)
            with self._cond:
                self._pending -= len(batch)
                idle = not self._batches
            if idle:
                for sink in self._sinks:
                    self._call(sink, sink.flush)

    def _call(self, sink: Sink, method, *args) -> None:
        try:
            method(*args)
        except Exception as err:
            self.errors[sink.name] += 1
            if self.errors[sink.name] == 1 or self.errors[sink.name] % 1000 == 0:
                log.error("sink %s failed (%d errors so far): %s", sink.name,
                          self.errors[sink.name], err)
