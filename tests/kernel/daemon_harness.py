"""Runs the real `tetrad run` as a subprocess and reads its JSON export.

Tetragon's testing style: each test makes events with a unique trigger (a
marker argument), then execs an end marker and waits for it in the JSON file
instead of sleeping; assertions read the events back from the file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TRUE = os.path.realpath("/bin/true")


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
    def __init__(self, workdir: Path, *extra_args: str):
        self.export = workdir / "events.json"
        self.stderr_path = workdir / "daemon.stderr"
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            # Only this test's config: no /etc/tetragon files, policies or journald;
            # one export file that never rotates (rotation has its own tests).
            [sys.executable, "-m", "tetrad", "run", "--quiet", "--node-name", "testnode",
             "--config-dir", str(workdir), "--policy-dir", "", "--no-journald",
             "--export-file", str(self.export), "--export-file-max-size-mb", "100000",
             "--socket", str(workdir / "api.sock"),
             *extra_args],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=self._stderr)
        self._offset = 0
        self._events: list[dict] = []
        # Compiling many policies under the guest's emulation takes minutes.
        self._wait_for_log("tetrad: INFO: ready in ", timeout=120 * float(os.environ.get("TETRAD_TIME_FACTOR", "1")))

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
                self._events.append(json.loads(line))
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

    def stop(self) -> dict[str, int]:
        """SIGTERM the daemon; returns the counters of its final log line."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60 * float(os.environ.get("TETRAD_TIME_FACTOR", "1")))
        except subprocess.TimeoutExpired:
            self.proc.kill()             # never leave a daemon (and its programs) behind
            self.proc.wait()
            raise AssertionError(f"daemon did not stop on SIGTERM:\n{self.stderr_path.read_text()}")
        self._stderr.close()
        log = self.stderr_path.read_text()
        line = [l for l in log.splitlines() if "stopped" in l]
        assert line, f"no final stats line:\n{log}"
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line[-1])}


def execs(events, **match):
    return [e["process_exec"] for e in events if "process_exec" in e
            and all(e["process_exec"]["process"].get(k) == v for k, v in match.items())]


def exits(events, **match):
    return [e["process_exit"] for e in events if "process_exit" in e
            and all(e["process_exit"]["process"].get(k) == v for k, v in match.items())]
