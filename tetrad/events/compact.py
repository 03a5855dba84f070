"""One-line event text, as `tetra getevents -o compact` prints it.

🚀 process <where> <binary> <arguments>
💥 exit    <where> <binary> <arguments> <status or signal>

<where> is the node name for host processes (the container name once
container identity is known). Other event kinds register their own line
with `register()`.
"""

from __future__ import annotations

from typing import Callable

from tetrad.events.model import PROCESS_EXEC, PROCESS_EXIT, Event

Formatter = Callable[[Event, str], str]
_FORMATTERS: dict[str, Formatter] = {}


def register(kind: str, formatter: Formatter) -> None:
    _FORMATTERS[kind] = formatter


def where(event: Event, node_name: str) -> str:
    container = event.process.extra.get("container")
    if container and container.get("name"):
        return container["name"]
    return node_name


def _head(emoji: str, word: str, event: Event, node_name: str) -> str:
    proc = event.process
    text = f"{emoji} {word:<7} {where(event, node_name)} {proc.binary}"
    return f"{text} {proc.arguments}" if proc.arguments else text


def _exec(event: Event, node_name: str) -> str:
    return _head("🚀", "process", event, node_name)


def _exit(event: Event, node_name: str) -> str:
    outcome = event.fields.get("signal") or event.fields.get("status", 0)
    return f"{_head('💥', 'exit', event, node_name)} {outcome}"


register(PROCESS_EXEC, _exec)
register(PROCESS_EXIT, _exit)


def compact(event: Event, node_name: str) -> str:
    formatter = _FORMATTERS.get(event.kind)
    if formatter is None:
        return f"❓ {event.kind} {where(event, node_name)} {event.process.binary}"
    return formatter(event, node_name)
