"""Both ends of the local API without a daemon: an ApiServer on a temporary
socket with a fake handler, a raw socket that misbehaves as a broken daemon
would, and the clients run as the user runs them (a subprocess, so a
traceback would show on its standard error)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from tetrad.api.server import ApiLimits, ApiServer, EventStreams

REPO = Path(__file__).resolve().parents[2]


def short_dir() -> str:
    """A socket directory whose path fits sun_path (108 bytes), unlike pytest's tmp_path."""
    return tempfile.mkdtemp(prefix="tapi-", dir="/tmp")


class Handler:
    """The daemon's side of a request: `block` waits until released,
    `big` answers `big_size` bytes, `raise` is a bug, anything else echoes."""

    def __init__(self, big_size: int = 32 << 20):
        self.gate = threading.Event()
        self.inside = threading.Semaphore(0)
        self.big_size = big_size
        self.calls = 0

    def __call__(self, request: dict) -> dict:
        self.calls += 1
        op = request.get("op")
        if op == "block":
            self.inside.release()
            self.gate.wait(60)
            return {"ok": True, "op": op}
        if op == "big":
            return {"ok": True, "blob": "x" * self.big_size}
        if op == "raise":
            raise ValueError("a bug in a handler")
        return {"ok": True, "op": op}


class Api:
    def __init__(self, **limits):
        self.dir = short_dir()
        self.path = os.path.join(self.dir, "api.sock")
        self.handler = Handler()
        self.streams = EventStreams("n")
        self.server = ApiServer(self.path, self.handler, self.streams, ApiLimits(**limits))
        self.server.start()

    def close(self) -> None:
        self.handler.gate.set()
        self.streams.close()
        self.server.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def connected(path: str, timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(path)
    return sock


def read_line(sock: socket.socket) -> bytes:
    """Up to the first newline; what came before an end of file otherwise."""
    data = b""
    while b"\n" not in data:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0]


def ask(path: str, payload: bytes, timeout: float = 5.0) -> dict | None:
    """Send raw bytes, return the parsed answer (None: closed without one)."""
    with connected(path, timeout) as sock:
        try:
            sock.sendall(payload)
        except BrokenPipeError:
            pass
        line = read_line(sock)
    return json.loads(line) if line else None


def wait_until(predicate: Callable[[], object], timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what}: not within {timeout}s")


class BrokenDaemon:
    """A socket where a daemon should be, doing `behave(conn)` to each client."""

    def __init__(self, behave: Callable[[socket.socket], None]):
        self.dir = short_dir()
        self.path = os.path.join(self.dir, "api.sock")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.path)
        self._sock.listen(16)
        self._behave = behave
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                try:
                    self._behave(conn)
                except OSError:
                    pass

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_cli(module: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python3 -m tetrad ...` or `python3 -m tetrad.cli.tetra ...` as a user runs it."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def one_line_error(out: subprocess.CompletedProcess, prog: str) -> str:
    """The failure was said in one line naming the program, with no traceback."""
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: "), out.stderr
    return lines[0]
