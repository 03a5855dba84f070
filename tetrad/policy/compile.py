"""Validated policies -> compiled hooks for the kernel. Pure: no kernel access.

Owns the arrow "parse/validate -> compile". Each hook becomes a
`CompiledHook`: where it attaches (`Target`), how the kernel reads each of
its arguments (`ArgRead`, one per argument in the hook's order; a record
carries them in that order), and what the program must do around the call
(return probe, a second read at syscall exit). The selectors stay as the
schema gave them: tetrad/policy/points.py turns the hooks at one attach
point into the kernel's tables, and `compile_policy` checks each hook fits
a point on its own, so `tetrad policy check` refuses what the daemon would.

- Syscall hooks run on `syscalls:sys_enter_*` tracepoints; their arguments
  are user-space values. kprobe and LSM arguments are kernel values.
- Syscall hooks with an argument in user memory get `retry`: the program
  also runs at sys_exit, to read again what was unreadable at entry. Not
  execve/execveat: after a successful exec the caller's memory is gone, so
  their arguments are decided at entry (unreadable: see bpf/generic_hook.c).
- InMap/NotInMap on an integer become Equal/NotEqual, a syscalls list's
  names this machine's numbers.
- What the running kernel and the probed binaries say comes in through
  `KernelFacts` (gathered by tetrad.policy.kernel), so this module stays
  pure: raw tracepoints' argument types (BTF), USDT probes' places and
  argument specs (a binary's notes), a uprobe address's file offset, the
  functions a generated_ftrace pattern matches. One policy hook may become
  several compiled hooks: one per place of a USDT probe, one per function
  of a generated_ftrace list. A USDT probe missing here, like a uprobe's
  symbol, is a target missing on this machine (tetrad.sensors.targets),
  not an invalid policy.
- A uprobe returning a string gets one more read after its arguments
  (`ArgRead.retval`): the kernel reads it at the return, and its tests are
  decided there.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from typing import Callable

from tetrad.abi import generic as enc
from tetrad.abi import state as proc_state
from tetrad.bpf import unistd
from tetrad.bpf.btf import ValueType
from tetrad.elf import UsdtArg, UsdtProbe
from tetrad.policy import limits, schema
from tetrad.policy.schema import ArgSpec, Hook, Policy, PolicyError
from tetrad.policy.points import USER_MEMORY, ArgRead, PointTables
from tetrad.policy.workloads import Workloads

log = logging.getLogger(__name__)

INT_SIZES = schema.INT_WIDTHS         # (bytes, signed) by argument type

# Argument types by where the value lives. Syscall and uprobe arguments are
# user-space values; kprobe and LSM arguments are kernel values.
_USER_TYPES = {"string": "ustr", "char_buf": "ubuf", "fd": "fd", "sockaddr": "usockaddr",
               "sockaddr_un": "usockaddr_un"}
_KERNEL_TYPES = {"string": "kstr", "fd": "fd", "file": "file", "path": "path", "sock": "sock",
                 "linux_binprm": "binprm", "socket": "socket", "skb": "skb", "sockaddr": "ksockaddr",
                 "sockaddr_un": "ksockaddr_un", "net_device": "netdev"}
# Types a tracepoint's pointer field can be given: the struct it points to.
_POINTED = {"sock", "socket", "skb", "sockaddr", "sockaddr_un", "net_device"}
# Syscalls that take a socket address and its length: (address index,
# length index). An abstract unix name is bounded by the length alone.
_SOCKADDR_LENGTHS = {"connect": (1, 2), "bind": (1, 2), "sendto": (4, 5)}
# Syscalls that open a file by path, and the path's index. A call deferred
# to its exit (its path unreadable at entry) takes the path from the file
# it opened there: what the kernel resolved, not the caller's string again.
OPENED_PATHS = {"openat": 1, "openat2": 1, "open": 0, "creat": 0}
# The C type a raw tracepoint argument must have for a struct-typed read.
_RAW_POINTERS = {"file": "struct file *", "path": "struct path *", "sock": "struct sock *",
                 "linux_binprm": "struct linux_binprm *", "socket": "struct socket *",
                 "skb": "struct sk_buff *", "net_device": "struct net_device *",
                 "sockaddr": "struct sockaddr *"}


@dataclass(frozen=True)
class TracepointField:
    name: str
    type: str                   # the C declaration without the name
    offset: int
    size: int
    signed: bool
    data_loc: bool
    pointer: bool


@dataclass(frozen=True)
class Target:
    """Where a hook attaches. kind: syscall, tracepoint, rawtp (a raw
    tracepoint: name is "subsys/event", attached by event), kprobe, lsm,
    uprobe, usdt (a uprobe at one place of a USDT probe)."""

    kind: str
    name: str                   # syscall name, "subsys/event", function, LSM hook, symbol,
                                # "provider:name" (usdt)
    binary: str = ""            # uprobes, usdts
    function_name: str = ""     # as events report it (Tetragon's function_name)
    offset: int = 0             # uprobes: past the symbol, or (no symbol) the file offset;
                                # usdts: the file offset of this place of the probe
    ref_ctr_offset: int = 0     # uprobes, usdts: the semaphore's file offset (0: none)
    usdt_args: tuple[UsdtArg, ...] = ()     # usdts: where each argument is at the probe

    @property
    def key(self) -> tuple:
        """What makes two targets one attach point."""
        return (self.kind, self.name, self.binary, self.offset, self.ref_ctr_offset)

    @property
    def sysnr_field(self) -> bool:
        """raw_syscalls:sys_enter, whose `id` names the syscall being entered."""
        return self.kind == "tracepoint" and self.name == "raw_syscalls/sys_enter"


@dataclass(frozen=True)
class CompiledHook:
    hook: Hook
    target: Target
    reads: tuple[ArgRead, ...]          # one per argument, in the hook's order; then a
                                        # returned string's (ArgRead.retval), if any
    policy_name: str
    monitor: bool
    workloads: Workloads | None = None  # None: every process; else by cgroup (HOOK_CGROUPS)
    unreadable_match: bool = True       # policy option unreadable-args
    has_return: bool = False            # a return probe: return value, returnCopy buffers
    retry: bool = False                 # user memory unreadable at entry is read at sys_exit
    override_return: bool = False       # a kprobe with Override (bpf_override_return)
    host_user_ns: int = 0               # isNamespaceCapability: the host's user namespace
    # Syscall functions whose enforcer must be attached (bpf/enforcer.c), with
    # the syscall number the notes name (None: a function of another ABI,
    # taking any note): Override on a syscall hook, NotifyEnforcer.
    enforced: tuple[tuple[str, int | None], ...] = ()
    ret_read: ArgRead | None = None     # a struct return value (sock): read at return, after
                                        # the args in the record

    @property
    def notes(self) -> bool:
        """Whether the hook leaves notes for an enforcer."""
        return bool(self.enforced)

    @property
    def enforces(self) -> bool:
        return any(a.action in schema.ENFORCING_ACTIONS for s in self.hook.selectors
                   for a in s.actions + s.return_actions)


# ---- argument reads --------------------------------------------------------

def _int_read(type_: str, src: int) -> ArgRead:
    size, signed = INT_SIZES.get(type_, (8, False))
    return ArgRead(enc.GA["int"], src, size, signed)


def _read(hook: Hook, arg: ArgSpec, kind: str, fields: list[TracepointField] | None) -> ArgRead:
    where = f"{hook.path}.args[{hook.args.index(arg)}]"
    if kind == "tracepoint":
        assert fields is not None
        if arg.index >= len(fields):
            raise PolicyError("", [(f"{where}.index", f"tracepoint {hook.call} has only {len(fields)} fields")])
        f = fields[arg.index]
        user = hook.call.startswith(("syscalls/", "raw_syscalls/"))
        if f.data_loc:
            return ArgRead(enc.GA["dataloc"], f.offset)
        if arg.type in ("string", "filename") or (arg.type == "auto" and f.pointer and "char" in f.type):
            return ArgRead(enc.GA["ustr" if user else "kstr"], f.offset)
        if arg.type in schema.INT_TYPES:
            size, signed = (f.size, f.signed) if arg.type == "auto" else INT_SIZES[arg.type]
            return ArgRead(enc.GA["int"], f.offset, size, signed)
        if arg.type == "fd":
            return ArgRead(enc.GA["fd"], f.offset, 4, True)
        if arg.type in _POINTED:
            if f.size != 8 or f.data_loc:
                raise PolicyError("", [(f"{where}.type", f"field {f.name} of {hook.call} is {f.type}, "
                                                         f"not a pointer to a {arg.type}")])
            table = _USER_TYPES if user else _KERNEL_TYPES
            if arg.type not in table:
                raise PolicyError("", [(f"{where}.type", f"type {arg.type} is not supported on syscall "
                                                         "tracepoints (user-space values)")])
            return ArgRead(enc.GA[table[arg.type]], f.offset)
        raise PolicyError("", [(f"{where}.type", f"type {arg.type} is not supported on tracepoints")])
    if arg.type in schema.INT_TYPES:
        return _int_read(arg.type, arg.index)
    user = kind in ("syscall", "uprobe", "usdt")
    table = _USER_TYPES if user else _KERNEL_TYPES
    strategy = table.get(arg.type)
    if strategy is None:
        where_kind = "syscall arguments (user-space values)" if kind == "syscall" else f"{kind} hooks"
        raise PolicyError("", [(f"{where}.type", f"type {arg.type} is not supported on {where_kind}")])
    if strategy == "ubuf" and arg.size_arg_index is None and not arg.return_copy:
        raise PolicyError("", [(f"{where}", "char_buf needs sizeArgIndex or returnCopy")])
    size_from = arg.size_arg_index
    if size_from is None and kind == "syscall" and strategy in ("usockaddr", "usockaddr_un"):
        addr_at, size_at = _SOCKADDR_LENGTHS.get(syscall_name(hook.call), (None, None))
        size_from = size_at if arg.index == addr_at else None
    opened = kind == "syscall" and strategy == "ustr" and \
        OPENED_PATHS.get(syscall_name(hook.call)) == arg.index
    return ArgRead(enc.GA[strategy], arg.index, 8, False, size_from, retcopy=arg.return_copy,
                   opened=opened)


def _raw_read(hook: Hook, arg: ArgSpec, params: list[ValueType]) -> ArgRead:
    """A raw tracepoint's argument: its TP_PROTO parameter `index`, a kernel
    value whose C type (from BTF) must suit the type the policy gives it."""
    where = f"{hook.path}.args[{hook.args.index(arg)}]"
    if arg.index >= len(params):
        raise PolicyError("", [(f"{where}.index", f"raw tracepoint {hook.call} has {len(params)} "
                                                  "arguments (its TP_PROTO)")])
    param = params[arg.index]
    is_a = f"argument {arg.index} of raw tracepoint {hook.call} is {param.c_type}"
    if arg.type == "auto":
        if param.kind not in ("int", "enum", "ptr"):
            raise PolicyError("", [(f"{where}.type", f"{is_a}: give it a type")])
        return ArgRead(enc.GA["int"], arg.index, param.size, param.signed)
    if arg.type in schema.INT_TYPES:
        if param.kind not in ("int", "enum", "ptr"):
            raise PolicyError("", [(f"{where}.type", f"{is_a}, not an integer")])
        return _int_read(arg.type, arg.index)
    if arg.type in _RAW_POINTERS and param.c_type != _RAW_POINTERS[arg.type]:
        raise PolicyError("", [(f"{where}.type", f"{is_a}, not {_RAW_POINTERS[arg.type]} "
                                                 f"(type {arg.type})")])
    if arg.type == "string" and param.c_type not in ("char *", "const char *"):
        raise PolicyError("", [(f"{where}.type", f"{is_a}, not a string (char *)")])
    if arg.type == "fd" and param.kind != "int":
        raise PolicyError("", [(f"{where}.type", f"{is_a}, not a file descriptor")])
    strategy = _KERNEL_TYPES.get(arg.type)
    if strategy is None:
        raise PolicyError("", [(f"{where}.type", f"type {arg.type} is not supported on raw tracepoints")])
    return ArgRead(enc.GA[strategy], arg.index, 8, False)


def _usdt_read(hook: Hook, arg: ArgSpec, place: UsdtProbe | None) -> ArgRead:
    """A USDT probe's argument `index` of its note: a user-space value that
    the kernel computes from the note's spec into the call's arguments
    (bpf/generic_hook.c usdt_fetch); `auto` takes the spec's width and sign."""
    where = f"{hook.path}.args[{hook.args.index(arg)}]"
    if place is None:           # not here: tetrad.sensors.targets says why
        return _int_read("uint64", arg.index) if arg.type == "auto" else _read(hook, arg, "usdt", None)
    if place.problem:
        raise PolicyError("", [(where, f"the arguments of USDT probe {hook.call} in {hook.binary} "
                                       f"cannot be read: {place.problem}")])
    if arg.index >= len(place.args):
        raise PolicyError("", [(f"{where}.index", f"USDT probe {hook.call} in {hook.binary} has "
                                                  f"{len(place.args)} arguments")])
    if arg.type == "auto":
        spec = place.args[arg.index]
        return ArgRead(enc.GA["int"], arg.index, spec.size, spec.signed)
    return _read(hook, arg, "usdt", None)


def _uprobe_target(hook: Hook, facts: KernelFacts) -> Target:
    """A symbol (plus an offset), a file offset, or a virtual address made a
    file offset (reading the binary's program headers)."""
    offset = hook.offset
    if hook.address:
        if facts.file_offset is None:
            raise PolicyError("", [(hook.path, "uprobe addresses need the binary's ELF headers, "
                                               "which cannot be read here")])
        try:
            offset = facts.file_offset(hook.binary, hook.address)
        except (OSError, ValueError) as err:
            raise PolicyError("", [(hook.path, f"uprobe address {hook.address:#x}: {err}")]) from None
    name = hook.symbol.partition("+")[0] if hook.symbol else ""
    return Target("uprobe", name, binary=hook.binary, function_name=hook.symbol, offset=offset,
                  ref_ctr_offset=hook.ref_ctr_offset)


def _usdt_target(hook: Hook, facts: KernelFacts, place: UsdtProbe | None) -> Target:
    if place is None:
        return Target("usdt", hook.call, binary=hook.binary, function_name=hook.call)
    return Target("usdt", hook.call, binary=hook.binary, function_name=hook.call, offset=place.offset,
                  ref_ctr_offset=place.semaphore, usdt_args=place.args)


def usdt_places(hook: Hook, facts: KernelFacts) -> list[UsdtProbe | None]:
    """Every place of a USDT hook's probe in its binary (Tetragon attaches
    to each). A binary that cannot be read here, or has no such probe, is a
    target missing on this machine, as a uprobe's symbol would be: [None],
    one hook whose target tetrad.sensors.targets finds missing."""
    if facts.usdt_probes is None:
        return [None]
    try:
        probes = facts.usdt_probes(hook.binary)
    except (OSError, ValueError):
        return [None]
    return [p for p in probes if (p.provider, p.name) == (hook.provider, hook.symbol)] or [None]


def usdt_missing(hook: Hook, probes: list[UsdtProbe]) -> str:
    """Why a USDT hook's probe is not among a binary's probes ("" if it is)."""
    if any((p.provider, p.name) == (hook.provider, hook.symbol) for p in probes):
        return ""
    known = sorted({f"{p.provider}:{p.name}" for p in probes})
    return (f"no USDT probe {hook.call} in {hook.binary} (it has {', '.join(known[:10]) or 'none'}"
            f"{', ...' if len(known) > 10 else ''})")


# ---- hooks -----------------------------------------------------------------

SYSCALL_PREFIX = re.compile(r"^(__x64_|__arm64_|__ia32_)?sys_")


def syscall_name(call: str) -> str:
    """sys_openat, __x64_sys_openat -> openat"""
    return SYSCALL_PREFIX.sub("", call)


@dataclass(frozen=True)
class KernelFacts:
    """What compiling needs to know about the running kernel, gathered by
    the caller (tetrad.policy.kernel) so this module stays pure."""

    arch_prefix: str = "__x64_"
    tracepoint_fields: Callable[[str, str], list[TracepointField]] | None = None
    syscall_number: Callable[[str], int] = unistd.number     # raises unistd.UnknownSyscall
    # The host's namespace inode numbers (tetrad.abi.state.NAMESPACES order;
    # 0: unknown), for host_ns and isNamespaceCapability.
    host_ns: tuple[int, ...] = ()
    # A raw tracepoint's TP_PROTO parameters (from BTF btf_trace_<event>),
    # KeyError when the kernel has no such raw tracepoint.
    raw_tracepoint_args: Callable[[str], list[ValueType]] | None = None
    # A binary's USDT probes (tetrad.elf), and a virtual address's file
    # offset in a binary; both raise OSError or ValueError.
    usdt_probes: Callable[[str], list[UsdtProbe]] | None = None
    file_offset: Callable[[str, int], int] | None = None
    # The kernel functions ftrace can attach to (tracefs's
    # available_filter_functions); OSError when they cannot be listed.
    ftrace_functions: Callable[[], list[str]] | None = None


def _map_ops_as_equal(hook: Hook, facts: KernelFacts) -> Hook:
    """InMap/NotInMap on an integer become Equal/NotEqual, their syscall
    names (from a syscalls list) this machine's numbers."""
    problems = []

    def number(value: str, path: str) -> str:
        try:
            return str(schema.parse_int(value))
        except ValueError:
            pass
        try:
            return str(facts.syscall_number(syscall_name(value)))
        except unistd.UnknownSyscall as err:
            problems.append((path, str(err)))
            return "0"

    def selector(sel: schema.Selector) -> schema.Selector:
        match_args = tuple(
            replace(m, operator=schema.MAP_OPS[m.operator],
                    values=tuple(number(v, f"{m.path}.values") for v in m.values))
            if m.operator in schema.MAP_OPS else m for m in sel.match_args)
        return replace(sel, match_args=match_args)

    if not any(m.operator in schema.MAP_OPS for s in hook.selectors for m in s.match_args):
        return hook
    hook = replace(hook, selectors=tuple(selector(s) for s in hook.selectors))
    if problems:
        raise PolicyError("", problems)
    return hook


def _host_ns(facts: KernelFacts, ns: int) -> int:
    return facts.host_ns[ns] if ns < len(facts.host_ns) else 0


def _resolve_host_ns(hook: Hook, facts: KernelFacts) -> tuple[Hook, list[tuple[str, str]]]:
    """host_ns values as the host's inode numbers; a namespace the host's
    init does not show cannot be matched and is refused."""
    problems = []

    def selector(s_i: int, sel: schema.Selector) -> schema.Selector:
        out = []
        for m_i, mn in enumerate(sel.match_namespaces):
            values = []
            for v in mn.values:
                if v == schema.HOST_NS:
                    inum = _host_ns(facts, mn.namespace)
                    if not inum:
                        problems.append((f"{hook.path}.selectors[{s_i}].matchNamespaces[{m_i}]",
                                         f"host_ns: the host's {proc_state.NAMESPACES[mn.namespace]} "
                                         "namespace is unknown (neither /proc/1/ns nor kthreadd's "
                                         "shows it); give its inode number instead"))
                        continue
                    v = inum
                values.append(v)
            out.append(replace(mn, values=tuple(values)))
        return replace(sel, match_namespaces=tuple(out))

    if not any(schema.HOST_NS in mn.values for s in hook.selectors for mn in s.match_namespaces):
        return hook, problems
    hook = replace(hook, selectors=tuple(selector(i, s) for i, s in enumerate(hook.selectors)))
    return hook, problems


def compile_hook(policy: Policy, hook: Hook, facts: KernelFacts, place: UsdtProbe | None = None
                 ) -> CompiledHook:
    """One hook (for a USDT probe: at one of its places, `place`)."""
    hook = _map_ops_as_equal(hook, facts)
    hook, problems = _resolve_host_ns(hook, facts)
    host_user_ns = 0
    if any(mc.namespace_capability for s in hook.selectors
           for mc in s.match_capabilities + s.match_capability_changes):
        host_user_ns = _host_ns(facts, proc_state.NS_USER)
        if not host_user_ns:
            problems.append((hook.path, "isNamespaceCapability needs the host's user namespace, "
                                        "which /proc/1/ns/user does not show"))

    def refuse(path: str, reason: str):
        problems.append((path, reason))

    for s_i, sel in enumerate(hook.selectors):
        for a_i, a in enumerate(sel.actions + sel.return_actions):
            if a.action == "Override" and hook.kind not in ("lsm", "kprobe"):
                refuse(f"{hook.path}.selectors[{s_i}]",
                       f"Override needs a kprobe (a syscall or an error-injectable kernel function) "
                       f"or an lsmhooks hook; a {hook.kind} cannot change what the call returns")
            if a.action == "Override" and hook.syscall and a in sel.return_actions:
                refuse(f"{hook.path}.selectors[{s_i}]",
                       "Override on a syscall hook decides before the call: not in matchReturnActions")
    fields = None
    params: list[ValueType] = []
    if hook.generated == "syscalls":
        # Every syscall: one point on raw_syscalls, each event named by its
        # syscall's number.
        kind = "syscall"
        target = Target("syscall", ANY_SYSCALL, function_name=f"{facts.arch_prefix}sys_{ANY_SYSCALL}")
    elif hook.kind == "kprobe" and hook.syscall:
        kind = "syscall"
        name = syscall_name(hook.call)
        target = Target("syscall", name, function_name=f"{facts.arch_prefix}sys_{name}")
    elif hook.kind == "kprobe":
        kind = "kprobe"
        target = Target("kprobe", hook.call, function_name=hook.call)
    elif hook.kind == "tracepoint" and hook.raw:
        kind = "rawtp"
        event = hook.call.split("/", 1)[1]
        if facts.raw_tracepoint_args is None:
            raise PolicyError(policy.source, [(hook.path, "raw tracepoint arguments need the kernel's "
                                                          "BTF, which is not available")])
        try:
            params = facts.raw_tracepoint_args(event)
        except KeyError:
            raise PolicyError(policy.source, [(hook.path, f"no raw tracepoint {event} on this kernel "
                                                          f"(BTF has no btf_trace_{event})")]) from None
        target = Target("rawtp", hook.call, function_name=hook.call)
    elif hook.kind == "tracepoint":
        kind = "tracepoint"
        subsys, event = hook.call.split("/", 1)
        if facts.tracepoint_fields is None:
            raise PolicyError(policy.source, [(hook.path, "tracepoint formats are not available")])
        try:
            fields = facts.tracepoint_fields(subsys, event)
        except OSError as err:
            raise PolicyError(policy.source, [(hook.path, f"no tracepoint {subsys}:{event} on this kernel "
                                                          f"({err.strerror})")]) from None
        target = Target("tracepoint", hook.call, function_name=hook.call)
    elif hook.kind == "lsm":
        kind = "lsm"
        target = Target("lsm", hook.call, function_name=f"security_{hook.call}")
    elif hook.kind == "usdt":
        kind = "usdt"
        target = _usdt_target(hook, facts, place)
    else:
        kind = "uprobe"
        target = _uprobe_target(hook, facts)
    if hook.return_ and kind in ("lsm", "tracepoint", "rawtp"):
        refuse(f"{hook.path}.return", f"{kind} hooks have no return probe here")
    ret_read = None
    if hook.return_ and hook.return_arg is not None and hook.return_arg.type in schema.SOCK_TYPES:
        # A returned sock is read when the call returns, into a record slot
        # after the arguments.
        if kind != "kprobe" or hook.return_arg.type != "sock":
            refuse(f"{hook.path}.returnArg.type", "a struct returnArg is a sock returned by a kernel "
                                                  "function (a kprobe with syscall: false)")
        elif len(hook.args) >= enc.MAX_ARGS:
            refuse(f"{hook.path}.args", f"a hook with a sock returnArg has at most {enc.MAX_ARGS - 1} args "
                                        "(the returned sock takes a record slot)")
        else:
            ret_read = ArgRead(enc.GA["sock"], 0, retval=True)
    reads = []
    returned = None
    if hook.return_arg is not None and kind == "uprobe" and hook.return_arg.type not in schema.INT_TYPES:
        # A returned string is a slot of its own, read at return, after the
        # arguments (where Tetragon's uprobe events put it).
        if hook.return_arg.type != "string":
            refuse(f"{hook.path}.returnArg.type", f"a uprobe's return value of type "
                                                  f"{hook.return_arg.type} is not supported by tetrad yet "
                                                  "(integers and string are)")
        elif len(hook.args) >= enc.MAX_ARGS:
            refuse(f"{hook.path}.args", f"a uprobe returning a string reads at most {enc.MAX_ARGS - 1} "
                                        "arguments (its record holds the string too)")
        else:
            returned = ArgRead(enc.GA["ustr"], enc.RET_SRC, retval=True)
    for arg in hook.args:
        try:
            if kind == "rawtp":
                reads.append(_raw_read(hook, arg, params))
            elif kind == "usdt":
                reads.append(_usdt_read(hook, arg, place))
            else:
                reads.append(_read(hook, arg, kind, fields))
        except PolicyError as err:
            problems += err.problems
    if returned is not None:
        reads.append(returned)
    if not problems:
        problems += _auto_ranges(hook, reads)
    if problems:
        raise PolicyError(policy.source, problems)
    actions = {a.action for s in hook.selectors for a in s.actions + s.return_actions}
    overriding = kind == "kprobe" and "Override" in actions
    enforced = _enforced(policy, hook, kind, target, actions, facts)
    # A hook that leaves notes decides at entry: a note left at the exit
    # would make the thread's next call fail. Not at the point of every
    # syscall: execve's memory is gone at its exit.
    retry = (kind == "syscall" and target.name not in _EXEC_SYSCALLS | {ANY_SYSCALL} and not enforced
             and any(r.kind in USER_MEMORY and not r.retcopy for r in reads))
    return CompiledHook(hook, target, tuple(reads), policy.name, policy.mode == "monitor",
                        policy.workloads, unreadable_match=policy.unreadable_match,
                        has_return=hook.return_, retry=retry, override_return=overriding,
                        host_user_ns=host_user_ns, enforced=enforced, ret_read=ret_read)


_EXEC_SYSCALLS = {"execve", "execveat"}


def _enforced(policy: Policy, hook: Hook, kind: str, target: Target, actions: set[str],
              facts: KernelFacts) -> tuple[tuple[str, int | None], ...]:
    """The syscall functions whose enforcer this hook needs: its own
    syscall's for Override on a syscall hook, spec.enforcers' for
    NotifyEnforcer."""
    out = []
    if kind == "syscall" and "Override" in actions and target.name == ANY_SYSCALL:
        raise PolicyError(policy.source, [(hook.path, "Override on every syscall (a generated_syscalls "
                                                      "list) is not supported: list the syscalls")])
    if kind == "syscall" and "Override" in actions:
        try:
            out.append((target.function_name, facts.syscall_number(target.name)))
        except unistd.UnknownSyscall as err:
            raise PolicyError(policy.source, [(hook.path, str(err))]) from None
    if "NotifyEnforcer" in actions:
        problems = []
        for call in policy.enforcers:
            name = syscall_name(call)
            foreign = call.startswith("__") and not call.startswith(facts.arch_prefix)
            function = call if call.startswith("__") else f"{facts.arch_prefix}sys_{name}"
            try:
                nr = None if foreign else facts.syscall_number(name)
            except unistd.UnknownSyscall as err:
                problems.append((f"spec.enforcers ({call})", str(err)))
                continue
            out.append((function, nr))
        if problems:
            raise PolicyError(policy.source, problems)
    return tuple(dict.fromkeys(out))


def _auto_ranges(hook: Hook, reads: list[ArgRead]) -> list[tuple[str, str]]:
    """`auto` arguments have the width of their tracepoint field (or 8
    unsigned bytes): integer values outside it can never match."""
    problems = []
    for sel in hook.selectors:
        for ma in sel.match_args:
            arg = hook.arg(ma.index)
            slot = reads[hook.args.index(arg)]
            if arg.type != "auto" or slot.kind != enc.GA["int"] or ma.operator not in schema.INT_OPS:
                continue
            low, high = schema.width_range(slot.size, slot.signed, ma.operator)
            ints = []
            for v in ma.values:
                lo, _, hi = v.partition(":")
                ints += [schema.parse_int(lo)] + ([schema.parse_int(hi)] if hi else [])
            for v in ints:
                if not low <= v <= high:
                    problems.append((ma.path + ".values", f"{v} can never match: outside {low}..{high} "
                                     f"(this auto argument has {slot.size} "
                                     f"{'signed' if slot.signed else 'unsigned'} bytes)"))
    return problems


ANY_SYSCALL = "*"               # the target name of a generated_syscalls hook


def ftrace_hooks(hook: Hook, facts: KernelFacts) -> list[Hook]:
    """A generated_ftrace hook as one kprobe per kernel function whose name
    matches its pattern (searched, as Go's MatchString does). When the
    functions cannot be listed here, the hook stays one, on `list:NAME`,
    and needs the feature ftrace_functions (tetrad.policy.kernel)."""
    try:
        if facts.ftrace_functions is None:
            raise OSError("not available")
        functions = facts.ftrace_functions()
    except OSError:
        return [hook]
    pattern = re.compile(hook.pattern)
    names = sorted({f for f in functions if pattern.search(f)})
    if not names:
        raise PolicyError("", [(f"{hook.path}.call", f"no kernel function matches the pattern "
                                                     f"{hook.pattern!r} of {hook.call}")])
    if len(names) > limits.HOOKS:
        raise PolicyError("", [(f"{hook.path}.call", f"the pattern {hook.pattern!r} of {hook.call} matches "
                                                     f"{len(names)} kernel functions; at most "
                                                     f"{limits.HOOKS} hooks in one policy")])
    return [replace(hook, call=name, generated="", pattern="") for name in names]


def compile_policy(policy: Policy, facts: KernelFacts) -> list[CompiledHook]:
    """All hooks of a policy, or PolicyError listing every hook's problems."""
    compiled, problems = [], []
    for listed in policy.hooks:
        try:
            hooks = ftrace_hooks(listed, facts) if listed.generated == "ftrace" else [listed]
        except PolicyError as err:
            problems += err.problems
            continue
        for hook in hooks:
            try:
                for place in usdt_places(hook, facts) if hook.kind == "usdt" else [None]:
                    compiled.append(compile_hook(policy, hook, facts, place))
                    # Every value fits its kernel field, and the hook fits an
                    # attach point on its own (what others there leave is the
                    # loader's to say).
                    PointTables(0).add(0, compiled[-1])
            except PolicyError as err:
                problems += [(path or hook.path, reason) for path, reason in err.problems]
            except Exception as err:
                # A bug here must still be this policy's error, not the daemon's.
                log.error("compiling %s of %s failed unexpectedly", hook.path, policy.source,
                          exc_info=True)
                problems.append((hook.path, f"internal error while compiling ({type(err).__name__}); "
                                            "this is a bug in tetrad: please report it with the policy"))
    if problems:
        raise PolicyError(policy.source, problems)
    return compiled


def parse_tracepoint_format(text: str) -> list[TracepointField]:
    """Fields of a tracefs `format` file, common ones included, in order
    (Tetragon's tracepoint `index` counts them this way)."""
    fields = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("field:"):
            continue
        parts = dict(p.strip().split(":", 1) for p in line.split(";") if ":" in p)
        decl = parts["field"].strip()
        name = decl.split()[-1].split("[")[0].lstrip("*")
        fields.append(TracepointField(
            name=name, type=decl.rsplit(None, 1)[0] if " " in decl else decl,
            offset=int(parts["offset"]), size=int(parts["size"]),
            signed=parts.get("signed", "0").strip() == "1",
            data_loc="__data_loc" in decl, pointer="*" in decl))
    return fields
