"""The API server under abuse by a local client: full slots, a request sent
half-way, hostile JSON, a reader that never reads, a flood of streams, a bug
in a handler, no descriptors left. Every client gets an answer or a clear
error; none holds the daemon for longer than its deadline."""

from __future__ import annotations

import json
import logging
import os
import resource
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.unit.apifakes import (REPO, Api, ask, connected, one_line_error, read_line, run_cli,
                                 wait_until)
from tetrad.api import server
from tetrad.api.client import EXIT_BUSY

STATUS = b'{"op": "status"}\n'


@pytest.fixture
def api():
    made = []

    def make(**limits) -> Api:
        made.append(Api(**limits))
        return made[-1]
    yield make
    for a in made:
        a.close()


def hold_commands(a: Api, n: int) -> list[socket.socket]:
    """n requests inside the handler, waiting there until released."""
    held = []
    for _ in range(n):
        sock = connected(a.path)
        sock.sendall(b'{"op": "block"}\n')
        held.append(sock)
        assert a.handler.inside.acquire(timeout=5), "a held request did not reach the handler"
    return held


def hold_pending(a: Api, n: int) -> list[socket.socket]:
    """n connections that sent part of a request line and wait."""
    held = []
    for _ in range(n):
        sock = connected(a.path)
        sock.sendall(b'{"op": "sta')
        held.append(sock)
    wait_until(lambda: a.server.counters()["connections"] >= n, 5, "the half-sent connections")
    return held


@pytest.mark.parametrize("pool", ["commands", "pending"])
def test_when_every_slot_is_taken_tetra_says_busy_and_exits_non_zero(api, pool):
    a = api(max_commands=2, max_pending=2)
    held = hold_commands(a, 2) if pool == "commands" else hold_pending(a, 2)
    for command in (["status"], ["policy", "list"], ["status", "-o", "json"]):
        out = run_cli("tetrad.cli.tetra", "--socket", a.path, *command)
        assert out.returncode == EXIT_BUSY, (command, out)
        assert "busy" in one_line_error(out, "tetra") and out.stdout == ""
    reload = run_cli("tetrad", "reload", "--socket", a.path)
    assert reload.returncode == EXIT_BUSY and "busy" in one_line_error(reload, "tetrad")
    assert a.server.counters()["refused_busy"] == 4
    for sock in held:
        sock.close()


def test_a_half_sent_request_is_cut_off_at_its_deadline_and_others_are_served(api):
    """A client trickling a byte at a time would reset a per-read timeout
    for ever; the deadline is for the whole request."""
    a = api(request_deadline_s=1.0, max_pending=2)
    answers: dict[int, dict] = {}

    def trickle(i: int) -> None:
        with connected(a.path, timeout=0.2) as sock:
            sock.sendall(b'{"op": "sta')
            started = time.monotonic()
            while time.monotonic() - started < 8:
                try:
                    sock.sendall(b"a")
                    line = read_line(sock)
                except (BrokenPipeError, ConnectionResetError):
                    line = b""
                    break
                except TimeoutError:
                    continue
                if line:
                    answers[i] = {**json.loads(line), "after": time.monotonic() - started}
                break

    first = threading.Thread(target=trickle, args=(1,))
    first.start()
    wait_until(lambda: a.server.counters()["connections"] == 1, 5, "the trickling client")
    assert ask(a.path, STATUS, timeout=0.5) == {"ok": True, "op": "status"}   # served meanwhile
    second = threading.Thread(target=trickle, args=(2,))
    second.start()
    wait_until(lambda: a.server.counters()["connections"] == 3, 5, "the second trickling client")
    refused = ask(a.path, STATUS)                 # both request slots held, for now
    assert refused["ok"] is False and refused["busy"] is True
    first.join(10)
    second.join(10)
    for i in (1, 2):
        assert answers[i]["ok"] is False and "not complete within 1s" in answers[i]["error"]
        assert answers[i]["after"] < 3, answers[i]
    assert ask(a.path, STATUS) == {"ok": True, "op": "status"}     # the slots are free again
    assert a.server.counters()["timeouts"] == 2


@pytest.mark.parametrize("payload, error", [
    (b"[" * 200_000 + b"\n", "nested too deeply"),
    (b'{"a":' * 200_000 + b"\n", "nested too deeply"),
    (json.dumps({"op": "status", "x": [[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}).encode() + b"\n",
     "nested too deeply (max 16 levels)"),
    (b"not json\n", "one JSON object on one line"),
    (b"\n", "one JSON object on one line"),
    (b"\xff\xfe\n", "one JSON object on one line"),
    (b'["op", "status"]\n', "a JSON object"),
    (b'{"op": "' + b"x" * server.MAX_REQUEST + b'"}\n', f"larger than {server.MAX_REQUEST} bytes"),
], ids=["200k-lists", "200k-maps", "17-levels", "not-json", "empty-line", "not-utf8", "a-list", "too-large"])
def test_hostile_requests_get_an_error_answer(api, payload, error):
    a = api()
    answer = ask(a.path, payload)
    assert answer is not None, "the connection closed without an answer"
    assert answer["ok"] is False and error in answer["error"]
    assert a.handler.calls == 0 and a.server.counters()["bad_requests"] == 1
    assert ask(a.path, STATUS) == {"ok": True, "op": "status"}


def test_a_client_that_never_reads_its_answer_is_dropped_at_the_deadline(api):
    a = api(answer_deadline_s=1.0, max_commands=1)
    reader = connected(a.path)
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.sendall(b'{"op": "big"}\n')            # 32 MB, never read
    started = time.monotonic()
    wait_until(lambda: a.handler.calls == 1, 5, "the big answer's request in its slot")
    served = wait_until(lambda: (ask(a.path, STATUS) or {}).get("ok"), 5,
                        "another client served once the reader's slot was freed")
    assert served and time.monotonic() - started < 4
    assert a.server.counters()["timeouts"] == 1
    got = 0
    while chunk := reader.recv(1 << 20):          # what the server wrote before giving up
        got += len(chunk)
    assert got < a.handler.big_size, "the whole answer was written: the server waited for the reader"


def stream(a: Api) -> socket.socket:
    sock = connected(a.path)
    sock.sendall(b'{"op": "getevents"}\n')
    assert json.loads(read_line(sock)) == {"ok": True, "stream": "events"}
    return sock


def test_a_flood_of_streams_leaves_commands_answered_and_held_commands_leave_streams(api):
    a = api()                                   # the daemon's own limits
    limits = a.server.limits
    streams = [stream(a) for _ in range(limits.max_streams)]
    refused = ask(a.path, b'{"op": "getevents"}\n')
    assert refused["ok"] is False and refused["busy"] is True and "getevents streams" in refused["error"]
    flood = threading.Thread(target=lambda: [a.streams.write_raw("e" * 200) for _ in range(100_000)])
    flood.start()                               # into clients that read nothing
    for _ in range(20):
        assert ask(a.path, STATUS, timeout=5) == {"ok": True, "op": "status"}
    flood.join()
    assert a.streams.counters()["client_drops"] > 0
    held = hold_commands(a, limits.max_commands)
    assert ask(a.path, STATUS)["busy"] is True
    streams.pop().close()
    wait_until(lambda: a.streams.counters()["clients"] == limits.max_streams - 1, 5,
               "the closed stream's slot freed")
    streams.append(stream(a))                   # accepted while every command slot is held
    for sock in streams + held:
        sock.close()


def test_a_stream_reader_that_stops_reading_is_dropped(api):
    a = api(stream_stall_s=1.0)
    reader = stream(a)
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for _ in range(server.STREAM_BACKLOG):
        a.streams.write_raw("e" * 1000)
    wait_until(lambda: a.streams.counters()["clients"] == 0, 5, "the stalled stream dropped")
    assert a.server.counters()["timeouts"] == 1
    reader.close()


def test_an_idle_stream_whose_client_left_frees_its_slot(api):
    a = api(max_streams=1)
    stream(a).close()
    wait_until(lambda: a.streams.counters()["clients"] == 0, 5, "the idle stream noticed gone")
    stream(a).close()


def test_a_handler_exception_is_answered_counted_and_logged_once_with_its_traceback(api, caplog):
    a = api()
    caplog.set_level(logging.DEBUG, logger="tetrad.api.server")
    for _ in range(3):
        answer = ask(a.path, b'{"op": "raise"}\n')
        assert answer["ok"] is False and "internal error (ValueError: a bug in a handler)" in answer["error"]
    assert a.server.counters()["errors"] == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].exc_info and "ValueError" in warnings[0].getMessage()
    assert ask(a.path, STATUS) == {"ok": True, "op": "status"}


def test_accepting_goes_on_after_running_out_of_descriptors(api):
    a = api()
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(5)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.dup(0)
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
    try:
        client.connect(a.path)                   # into the backlog; accept() gets EMFILE
        wait_until(lambda: a.server.counters()["errors"] >= 1, 5, "accept failing")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    client.sendall(STATUS)
    assert json.loads(read_line(client)) == {"ok": True, "op": "status"}
    client.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another user")
def test_a_non_root_peer_is_refused_before_its_request_is_read(api):
    """Were the socket's mode loosened, SO_PEERCRED still turns others away,
    at once: the client sends nothing and is answered."""
    a = api()
    os.chmod(a.dir, 0o755)
    os.chmod(a.path, 0o666)
    probe = ("import socket, sys; s = socket.socket(socket.AF_UNIX); s.settimeout(2); "
             "s.connect(sys.argv[1]); sys.stdout.write(s.recv(4096).decode())")
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          sys.executable, "-c", probe, a.path],
                         cwd=REPO, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"ok": False, "error": "the tetrad API is for root only"}
    assert a.server.counters()["refused_not_root"] == 1 and a.handler.calls == 0


def test_counters_are_the_documented_monotonic_set(api):
    a = api()
    assert a.server.counters() == dict.fromkeys(server.COUNTERS, 0)
    ask(a.path, STATUS)
    ask(a.path, b"[\n")
    assert a.server.counters() == {**dict.fromkeys(server.COUNTERS, 0),
                                   "connections": 2, "bad_requests": 1}
