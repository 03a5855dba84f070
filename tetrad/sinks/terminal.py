"""Compact one-line events on a terminal (the foreground `tetrad run`)."""

from __future__ import annotations

import sys
from typing import TextIO

from tetrad.events.compact import compact
from tetrad.events.model import Event


class TerminalSink:
    name = "terminal"

    def __init__(self, node_name: str, stream: TextIO | None = None):
        self._node = node_name
        self._stream = stream or sys.stdout

    def write(self, event: Event) -> None:
        self._stream.write(compact(event, self._node) + "\n")

    def write_raw(self, json_line: str) -> None:
        self._stream.write(json_line + "\n")

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        self.flush()
