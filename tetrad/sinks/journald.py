"""Events into the systemd journal, queryable by field.

MESSAGE is the compact line (tetrad/events/compact.py: values from processes
quoted and escaped, so an argument cannot forge an entry's text or send
escape sequences to the terminal of whoever reads the journal); TETRAD_*
fields carry what people filter on, as the process gave them:
  journalctl -t tetrad TETRAD_EVENT=process_exec TETRAD_BINARY=/usr/bin/curl
and TETRAD_JSON the whole event in Tetragon's format. The container's runtime,
which Tetragon's schema has no field for, is TETRAD_CONTAINER_RUNTIME. A
process in a Kubernetes pod (with the Kubernetes plugin) also has
TETRAD_POD_NAMESPACE, TETRAD_POD_NAME, TETRAD_POD_UID, TETRAD_POD_WORKLOAD
and TETRAD_POD_WORKLOAD_KIND (labels and annotations only in TETRAD_JSON:
their keys are not journal field names). Priority follows what
happened: exec/exit info, policy hits notice, enforcement warning (a
policy in monitor mode enforces nothing: its events are notices, with
TETRAD_POLICY_MODE=monitor, and TETRAD_ACTION what it would have done).

Written with sd_journal_sendv (no caller-frame lookup per event). If journald
is gone, each failed event is counted by the sink worker and later events
are tried again, so the journal catches up when journald is back.
"""

from __future__ import annotations

import json
import socket

from tetrad.events.compact import event_line
from tetrad.events.model import Event

PRIORITY_INFO, PRIORITY_NOTICE, PRIORITY_WARNING = "6", "5", "4"
SOCKET = "/run/systemd/journal/socket"


def journal_fields(event: Event, node_name: str) -> list[str]:
    """The journal entry for an event, as FIELD=value strings."""
    proc = event.process
    action = event.fields.get("action", "")
    if action and action != "KPROBE_ACTION_POST" and not event.monitored:
        priority = PRIORITY_WARNING
    elif event.policy_name:
        priority = PRIORITY_NOTICE
    else:
        priority = PRIORITY_INFO
    entry = [
        f"MESSAGE={event_line(event, node_name)}",
        f"PRIORITY={priority}",
        "SYSLOG_IDENTIFIER=tetrad",
        f"TETRAD_EVENT={event.kind}",
        f"TETRAD_BINARY={proc.binary}",
        f"TETRAD_PID={proc.pid}",
        f"TETRAD_UID={proc.uid}",
        f"TETRAD_EXEC_ID={proc.exec_id}",
        f"TETRAD_NODE={node_name}",
        f"TETRAD_JSON={event.to_json(node_name)}",
    ]
    if proc.parent_exec_id:
        entry.append(f"TETRAD_PARENT_EXEC_ID={proc.parent_exec_id}")
    if event.policy_name:
        entry.append(f"TETRAD_POLICY={event.policy_name}")
    if action:
        entry.append(f"TETRAD_ACTION={action}")
    if event.monitored:
        entry.append("TETRAD_POLICY_MODE=monitor")
    if "function_name" in event.fields:
        entry.append(f"TETRAD_FUNCTION={event.fields['function_name']}")
    container = proc.container
    if container:
        entry += [f"TETRAD_CONTAINER_{key.upper()}={container[key]}"
                  for key in ("id", "name", "image", "runtime") if container.get(key)]
        pod = container.get("pod") or {}
        entry += [f"TETRAD_POD_{key.upper()}={pod[key]}"
                  for key in ("namespace", "name", "uid", "workload", "workload_kind") if pod.get(key)]
    return entry


def listening(path: str = SOCKET) -> bool:
    """Whether journald answers on its socket. A socket file alone is not
    enough: journald leaves it behind when it stops."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.connect(path)
            return True
        except OSError:
            return False


class JournaldSink:
    name = "journald"

    def __init__(self, node_name: str):
        from systemd import journal      # python3-systemd, needed only here
        self._sendv = journal.sendv
        self._node = node_name

    def write(self, event: Event) -> None:
        self._sendv(*journal_fields(event, self._node))

    def write_raw(self, json_line: str) -> None:
        """Records that are not events (rate_limit_info)."""
        kind = next(iter(json.loads(json_line)), "record")
        self._sendv(f"MESSAGE=tetrad {kind}: {json_line}", f"PRIORITY={PRIORITY_WARNING}",
                    "SYSLOG_IDENTIFIER=tetrad", f"TETRAD_EVENT={kind}", f"TETRAD_JSON={json_line}")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
