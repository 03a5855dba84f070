"""The observer: ring buffers -> op-code dispatch.

Owns the arrow "ring buffer -> decode". Every BPF record starts with an op
code; sensors register a decoder and a handler per op. There is one ring
buffer, the process sensor's `events`; policy programs write into it too
(bpf/shared_maps.h), so one thread reads every record in kernel order.

One of the two modules allowed to import bcc (with tetrad.sensors).
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any, Callable

from bcc import BPF

log = logging.getLogger(__name__)

Decoder = Callable[[bytes], Any]
Handler = Callable[[Any], None]


class Observer:
    def __init__(self) -> None:
        self._routes: dict[int, tuple[Decoder, Handler]] = {}
        self._poller: BPF | None = None
        self._callback = None
        self.received = 0
        self.errors = 0

    def register(self, op: int, decoder: Decoder, handler: Handler) -> None:
        self._routes[int(op)] = (decoder, handler)

    def open(self, bpf: BPF, table: str = "events") -> None:
        """Read `bpf`'s ring buffer `table` from now on."""
        ring = bpf[table]
        try:
            from bcc.libbcc import _RINGBUF_CB_TYPE
            register = bpf._open_ring_buffer
        except (ImportError, AttributeError):        # not the bcc we know: its public way
            ring.open_ring_buffer(self._on_record)
        else:
            # RingBuf.open_ring_buffer wraps the callback in one more Python
            # function (return value check, EPIPE), a call per record.
            self._callback = _RINGBUF_CB_TYPE(self._on_record)    # kept alive here
            register(ring.map_fd, self._callback)
        self._poller = bpf

    def drain(self) -> int:
        """Handle every record that is in the ring buffer now; returns how
        many. Records do not wake the reader (bpf/tetrad_events.h), so the
        caller drains on a timer and again at once while records keep coming."""
        if self._poller is None:
            return 0
        before = self.received
        self._poller.ring_buffer_consume()
        return self.received - before

    def _on_record(self, _ctx, data, size) -> int:
        self.received += 1
        try:
            buf = ctypes.string_at(data, size)
            decoder, handler = self._routes[buf[0]]
            handler(decoder(buf))
        except Exception:  # a bad record must not stop the reader
            self.errors += 1
            log.debug("dropping undecodable record", exc_info=True)
        return 0
