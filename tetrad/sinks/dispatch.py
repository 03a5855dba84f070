"""The bounded queue between the observer and the sinks.

The observer thread must never wait for a disk or journald, or the kernel's
ring buffer fills and records are lost where nobody can see them. So events
go into a bounded queue; when it is full the event is dropped and counted
(`dropped`), and a writer thread feeds each sink in turn. A sink that raises
is counted per sink and the others still get the event.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Protocol

from tetrad.events.model import Event

log = logging.getLogger(__name__)


class Sink(Protocol):
    name: str

    def write(self, event: Event) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


_STOP = object()


class SinkDispatcher:
    def __init__(self, sinks: list[Sink], capacity: int = 65536):
        self._sinks = sinks
        self._queue: queue.Queue = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name="tetrad-sinks", daemon=True)
        self.dropped = 0
        self.written = 0
        self.errors: dict[str, int] = {s.name: 0 for s in sinks}

    def start(self) -> None:
        self._thread.start()

    def emit(self, event: Event) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def backlog(self) -> int:
        return self._queue.qsize()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then close every sink."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
        for sink in self._sinks:
            try:
                sink.close()
            except Exception:
                log.exception("closing sink %s", sink.name)

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is _STOP:
                break
            self._deliver(event)
            if self._queue.empty():
                for sink in self._sinks:
                    self._call(sink, sink.flush)

    def _deliver(self, event: Event) -> None:
        for sink in self._sinks:
            self._call(sink, sink.write, event)
        self.written += 1

    def _call(self, sink: Sink, method, *args) -> None:
        try:
            method(*args)
        except Exception as err:
            self.errors[sink.name] += 1
            if self.errors[sink.name] == 1 or self.errors[sink.name] % 1000 == 0:
                log.error("sink %s failed (%d errors so far): %s", sink.name,
                          self.errors[sink.name], err)
