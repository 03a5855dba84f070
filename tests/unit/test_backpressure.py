"""When the kernel is told to shed policy records (pure logic of
tetrad.observer.Backpressure), and how sinks stop within a deadline."""

import threading
import time

from tetrad.observer import Backpressure
from tetrad.sinks.dispatch import SinkDispatcher


class Room:
    def __init__(self, n):
        self.n = n

    def __call__(self):
        return self.n


def pressure(room):
    signals = []
    bp = Backpressure(room, capacity=100, signal=signals.append, batch=10, batch_limit=40)
    return bp, signals


def test_sheds_when_the_reader_is_behind_and_stops_when_it_caught_up():
    bp, signals = pressure(Room(100))
    bp.after(39)
    assert signals == []
    bp.after(40)                       # the drain hit its limit: records are waiting
    assert signals == [True] and bp.shedding
    bp.after(25)                       # not under half a batch yet
    assert signals == [True]
    bp.after(19)
    assert signals == [True, False] and bp.episodes == 1


def test_sheds_when_no_sink_has_room_for_a_batch_and_waits_for_half_a_queue():
    room = Room(9)
    bp, signals = pressure(room)
    bp.after(0)
    assert signals == [True]
    room.n = 49
    bp.after(0)
    assert signals == [True]           # hysteresis: half the queue must be free
    room.n = 50
    bp.after(0)
    assert signals == [True, False]


def test_a_policy_change_keeps_shedding_on_until_it_is_done():
    room = Room(0)
    bp, signals = pressure(room)
    with bp.hold():
        bp.after(0)
        room.n = 100
        bp.after(0)
        assert signals == [True]       # held: the flood does not take the GIL back yet
    bp.after(0)
    assert signals == [True, False]


def test_no_output_sink_means_no_shedding_for_room():
    bp, signals = pressure(Room(-1))
    bp.after(0)
    assert signals == []


class SlowSink:
    name = "slow"

    def __init__(self):
        self.got, self.closed = 0, threading.Event()
        self.gate = threading.Event()

    def write(self, event):
        self.gate.wait(0.05)
        self.got += 1

    def flush(self):
        pass

    def close(self):
        self.closed.set()


class Proc:
    arguments = ""


class Ev:
    kind = "process_exec"
    process, parent, fields = Proc(), None, {}


def test_close_gives_up_on_a_slow_sink_at_the_deadline_and_counts_what_it_lost():
    sink = SlowSink()
    d = SinkDispatcher([sink], capacity=1000)
    d.start()
    for _ in range(200):               # 200 x 50 ms: 10 s of writing
        d.emit(Ev())
    started = time.monotonic()
    d.close(timeout=0.3)
    took = time.monotonic() - started
    assert took < 1.5 and sink.closed.wait(1.0)
    row = d.per_sink()["slow"]
    assert row["written"] + row["dropped"] == 200 and row["dropped"] > 150


def test_room_is_the_emptiest_output():
    gate = threading.Event()

    class Held(SlowSink):
        def write(self, event):
            gate.wait()

    a, b = Held(), SlowSink()
    b.name = "b"
    b.gate.set()
    d = SinkDispatcher([a, b], capacity=50)
    assert d.room() == 50
    d.start()
    for _ in range(30):
        d.emit(Ev())
    d.commit()
    deadline = time.monotonic() + 5
    while d.per_sink()["b"]["written"] < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert 50 - 30 <= d.room() <= 50      # b drained, a holds its 30 (one may be in hand)
    gate.set()
    d.close()


def test_a_sink_stuck_in_a_write_is_not_closed_under_it():
    """close() gives up waiting at its deadline, but the sink is closed by
    its own worker once the write returns, never while it is writing."""
    release = threading.Event()
    overlaps = []

    class Stuck(SlowSink):
        writing = False

        def write(self, event):
            self.writing = True
            release.wait(10)
            self.writing = False

        def close(self):
            overlaps.append(self.writing)
            self.closed.set()

    sink = Stuck()
    d = SinkDispatcher([sink], capacity=10)
    d.start()
    d.emit(Ev())
    d.commit()
    deadline = time.monotonic() + 5
    while not sink.writing and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink.writing
    started = time.monotonic()
    d.close(timeout=0.2)
    assert time.monotonic() - started < 1.5
    assert not sink.closed.is_set()            # still in write(): left alone
    release.set()
    assert sink.closed.wait(5) and overlaps == [False]
