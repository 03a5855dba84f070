"""The local API: a root-only Unix socket that `tetra` and `tetrad reload` talk to.

Protocol: the client sends one JSON object on one line, {"op": ...}; the
server answers with one JSON line ({"ok": true, ...} or {"ok": false,
"error": ...}), except `getevents`, which streams one event per line until
the client hangs up. Access: the socket is mode 0600 in a 0700 directory,
and each peer's uid is checked with SO_PEERCRED as soon as it is accepted,
before anything is read from it.

Every connection gets an answer or is closed for a counted reason; none
can hold the daemon for long (ApiLimits):
- three separate pools of slots, so none starves another: connections whose
  request is still arriving, requests being answered, getevents streams.
  A client finding its pool full is told the daemon is busy ("busy": true);
- the whole request line must arrive within a deadline (not a timeout per
  read that a trickle resets), and is bounded in size and nesting;
- answers are written with a deadline; a stream whose reader takes nothing
  for a while is dropped;
- any exception while serving one connection is that connection's error:
  answered, counted, the first of each kind logged at WARNING with its
  traceback.
What was refused and why is in `ApiServer.counters()`.

Requests are parsed on the connection's thread and handed to `handle`
(the daemon), which runs anything touching BPF on its main loop.
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from tetrad.events.model import Event

log = logging.getLogger(__name__)

MAX_REQUEST = 4 << 20             # a policy document fits
MAX_NESTING = 16                  # requests are flat: {"op": ..., "yaml": "..."}
STREAM_BACKLOG = 10000            # events a slow getevents client may lag by
ACCEPT_RETRY_S = 0.1              # after accept() failed (out of descriptors)


@dataclass(frozen=True)
class ApiLimits:
    """How many connections clients may hold, and for how long."""
    max_pending: int = 16             # connections whose request is still arriving
    max_commands: int = 16            # requests being answered (queued for the main loop)
    max_streams: int = 16             # getevents streams
    request_deadline_s: float = 5.0   # to send the whole request line
    answer_deadline_s: float = 10.0   # to take the whole answer
    stream_stall_s: float = 60.0      # a stream reader that takes nothing this long is dropped
    max_request: int = MAX_REQUEST
    max_nesting: int = MAX_NESTING


COUNTERS = ("connections", "refused_busy", "refused_not_root", "timeouts", "bad_requests",
            "errors")


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


class Refused(Exception):
    """A request answered with an error, counted under `counter`."""

    def __init__(self, counter: str, message: str, busy: bool = False):
        super().__init__(message)
        self.counter = counter
        self.busy = busy

    def answer(self) -> dict:
        return {"ok": False, "error": str(self), **({"busy": True} if self.busy else {})}


class _Gone(Exception):
    """The client hung up before its request was complete: no one to answer."""


def _deeper_than(value, limit: int) -> bool:
    todo = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        todo.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def parse_request(line: bytes, max_nesting: int = MAX_NESTING) -> dict:
    """One request line as a dict, or Refused("bad_requests") saying what is wrong."""
    too_deep = Refused("bad_requests", f"the request is nested too deeply (max {max_nesting} levels)")
    try:
        request = json.loads(line)
    except RecursionError:
        raise too_deep from None
    except ValueError:
        raise Refused("bad_requests", "a request is one JSON object on one line") from None
    if not isinstance(request, dict):
        raise Refused("bad_requests", "a request is a JSON object")
    if _deeper_than(request, max_nesting):
        raise too_deep
    return request


class ApiServer:
    """Accepts connections on `path`, answers each request with `handle`
    and streams events from `streams` to getevents clients."""

    def __init__(self, path: str, handle: Callable[[dict], dict], streams: EventStreams,
                 limits: ApiLimits = ApiLimits()):
        self.path = path
        self.limits = limits
        self._handle = handle
        self._streams = streams
        self._sock: socket.socket | None = None
        self._pending = threading.BoundedSemaphore(limits.max_pending)
        self._commands = threading.BoundedSemaphore(limits.max_commands)
        self._stream_slots = threading.BoundedSemaphore(limits.max_streams)
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._logged: set[str] = set()

    def counters(self) -> dict[str, int]:
        """Monotonic for the life of the server: connections accepted, and
        those refused (busy, not root), timed out, malformed, or failed."""
        with self._lock:
            return dict(self._counts)

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

    # ---- accounting ---------------------------------------------------------------

    def _count(self, counter: str, why: str, exc_info: BaseException | None = None) -> None:
        """Count one refusal or failure; the first of each kind is logged
        at WARNING (with its traceback for a failure), later ones at DEBUG."""
        kind = f"{counter}:{type(exc_info).__name__}" if exc_info else counter
        with self._lock:
            self._counts[counter] += 1
            first = kind not in self._logged
            self._logged.add(kind)
        log.log(logging.WARNING if first else logging.DEBUG, "API: %s (counted in %s%s)", why,
                counter, "; later ones are logged at DEBUG" if first else "", exc_info=exc_info)

    def _fault(self, err: BaseException, doing: str) -> None:
        self._count("errors", f"{type(err).__name__} while {doing}: {err}", exc_info=err)

    # ---- connections --------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError as err:
                if self._closing.is_set():
                    return
                self._fault(err, "accepting a connection")     # EMFILE: the next try may work
                time.sleep(ACCEPT_RETRY_S)
                continue
            try:
                self._admit(conn)
            except Exception as err:
                self._fault(err, "admitting a connection")
                conn.close()

    def _admit(self, conn: socket.socket) -> None:
        """On the accept thread, which must never wait on a client: check the
        peer, take a slot for reading its request, start its thread."""
        with self._lock:
            self._counts["connections"] += 1
        uid = peer_uid(conn)
        if uid != 0:
            self._turn_away(conn, Refused("refused_not_root", "the tetrad API is for root only"),
                            f"refused uid {uid} (is the socket's mode still 0600?)")
            return
        if not self._pending.acquire(blocking=False):
            self._turn_away(conn, self._busy("connections sending a request",
                                             self.limits.max_pending))
            return
        try:
            threading.Thread(target=self._serve, args=(conn,), name="tetrad-api-conn",
                             daemon=True).start()
        except RuntimeError as err:        # no thread to be had
            self._pending.release()
            self._fault(err, "starting a connection thread")
            self._turn_away(conn, Refused("refused_busy", "the daemon is out of threads "
                                          "(try again; see journalctl -u tetrad)", busy=True))

    @staticmethod
    def _busy(what: str, limit: int) -> Refused:
        return Refused("refused_busy", f"the daemon is busy: {limit} {what} already "
                       "(try again in a moment)", busy=True)

    def _turn_away(self, conn: socket.socket, refusal: Refused, why: str = "") -> None:
        """Answer without waiting (the answer fits an empty socket buffer), close."""
        self._count(refusal.counter, why or str(refusal))
        with conn:
            conn.setblocking(False)
            try:
                conn.send(json.dumps(refusal.answer()).encode() + b"\n")
            except OSError:
                pass

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                try:
                    request = self._read_request(conn)
                finally:
                    self._pending.release()
                if request.get("op") == "getevents":
                    self._in_slot(self._stream_slots, "getevents streams",
                                  self.limits.max_streams, self._stream, conn)
                else:
                    self._in_slot(self._commands, "requests in progress",
                                  self.limits.max_commands, self._answer, conn, request)
            except Refused as refusal:
                self._count(refusal.counter, str(refusal))
                self._send(conn, refusal.answer())
            except _Gone:
                pass
            except Exception as err:
                self._fault(err, "serving a connection")
                self._send(conn, {"ok": False, "error": f"internal error ({type(err).__name__}: "
                                  f"{err}); see journalctl -u tetrad"})

    def _in_slot(self, slots: threading.BoundedSemaphore, what: str, limit: int,
                 work: Callable, *args) -> None:
        if not slots.acquire(blocking=False):
            raise self._busy(what, limit)
        try:
            work(*args)
        finally:
            slots.release()

    def _read_request(self, conn: socket.socket) -> dict:
        """The first line, which must arrive whole within the deadline."""
        limit, deadline_s = self.limits.max_request, self.limits.request_deadline_s
        deadline = time.monotonic() + deadline_s
        data = bytearray()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Refused("timeouts", f"the request was not complete within {deadline_s:g}s "
                              "(send one JSON object on one line)")
            conn.settimeout(remaining)
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                raise _Gone() from None
            newline = chunk.find(b"\n")
            data += chunk if newline < 0 else chunk[:newline]
            if len(data) > limit:
                raise Refused("bad_requests", f"the request is larger than {limit} bytes")
            if newline >= 0:
                break
            if not chunk:
                if not data:
                    raise _Gone()          # connected and left
                break                      # a last line without its newline
        return parse_request(bytes(data), self.limits.max_nesting)

    def _send(self, conn: socket.socket, answer: dict) -> bool:
        """Write one answer within the deadline; False if it did not get there."""
        data = json.dumps(answer).encode() + b"\n"
        return self._write(conn, data, self.limits.answer_deadline_s, "an answer")

    def _write(self, conn: socket.socket, data: bytes, deadline_s: float, what: str) -> bool:
        conn.settimeout(deadline_s)        # sendall: the whole call, not per write
        try:
            conn.sendall(data)
        except TimeoutError:
            self._count("timeouts", f"a client did not take {what} within {deadline_s:g}s")
            return False
        except OSError:
            return False                   # the client went away
        return True

    def _answer(self, conn: socket.socket, request: dict) -> None:
        self._send(conn, self._handle(request))

    def _stream(self, conn: socket.socket) -> None:
        stream = self._streams.subscribe()
        try:
            if not self._send(conn, {"ok": True, "stream": "events"}):
                return
            while not self._closing.is_set():
                lines = stream.take(timeout=1.0)
                if lines is None:
                    return
                if lines:
                    if not self._write(conn, ("\n".join(lines) + "\n").encode(),
                                       self.limits.stream_stall_s, "stream events"):
                        return
                elif _hung_up(conn):
                    return
        finally:
            self._streams.unsubscribe(stream)

    def close(self) -> None:
        self._closing.set()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)     # wakes the accept thread
            except OSError:
                pass
            self._sock.close()
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def _hung_up(conn: socket.socket) -> bool:
    """An idle stream's client is gone (it never sends after its request;
    what it sends anyway is discarded)."""
    poller = select.poll()
    poller.register(conn, select.POLLIN)
    if not poller.poll(0):
        return False
    try:
        return not conn.recv(4096)
    except OSError:
        return True
