"""Policy hook events: process_kprobe, process_tracepoint (also of raw
tracepoints), process_lsm, process_uprobe, process_usdt, in Tetragon's JSON
shape (protojson of its protobuf schema).

Arguments are rendered by the type the policy gave them, as Tetragon's
KprobeArgument: {"int_arg": 3}, {"size_arg": "4096"} (64-bit integers are
JSON strings in protojson), {"string_arg": ...}, {"file_arg": {"path": ...}},
{"sock_arg": {...}}, {"bytes_arg": base64}, with "label" when set; kernel
structs (cred, bpf_map, module...) as tetrad/events/kernelargs.py shows
them. A value the kernel could not read from user memory is Tetragon's
error argument, {"error_arg": {"Message": "unreadable user memory"}}, never
a guess; so is a value whose struct walk met a NULL or unreadable pointer
(Tetragon's "Bad address encountered during resolve dereference at depth
N"). Zero numbers and empty strings inside argument messages, and an empty
`args` list, are left out, as protojson leaves them out.

Actions: `action` is what the selector did; in `policy-mode: monitor` it is
what the policy would have done (KPROBE_ACTION_SIGKILL...), as in Tetragon,
and the policy's counters say it was monitored, not enforced. A kprobe with
`return: true` also has `return` and `return_action` (the action taken
when the call returned: matchReturnActions, or Post); a uprobe's return
value is its last argument, as Tetragon merges it.
Compact lines are made from the JSON (tetrad/events/compact.py).
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import ipaddress
import os
from typing import Callable

from tetrad import netnames
from tetrad.decode.generic import PolicyRecord, Slot
from tetrad.events import kernelargs
from tetrad.events.model import Event
from tetrad.abi import generic as enc
from tetrad.bpf import unistd
from tetrad.bpf.unistd import NATIVE_ABI
from tetrad.policy.compile import ANY_SYSCALL, INT_SIZES, CompiledHook
from tetrad.policy.schema import USER_ACTIONS, Action, ArgSpec
from tetrad.useractions import UserAction

KIND_EVENT = {"syscall": "process_kprobe", "kprobe": "process_kprobe",
              "tracepoint": "process_tracepoint", "rawtp": "process_tracepoint", "lsm": "process_lsm",
              "uprobe": "process_uprobe", "usdt": "process_usdt"}
POST = "KPROBE_ACTION_POST"
ACTION_NAMES = {enc.ACTIONS["Post"]: POST, enc.ACTIONS["NoPost"]: "KPROBE_ACTION_NOPOST",
                enc.ACTIONS["Sigkill"]: "KPROBE_ACTION_SIGKILL", enc.ACTIONS["Signal"]: "KPROBE_ACTION_SIGNAL",
                enc.ACTIONS["Override"]: "KPROBE_ACTION_OVERRIDE",
                enc.ACTIONS["TrackSock"]: "KPROBE_ACTION_TRACKSOCK",
                enc.ACTIONS["UntrackSock"]: "KPROBE_ACTION_UNTRACKSOCK",
                enc.ACTIONS["GetUrl"]: "KPROBE_ACTION_GETURL",
                enc.ACTIONS["DnsLookup"]: "KPROBE_ACTION_DNSLOOKUP",
                enc.ACTIONS["NotifyEnforcer"]: "KPROBE_ACTION_NOTIFYENFORCER"}
FAMILIES, SOCK_TYPES = netnames.FAMILIES, netnames.SOCK_TYPES
PROTOCOLS, TCP_STATES = netnames.PROTOCOLS, netnames.TCP_STATES
AF_INET, AF_INET6 = 2, 10

# sock_arg.cookie: Tetragon's is the struct sock's kernel address, which
# would tell whoever reads the events where the kernel's heap is (KASLR).
# tetrad's is that address hashed with a key the daemon draws at start: the
# same sock has the same cookie in every event while the daemon runs, so
# events of one socket still go together, and nothing of the address shows.
_COOKIE_KEY = os.urandom(16)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _addr(family: int, raw: bytes) -> str:
    """An IPv4 or IPv6 address; "" for other families (no address to show)."""
    if family == AF_INET6:
        return str(ipaddress.IPv6Address(raw[:16]))
    if family == AF_INET:
        return str(ipaddress.IPv4Address(raw[:4]))
    return ""


def sock_cookie(address: int) -> int:
    """sock_arg.cookie of the sock at `address` (0: none)."""
    if not address:
        return 0
    digest = hashlib.blake2b(address.to_bytes(8, "little"), digest_size=8, key=_COOKIE_KEY).digest()
    return int.from_bytes(digest, "little") or 1


def _sockinfo(slot: Slot) -> enc.SockInfo:
    size = ctypes.sizeof(enc.SockInfo)
    return enc.SockInfo.from_buffer_copy(slot.data[:size].ljust(size, b"\0"))


Render = Callable[[Slot], dict]
_U64, _U32 = 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFF


def _s32(value: int) -> int:
    """An int32 field's value: the low 32 bits, signed."""
    value &= _U32
    return value - (1 << 32) if value & 0x80000000 else value


def _s64(value: int) -> int:
    value &= _U64
    return value - (1 << 64) if value & (1 << 63) else value


def _int_renderer(size: int, signed: bool) -> Render:
    """By width and sign, as Tetragon shows a tracepoint field of that C type."""
    if size == 8 and not signed:
        return lambda slot: {"size_arg": str(slot.ival & _U64)}
    if size == 8:
        return lambda slot: {"long_arg": str(_s64(slot.ival))}
    if signed:
        return lambda slot: {"int_arg": _s32(slot.ival)}
    return lambda slot: {"uint_arg": slot.ival & _U32}


def _bytes_arg(slot: Slot) -> dict:
    data = base64.b64encode(slot.data).decode()
    if slot.flags & enc.SLOT_TRUNC:
        return {"truncated_bytes_arg": {"bytes_arg": data, "orig_size": str(slot.ival & _U64)}}
    return {"bytes_arg": data}


_name = netnames.name


def _present(fields: dict) -> dict:
    """A message's fields without the zero values protojson leaves out."""
    return {k: v for k, v in fields.items() if v}


def _sock_arg(slot: Slot) -> dict:
    """Tetragon's KprobeSock: every name is written, a number without one
    as its text (a sock of no type: "0"), as Tetragon does."""
    si = _sockinfo(slot)
    cookie = sock_cookie(si.cookie)
    return {"sock_arg": _present({"family": _name(FAMILIES, si.family),
                                  "type": _name(SOCK_TYPES, si.type),
                                  "protocol": _name(PROTOCOLS, si.protocol),
                                  "mark": si.mark, "priority": si.priority,
                                  "saddr": _addr(si.family, bytes(si.saddr)),
                                  "daddr": _addr(si.family, bytes(si.daddr)),
                                  "sport": si.sport, "dport": si.dport,
                                  "cookie": str(cookie) if cookie else "",
                                  "state": _name(TCP_STATES, si.state)})}


def _skb_arg(slot: Slot) -> dict:
    """Tetragon's KprobeSkb: the buffer's fields and its IP/TCP/UDP headers'."""
    si = _sockinfo(slot)
    return {"skb_arg": _present({"hash": si.hash, "len": si.len, "priority": si.priority,
                                 "mark": si.mark,
                                 "saddr": _addr(si.family, bytes(si.saddr)),
                                 "daddr": _addr(si.family, bytes(si.daddr)),
                                 "sport": si.sport, "dport": si.dport, "proto": si.protocol,
                                 "protocol": _name(PROTOCOLS, si.protocol),
                                 "family": _name(FAMILIES, si.family)})}


def _sockaddr_arg(slot: Slot) -> dict:
    si = _sockinfo(slot)
    return {"sockaddr_arg": _present({"family": _name(FAMILIES, si.family),
                                      "addr": _addr(si.family, bytes(si.daddr)), "port": si.dport})}


def _sockaddr_un_arg(slot: Slot) -> dict:
    """Tetragon's KprobeSockaddrUn: an abstract name with a leading '@'."""
    path = _text(slot.data)
    if slot.flags & enc.SLOT_ABSTRACT:
        path = "@" + path
    return {"sockaddrun_arg": _present({"family": _name(FAMILIES, slot.ival & 0xFFFF), "path": path})}


def _net_dev_arg(slot: Slot) -> dict:
    return {"net_dev_arg": _present({"name": _text(slot.data)})}


def _path_renderer(key: str) -> Render:
    return lambda slot: {key: _present({"path": _text(slot.data)})}


def _renderer(spec: ArgSpec, width: tuple[int, bool] | None = None) -> Render:
    """The function that renders a slot of this argument, chosen once per
    hook rather than by a chain of type tests per argument per event. An
    `auto` integer is rendered by the `width` (bytes, signed) the layout
    gave it: a tracepoint field's own."""
    t = spec.type
    if t == "syscall64":
        # Tetragon's SyscallId. tetrad does not tell a 32-bit caller's
        # (i386-numbered) calls apart: every id is shown as the native ABI's.
        render = lambda slot: {"syscall_id": _present(                             # noqa: E731
            {"id": slot.ival & _U32, "abi": NATIVE_ABI})}
    elif t == "auto" and width is not None:
        render = _int_renderer(*width)
    elif t in INT_SIZES:
        render = _int_renderer(*INT_SIZES[t])
    elif t in kernelargs.CAPS:
        of_value = kernelargs.CAPS[t]
        render = lambda slot: of_value(slot.ival)                                  # noqa: E731
    elif t in kernelargs.STRUCTS:
        of_data = kernelargs.STRUCTS[t]
        render = lambda slot: of_data(slot.data)                                   # noqa: E731
    elif t in ("string", "filename", "data_loc"):
        render = lambda slot: {"string_arg": _text(slot.data)}                     # noqa: E731
    elif t in ("char_buf", "char_iovec", "iov_iter"):
        render = _bytes_arg
    elif t in ("fd", "file", "kiocb"):
        render = _path_renderer("file_arg")
    elif t in ("path", "dentry"):
        render = _path_renderer("path_arg")
    elif t == "linux_binprm":
        render = _path_renderer("linux_binprm_arg")
    elif t in ("sock", "socket"):
        render = _sock_arg
    elif t == "skb":
        render = _skb_arg
    elif t == "sockaddr":
        render = _sockaddr_arg
    elif t == "sockaddr_un":
        render = _sockaddr_un_arg
    elif t == "net_device":
        render = _net_dev_arg
    else:
        render = lambda slot: {"int_arg": _s32(slot.ival)}                         # noqa: E731
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

    __slots__ = ("kind", "head", "args", "ret", "ret_slot", "ret_actions", "tail", "tags",
                 "policy_name", "user_actions", "per_syscall", "loader")

    def __init__(self, ch: CompiledHook):
        hook = ch.hook
        self.kind = KIND_EVENT[ch.target.kind]
        # spec.loader's mmap hook (tetrad.policy.schema.LOADER_HOOK): the
        # mapped file's path (its second slot) is all of the event.
        self.loader = hook.loader
        if hook.loader:
            self.kind = "process_loader"
        if self.kind == "process_tracepoint":
            subsys, event = hook.call.split("/", 1)
            self.head = {"subsys": subsys, "event": event}
        elif self.kind == "process_uprobe":
            # Tetragon's offset: the file offset of a uprobe given by offset
            # or address (0, so left out, for a symbol).
            self.head = _present({"path": hook.binary, "symbol": hook.symbol,
                                  "offset": str(ch.target.offset) if not hook.symbol else "",
                                  "ref_ctr_offset": str(hook.ref_ctr_offset) if hook.ref_ctr_offset else ""})
        elif self.kind == "process_usdt":
            self.head = {"path": hook.binary, "provider": hook.provider, "name": hook.symbol}
        elif self.kind == "process_lsm":
            self.head = {"function_name": hook.call}        # the LSM hook's name: file_open
        else:
            self.head = {"function_name": ch.target.function_name}
        # A hook on every syscall: each event names its syscall, by number.
        self.per_syscall = ch.target.function_name[:-1] if ch.target.name == ANY_SYSCALL else ""
        # (renderer, label) per argument, in slot order.
        self.args = tuple((_renderer(spec, (slot.size, slot.signed)), spec.label)
                          for spec, slot in zip(hook.args, ch.reads))
        self.ret = _renderer(hook.return_arg) if hook.return_arg is not None else None
        # A struct return value (a sock) is read by the kernel into the
        # record slot after the arguments; others are the record's retval.
        self.ret_slot = len(self.args) if ch.ret_read is not None else None
        if ch.reads and ch.reads[-1].retval:
            # A returned string is read into a slot of its own, after the
            # arguments: rendered as the last of them.
            self.args += ((self.ret, hook.return_arg.label),)
            self.ret = None
        # Selectors whose matchReturnActions ran instead of their matchActions.
        self.ret_actions = frozenset(i for i, sel in enumerate(hook.selectors) if sel.return_actions)
        # GetUrl/DnsLookup per selector: (its matchActions', its matchReturnActions').
        self.user_actions = {i: (_user_actions(sel.actions), _user_actions(sel.return_actions))
                             for i, sel in enumerate(hook.selectors)
                             if any(a.action in USER_ACTIONS for a in sel.actions + sel.return_actions)}
        self.policy_name = ch.policy_name
        self.tail = {"policy_name": ch.policy_name}
        if hook.message:
            self.tail["message"] = hook.message
        self.tags = tuple(hook.tags)


def _user_actions(actions: tuple[Action, ...]) -> tuple[UserAction, ...]:
    return tuple(UserAction(a.action, a.arg_url or a.arg_fqdn) for a in actions
                 if a.action in USER_ACTIONS)


def user_actions(rec: PolicyRecord, plan: HookPlan) -> tuple[UserAction, ...]:
    """The GetUrl/DnsLookup actions of the selector that made a record:
    the daemon does them when the event comes (tetrad/useractions.py)."""
    todo = plan.user_actions.get(rec.selector)
    if not todo:
        return ()
    at_return = rec.flags & enc.MSG_RETURN and rec.selector in plan.ret_actions
    return todo[1] if at_return else todo[0]


UNREADABLE = "unreadable user memory"
BAD_ADDRESS = "Bad address encountered during resolve dereference at depth {}"
_NO_VALUE = enc.SLOT_UNREADABLE | enc.SLOT_BADPTR


def _unreadable(slot: Slot, label: str) -> dict:
    """An argument the kernel could not read from user memory (at entry,
    nor at syscall exit), or whose struct walk met a NULL or unreadable
    pointer: Tetragon's error argument, not a value."""
    message = (UNREADABLE if slot.flags & enc.SLOT_UNREADABLE
               else BAD_ADDRESS.format(slot.flags >> enc.SLOT_DEPTH_SHIFT & 0xFF))
    arg: dict = {"error_arg": {"Message": message}}
    if label:
        arg["label"] = label
    return arg


def policy_event(rec: PolicyRecord, plan: HookPlan, time_ns: int, process, parent,
                 stacks: dict | None = None) -> Event:
    """Called by the reader thread once per policy record. `stacks`: the
    kernel_stack_trace/user_stack_trace frames the record's Post asked for
    (an empty list when the kernel kept none: left out, as protojson does)."""
    if plan.loader:
        # Tetragon's buildid comes from perf's record; tetrad has none to give.
        return Event(plan.kind, time_ns, process, parent,
                     _present({"path": _text(rec.slots[1].data) if len(rec.slots) > 1 else ""}),
                     policy_name=plan.policy_name)
    fields = plan.head.copy()
    if plan.per_syscall:
        fields["function_name"] = plan.per_syscall + unistd.names().get(rec.nr, str(rec.nr))
    args = [_unreadable(slot, label) if slot.flags & _NO_VALUE else render(slot)
            for (render, label), slot in zip(plan.args, rec.slots)]
    if args:
        fields["args"] = args
    action = ACTION_NAMES.get(rec.action, "")
    if plan.ret is not None and rec.flags & enc.MSG_RETURN and plan.kind == "process_uprobe":
        # Tetragon's uprobe events have no `return`: the value ends the args.
        ret = plan.ret(Slot(rec.retval, b"", 0))
        fields["args"] = args + [ret]
        if action:
            fields["action"] = action
    elif plan.ret is not None and rec.flags & enc.MSG_RETURN:
        if plan.ret_slot is None:
            fields["return"] = plan.ret(Slot(rec.retval, b"", 0))
        elif plan.ret_slot < len(rec.slots):
            fields["return"] = plan.ret(rec.slots[plan.ret_slot])
        if rec.selector in plan.ret_actions:
            action, return_action = POST, action
        else:
            return_action = POST
        if action:
            fields["action"] = action
        if return_action:
            fields["return_action"] = return_action
    elif action:
        fields["action"] = action
    if stacks:
        fields.update((k, v) for k, v in stacks.items() if v)
    fields.update(plan.tail)
    if plan.tags:
        fields["tags"] = list(plan.tags)
    return Event(plan.kind, time_ns, process, parent, fields, policy_name=plan.policy_name,
                 monitored=bool(rec.flags & enc.MSG_MONITOR))
