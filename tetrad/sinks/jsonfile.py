"""JSON lines, one event per line, in Tetragon's export format.

The file is created mode 0600 (events name commands and arguments, which can
hold secrets) and opened for append, so restarts never truncate it.
"""

from __future__ import annotations

import os

from tetrad.events.model import Event


class JsonLinesSink:
    name = "jsonfile"

    def __init__(self, path: str, node_name: str):
        self._node = node_name
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8", buffering=1 << 16)

    def write(self, event: Event) -> None:
        self._file.write(event.to_json(self._node) + "\n")

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()
