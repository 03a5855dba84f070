"""Noticing changes in the policy directory (watchdog / inotify), debounced.

The watcher thread only records *that* something changed; the daemon's main
loop asks `due()` and then syncs the directory itself (tetrad/policy/
directory.py), so BPF loading stays on one thread. Editors and config
management write a temporary file and rename it, which is several events in
a row: a sync runs once the directory has been quiet for `quiet_s`. A slow
full sync every `backstop_s` catches what inotify cannot see (a directory
created after start, a chmod on the directory itself).
"""

from __future__ import annotations

import logging
import os
import threading
import time

log = logging.getLogger(__name__)


class _Handler:
    """watchdog's handler interface, reduced to: note the time."""

    def __init__(self, watcher: "DirectoryWatcher"):
        self._w = watcher

    def dispatch(self, event) -> None:
        self._w.changed()


class DirectoryWatcher:
    def __init__(self, directory: str, quiet_s: float = 0.25, backstop_s: float = 30.0,
                 clock=time.monotonic):
        self.directory = directory
        self._quiet = quiet_s
        self._backstop = backstop_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_change: float | None = None
        self._last_sync = clock()
        self._observer = None

    def start(self) -> None:
        self._schedule()

    def _schedule(self) -> None:
        if self._observer is not None or not os.path.isdir(self.directory):
            return
        from watchdog.observers import Observer
        observer = Observer()
        observer.schedule(_Handler(self), self.directory, recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer
        log.info("watching %s for policy changes", self.directory)

    def changed(self) -> None:
        with self._lock:
            self._last_change = self._clock()

    def due(self) -> bool:
        """True once per burst of changes after it went quiet, and every
        backstop period; the caller then syncs."""
        now = self._clock()
        with self._lock:
            quiet = self._last_change is not None and now - self._last_change >= self._quiet
            if quiet or now - self._last_sync >= self._backstop:
                self._last_change = None
                self._last_sync = now
                if self._observer is None:
                    self._schedule()
                return True
        return False

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(5)
            self._observer = None
