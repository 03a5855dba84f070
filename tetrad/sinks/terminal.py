"""Compact one-line events on a terminal (the foreground `tetrad run`).

Lines are tetrad/events/compact.py's: values from processes are quoted and
escaped there, so nothing an event carries can write a control sequence or
a line of its own to the terminal."""

from __future__ import annotations

import sys
from typing import TextIO

from tetrad.events.compact import event_line
from tetrad.events.model import Event


class TerminalSink:
    name = "terminal"

    def __init__(self, node_name: str, stream: TextIO | None = None):
        self._node = node_name
        self._stream = stream or sys.stdout

    def write(self, event: Event) -> None:
        self._stream.write(event_line(event, self._node) + "\n")

    def write_raw(self, json_line: str) -> None:
        self._stream.write(json_line + "\n")

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        self.flush()
