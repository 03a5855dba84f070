"""A record that fails to decode or to be handled is counted under its
record type, the first failure of each kind is logged at WARNING with its
traceback, and the reader goes on with the next record."""

from __future__ import annotations

import ctypes
import logging

from tetrad.observer import STOP_CONSUME, Observer

EXEC, EXIT = 1, 2


def feed(observer: Observer, record: bytes) -> int:
    buf = ctypes.create_string_buffer(record, len(record))
    return observer._on_record(None, ctypes.addressof(buf), len(record))


def broken_decoder(buf: bytes):
    raise ValueError(f"cannot decode {len(buf)} bytes")


def test_failures_are_counted_per_record_type_and_the_first_of_each_kind_logged(caplog):
    handled = []
    observer = Observer({EXEC: "exec", EXIT: "exit"})
    observer.register(EXEC, broken_decoder, handled.append)
    observer.register(EXIT, lambda buf: buf, handled.append)
    with caplog.at_level(logging.WARNING, logger="tetrad.observer"):
        for _ in range(3):
            assert feed(observer, bytes([EXEC, 0, 0, 0])) == 0
        assert feed(observer, bytes([EXIT, 7])) == 0                 # the next record is handled
        assert feed(observer, bytes([99, 1])) == 0                    # no route: counted as op99
    assert handled == [bytes([EXIT, 7])]
    assert observer.errors == {"exec": 3, "op99": 1}
    assert observer.received == 5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage().split()[0] for r in warnings] == ["exec", "op99"]
    assert warnings[0].exc_info and warnings[0].exc_info[0] is ValueError


def test_a_handler_error_of_another_kind_is_logged_again(caplog):
    observer = Observer({EXEC: "exec"})
    errors = iter([ValueError("a"), KeyError("b"), ValueError("c")])

    def handler(_):
        raise next(errors)

    observer.register(EXEC, lambda buf: buf, handler)
    with caplog.at_level(logging.WARNING, logger="tetrad.observer"):
        for _ in range(3):
            feed(observer, bytes([EXEC]))
    assert observer.errors == {"exec": 3}
    assert [r.exc_info[0] for r in caplog.records] == [ValueError, KeyError]


def test_the_batch_limit_stops_the_drain():
    observer = Observer({EXEC: "exec"}, batch_limit=2)
    observer.register(EXEC, lambda buf: buf, lambda _: None)
    assert [feed(observer, bytes([EXEC])) for _ in range(2)] == [0, STOP_CONSUME]
