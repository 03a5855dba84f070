"""The local API: a root-only Unix socket that `tetra` talks to.

Protocol: the client sends one JSON object on one line, {"op": ...}; the
server answers with one JSON line ({"ok": true, ...} or {"ok": false,
"error": ...}), except `getevents`, which streams one event per line until
the client hangs up. Access: the socket is mode 0600 in a 0700 directory,
and each peer's uid is checked with SO_PEERCRED as well.

Requests are parsed on the connection's thread and handed to `handle`
(the daemon), which runs anything touching BPF on its main loop. The number
of connections is bounded; past it a client gets an error, not a thread.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import threading
from collections import deque
from typing import Callable

from tetrad.events.model import Event

log = logging.getLogger(__name__)

MAX_CLIENTS = 32
MAX_REQUEST = 4 << 20             # a policy document fits
STREAM_BACKLOG = 10000            # events a slow getevents client may lag by


class EventStreams:
    """A sink that fans events out to getevents clients, each with its own
    bounded backlog: a client that does not read loses (counted) events,
    the daemon loses nothing."""

    name = "api"
    optional = True             # not an output whose count says what was written

    def __init__(self, node_name: str):
        self._node = node_name
        self._lock = threading.Lock()
        self._clients: list[_Stream] = []
        self._drops_before = 0      # of clients gone since

    def subscribe(self) -> "_Stream":
        stream = _Stream()
        with self._lock:
            self._clients.append(stream)
        return stream

    def unsubscribe(self, stream: "_Stream") -> None:
        with self._lock:
            if stream in self._clients:
                self._clients.remove(stream)
                self._drops_before += stream.dropped

    @property
    def active(self) -> bool:
        """Events are handed over only while a client listens."""
        return bool(self._clients)

    def counters(self) -> dict[str, int]:
        """Clients listening, and lines dropped because one read too slowly."""
        with self._lock:
            return {"clients": len(self._clients),
                    "client_drops": self._drops_before + sum(s.dropped for s in self._clients)}

    def write(self, event: Event) -> None:
        if self._clients:
            self.write_raw(event.to_json(self._node))

    def write_raw(self, json_line: str) -> None:
        with self._lock:
            clients = list(self._clients)
        for stream in clients:
            stream.put(json_line)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for stream in clients:
            stream.end()


class _Stream:
    def __init__(self):
        self._lines: deque[str] = deque()
        self._cond = threading.Condition()
        self._ended = False
        self.dropped = 0

    def put(self, line: str) -> None:
        with self._cond:
            if len(self._lines) >= STREAM_BACKLOG:
                self.dropped += 1
                return
            self._lines.append(line)
            self._cond.notify()

    def end(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify()

    def take(self, timeout: float) -> list[str] | None:
        """Lines waiting (maybe none after `timeout`); None once ended."""
        with self._cond:
            if not self._lines and not self._ended:
                self._cond.wait(timeout)
            if not self._lines and self._ended:
                return None
            lines = list(self._lines)
            self._lines.clear()
            return lines


def peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


class ApiServer:
    def __init__(self, path: str, handle: Callable[[dict], dict], streams: EventStreams):
        self.path = path
        self._handle = handle
        self._streams = streams
        self._sock: socket.socket | None = None
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self._closing = threading.Event()

    def start(self) -> None:
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700)     # systemd's RuntimeDirectory= makes it too
        if os.path.lexists(self.path):
            os.unlink(self.path)           # a stale socket of a previous run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old_umask = os.umask(0o177)
        try:
            sock.bind(self.path)
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        sock.listen(16)
        self._sock = sock
        threading.Thread(target=self._accept, name="tetrad-api", daemon=True).start()
        log.info("API on %s", self.path)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                self._reply(conn, {"ok": False, "error": f"too many clients (max {MAX_CLIENTS})"})
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _reply(conn: socket.socket, answer: dict) -> None:
        try:
            conn.sendall(json.dumps(answer).encode() + b"\n")
        except OSError:
            pass

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                if peer_uid(conn) != 0:
                    self._reply(conn, {"ok": False, "error": "the tetrad API is for root only"})
                    return
                request = self._read_request(conn)
                if request is None:
                    return
                if request.get("op") == "getevents":
                    self._stream(conn)
                else:
                    self._reply(conn, self._handle(request))
        finally:
            self._slots.release()

    def _read_request(self, conn: socket.socket) -> dict | None:
        data = b""
        conn.settimeout(30)
        while b"\n" not in data:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return None
            if not chunk:
                break
            data += chunk
            if len(data) > MAX_REQUEST:
                self._reply(conn, {"ok": False, "error": "request too large"})
                return None
        try:
            request = json.loads(data.split(b"\n", 1)[0])
        except ValueError:
            self._reply(conn, {"ok": False, "error": "a request is one JSON object on one line"})
            return None
        if not isinstance(request, dict):
            self._reply(conn, {"ok": False, "error": "a request is a JSON object"})
            return None
        return request

    def _stream(self, conn: socket.socket) -> None:
        stream = self._streams.subscribe()
        conn.settimeout(None)
        try:
            self._reply(conn, {"ok": True, "stream": "events"})
            while not self._closing.is_set():
                lines = stream.take(timeout=1.0)
                if lines is None:
                    return
                if lines:
                    conn.sendall(("\n".join(lines) + "\n").encode())
        except OSError:
            pass                                # the client went away
        finally:
            self._streams.unsubscribe(stream)

    def close(self) -> None:
        self._closing.set()
        if self._sock is not None:
            self._sock.close()
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
