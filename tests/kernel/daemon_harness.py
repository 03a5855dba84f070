"""Runs the real `tetrad run` as a subprocess and reads its JSON export.

Tetragon's testing style: each test makes events with a unique trigger (a
marker argument), then execs an end marker and waits for it in the JSON file
instead of sleeping; assertions read the events back from the file.

Every line of the export file is checked against Tetragon's schema
(tests/tetragon_schema.py) as it is read, and the rest when the daemon
stops: a line that does not conform fails the test that reads it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from tests import tetragon_schema

REPO = Path(__file__).resolve().parents[2]
TRUE = os.path.realpath("/bin/true")
# How much slower than native this machine runs (the guest under emulation
# says ~20): every timeout of the kernel and guest tests is multiplied by it.
TIME_FACTOR = float(os.environ.get("TETRAD_TIME_FACTOR", "1"))


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05,
             context=lambda: ""):
    """Poll `predicate` until it returns something true (which is returned);
    on timeout fail with `what` and whatever `context()` adds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout}s\n{context()}")


class DaemonProcess:
    """`terminal`: the terminal sink's lines go to `self.terminal` (else no
    terminal sink). `journal`: a directory the daemon sees as /run/systemd
    (in a mount namespace of its own), whose journal/socket stands in for
    journald (JournalSocket); else no journald sink. `env`: more environment
    for the daemon (PYTHONPATH for an installed plugin)."""

    def __init__(self, workdir: Path, *extra_args: str, terminal: bool = False,
                 journal: Path | None = None, env: dict | None = None):
        self.export = workdir / "events.json"
        self.socket = workdir / "api.sock"
        self.terminal = workdir / "terminal.out"
        self.stderr_path = workdir / "daemon.stderr"
        self._stderr = open(self.stderr_path, "w")
        # Only this test's config: no /etc/tetragon files, policies or journald;
        # one export file that never rotates (rotation has its own tests).
        command = [sys.executable, "-m", "tetrad", "run", "--node-name", "testnode",
                   "--config-dir", str(workdir), "--policy-dir", "",
                   "--export-file", str(self.export), "--export-file-max-size-mb", "100000",
                   "--socket", str(self.socket), *extra_args]
        if not terminal:
            command.append("--quiet")
        if journal is None:
            command.append("--no-journald")
        else:
            # unshare and sh exec: the daemon keeps the pid Popen knows.
            command = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                       'mount --bind "$0" /run/systemd && exec "$@"', str(journal), *command]
        with open(self.terminal, "wb") as out:
            self.proc = subprocess.Popen(command, cwd=REPO, stderr=self._stderr,
                                         stdout=out if terminal else subprocess.DEVNULL,
                                         env={**os.environ, **(env or {})})
        self._offset = 0
        self._events: list[dict] = []
        self._schema = tetragon_schema.LineChecker()
        # Compiling many policies under the guest's emulation takes minutes.
        self._wait_for_log("tetrad: INFO: ready in ", timeout=120 * TIME_FACTOR)

    def _wait_for_log(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.stderr_path.read_text()
            if text in log:
                return log
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{log}")
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} from the daemon within {timeout}s:\n"
                             f"{self.stderr_path.read_text()}")

    def events(self) -> list[dict]:
        """All events written so far (read incrementally)."""
        if self.export.exists():
            with open(self.export, "rb") as f:
                f.seek(self._offset)
                data = f.read()
            complete = data.rfind(b"\n") + 1
            self._offset += complete
            for line in data[:complete].splitlines():
                record = json.loads(line)
                found = self._schema.problems(line, record)
                assert not found, ("an exported line is not in Tetragon's schema:\n  " +
                                   "\n  ".join(found) + f"\nline: {line[:2000]!r}")
                self._events.append(record)
        return self._events

    def sync(self, timeout: float = 60) -> list[dict]:
        """Exec an end marker and return the events once it has arrived."""
        marker = f"end-{uuid.uuid4()}"
        subprocess.run([TRUE, marker], check=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ev in reversed(self.events()):
                exit_ = ev.get("process_exit")
                if exit_ and exit_["process"].get("arguments") == marker:
                    return self._events
            time.sleep(0.05)
        raise AssertionError(f"end marker not seen within {timeout}s")

    def policy_counters(self, name: str) -> dict[str, int]:
        """A policy's kernel counters from `tetra status` (a snapshot the
        daemon refreshes every second)."""
        out = subprocess.run([sys.executable, "-m", "tetrad.cli.tetra", "--socket", str(self.socket),
                              "status", "-o", "json"],
                             cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
        return next(p["counters"] for p in json.loads(out.stdout)["policies"] if p["name"] == name)

    def stop(self) -> dict[str, int]:
        """SIGTERM the daemon; returns the counters of its final log line."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60 * TIME_FACTOR)
        except subprocess.TimeoutExpired:
            self.proc.kill()             # never leave a daemon (and its programs) behind
            self.proc.wait()
            raise AssertionError(f"daemon did not stop on SIGTERM:\n{self.stderr_path.read_text()}")
        self._stderr.close()
        self.events()                   # the schema check of lines not read yet
        log = self.stderr_path.read_text()
        line = [l for l in log.splitlines() if "stopped" in l]
        assert line, f"no final stats line:\n{log}"
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line[-1])}


class JournalSocket:
    """A stand-in for journald: a datagram socket at DIR/journal/socket
    (what the daemon, given DIR as /run/systemd, sends to), its entries
    decoded from the native protocol (FIELD=value lines; a value holding a
    newline as FIELD, its 64-bit length and the bytes; a large entry in a
    memfd passed along)."""

    def __init__(self, directory: Path):
        (directory / "journal").mkdir(mode=0o755, parents=True)
        self.directory = directory
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self._sock.bind(str(directory / "journal" / "socket"))
        self.entries: list[dict[str, str]] = []
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while True:
            try:
                data, ancdata, _, _ = self._sock.recvmsg(1 << 20, socket.CMSG_SPACE(4))
            except OSError:
                return                                  # closed
            for level, kind, fds in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fd = int.from_bytes(fds[:4], sys.byteorder)
                    with os.fdopen(fd, "rb") as memfd:
                        data = memfd.read()
            self.entries.append(parse_journal_entry(data))

    def settle(self, quiet: float = 0.5) -> list[dict[str, str]]:
        """The entries, once none has come for `quiet` seconds."""
        count = -1
        while count != len(self.entries):
            count = len(self.entries)
            time.sleep(quiet)
        return self.entries

    def close(self) -> None:
        self._sock.close()


def parse_journal_entry(data: bytes) -> dict[str, str]:
    fields = {}
    at = 0
    while at < len(data):
        end = data.index(b"\n", at)
        line = data[at:end]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            at = end + 1
        else:
            key, size = line, int.from_bytes(data[end + 1:end + 9], "little")
            value = data[end + 9:end + 9 + size]
            at = end + 9 + size + 1
        fields[key.decode()] = value.decode()
    return fields


def container_of(process: dict) -> dict:
    """Tetragon's process.pod.container ({} on the host)."""
    return (process.get("pod") or {}).get("container") or {}


def execs(events, **match):
    return [e["process_exec"] for e in events if "process_exec" in e
            and all(e["process_exec"]["process"].get(k) == v for k, v in match.items())]


def exits(events, **match):
    return [e["process_exit"] for e in events if "process_exit" in e
            and all(e["process_exit"]["process"].get(k) == v for k, v in match.items())]
