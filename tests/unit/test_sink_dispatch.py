import threading
import time
from dataclasses import dataclass, field

from tetrad.sinks.dispatch import ARG_BYTES, EVENT_BYTES, LATENCY_BUCKETS_S, SinkDispatcher, queued_bytes
from tetrad.timefmt import KtimeClock


@dataclass(frozen=True)
class Proc:
    arguments: str = ""


@dataclass(frozen=True)
class Ev:
    n: int
    kind: str = "process_exec"
    time_ns: int = 0                 # wall-clock ns of the kernel's timestamp
    process: Proc = Proc()
    parent: Proc | None = None
    fields: dict = field(default_factory=dict, compare=False)


class ListSink:
    name = "list"

    def __init__(self, fail_on=None, gate=None):
        self.got, self.flushes, self.closed = [], 0, False
        self._fail_on, self._gate = fail_on, gate

    def write(self, event):
        if self._gate:
            self._gate.wait()
        if event == self._fail_on:
            raise OSError("disk full")
        self.got.append(event)

    def flush(self):
        self.flushes += 1

    def close(self):
        self.closed = True


def test_batches_are_delivered_in_order_and_flushed():
    sink = ListSink()
    d = SinkDispatcher([sink])
    d.start()
    for i in range(10):
        d.emit(Ev(i))
        if i % 3 == 0:
            d.commit()
    d.close()
    assert sink.got == [Ev(i) for i in range(10)] and sink.closed and sink.flushes >= 1
    assert d.written == 10 and d.dropped == 0 and d.by_kind == {"process_exec": 10}


def test_full_queue_drops_and_counts_without_blocking():
    gate = threading.Event()
    sink = ListSink(gate=gate)
    d = SinkDispatcher([sink], capacity=5)
    d.start()
    for i in range(8):
        d.emit(Ev(i))
    d.commit()                   # 5 fit, 3 dropped, and commit did not block
    assert d.dropped == 3
    gate.set()
    d.close()
    assert sink.got == [Ev(i) for i in range(5)]


def test_an_events_size_counts_its_command_lines_and_arguments():
    assert queued_bytes(Ev(0)) == EVENT_BYTES
    big = Ev(0, process=Proc("a" * 4096), parent=Proc("p" * 1000), fields={"args": [{}, {}]})
    assert queued_bytes(big) == EVENT_BYTES + 4096 + 1000 + 2 * ARG_BYTES


def test_the_queue_is_bounded_by_bytes_too_and_room_says_so():
    """Exec events with long command lines fill the byte budget long before
    the count: what does not fit is dropped and counted, in order."""
    gate = threading.Event()
    sink = ListSink(gate=gate)
    size = EVENT_BYTES + 4000
    d = SinkDispatcher([sink], capacity=1000, capacity_bytes=10 * size)
    assert d.room() == 10 * size // EVENT_BYTES        # at the smallest size, while empty
    d.start()
    events = [Ev(i, process=Proc("x" * 4000)) for i in range(25)]
    for e in events:
        d.emit(e)
    d.commit()
    assert d.dropped == 15 and d.room() == 0
    gate.set()
    d.close()
    assert sink.got == events[:10]


def test_failing_sink_is_counted_and_others_still_get_events():
    bad, good = ListSink(fail_on=Ev(2)), ListSink()
    bad.name = "bad"
    d = SinkDispatcher([bad, good])
    d.start()
    for i in range(4):
        d.emit(Ev(i))
    d.close()
    assert good.got == [Ev(i) for i in range(4)] and bad.got == [Ev(0), Ev(1), Ev(3)]
    assert d.errors == {"bad": 1, "list": 0}


def test_written_ignores_optional_and_inactive_sinks():
    out, stream = ListSink(), ListSink()
    stream.name, stream.optional, stream.active = "api", True, False
    d = SinkDispatcher([out, stream])
    d.start()
    for i in range(3):
        d.emit(Ev(i))
    d.close()
    assert d.written == 3 and stream.got == [] and d.dropped == 0


class CountingSink(ListSink):
    name = "counting"

    def counters(self):
        return {"rotations": 2}


def test_per_sink_includes_what_each_sink_counts_itself():
    d = SinkDispatcher([ListSink(), CountingSink()], capacity=10)
    rows = d.per_sink()
    assert rows["counting"]["rotations"] == 2 and "rotations" not in rows["list"]
    assert rows["list"].keys() >= {"written", "dropped", "errors", "backlog"}


def test_event_stream_drops_add_up_over_clients_that_left():
    from tetrad.api import server
    streams = server.EventStreams("n")
    slow = streams.subscribe()
    for i in range(server.STREAM_BACKLOG + 5):
        streams.write_raw(f"line {i}")
    assert streams.counters() == {"clients": 1, "client_drops": 5}
    streams.unsubscribe(slow)
    assert streams.counters() == {"clients": 0, "client_drops": 5}


def test_failures_at_either_end_of_a_batch_are_counted_once_each():
    class Picky(ListSink):
        def write(self, event):
            if event.n in (0, 3):
                raise OSError("no")
            self.got.append(event)
    sink = Picky()
    d = SinkDispatcher([sink])
    d.start()
    for i in range(4):
        d.emit(Ev(i))
    d.close()
    assert sink.got == [Ev(1), Ev(2)]
    assert d.per_sink()["list"]["written"] == 2 and d.errors == {"list": 2}


def test_latency_from_kernel_time_to_write_is_counted_per_sink_across_a_reload():
    """Events stamped 3 s and 150 ms before now land in the buckets around
    those ages (each in the middle of its bucket: a loaded machine may take
    tens of ms to write them); a reload's new worker of the same sink name
    adds to the same histogram; an event that failed to write is not
    counted."""
    clock = KtimeClock()
    now = clock.wall_ns(time.monotonic_ns())
    sink = ListSink(fail_on=Ev(9, time_ns=now))
    d = SinkDispatcher([sink], clock=clock)
    d.start()
    d.emit(Ev(1, time_ns=now - 3_000_000_000))
    d.emit(Ev(2, time_ns=now - 150_000_000))
    d.emit(Ev(9, time_ns=now))
    d.commit()
    d.replace([ListSink()])
    d.emit(Ev(3, time_ns=now - 150_000_000))
    d.close()
    h = d.latency()["list"]
    assert h["bounds_s"] == list(LATENCY_BUCKETS_S)
    counted = {b: n for b, n in zip(h["bounds_s"] + ["+Inf"], h["counts"]) if n}
    assert counted == {0.25: 2, 5.0: 1}, counted
    assert 3.3 <= h["sum_s"] < 4.0
