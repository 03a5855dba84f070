"""One-line event text, as Tetragon's `tetra getevents -o compact` prints it.

Made from an event's JSON form: the dict of `Event.to_dict()` in the daemon
(terminal sink, journald MESSAGE) and a parsed export line in `tetra`, which
reads tetrad's files and Tetragon's alike. One function for both, so `tetra
getevents -o compact < tetragon.log` prints exactly the lines the daemon
printed. The formats are those of Tetragon's encoder (pkg/encoder), field
for field:

  🚀 process <where> <binary> <arguments>
  💥 exit    <where> <binary> <arguments> <signal or status>
  📬️ openat  <where> <binary> <path>          (per-call lines: see _KPROBE_LINES)
  ❓ syscall <where> <binary> <function>     (any other kprobe or syscall)

<where> is the node name for host processes; `namespace/pod` for a process in
a Kubernetes pod (Tetragon's form); outside Kubernetes the container's name
(or its id's first 12 characters while the name is not known).

Unlike Tetragon's encoder, every string taken from an event, including the
pod, the signal and the function name, goes through maybe_quote() (a no-op
for ordinary values): a file handed to `tetra` is input too. Raw syscall
lines name the syscall but do not list its arguments (Tetragon's table of
syscall signatures is not in tetrad).
"""

from __future__ import annotations

import base64
import binascii
from typing import Callable

from tetrad.bpf import unistd
from tetrad.bpf.unistd import NATIVE_ABI
from tetrad.events.quote import maybe_quote as q
from tetrad.timefmt import rfc3339_nano

# Top-level keys of Tetragon's GetEventsResponse that are not the event.
ENVELOPE = ("node_name", "time", "cluster_name", "node_labels", "aggregation_info")
# What Tetragon's function names start with on each architecture.
ARCH_PREFIXES = ("__x64_", "__arm64_", "__ia32_")
CAPS_PAD = 120

Formatter = Callable[[dict, str], str]


def event_kind(record: dict) -> str:
    """The event's key in a JSON record ("process_exec", ...), or ""."""
    return next((k for k in record if k not in ENVELOPE), "")


def where(process: dict, node_name: str) -> str:
    pod = process.get("pod")
    if pod:
        if pod.get("namespace") or pod.get("name"):
            return f"{q(pod.get('namespace', ''))}/{q(pod.get('name', ''))}"
        container = pod.get("container") or {}
        if container.get("name"):
            return q(container["name"])
        if container.get("id"):
            return q(container["id"][:12])
    return q(node_name)


def _info(body: dict, node_name: str) -> tuple[str, str]:
    """Where and which binary, and the capabilities trailer (Tetragon marks
    processes with CAP_SYS_ADMIN effective)."""
    process = body["process"]
    effective = (process.get("cap") or {}).get("effective") or ()
    caps = "🛑 CAP_SYS_ADMIN" if "CAP_SYS_ADMIN" in effective else ""
    return f"{where(process, node_name)} {q(process.get('binary', ''))}", caps


def _with_caps(text: str, caps: str) -> str:
    if not caps:
        return text
    return f"{text} {caps:>{max(0, CAPS_PAD - len(text.encode()))}}"


def _head(emoji: str, word: str) -> str:
    return f"{emoji} {word:<7}"


# ---- arguments, read as Tetragon's getters read them (a missing one is empty) --

def _arg(args: list, i: int) -> dict:
    return args[i] if len(args) > i and isinstance(args[i], dict) else {}


def _message(arg: dict, key: str) -> dict:
    value = arg.get(key)
    return value if isinstance(value, dict) else {}


def _int(value) -> int:
    """A number from JSON: protojson writes 64-bit ones as strings."""
    return int(value) if value not in (None, "") else 0


def _path(arg: dict, key: str = "file_arg") -> str:
    return q(_message(arg, key).get("path", ""))


def _string(arg: dict) -> str:
    value = arg.get("string_arg", "")
    return q(value if isinstance(value, str) else "")


def _sock(arg: dict) -> str:
    sock = _message(arg, "sock_arg")
    return (f"tcp {q(sock.get('saddr', ''))}:{_int(sock.get('sport'))} -> "
            f"{q(sock.get('daddr', ''))}:{_int(sock.get('dport'))}")


# ---- process events ----------------------------------------------------------

def _exec(body: dict, node: str) -> str:
    info, caps = _info(body, node)
    return _with_caps(f"{_head('🚀', 'process')} {info} {q(body['process'].get('arguments', ''))}", caps)


def _exit(body: dict, node: str) -> str:
    info, caps = _info(body, node)
    status = q(body["signal"]) if body.get("signal") else str(_int(body.get("status")))
    args = q(body["process"].get("arguments", ""))
    return _with_caps(f"{_head('💥', 'exit')} {info} {args} {status}", caps)


def _loader(body: dict, node: str) -> str:
    info, caps = _info(body, node)
    try:
        buildid = base64.b64decode(body.get("buildid", ""), validate=True).hex()
    except (binascii.Error, ValueError):
        buildid = ""
    buildid = f"{buildid} " if buildid else ""
    return _with_caps(f"{_head('🧬', 'loader')} {info} {buildid}{q(body.get('path', ''))}", caps)


def _throttle(body: dict, node: str) -> str:
    kind = {"THROTTLE_START": "START", "THROTTLE_STOP": "STOP "}.get(body.get("type"), "")
    return f"{_head('🧬', 'throttle')} {kind} {q(body.get('cgroup', ''))}"


# ---- kprobes: Tetragon's per-call lines ---------------------------------------

NAMESPACES = {0: "any", 0x2000000: "cgroup", 0x8000000: "ipc", 0x40000000: "net", 0x20000: "mnt",
              0x20000000: "pid", 0x80: "time", 0x10000000: "user", 0x4000000: "uts"}


def _rw(emoji: str, word: str) -> Callable[[list], tuple[str, str]]:
    def line(args: list) -> tuple[str, str]:
        file = _path(args[0]) if args and "file_arg" in _arg(args, 0) else ""
        size = f"{_int(_arg(args, 2).get('size_arg'))} bytes" if len(args) > 2 else ""
        return _head(emoji, word), f"{file} {size}"
    return line


def _file_at(i: int, emoji: str, word: str, key: str = "file_arg"):
    return lambda args: (_head(emoji, word), _path(_arg(args, i), key))


def _string_at(i: int, emoji: str, word: str):
    return lambda args: (_head(emoji, word), _string(_arg(args, i)))


def _two_strings(emoji: str, word: str):
    return lambda args: (_head(emoji, word), f"{_string(_arg(args, 0))} {_string(_arg(args, 1))}")


def _setuid(args: list) -> tuple[str, str]:
    return _head("🔑", "setuid"), str(_int(_arg(args, 0).get("int_arg"))) if args else ""


def _setns(args: list) -> tuple[str, str]:
    kind = NAMESPACES.get(_int(_arg(args, 1).get("int_arg")), "") if len(args) > 1 else ""
    return _head("🔧", "setns"), kind


def _sock_line(emoji: str, word: str):
    return lambda args: (_head(emoji, word), _sock(_arg(args, 0)) if args else "")


def _sendmsg(args: list) -> tuple[str, str]:
    sock = _sock(_arg(args, 0)) if args else ""
    return _head("📤", "sendmsg"), f"{sock} bytes {_int(_arg(args, 1).get('int_arg'))}"


def _first(emoji: str, word: str, key: str, text: Callable[[dict], str]):
    """A line showing the first argument's `key` message (BPF loads)."""
    def line(args: list) -> tuple[str, str]:
        return _head(emoji, word), text(_message(_arg(args, 0), key)) if args else ""
    return line


def _bpf_attr(a: dict) -> str:
    return f"{q(a.get('ProgType', ''))} {q(a.get('ProgName', ''))} instruction count {_int(a.get('InsnCnt'))}"


def _perf_event(a: dict) -> str:
    return f"{q(a.get('Type', ''))} {q(a.get('KprobeFunc', ''))}"


def _bpf_map(a: dict) -> str:
    return (f"{q(a.get('MapType', ''))} {q(a.get('MapName', ''))} key size {_int(a.get('KeySize'))} "
            f"value size {_int(a.get('ValueSize'))} max entries {_int(a.get('MaxEntries'))}")


def _file_permission(args: list) -> tuple[str, str]:
    if len(args) < 2:
        return _head("❓", "security_file_permission"), ""
    mask = _int(_arg(args, 1).get("int_arg"))
    head = {0x02: _head("📝", "write"), 0x04: _head("📚", "read")}.get(
        mask, _head("❓", "security_file_permission"))
    return head, _path(_arg(args, 0))


def _mmap(args: list) -> tuple[str, str]:
    if len(args) < 2:
        return _head("❓", "security_mmap_file"), ""
    prot = _int(_arg(args, 1).get("uint_arg"))
    tag = "mmap-" + "".join(c for bit, c in ((1, "r"), (2, "w"), (4, "x")) if prot & bit)
    return _head("📝", tag), _path(_arg(args, 0))


def _truncate(key: str, function: str):
    def line(args: list) -> tuple[str, str]:
        if not args:
            return _head("❓", function), ""
        return _head("📝", "truncate"), _path(_arg(args, 0), key)
    return line


# Function (without the arch prefix) -> (head, detail) from the arguments.
_KPROBE_LINES: dict[str, Callable[[list], tuple[str, str]]] = {
    "sys_write": _rw("📝", "write"),
    "sys_read": _rw("📚", "read"),
    "fd_install": _file_at(1, "📬", "open"),
    "sys_openat": _string_at(1, "📬\ufe0f", "openat"),
    "sys_open": _string_at(1, "📬\ufe0f", "open"),
    "sys_close": _file_at(0, "📪", "close"),
    "sys_mount": _two_strings("💾", "mount"),
    "sys_setuid": _setuid,
    "sys_clock_settime": lambda args: (_head("⏰", "clock_settime"), None),
    "sys_pivot_root": _two_strings("💾", "pivot_root"),
    "proc_exec_connector": lambda args: (_head("🔧", "proc_exec_connector"), None),
    "sys_setns": _setns,
    "tcp_connect": _sock_line("🔌", "connect"),
    "tcp_close": _sock_line("🧹", "close"),
    "tcp_sendmsg": _sendmsg,
    "bpf_check": _first("🐝", "bpf_load", "bpf_attr_arg", _bpf_attr),
    "security_perf_event_alloc": _first("🐝", "perf_event_alloc", "perf_event_arg", _perf_event),
    "security_bpf_map_alloc": _first("🗺", "bpf_map_create", "bpf_map_arg", _bpf_map),
    "security_bpf_map_create": _first("🗺", "bpf_map_create", "bpf_map_arg", _bpf_map),
    "security_file_permission": _file_permission,
    "security_mmap_file": _mmap,
    "security_path_truncate": _truncate("path_arg", "security_path_truncate"),
    "security_file_truncate": _truncate("file_arg", "security_file_truncate"),
}


def _without_arch(function: str) -> str:
    for prefix in ARCH_PREFIXES:
        if function.startswith(prefix):
            return function[len(prefix):]
    return function


def _kprobe(body: dict, node: str) -> str:
    info, caps = _info(body, node)
    function = body.get("function_name", "")
    make = _KPROBE_LINES.get(_without_arch(function))
    if make is None:
        return _with_caps(f"{_head('❓', 'syscall')} {info} {q(function)}", caps)
    args = body.get("args") or []
    head, detail = make(args if isinstance(args, list) else [])
    return _with_caps(f"{head} {info}" if detail is None else f"{head} {info} {detail}", caps)


# ---- the other hook kinds ----------------------------------------------------------

def syscall_name(args: list) -> str:
    """What Tetragon's raw syscall line names: the first argument's syscall
    (a syscall_id, or a long_arg of the native ABI), `abi/name` for another
    ABI, "unknown" when not known here (tetrad knows this machine's native
    syscall table)."""
    first = _arg(args, 0)
    abi = NATIVE_ABI
    if "syscall_id" in first:
        ident = _message(first, "syscall_id")
        number, abi = _int(ident.get("id")), ident.get("abi") or NATIVE_ABI
    elif "long_arg" in first:
        number = _int(first["long_arg"])
    else:
        return "unknown"
    if abi != NATIVE_ABI:
        return "unknown"
    return q(unistd.names().get(number, "unknown"))


def _tracepoint(body: dict, node: str) -> str:
    info, caps = _info(body, node)
    subsys, event = body.get("subsys", ""), body.get("event", "")
    if (subsys, event) == ("raw_syscalls", "sys_enter"):
        args = body.get("args") or []
        return _with_caps(f"{_head('☎ ', 'syscall')} {info} {syscall_name(args)}", caps)
    return _with_caps(f"{_head('⁉️', 'tracepoint')} {info} {q(subsys)} {q(event)}", caps)


def _uprobe(body: dict, node: str) -> str:
    info, caps = _info(body, node)
    return _with_caps(f"{_head('🕵️', 'uprobe')} {info} {q(body.get('path', ''))} "
                      f"{q(body.get('symbol', ''))}", caps)


def _usdt(body: dict, node: str) -> str:
    info, caps = _info(body, node)
    return _with_caps(f"{_head('🕵️', 'usdt')} {info} {q(body.get('path', ''))} "
                      f"{q(body.get('provider', ''))} {q(body.get('name', ''))}", caps)


def _lsm(body: dict, node: str) -> str:
    info, caps = _info(body, node)
    return _with_caps(f"{_head('🔒', 'LSM')} {info} {q(body.get('function_name', ''))}", caps)


FORMATTERS: dict[str, Formatter] = {
    "process_exec": _exec, "process_exit": _exit, "process_loader": _loader,
    "process_throttle": _throttle, "process_kprobe": _kprobe, "process_tracepoint": _tracepoint,
    "process_uprobe": _uprobe, "process_usdt": _usdt, "process_lsm": _lsm,
}


def line(record: dict, timestamps: bool = False) -> str | None:
    """The compact line of a JSON event, or None for records that are not
    events Tetragon prints (rate_limit_info). With `timestamps`, the
    event's time first, as `tetra --timestamps` prints it. Raises KeyError,
    TypeError, ValueError or AttributeError on a malformed event."""
    kind = event_kind(record)
    body = record.get(kind)
    format_ = FORMATTERS.get(kind)
    if format_ is None:
        if not isinstance(body, dict) or not isinstance(body.get("process"), dict):
            return None
        info, _ = _info(body, record.get("node_name", ""))
        text = f"❓ {q(kind)} {info}"
    else:
        text = format_(body, record.get("node_name", ""))
    if timestamps:
        text = f"{_timestamp(record.get('time'))} {text}"
    return text


def _timestamp(text) -> str:
    """The event's time with nine fractional digits (Go's time format in
    tetra); the epoch when missing, as Go's zero Timestamp prints."""
    if not text:
        return rfc3339_nano(0)
    date, _, rest = text.partition(".")
    if not rest:
        return f"{date.removesuffix('Z')}.000000000Z"
    fraction = rest.removesuffix("Z")
    return f"{date}.{fraction:0<9}Z"


def event_line(event, node_name: str) -> str:
    """The compact line of a tetrad Event (sinks)."""
    return line(event.to_dict(node_name))
