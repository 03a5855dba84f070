"""JSON lines in Tetragon's export format, in a rotating file for log shippers.

- One event per line; rotation happens between lines, never inside one, so
  the lines of the current and rotated files add up to the events written.
- Rotation at `max_bytes` or after `interval_s` (0: size only): the file
  becomes FILE.1, FILE.1 becomes FILE.2, ... up to `max_backups` (older are
  deleted); with `compress`, rotated files are gzipped (FILE.1.gz).
- Files are created mode 0600 (events hold command lines, which can hold
  secrets) and appended to, so restarts never truncate.
- Lines are buffered and written in chunks of up to CHUNK_BYTES.

Faults. Each is counted in `counters()` and logged once when it starts,
with what to do, and once when it is over:
- One `_OpenFile` owns the descriptor; closing it forgets the number in the
  same step, so the sink never writes to or closes a descriptor that has
  since been given to another file.
- Before each chunk, the path is compared (st_dev, st_ino) with the open file
  (one stat per chunk, not per line). When the file was removed, moved away
  (logrotate without copytruncate) or replaced, a file is opened at the path
  again (`reopens`).
- A rotation that fails (an immutable directory, a directory in a backup's
  place, no space for the gzip copy) moves nothing it cannot finish: the
  current file stays open and events go on to it past `max_bytes`; rotation
  is tried again after ROTATE_RETRY_S (`failed_rotations`).
- A write or gzip copy refused with ENOSPC deletes the oldest backup and
  tries again while backups remain (`dropped_backups`): on a full disk, new
  events are worth more than the oldest ones.
- What the disk refuses stays buffered, without a half line left in the
  file, and is tried again after WRITE_RETRY_S, up to `pending_limit` bytes.

Counting contract (what the sink worker in tetrad/sinks/dispatch.py counts
as written is a write() that did not raise): write() raises OSError exactly
when the line it was given is lost (the buffer is full while the file cannot
be written). A line write() accepted is written later, or lost only by a
close() that still cannot write it: close() then raises OSError saying how
many. `written_lines` counts lines the kernel took, `lost_lines` every line
lost; accepted lines = written_lines + lines still buffered.
"""

from __future__ import annotations

import errno
import gzip
import logging
import os
import shutil
import time

from tetrad.events.model import Event

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 16
PENDING_LIMIT = 1 << 20         # bytes buffered while the file cannot be written
WRITE_RETRY_S = 1.0
ROTATE_RETRY_S = 10.0
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


class _OpenFile:
    """The export file as opened: the one owner of its descriptor."""

    def __init__(self, path: str):
        fd = os.open(path, _OPEN_FLAGS, 0o600)
        try:
            os.fchmod(fd, 0o600)
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        self.fd = fd
        self.size = st.st_size
        self._identity = (st.st_dev, st.st_ino)

    def is_at(self, path: str) -> bool:
        """Whether `path` still names this file (not removed, moved or replaced)."""
        try:
            st = os.stat(path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._identity

    def linked(self) -> bool:
        """Whether the file still has a name (moved away, not removed)."""
        return os.fstat(self.fd).st_nlink > 0

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


def _unlink_if_there(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class JsonLinesSink:
    name = "jsonfile"

    def __init__(self, path: str, node_name: str, max_bytes: int = 10 << 20, max_backups: int = 5,
                 interval_s: float = 0, compress: bool = False, pending_limit: int = PENDING_LIMIT,
                 clock=time.monotonic):
        self.path = path
        self._node = node_name
        self._max_bytes = max_bytes
        self._max_backups = max_backups
        self._interval = interval_s
        self._compress = compress
        self._pending_limit = pending_limit
        self._clock = clock
        self.written_lines = 0
        self.lost_lines = 0
        self.rotations = 0
        self.failed_rotations = 0
        self.reopens = 0
        self.dropped_backups = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._write_error: OSError | None = None     # while writes fail
        self._rotate_error: OSError | None = None    # while rotations fail
        self._write_retry_at = 0.0
        self._rotate_retry_at = 0.0
        self._moved_away_logged = False
        self._file: _OpenFile | None = _OpenFile(path)   # errors here are the caller's
        self._opened = clock()

    # ---- the sink interface -------------------------------------------------------

    def write(self, event: Event) -> None:
        self.write_raw(event.to_json(self._node))

    def write_raw(self, json_line: str) -> None:
        """Append one JSON record (also records that are not events, such
        as rate_limit_info); raises OSError when the line is lost."""
        line = (json_line + "\n").encode()
        size = self._pending_bytes + len(line)
        f = self._file
        # Below the size limit (the common case): two comparisons, no call.
        if f is not None and (f.size + size > self._max_bytes or self._interval) \
                and self._rotation_due(len(line)):
            self._rotate(len(line))
            size = self._pending_bytes + len(line)
        if size > self._pending_limit and self._pending:
            self._flush()
            size = self._pending_bytes + len(line)
            if size > self._pending_limit and self._pending:
                self.lost_lines += 1
                err = self._write_error
                raise OSError(err.errno if err else errno.EIO,
                              f"{self.path}: event lost: {self._pending_bytes} bytes already wait "
                              f"for the file ({err.strerror if err else 'not writable'})")
        self._pending.append(line)
        self._pending_bytes = size
        if size >= CHUNK_BYTES:
            self._flush()

    def flush(self) -> None:
        """Write what is buffered (the sink worker calls this when idle).
        Raises OSError when the file cannot take it now; the lines stay
        buffered and are tried again."""
        if self._pending and self._clock() >= self._write_retry_at and not self._flush():
            err = self._write_error
            raise OSError(err.errno, f"{self.path}: {len(self._pending)} events wait: {err.strerror}")

    def close(self) -> None:
        try:
            if not self._flush(force=True):
                lost = len(self._pending)
                self.lost_lines += lost
                self._pending.clear()
                self._pending_bytes = 0
                err = self._write_error
                raise OSError(err.errno, f"{self.path}: {lost} events lost at close: {err.strerror}")
        finally:
            self._forget_file()

    def counters(self) -> dict[str, int]:
        return {"written_lines": self.written_lines, "lost_lines": self.lost_lines,
                "rotations": self.rotations, "failed_rotations": self.failed_rotations,
                "reopens": self.reopens, "dropped_backups": self.dropped_backups}

    # ---- writing ------------------------------------------------------------------

    def _flush(self, force: bool = False) -> bool:
        """Write what is buffered; False when some of it still waits."""
        if not self._pending:
            return True
        if not force and self._clock() < self._write_retry_at:
            return False
        while True:
            try:
                self._write_pending()
                break
            except OSError as err:
                if err.errno == errno.ENOSPC and self._drop_oldest_backup():
                    continue
                self._write_failed(err)
                return False
        if self._write_error is not None:
            log.warning("export file %s: writing works again", self.path)
            self._write_error = None
        return True

    def _write_pending(self) -> None:
        f = self._current_file()
        chunk = b"".join(self._pending)
        view = memoryview(chunk)
        done = 0
        try:
            while done < len(chunk):
                done += os.write(f.fd, view[done:])
        except OSError:
            whole = chunk.rfind(b"\n", 0, done) + 1
            self._took(f, whole)
            if whole < done:
                os.ftruncate(f.fd, f.size)       # no half line stays behind
            raise
        self._took(f, done)

    def _took(self, f: _OpenFile, nbytes: int) -> None:
        """The first `nbytes` of the buffer (whole lines) are in the file."""
        f.size += nbytes
        self._pending_bytes -= nbytes
        if not self._pending_bytes:
            self.written_lines += len(self._pending)
            self._pending.clear()
            return
        lines = taken = 0
        while taken < nbytes:
            taken += len(self._pending[lines])
            lines += 1
        del self._pending[:lines]
        self.written_lines += lines

    def _write_failed(self, err: OSError) -> None:
        self._write_retry_at = self._clock() + WRITE_RETRY_S
        if self._write_error is None:
            log.error("export file %s: cannot write (%s); events wait in memory (up to %d bytes), "
                      "then are lost and counted (lost_lines). Free space or fix the path; "
                      "tried again every %.0f s", self.path, err, self._pending_limit, WRITE_RETRY_S)
        self._write_error = err

    def _current_file(self) -> _OpenFile:
        """The open file, opened again when its path no longer names it."""
        f = self._file
        if f is not None and f.is_at(self.path):
            return f
        try:
            new = _OpenFile(self.path)
        except OSError as err:
            if f is not None and f.linked():
                # Moved away and nothing can be opened in its place: the
                # moved file keeps the events until the path works again.
                if not self._moved_away_logged:
                    log.error("export file %s was moved away and cannot be opened again (%s); "
                              "events go on to the moved file", self.path, err)
                    self._moved_away_logged = True
                return f
            self._forget_file()          # removed: what is written there is lost
            raise
        if f is not None:
            log.warning("export file %s was moved, removed or replaced; writing to %s again",
                        self.path, self.path)
        self._forget_file()
        self._file = new
        self._opened = self._clock()
        self._moved_away_logged = False
        self.reopens += 1
        return new

    def _forget_file(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            f.close()

    # ---- rotation -----------------------------------------------------------------

    def _suffix(self, n: int) -> str:
        return f"{self.path}.{n}{'.gz' if self._compress else ''}"

    def _rotation_due(self, incoming: int) -> bool:
        f = self._file
        if f is None:
            return False
        size = f.size + self._pending_bytes
        if not size or (size + incoming <= self._max_bytes and not self._interval):
            return False
        now = self._clock()
        if now < self._rotate_retry_at:
            return False
        return size + incoming > self._max_bytes or now - self._opened >= self._interval

    def _rotate(self, incoming: int) -> None:
        self._flush()
        try:
            f = self._current_file()
        except OSError:
            return                       # no file to rotate; writing reports why
        if not self._rotation_due(incoming):
            return                       # replaced by a fresh file meanwhile
        try:
            self._move_live()
        except OSError as err:
            self._rotation_failed(err)
            return
        self.rotations += 1
        if self._rotate_error is not None:
            log.warning("export file %s: rotation works again", self.path)
            self._rotate_error = None
        try:
            new = _OpenFile(self.path)
        except OSError:
            return                       # the next write opens it, or says why not
        f.close()
        self._file = new
        self._opened = self._clock()

    def _move_live(self) -> None:
        """Backups up by one, the live file to FILE.1 (or deleted when no
        backups are kept). Stops at the first step that fails, having lost
        nothing: the live file moves last."""
        if self._max_backups == 0:
            os.unlink(self.path)
            return
        _unlink_if_there(self._suffix(self._max_backups))
        for n in range(self._max_backups - 1, 0, -1):
            if os.path.lexists(self._suffix(n)):
                os.rename(self._suffix(n), self._suffix(n + 1))
        if self._compress:
            self._gzip_live()
            os.unlink(self.path)
        else:
            os.rename(self.path, self._suffix(1))

    def _gzip_live(self) -> None:
        """The live file gzipped into FILE.1.gz, through a hidden temporary
        file so that no partial backup is ever seen under a backup's name."""
        tmp = os.path.join(os.path.dirname(self.path), f".{os.path.basename(self.path)}.gz.tmp")
        while True:
            try:
                with open(self.path, "rb") as src:
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
                    with open(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as dst:
                        shutil.copyfileobj(src, dst)
                break
            except OSError as err:
                _unlink_if_there(tmp)
                if err.errno == errno.ENOSPC and self._drop_oldest_backup():
                    continue
                raise
        os.rename(tmp, self._suffix(1))

    def _drop_oldest_backup(self) -> bool:
        """Delete the oldest backup to make room; False when there is none."""
        for n in range(self._max_backups, 0, -1):
            backup = self._suffix(n)
            if os.path.isfile(backup) and not os.path.islink(backup):
                try:
                    os.unlink(backup)
                except OSError:
                    return False
                self.dropped_backups += 1
                log.warning("export file %s: disk full, deleted the oldest backup %s to make room",
                            self.path, backup)
                return True
        return False

    def _rotation_failed(self, err: OSError) -> None:
        self.failed_rotations += 1
        self._rotate_retry_at = self._clock() + ROTATE_RETRY_S
        if self._rotate_error is None:
            log.error("export file %s: cannot rotate (%s); events go on to it past its size limit "
                      "and rotation is tried again every %.0f s. Check its directory: free space, "
                      "no immutable flag (lsattr -d; chattr -i), nothing but tetrad's own files "
                      "at %s.N", self.path, err, ROTATE_RETRY_S, self.path)
        self._rotate_error = err
