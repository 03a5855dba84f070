"""Policy hook events: process_kprobe, process_tracepoint, process_lsm,
process_uprobe, in Tetragon's JSON shape, and their compact lines.

Arguments are rendered by the type the policy gave them, as Tetragon's
KprobeArgument: {"int_arg": 3}, {"string_arg": ...}, {"file_arg": {"path":
...}}, {"sock_arg": {...}}, {"bytes_arg": base64}, with "label" when set, and
"error": "unreadable" when the kernel could not read the value from user memory.
"""

from __future__ import annotations

import base64
import ctypes
import ipaddress
from typing import Callable

from tetrad.decode.generic import PolicyRecord, Slot
from tetrad.events import compact
from tetrad.events.model import Event
from tetrad.abi import generic as enc
from tetrad.policy.compile import INT_SIZES, CompiledHook
from tetrad.policy.schema import ArgSpec

KIND_EVENT = {"syscall": "process_kprobe", "kprobe": "process_kprobe",
              "tracepoint": "process_tracepoint", "lsm": "process_lsm", "uprobe": "process_uprobe"}
ACTION_NAMES = {enc.ACTIONS["Post"]: "KPROBE_ACTION_POST", enc.ACTIONS["NoPost"]: "KPROBE_ACTION_NOPOST",
                enc.ACTIONS["Sigkill"]: "KPROBE_ACTION_SIGKILL", enc.ACTIONS["Signal"]: "KPROBE_ACTION_SIGNAL",
                enc.ACTIONS["Override"]: "KPROBE_ACTION_OVERRIDE"}
FAMILIES = {1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6", 16: "AF_NETLINK", 17: "AF_PACKET"}
SOCK_TYPES = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 5: "SOCK_SEQPACKET"}
PROTOCOLS = {1: "IPPROTO_ICMP", 6: "IPPROTO_TCP", 17: "IPPROTO_UDP", 58: "IPPROTO_ICMPV6",
             132: "IPPROTO_SCTP", 255: "IPPROTO_RAW"}
TCP_STATES = {1: "TCP_ESTABLISHED", 2: "TCP_SYN_SENT", 3: "TCP_SYN_RECV", 4: "TCP_FIN_WAIT1",
              5: "TCP_FIN_WAIT2", 6: "TCP_TIME_WAIT", 7: "TCP_CLOSE", 8: "TCP_CLOSE_WAIT",
              9: "TCP_LAST_ACK", 10: "TCP_LISTEN", 11: "TCP_CLOSING", 12: "TCP_NEW_SYN_RECV"}


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _addr(family: int, raw: bytes) -> str:
    if family == 10:
        return str(ipaddress.IPv6Address(raw[:16]))
    return str(ipaddress.IPv4Address(raw[:4]))


def _sockinfo(slot: Slot) -> enc.SockInfo:
    size = ctypes.sizeof(enc.SockInfo)
    return enc.SockInfo.from_buffer_copy(slot.data[:size].ljust(size, b"\0"))


Render = Callable[[Slot], dict]
_U64, _U32 = 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFF


def _int_renderer(t: str) -> Render:
    size, signed = INT_SIZES[t]
    if t == "size_t" or (size == 8 and not signed):
        return lambda slot: {"size_arg": slot.ival & _U64}
    if size == 8:
        return lambda slot: {"long_arg": slot.ival}
    if signed:
        return lambda slot: {"int_arg": slot.ival}
    return lambda slot: {"uint_arg": slot.ival & _U32}


def _bytes_arg(slot: Slot) -> dict:
    data = base64.b64encode(slot.data).decode()
    if slot.flags & enc.SLOT_TRUNC:
        return {"truncated_bytes_arg": {"bytes_arg": data, "orig_size": slot.ival}}
    return {"bytes_arg": data}


def _sock_arg(slot: Slot) -> dict:
    si = _sockinfo(slot)
    return {"sock_arg": {"family": FAMILIES.get(si.family, str(si.family)),
                         "type": SOCK_TYPES.get(si.type, str(si.type)),
                         "protocol": PROTOCOLS.get(si.protocol, str(si.protocol)),
                         "saddr": _addr(si.family, bytes(si.saddr)),
                         "daddr": _addr(si.family, bytes(si.daddr)),
                         "sport": si.sport, "dport": si.dport,
                         "state": TCP_STATES.get(si.state, str(si.state))}}


def _sockaddr_arg(slot: Slot) -> dict:
    si = _sockinfo(slot)
    return {"sockaddr_arg": {"family": FAMILIES.get(si.family, str(si.family)),
                             "addr": _addr(si.family, bytes(si.daddr)), "port": si.dport}}


def _renderer(spec: ArgSpec) -> Render:
    """The function that renders a slot of this argument, chosen once per
    hook rather than by a chain of type tests per argument per event."""
    t = spec.type
    if t == "syscall64":
        # Tetragon's SyscallId. tetrad does not tell a 32-bit caller's
        # (i386-numbered) calls apart: every id is shown as x64's.
        render = lambda slot: {"syscall_id": {"id": slot.ival & _U32, "abi": "x64"}}  # noqa: E731
    elif t in INT_SIZES:
        render = _int_renderer(t)
    elif t in ("string", "filename", "data_loc"):
        render = lambda slot: {"string_arg": _text(slot.data)}                     # noqa: E731
    elif t == "char_buf":
        render = _bytes_arg
    elif t in ("fd", "file"):
        render = lambda slot: {"file_arg": {"path": _text(slot.data)}}             # noqa: E731
    elif t == "path":
        render = lambda slot: {"path_arg": {"path": _text(slot.data)}}             # noqa: E731
    elif t == "linux_binprm":
        render = lambda slot: {"linux_binprm_arg": {"path": _text(slot.data)}}     # noqa: E731
    elif t == "sock":
        render = _sock_arg
    elif t == "sockaddr":
        render = _sockaddr_arg
    else:
        render = lambda slot: {"int_arg": slot.ival}                               # noqa: E731
    if not spec.label:
        return render
    label = spec.label

    def labelled(slot: Slot) -> dict:
        arg = render(slot)
        arg["label"] = label
        return arg
    return labelled


class HookPlan:
    """What every event of one hook shares, worked out once when the hook
    is loaded (tetrad/sensors/policies.py calls `HookPlan(ch)`): the event
    kind, the fields before `args`, a renderer per argument and the fields
    after `action`."""

    __slots__ = ("kind", "head", "args", "ret", "tail", "tags", "policy_name")

    def __init__(self, ch: CompiledHook):
        hook = ch.hook
        self.kind = KIND_EVENT[ch.target.kind]
        if self.kind == "process_tracepoint":
            subsys, event = hook.call.split("/", 1)
            self.head = {"subsys": subsys, "event": event}
        elif self.kind == "process_uprobe":
            self.head = {"path": hook.binary, "symbol": hook.symbol}
        else:
            self.head = {"function_name": ch.target.function_name}
        self.args = tuple(_renderer(spec) for spec in hook.args)
        self.ret = _renderer(hook.return_arg) if hook.return_arg is not None else None
        self.policy_name = ch.policy_name
        self.tail = {"policy_name": ch.policy_name}
        if hook.message:
            self.tail["message"] = hook.message
        self.tags = tuple(hook.tags)


UNREADABLE = "unreadable"


def _arg(render: Render, slot: Slot) -> dict:
    """An argument the kernel could not read from user memory (at entry,
    nor at syscall exit) says so: its value is empty, not what was passed."""
    arg = render(slot)
    if slot.flags & enc.SLOT_UNREADABLE:
        arg["error"] = UNREADABLE
    return arg


def policy_event(rec: PolicyRecord, plan: HookPlan, time_ns: int, process, parent) -> Event:
    """Called by the reader thread once per policy record."""
    fields = plan.head.copy()
    fields["args"] = [_arg(render, slot) for render, slot in zip(plan.args, rec.slots)]
    if plan.ret is not None and rec.flags & enc.MSG_RETURN:
        fields["return"] = plan.ret(Slot(rec.retval, b"", 0))
    if rec.flags & enc.MSG_MONITOR:
        # policy-mode monitor: what the policy would have done, not done.
        fields["action"] = "KPROBE_ACTION_POST"
        fields["monitor_action"] = ACTION_NAMES.get(rec.action, "")
    else:
        fields["action"] = ACTION_NAMES.get(rec.action, "KPROBE_ACTION_POST")
    fields.update(plan.tail)
    if plan.tags:
        fields["tags"] = list(plan.tags)
    return Event(plan.kind, time_ns, process, parent, fields, policy_name=plan.policy_name)


# ---- compact lines ---------------------------------------------------------------

_SYSCALL_WORDS = {
    "write": ("📝", "write"), "pwrite64": ("📝", "write"), "writev": ("📝", "write"),
    "read": ("📚", "read"), "pread64": ("📚", "read"), "readv": ("📚", "read"),
    "open": ("📬", "open"), "openat": ("📬", "open"), "openat2": ("📬", "open"),
    "creat": ("📬", "open"), "close": ("📪", "close"), "mount": ("💾", "mount"),
    "pivot_root": ("💾", "mount"), "setuid": ("🔑", "setuid"), "setresuid": ("🔑", "setuid"),
    "clock_settime": ("⏰", "clock"), "setns": ("🔧", "setns"), "connect": ("🔌", "connect"),
    "sendmsg": ("📤", "sendmsg"), "sendto": ("📤", "sendmsg"), "bpf": ("🐝", "bpf"),
}
_KPROBE_WORDS = {"tcp_connect": ("🔌", "connect"), "tcp_sendmsg": ("📤", "sendmsg"),
                 "tcp_close": ("🧹", "close"), "fd_install": ("📬", "open"),
                 "security_file_permission": ("📝", "file"), "do_dup2": ("📪", "dup")}


def _arg_text(arg: dict) -> str:
    """What a compact line shows of an argument: paths, strings, addresses;
    integers and buffers are left to the JSON."""
    (key, value), = ((k, v) for k, v in arg.items() if k not in ("label", "error"))
    if key in ("file_arg", "path_arg", "linux_binprm_arg"):
        return value["path"]
    if key == "sock_arg":
        proto = value["protocol"].removeprefix("IPPROTO_").lower()
        return f"{proto} {value['saddr']}:{value['sport']} -> {value['daddr']}:{value['dport']}"
    if key == "sockaddr_arg":
        return f"{value['addr']}:{value['port']}"
    if key == "string_arg":
        return value
    return ""


def _detail(fields: dict, with_size: bool = False) -> str:
    args = fields.get("args", [])
    text = " ".join(t for t in (_arg_text(a) for a in args) if t)
    sizes = [a["size_arg"] for a in args if "size_arg" in a]
    if with_size and sizes:
        text += f" {sizes[-1]} bytes"
    return text.strip()


def _line(emoji: str, word: str, event: Event, node_name: str, detail: str) -> str:
    proc = event.process
    text = f"{emoji} {word:<7} {compact.where(event, node_name)} {proc.binary}"
    if detail:
        text += f" {detail}"
    action = event.fields.get("action", "")
    if event.fields.get("monitor_action"):
        text += f" [monitor: {event.fields['monitor_action'].removeprefix('KPROBE_ACTION_')}]"
    elif action not in ("KPROBE_ACTION_POST", ""):
        text += f" [{action.removeprefix('KPROBE_ACTION_')}]"
    return text


def _kprobe(event: Event, node_name: str) -> str:
    fn = event.fields["function_name"]
    name = fn.split("sys_", 1)[1] if "sys_" in fn else fn
    emoji, word = _SYSCALL_WORDS.get(name) if "sys_" in fn and name in _SYSCALL_WORDS \
        else _KPROBE_WORDS.get(fn, ("❓", "syscall" if "sys_" in fn else "kprobe"))
    detail = _detail(event.fields, with_size=word in ("read", "write", "sendmsg"))
    if word in ("syscall", "kprobe"):
        detail = f"{fn} {detail}".strip()
    return _line(emoji, word, event, node_name, detail)


def _tracepoint(event: Event, node_name: str) -> str:
    f = event.fields
    if f["subsys"] == "raw_syscalls":
        return _line("☎", "syscall", event, node_name, _detail(f))
    return _line("⁉️", "tracepoint", event, node_name, f"{f['subsys']}/{f['event']} {_detail(f)}".strip())


def _lsm(event: Event, node_name: str) -> str:
    return _line("🔒", "LSM", event, node_name, f"{event.fields['function_name']} {_detail(event.fields)}".strip())


def _uprobe(event: Event, node_name: str) -> str:
    f = event.fields
    return _line("🕵️", "uprobe", event, node_name, f"{f['path']} {f['symbol']}")


compact.register("process_kprobe", _kprobe)
compact.register("process_tracepoint", _tracepoint)
compact.register("process_lsm", _lsm)
compact.register("process_uprobe", _uprobe)
