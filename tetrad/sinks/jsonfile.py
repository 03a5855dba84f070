"""JSON lines in Tetragon's export format, in a rotating file for log shippers.

- One event per line; rotation happens between lines, never inside one, so
  the lines of the current and rotated files add up to the events written.
- Rotation at `max_bytes` or after `interval_s` (0: size only): the file
  becomes FILE.1, FILE.1 becomes FILE.2, ... up to `max_backups` (older are
  deleted); with `compress`, rotated files are gzipped (FILE.1.gz).
- Files are created mode 0600 (events hold command lines, which can hold
  secrets) and appended to, so restarts never truncate.
- Lines are buffered and written in chunks. A chunk that cannot be written
  (full disk) is taken back out of the file (no half line stays behind),
  its events are counted in `lost`, and the error goes to the sink worker,
  which counts it; later events try again.
"""

from __future__ import annotations

import gzip
import os
import shutil
import time

from tetrad.events.model import Event


class JsonLinesSink:
    name = "jsonfile"

    def __init__(self, path: str, node_name: str, max_bytes: int = 10 << 20, max_backups: int = 5,
                 interval_s: float = 0, compress: bool = False, clock=time.monotonic):
        self.path = path
        self._node = node_name
        self._max_bytes = max_bytes
        self._max_backups = max_backups
        self._interval = interval_s
        self._compress = compress
        self._clock = clock
        self.rotations = 0
        self.lost = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._open()

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.fchmod(self._fd, 0o600)
        self._committed = os.fstat(self._fd).st_size
        self._opened = self._clock()

    def _suffix(self, n: int) -> str:
        return f"{self.path}.{n}{'.gz' if self._compress else ''}"

    def rotate(self) -> None:
        os.close(self._fd)
        if self._max_backups == 0:
            os.unlink(self.path)
        else:
            oldest = self._suffix(self._max_backups)
            if os.path.exists(oldest):
                os.unlink(oldest)
            for n in range(self._max_backups - 1, 0, -1):
                if os.path.exists(self._suffix(n)):
                    os.rename(self._suffix(n), self._suffix(n + 1))
            if self._compress:
                with open(self.path, "rb") as src, gzip.open(self._suffix(1), "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.chmod(self._suffix(1), 0o600)
                os.unlink(self.path)
            else:
                os.rename(self.path, self._suffix(1))
        self.rotations += 1
        self._open()

    def write(self, event: Event) -> None:
        self.write_raw(event.to_json(self._node))

    def write_raw(self, json_line: str) -> None:
        """Append one JSON record (also records that are not events, such
        as rate_limit_info)."""
        line = (json_line + "\n").encode()
        size = self._committed + self._pending_bytes
        due = self._interval and self._clock() - self._opened >= self._interval
        if size and (size + len(line) > self._max_bytes or due):
            self.flush()
            self.rotate()
        self._pending.append(line)
        self._pending_bytes += len(line)
        if self._pending_bytes >= 1 << 16:
            self.flush()

    def counters(self) -> dict[str, int]:
        return {"rotations": self.rotations, "lost_lines": self.lost}

    def flush(self) -> None:
        if not self._pending:
            return
        chunk = b"".join(self._pending)
        lines = len(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        view = memoryview(chunk)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError:
            os.ftruncate(self._fd, self._committed)
            self.lost += lines
            raise
        self._committed += len(chunk)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            os.close(self._fd)
