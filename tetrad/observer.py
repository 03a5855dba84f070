"""The observer: ring buffer -> op-code dispatch, on a thread of its own.

Owns the arrow "ring buffer -> decode". Every BPF record starts with an op
code; sensors register a decoder and a handler per op. There is one ring
buffer, the process sensor's `events`; policy programs write into it too
(bpf/shared_maps.h), so one thread reads every record in kernel order.

That thread (`Reader`) does nothing else: it never waits for a policy
compile, a reload or a sink shutdown, which run on the daemon's control
thread (Tetragon reads events on their own goroutine, pkg/observer). After
each batch it calls `after_batch` (the sinks' commit). A batch is bounded:
one consume hands over at most `batch_limit` records, so under a flood the
reader still sees its stop flag and the sinks get records while the kernel
keeps writing.

A record that fails to decode or to handle is counted per op code and the
first failure of each op and exception type is logged at WARNING with its
traceback; the reader goes on with the next record.

One of the two modules allowed to import bcc (with tetrad.sensors): it
reads the ring buffer with libbcc's libbpf ring buffer manager.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
from typing import Any, Callable

from bcc.libbcc import _RINGBUF_CB_TYPE, lib

log = logging.getLogger(__name__)

Decoder = Callable[[bytes], Any]
Handler = Callable[[Any], None]

# How long the reader sleeps when the ring buffer is empty: the latency of
# an event on an idle host, and the idle wake-up rate (records do not wake
# the reader: bpf/tetrad_events.h).
DRAIN_INTERVAL_S = 0.02
BATCH_LIMIT = 4096
STOP_CONSUME = -1                # a callback's "stop here" to libbpf's ring_buffer__consume


class Observer:
    def __init__(self, op_names: dict[int, str] | None = None, batch_limit: int = BATCH_LIMIT) -> None:
        self._routes: dict[int, tuple[Decoder, Handler]] = {}
        self._names = op_names or {}
        self._ring = None                         # libbpf's ring_buffer, once opened
        self._callback = None
        self._batch_limit = batch_limit
        self._in_batch = 0
        self.received = 0
        self.errors: dict[str, int] = {}          # op name -> records that failed
        self._logged: set[tuple[str, str]] = set()

    def register(self, op: int, decoder: Decoder, handler: Handler) -> None:
        self._routes[int(op)] = (decoder, handler)

    def open(self, map_fd: int) -> None:
        """Read the ring buffer map `map_fd` from now on."""
        self._callback = _RINGBUF_CB_TYPE(self._on_record)    # kept alive here
        ring = lib.bpf_new_ringbuf(map_fd, self._callback, None)
        if not ring:
            raise OSError(ctypes.get_errno(), f"cannot open the ring buffer: "
                          f"{os.strerror(ctypes.get_errno())}")
        self._ring = ring

    def close(self) -> None:
        if self._ring:
            lib.bpf_free_ringbuf(self._ring)
            self._ring = None

    def drain(self) -> int:
        """Handle the records in the ring buffer now, at most batch_limit of
        them; returns how many."""
        if not self._ring:
            return 0
        before = self.received
        self._in_batch = 0
        lib.bpf_consume_ringbuf(self._ring)
        return self.received - before

    def _on_record(self, _ctx, data, size) -> int:
        self.received += 1
        buf = ctypes.string_at(data, size)
        try:
            decoder, handler = self._routes[buf[0]]
            handler(decoder(buf))
        except Exception as err:  # a bad record must not stop the reader
            self._failed(buf[0] if buf else -1, err)
        self._in_batch += 1
        return STOP_CONSUME if self._in_batch >= self._batch_limit else 0

    def _failed(self, op: int, err: Exception) -> None:
        name = self._names.get(op, f"op{op}")
        self.errors[name] = self.errors.get(name, 0) + 1
        kind = (name, type(err).__name__)
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning("%s record failed (later failures of this kind are only counted)", name,
                        exc_info=err)


class Backpressure:
    """Tells the kernel to shed policy records while user space cannot take
    them: the reader is behind (a drain hit the batch limit: records are
    waiting) or no sink has room for another batch. The kernel then counts
    each policy record as shed instead of writing it (bpf/shared_maps.h),
    so the ring buffer keeps room for process records and a flood costs
    the reader nothing; enforcement is not affected. With hysteresis:
    shedding stops once a drain found under half a batch and some sink has
    room for half its queue again — but not while the control thread holds
    it (`hold`, around policy loads and reloads): under overload a policy
    change goes first, so a flood cannot keep a new policy from loading
    (the reader and the sinks would otherwise keep the GIL busy)."""

    def __init__(self, room: Callable[[], int], capacity: int, signal: Callable[[bool], None],
                 batch: int, batch_limit: int = BATCH_LIMIT):
        self._room = room                # events the emptiest sink could still queue
        self._capacity = capacity
        self._signal = signal
        self._limit = batch_limit
        self._batch = batch
        self.shedding = False
        self.episodes = 0                # times shedding began
        self._held = 0

    @contextlib.contextmanager
    def hold(self):
        """While inside, shedding that has begun does not stop."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1

    def after(self, drained: int) -> None:
        room = self._room()
        if not self.shedding:
            if drained >= self._limit or 0 <= room < self._batch:
                self._set(True)
        elif (drained < self._limit // 2 and (room < 0 or room >= self._capacity // 2)
              and not self._held):
            self._set(False)

    def _set(self, on: bool) -> None:
        self._signal(on)
        self.shedding = on
        if on:
            self.episodes += 1


class Reader:
    """The thread that drains the ring buffer and hands each batch on."""

    def __init__(self, observer: Observer, after_batch: Callable[[], None],
                 backpressure: Backpressure | None = None, interval_s: float = DRAIN_INTERVAL_S):
        self._observer = observer
        self._after_batch = after_batch
        self._backpressure = backpressure
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tetrad-reader", daemon=True)
        self.failures = 0

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                n = self._observer.drain()
                self._after_batch()
                if self._backpressure is not None:
                    self._backpressure.after(n)
            except Exception:
                # Not a record's fault (those are caught per record): keep
                # reading, but say so, once per kind.
                self.failures += 1
                if self.failures == 1:
                    log.warning("the ring buffer reader failed; it goes on", exc_info=True)
                n = 0
            if n == 0:
                self._stop.wait(self._interval)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the current batch; the caller may then drain the rest
        itself (single-threaded from here on)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
