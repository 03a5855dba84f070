"""Telling systemd how the daemon is doing (sd_notify, via sdnotify).

Type=notify: READY=1 once start-up is complete, STATUS= one line for
`systemctl status`, WATCHDOG=1 from the main loop at half of WatchdogSec
(a stuck loop gets the service restarted), EXTEND_TIMEOUT_USEC= while a
policy compiles (bcc can take many seconds per program under load), and
RELOADING=1 ... READY=1 around a reload. Outside systemd (no NOTIFY_SOCKET)
every call does nothing.

A compile blocks the main loop for as long as clang takes (a minute and more
under software emulation, or with the policy programs compiling alongside):
`busy()` keeps the watchdog fed from a thread for the length of one such
bounded step, and only then, so a hung loop is still caught.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time


class Notifier:
    def __init__(self, notifier=None):
        self._enabled = bool(os.environ.get("NOTIFY_SOCKET")) or notifier is not None
        if notifier is None and self._enabled:
            import sdnotify
            notifier = sdnotify.SystemdNotifier()
        self._n = notifier
        usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        pid = os.environ.get("WATCHDOG_PID")
        if pid and pid != str(os.getpid()):
            usec = 0
        self.watchdog_interval_s = usec / 2e6 if usec else 0.0
        self._last_ping = 0.0

    def _send(self, *lines: str) -> None:
        if self._enabled:
            self._n.notify("\n".join(lines))

    def ready(self, status: str) -> None:
        self._send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self._send(f"STATUS={status}")

    def extend(self, seconds: float, status: str) -> None:
        """More time for start-up, reload or stop (each call re-arms). Also
        a watchdog ping: compiles block the main loop (a directory sync of
        several policies can outlast WatchdogSec), and this runs before each."""
        lines = [f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}", f"STATUS={status}"]
        if self.watchdog_interval_s:
            lines.append("WATCHDOG=1")
            self._last_ping = time.monotonic()
        self._send(*lines)

    @contextlib.contextmanager
    def busy(self, seconds: float, status: str):
        """Around one long step: more time (as extend) and watchdog pings
        from a thread until the step ends."""
        self.extend(seconds, status)
        if not (self._enabled and self.watchdog_interval_s):
            yield
            return
        done = threading.Event()

        def keepalive() -> None:
            while not done.wait(self.watchdog_interval_s):
                self._send("WATCHDOG=1")
        thread = threading.Thread(target=keepalive, name="watchdog-busy", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            self._last_ping = time.monotonic()

    def reloading(self) -> None:
        self._send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def watchdog(self) -> None:
        """Ping when due; called on every main-loop turn."""
        if not self.watchdog_interval_s:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_interval_s:
            self._send("WATCHDOG=1")
            self._last_ping = now
