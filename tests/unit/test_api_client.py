"""`tetra` and `tetrad reload` against a daemon that is missing, refuses,
closes, stalls or answers garbage: one line saying what to do next, the
documented exit status, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from tests.unit.apifakes import REPO, Api, BrokenDaemon, one_line_error, run_cli, short_dir
from tetrad.api import client


def close_at_once(conn: socket.socket) -> None:
    pass                                     # closed by BrokenDaemon, request unread


def read_then_close(conn: socket.socket) -> None:
    conn.recv(65536)


def answer_with(data: bytes):
    def behave(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(data)
    return behave


def busy_before_reading(conn: socket.socket) -> None:
    conn.sendall(b'{"ok": false, "error": "the daemon is busy: 16 requests in progress already '
                 b'(try again in a moment)", "busy": true}\n')


BROKEN = [
    (close_at_once, client.EXIT_BAD_ANSWER, "closed the connection without an answer"),
    (read_then_close, client.EXIT_BAD_ANSWER, "closed the connection without an answer"),
    (answer_with(b"not json\n"), client.EXIT_BAD_ANSWER, "not a JSON object"),
    (answer_with(b"[1]\n"), client.EXIT_BAD_ANSWER, "not a JSON object"),
    (answer_with(b'{"ok": tr'), client.EXIT_BAD_ANSWER, "cut its answer short"),
    (answer_with(b'{"ok": true}\n'), client.EXIT_BAD_ANSWER, "lacks"),
    (answer_with(b'{"ok": false, "error": "no such thing"}\n'), client.EXIT_REFUSED, "no such thing"),
    (busy_before_reading, client.EXIT_BUSY, "busy"),
]
IDS = ["close-at-once", "read-then-close", "not-json", "not-an-object", "cut-short",
       "lacking-fields", "refused", "busy"]


@pytest.fixture
def broken(request):
    made = []

    def make(behave) -> BrokenDaemon:
        made.append(BrokenDaemon(behave))
        return made[-1]
    yield make
    for b in made:
        b.close()


@pytest.mark.parametrize("behave, status, says", BROKEN, ids=IDS)
def test_tetrad_reload_against_a_broken_daemon(broken, behave, status, says):
    d = broken(behave)
    out = run_cli("tetrad", "reload", "--socket", d.path)
    assert out.returncode == status and says in one_line_error(out, "tetrad"), out


@pytest.mark.parametrize("behave, status, says", BROKEN, ids=IDS)
@pytest.mark.parametrize("command", [["status"], ["policy", "list"]], ids=["status", "policy-list"])
def test_tetra_against_a_broken_daemon(broken, command, behave, status, says):
    d = broken(behave)
    out = run_cli("tetrad.cli.tetra", "--socket", d.path, *command)
    assert out.returncode == status and says in one_line_error(out, "tetra"), out


def test_no_daemon_and_no_socket_say_what_to_do():
    empty = short_dir()
    stale = os.path.join(empty, "stale.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(stale)                         # a socket file nobody listens on
    sock.close()
    cases = [(os.path.join(empty, "missing.sock"), "no daemon socket at"),
             (stale, "nothing listens on")]
    try:
        for path, says in cases:
            for module, before, after, prog in (
                    ("tetrad", ["reload", "--socket", path], [], "tetrad"),
                    ("tetrad.cli.tetra", ["--socket", path], ["status"], "tetra"),
                    ("tetrad.cli.tetra", ["--socket", path], ["getevents", "--live"], "tetra")):
                out = run_cli(module, *before, *after)
                line = one_line_error(out, prog)
                assert out.returncode == client.EXIT_UNREACHABLE and says in line
                assert "systemctl status tetrad" in line
    finally:
        shutil.rmtree(empty)


def test_a_daemon_that_never_answers_times_out_as_busy(broken):
    d = broken(lambda conn: (conn.recv(65536), time.sleep(3)))
    started = time.monotonic()
    with pytest.raises(client.ApiError) as err:
        client.request(d.path, "status", timeout=0.5)
    assert err.value.exit_status == client.EXIT_BUSY
    assert "no answer from the daemon within 0.5s" in str(err.value)
    assert time.monotonic() - started < 2.5


def test_the_event_stream_ended_by_the_daemon_is_an_error(broken):
    d = broken(answer_with(b'{"ok": true, "stream": "events"}\n{"process_exec": {}}\n'))
    out = run_cli("tetrad.cli.tetra", "--socket", d.path, "getevents", "--live")
    assert out.returncode == client.EXIT_BAD_ANSWER
    assert "ended the event stream" in one_line_error(out, "tetra")
    assert json.loads(out.stdout) == {"process_exec": {}}


def at_a_terminal(*args: str) -> tuple[int, str]:
    """`tetra ARGS` with standard error on a terminal (a pty), as a person
    runs it: (exit status, what the terminal showed)."""
    main, side = os.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "tetrad.cli.tetra", *args], cwd=REPO,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=side,
                              timeout=60)
        os.close(side)
        shown = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:              # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(main)
    return proc.returncode, shown.decode()


def test_getevents_at_a_terminal_says_it_connects_and_waits(broken):
    d = broken(answer_with(b'{"ok": true, "stream": "events"}\n{"process_exec": {}}\n'))
    status, shown = at_a_terminal("--socket", d.path, "getevents", "--live")
    assert status == client.EXIT_BAD_ANSWER
    lines = shown.splitlines()
    assert lines[0] == f"tetra: connecting to tetrad at {d.path}"
    assert lines[1] == "tetra: connected; waiting for events (Ctrl-C stops)"
    assert "ended the event stream" in lines[2]


def test_getevents_without_a_daemon_says_where_written_events_are():
    empty = short_dir()
    try:
        status, shown = at_a_terminal("--socket", os.path.join(empty, "missing.sock"),
                                      "getevents", "--live")
    finally:
        shutil.rmtree(empty)
    assert status == client.EXIT_UNREACHABLE
    assert shown.splitlines()[-1].endswith(
        "events already written are in the export file: tetra getevents < "
        "/var/log/tetragon/tetragon.log")
    assert "connected" not in shown


def test_a_refused_stream_is_an_error_with_the_daemons_reason(broken):
    d = broken(answer_with(b'{"ok": false, "error": "no streams today"}\n'))
    out = run_cli("tetrad.cli.tetra", "--socket", d.path, "getevents", "--live")
    assert out.returncode == client.EXIT_REFUSED and "no streams today" in one_line_error(out, "tetra")


def test_events_follow_the_stream_header_in_order():
    a = Api()
    try:
        with client.EventStream(a.path) as stream:
            a.streams.write_raw('{"n": 1}')
            a.streams.write_raw('{"n": 2}')
            lines = stream.lines()
            assert [json.loads(next(lines)) for _ in range(2)] == [{"n": 1}, {"n": 2}]
    finally:
        a.close()


def test_an_unreadable_policy_file_is_a_usage_error():
    a = Api()
    try:
        out = run_cli("tetrad.cli.tetra", "--socket", a.path, "policy", "add", "/nonexistent.yaml")
        assert out.returncode == client.EXIT_USAGE and "cannot read /nonexistent.yaml" in \
            one_line_error(out, "tetra")
        assert a.handler.calls == 0
    finally:
        a.close()
