"""Events as tetrad emits them: Tetragon's JSON export shape.

An Event holds references to cache Process objects and kind-specific fields,
and becomes a dict only when a sink serializes it (in the sink thread, off
the ring buffer reader's path). `to_dict()` follows Tetragon's protojson
export: `{"<kind>": {"process": ..., "parent": ..., ...}, "node_name": ...,
"time": ...}` with snake_case names and empty fields left out.
"""

from __future__ import annotations

import functools
import signal
from dataclasses import dataclass, field

from tetrad.jsontext import dumps as _dumps
from tetrad.timefmt import rfc3339
from tetrad.process.model import Process

# The node name is the same in every event: encode it once.
_node_json = functools.lru_cache(maxsize=8)(_dumps)

PROCESS_EXEC = "process_exec"
PROCESS_EXIT = "process_exit"


@dataclass(slots=True, eq=False)
class Event:
    kind: str
    time_ns: int
    process: Process
    parent: Process | None = None
    # Kind-specific fields in Tetragon's order, after process and parent.
    fields: dict = field(default_factory=dict)
    policy_name: str = ""
    # policy-mode monitor: `action` says what the policy would have done.
    monitored: bool = False

    def to_dict(self, node_name: str) -> dict:
        body = {"process": self.process.to_dict()}
        if self.parent is not None:
            body["parent"] = self.parent.to_dict()
        body.update(self.fields)
        return {self.kind: body, "node_name": node_name, "time": rfc3339(self.time_ns)}

    def to_json(self, node_name: str) -> str:
        """The JSON text of to_dict(), assembled from each Process's cached
        JSON instead of serializing the same process again per event."""
        parts = ['{"', self.kind, '":{"process":', self.process.to_json()]
        if self.parent is not None:
            parts += [',"parent":', self.parent.to_json()]
        if self.fields:
            parts += [",", _dumps(self.fields)[1:-1]]
        parts += ['},"node_name":', _node_json(node_name), ',"time":"', rfc3339(self.time_ns), '"}']
        return "".join(parts)


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        if signal.SIGRTMIN < number < signal.SIGRTMAX:
            return f"SIGRTMIN+{number - signal.SIGRTMIN}"
        return f"SIG{number}"


def exec_event(time_ns: int, process: Process, parent: Process | None) -> Event:
    return Event(PROCESS_EXEC, time_ns, process, parent)


def exit_event(time_ns: int, process: Process, parent: Process | None,
               status: int | None, signal_number: int | None) -> Event:
    """Tetragon's ProcessExit: `signal` name when killed, else `status`
    (left out when 0, as protojson leaves out zero values)."""
    fields: dict = {}
    if signal_number:
        fields["signal"] = signal_name(signal_number)
    elif status:
        fields["status"] = status
    fields["time"] = rfc3339(time_ns)
    return Event(PROCESS_EXIT, time_ns, process, parent, fields)
