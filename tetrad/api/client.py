"""Client side of the local API (tetrad/api/server.py), for `tetra` and `tetrad reload`.

One request, one answer. Every way that can go wrong — no socket, nothing
listening, permission denied, the daemon busy or silent, the connection
closed or the answer malformed — is one ApiError: a one-line message that
says what to do next, and the exit status the commands return for it:

  0  success
  1  the daemon refused the request (its reason is printed)
  2  bad command line (argparse's own status), an unreadable file or filter
  3  the daemon could not be reached: not running, no socket, not root
  4  the daemon is busy or did not answer in time: try again
  5  the daemon's answer was cut short or not understood
130  interrupted (Ctrl-C)
EXIT_STATUSES says so for --help and the man pages (tests/unit/test_manpages.py).
"""

from __future__ import annotations

import json
import socket

DEFAULT_SOCKET = "/run/tetrad/tetrad.sock"

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_BUSY = 4
EXIT_BAD_ANSWER = 5
EXIT_INTERRUPTED = 130

EXIT_STATUSES = {
    EXIT_OK: "success",
    EXIT_REFUSED: "the daemon refused the request; its reason is printed",
    EXIT_USAGE: "bad command line, filter, or an unreadable policy file",
    EXIT_UNREACHABLE: "the daemon could not be reached: not running, no socket, or not root",
    EXIT_BUSY: "the daemon is busy or did not answer in time; try again",
    EXIT_BAD_ANSWER: "the daemon's answer was cut short or not understood, or it ended the "
                     "event stream",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}

CONNECT_TIMEOUT_S = 10.0          # the daemon accepts on its own thread, at once when healthy
QUICK_TIMEOUT_S = 120.0           # status, lists: queued behind whatever the main loop is doing
SLOW_TIMEOUT_S = 660.0            # compiles and reloads: past the daemon's own 600 s
MAX_ANSWER = 256 << 20

SLOW_OPS = frozenset({"policy_add", "policy_enable", "reload"})

CHECK_DAEMON = "is tetrad running? systemctl status tetrad"
SEE_LOG = "see journalctl -u tetrad"


class ApiError(Exception):
    """The daemon could not be asked, or its answer could not be had."""

    def __init__(self, message: str, exit_status: int):
        super().__init__(message)
        self.exit_status = exit_status


def connect(path: str, timeout: float = CONNECT_TIMEOUT_S) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except FileNotFoundError:
        sock.close()
        raise ApiError(f"no daemon socket at {path} ({CHECK_DAEMON})", EXIT_UNREACHABLE) from None
    except ConnectionRefusedError:
        sock.close()
        raise ApiError(f"nothing listens on {path} ({CHECK_DAEMON})", EXIT_UNREACHABLE) from None
    except PermissionError:
        sock.close()
        raise ApiError(f"cannot open {path}: Permission denied (the tetrad API is for root: "
                       "run as root)", EXIT_UNREACHABLE) from None
    except TimeoutError:
        sock.close()
        raise ApiError(f"the daemon at {path} accepted no connection within {timeout:g}s "
                       f"(busy or stuck? {CHECK_DAEMON})", EXIT_BUSY) from None
    except OSError as err:
        sock.close()
        raise ApiError(f"cannot reach the daemon at {path}: {err.strerror or err} "
                       f"({CHECK_DAEMON})", EXIT_UNREACHABLE) from None
    return sock


def _send(sock: socket.socket, path: str, message: dict) -> None:
    try:
        sock.sendall(json.dumps(message).encode() + b"\n")
    except (BrokenPipeError, ConnectionResetError):
        pass          # the daemon answered and closed before reading (busy): read that answer
    except TimeoutError:
        raise ApiError(f"the daemon at {path} did not take the request in time "
                       f"(busy? try again; {SEE_LOG})", EXIT_BUSY) from None
    except OSError as err:
        raise ApiError(f"cannot send to the daemon at {path}: {err.strerror or err} "
                       f"({CHECK_DAEMON})", EXIT_UNREACHABLE) from None


class _Lines:
    """Lines from the daemon's end of one connection."""

    def __init__(self, sock: socket.socket, path: str):
        self._sock = sock
        self._path = path
        self._buf = bytearray()
        self._scanned = 0             # bytes of _buf known to hold no newline
        self._eof = False

    def next(self, timeout: float | None) -> bytes | None:
        """The next line without its newline, None at the end. `timeout`
        bounds each wait for data (None: wait as long as it takes)."""
        self._sock.settimeout(timeout)
        while True:
            newline = self._buf.find(b"\n", self._scanned)
            if newline >= 0:
                line = bytes(self._buf[:newline])
                del self._buf[:newline + 1]
                self._scanned = 0
                return line
            self._scanned = len(self._buf)
            if self._eof:
                if self._buf:
                    raise ApiError(f"the daemon cut its answer short ({SEE_LOG})", EXIT_BAD_ANSWER)
                return None
            if len(self._buf) > MAX_ANSWER:
                raise ApiError(f"the daemon's answer is larger than {MAX_ANSWER} bytes "
                               f"({SEE_LOG})", EXIT_BAD_ANSWER)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                raise ApiError(f"no answer from the daemon within {timeout:g}s (busy, e.g. "
                               f"compiling policies? try again; {SEE_LOG})", EXIT_BUSY) from None
            except ConnectionResetError:
                chunk = b""           # it closed with our request unread: an end of file
            except OSError as err:
                raise ApiError(f"reading from the daemon at {self._path} failed: "
                               f"{err.strerror or err} ({SEE_LOG})", EXIT_BAD_ANSWER) from None
            self._eof = not chunk
            self._buf += chunk

    def answer(self, timeout: float) -> dict:
        line = self.next(timeout)
        if line is None:
            raise ApiError(f"the daemon closed the connection without an answer ({SEE_LOG})",
                           EXIT_BAD_ANSWER)
        return parse_answer(line)


def parse_answer(line: bytes) -> dict:
    """An answer line as a dict with "ok"; a busy refusal raised as ApiError."""
    try:
        answer = json.loads(line)
    except (ValueError, RecursionError):
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
        raise ApiError("the daemon's answer is not a JSON object with \"ok\" (is this client "
                       f"the same version as tetrad? {SEE_LOG})", EXIT_BAD_ANSWER)
    if answer.get("busy"):
        raise ApiError(str(answer.get("error") or "the daemon is busy (try again)"), EXIT_BUSY)
    return answer


def request(path: str, op: str, timeout: float | None = None, **fields) -> dict:
    """Send one request and return the daemon's answer, {"ok": true, ...} or
    {"ok": false, "error": ...}; anything else raises ApiError."""
    if timeout is None:
        timeout = SLOW_TIMEOUT_S if op in SLOW_OPS else QUICK_TIMEOUT_S
    with connect(path) as sock:
        _send(sock, path, {"op": op, **fields})
        return _Lines(sock, path).answer(timeout)


class EventStream:
    """A getevents stream, its header read: `lines()` yields one JSON event
    per line until the daemon ends the stream."""

    def __init__(self, path: str, timeout: float = QUICK_TIMEOUT_S):
        self._sock = connect(path)
        try:
            _send(self._sock, path, {"op": "getevents"})
            self._lines = _Lines(self._sock, path)
            header = self._lines.answer(timeout)
        except BaseException:
            self._sock.close()
            raise
        if not header["ok"]:
            self._sock.close()
            raise ApiError(str(header.get("error")), EXIT_REFUSED)

    def lines(self):
        while (line := self._lines.next(None)) is not None:   # events come when they happen
            yield line.decode("utf-8", "replace")

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def bad_answer(what: str) -> ApiError:
    """An answer that parsed but lacks what the client shows."""
    return ApiError(f"the daemon's answer lacks {what} (is this client the same version as "
                    "tetrad?)", EXIT_BAD_ANSWER)
