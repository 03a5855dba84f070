"""Validated policies -> plain values for the kernel. Pure: no kernel access.

Owns the arrow "parse/validate -> compile". Each hook becomes a
`CompiledHook`: where it attaches (`Target`), how the program reads its
arguments (`Layout`, which becomes compiler flags for bpf/generic_hook.c;
hooks with equal layouts can share one program), and `encode(hook_id)`:
the bytes of its `struct g_hook` and the entries of the value maps.

Encoding (bpf/generic.h, mirrored in tetrad/abi/generic.py):
- Arguments are read into up to five slots, in the order of the hook's
  `args`; `matchArgs.index` names an argument by its `index`, and the match
  refers to that argument's slot. The return value is slot 7.
- Integer operators keep their values in `g_match.vals` (up to 8; InRange,
  SPort and DPort values as (lo, hi) pairs).
- String and path operators keep values in maps keyed by the match's `id`
  (hook_id * 64 + n, unique in a program): Equal/NotEqual in `str_eq`
  ({id, 256 zero-padded bytes}), Prefix/NotPrefix in the LPM trie
  `str_prefix` ({prefixlen = 32 + 8*len, id, bytes}), Postfix/NotPostfix in
  `str_postfix` with the bytes reversed (at most 128).
- SAddr/DAddr/NotSAddr/NotDAddr keep CIDRs in the LPM trie `cidr`
  ({prefixlen = 32 + 8 + bits, id, family, address}).
- matchBinaries values go to the same maps under the selector's `bin_id`;
  In/NotIn values go to `str_prefix` with their terminating NUL, which
  makes the longest-prefix lookup an exact match (cheaper per call than
  hashing a 256-byte key: no padding, no copy of the whole buffer).
- Monitor mode sets HOOK_MONITOR: the kernel then posts instead of killing
  or overriding, and says so in the record.
- `unreadable-args: no-match` sets HOOK_UNREADABLE_NOMATCH: an argument in
  user memory that cannot be read then matches no operator; by default it
  matches every operator (bpf/generic_hook.c, "user memory").
- Syscall hooks with an argument in user memory get `Layout.retry`: the
  program also runs at sys_exit, to read again what was unreadable at entry.
  Not execve/execveat: after a successful exec the caller's memory is gone,
  so their arguments are decided at entry (unreadable: see above).
- A policy scoped to workloads (containerSelector/hostSelector) sets
  HOOK_CGROUPS: the hook then runs only for tasks whose cgroup id is in the
  program's `cgroup_sel` map under its hook id ({cgroup id, hook id}); the
  daemon keeps those entries current as cgroups come and go.
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import re
from dataclasses import dataclass, replace
from typing import Callable

from tetrad.abi import generic as enc
from tetrad.bpf import unistd
from tetrad.policy import schema
from tetrad.policy.schema import ArgSpec, Hook, Policy, PolicyError
from tetrad.policy.workloads import Workloads

log = logging.getLogger(__name__)

IDS_PER_HOOK = 64

INT_SIZES = schema.INT_WIDTHS         # (bytes, signed) by argument type

# Argument types by where the value lives. Syscall and uprobe arguments are
# user-space values; kprobe and LSM arguments are kernel values.
_USER_TYPES = {"string": "ustr", "char_buf": "ubuf", "fd": "fd", "sockaddr": "usockaddr"}
_KERNEL_TYPES = {"string": "kstr", "fd": "fd", "file": "file", "path": "path", "sock": "sock",
                 "linux_binprm": "binprm"}


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
    """Where a hook attaches. kind: syscall, tracepoint, kprobe, lsm, uprobe."""

    kind: str
    name: str                   # syscall name, "subsys/event", function, LSM hook, symbol
    binary: str = ""            # uprobes
    function_name: str = ""     # as events report it (Tetragon's function_name)


@dataclass(frozen=True)
class SlotLayout:
    kind: int                   # encoding.GA
    src: int                    # argument index, or tracepoint field offset
    size: int = 8
    signed: bool = False
    sizesrc: int = -1
    retcopy: bool = False
    reverse: bool = False


@dataclass(frozen=True)
class Layout:
    """How one program reads arguments; equal layouts can share a program."""

    kind: str
    slots: tuple[SlotLayout, ...]
    has_return: bool
    limits: tuple[int, int, int, int, int]      # selectors, matches, values, actions, pids
    lsm_hook: str = ""
    override_return: bool = False
    needs_binary: bool = False          # some selector has matchBinaries
    binary_postfix: bool = False        # ... with a Postfix operator
    retry: bool = False                 # unreadable user memory is read again at sys_exit

    def cflags(self) -> list[str]:
        kinds = {"syscall": 1, "tracepoint": 3, "kprobe": 4, "lsm": 5, "uprobe": 6}
        sel, match, vals, acts, pids = self.limits
        flags = [f"-DG_KIND={kinds[self.kind]}", f"-DG_HAS_RETURN={int(self.has_return)}",
                 f"-DG_RETRY={int(self.retry)}",
                 f"-DG_NARGS={len(self.slots)}", f"-DG_SEL_LIMIT={sel}",
                 f"-DG_MATCH_LIMIT={match}", f"-DG_VAL_LIMIT={vals}", f"-DG_ACT_LIMIT={acts}",
                 f"-DG_PID_LIMIT={pids}"]
        for n, s in enumerate(self.slots):
            flags += [f"-DARG{n}_KIND={s.kind}", f"-DARG{n}_SRC={s.src}", f"-DARG{n}_SIZE={s.size}",
                      f"-DARG{n}_SIGNED={int(s.signed)}", f"-DARG{n}_SIZESRC={s.sizesrc}",
                      f"-DARG{n}_RETCOPY={int(s.retcopy)}", f"-DARG{n}_REVERSE={int(s.reverse)}"]
        flags += [f"-DG_NEEDS_BINARY={int(self.needs_binary)}",
                  f"-DG_BIN_POSTFIX={int(self.binary_postfix)}"]
        if self.lsm_hook:
            flags.append(f"-DG_LSM_HOOK={self.lsm_hook}")
        if self.override_return:
            flags.append("-DG_OVERRIDE_RETURN")
        return flags


@dataclass(frozen=True)
class CompiledHook:
    hook: Hook
    target: Target
    layout: Layout
    policy_name: str
    monitor: bool
    workloads: Workloads | None = None      # None: every process; else by cgroup (HOOK_CGROUPS)
    unreadable_match: bool = True           # policy option unreadable-args

    @property
    def enforces(self) -> bool:
        return any(a.action in schema.ENFORCING_ACTIONS for s in self.hook.selectors
                   for a in s.actions + s.return_actions)

    def encode(self, hook_id: int) -> tuple[bytes, list[tuple[str, bytes]]]:
        """The `struct g_hook` for program slot `hook_id` and the value map
        entries (map name, key bytes); every value is the byte 1."""
        h = enc.Hook()
        h.id = hook_id
        h.flags = (enc.HOOK_ACTIVE | (enc.HOOK_MONITOR if self.monitor else 0)
                   | (enc.HOOK_CGROUPS if self.workloads is not None else 0)
                   | (0 if self.unreadable_match else enc.HOOK_UNREADABLE_NOMATCH))
        h.nsel = len(self.hook.selectors)
        entries: list[tuple[str, bytes]] = []
        next_id = [hook_id * IDS_PER_HOOK]

        def new_id() -> int:
            next_id[0] += 1
            return next_id[0]

        for i, sel in enumerate(self.hook.selectors):
            _encode_selector(h.sel[i], sel, self.hook, new_id, entries)
        return bytes(h), entries


# ---- argument layouts --------------------------------------------------------

def _int_slot(type_: str, src: int) -> SlotLayout:
    size, signed = INT_SIZES.get(type_, (8, False))
    return SlotLayout(enc.GA["int"], src, size, signed)


def _slot(hook: Hook, arg: ArgSpec, kind: str, fields: list[TracepointField] | None,
          reverse: bool) -> SlotLayout:
    where = f"{hook.path}.args[{hook.args.index(arg)}]"
    if kind == "tracepoint":
        assert fields is not None
        if arg.index >= len(fields):
            raise PolicyError("", [(f"{where}.index", f"tracepoint {hook.call} has only {len(fields)} fields")])
        f = fields[arg.index]
        user = hook.call.startswith(("syscalls/", "raw_syscalls/"))
        if f.data_loc:
            return SlotLayout(enc.GA["dataloc"], f.offset, reverse=reverse)
        if arg.type in ("string", "filename") or (arg.type == "auto" and f.pointer and "char" in f.type):
            return SlotLayout(enc.GA["ustr" if user else "kstr"], f.offset, reverse=reverse)
        if arg.type in schema.INT_TYPES:
            size, signed = (f.size, f.signed) if arg.type == "auto" else INT_SIZES[arg.type]
            return SlotLayout(enc.GA["int"], f.offset, size, signed)
        if arg.type == "fd":
            return SlotLayout(enc.GA["fd"], f.offset, 4, True)
        raise PolicyError("", [(f"{where}.type", f"type {arg.type} is not supported on tracepoints")])
    if arg.type in schema.INT_TYPES:
        return _int_slot(arg.type, arg.index)
    user = kind in ("syscall", "uprobe")
    table = _USER_TYPES if user else _KERNEL_TYPES
    strategy = table.get(arg.type)
    if strategy is None:
        where_kind = "syscall arguments (user-space values)" if kind == "syscall" else f"{kind} hooks"
        raise PolicyError("", [(f"{where}.type", f"type {arg.type} is not supported on {where_kind}")])
    sizesrc = -1
    if strategy == "ubuf":
        if arg.size_arg_index is None and not arg.return_copy:
            raise PolicyError("", [(f"{where}", "char_buf needs sizeArgIndex or returnCopy")])
        if arg.size_arg_index is not None:
            sizesrc = arg.size_arg_index
    return SlotLayout(enc.GA[strategy], arg.index, 8, False, sizesrc,
                      retcopy=arg.return_copy, reverse=reverse)


def _limits(hook: Hook) -> tuple[int, int, int, int, int]:
    sels = hook.selectors
    matches = max((len(s.match_args) for s in sels), default=0)
    values = max((len(m.values) * (2 if m.operator in _RANGE_OPS else 1)
                  for s in sels for m in s.match_args + s.match_return_args), default=1)
    actions = max((max(len(s.actions), len(s.return_actions)) for s in sels), default=1)
    pids = max((len(p.values) for s in sels for p in s.match_pids), default=0)
    return (max(len(sels), 1), max(matches, 1), min(max(values, 1), enc.MAX_VALUES),
            max(actions, 1), pids)


_RANGE_OPS = {"InRange", "NotInRange", "SPort", "NotSPort", "DPort", "NotDPort"}


# ---- selectors ----------------------------------------------------------------

def _str_key(id_: int, text: str) -> bytes:
    k = enc.StrKey()
    k.id = id_
    k.data = text.encode()[: enc.STR_MAX - 1]
    return bytes(k)


def _lpm_key(id_: int, raw: bytes) -> bytes:
    k = enc.LpmStrKey()
    k.id = id_
    k.prefixlen = 32 + 8 * len(raw)
    k.data = raw
    return bytes(k)


def _cidr_key(id_: int, text: str) -> bytes:
    net = ipaddress.ip_network(text, strict=False)
    k = enc.LpmAddrKey()
    k.id = id_
    k.family = 2 if net.version == 4 else 10
    k.prefixlen = 32 + 8 + net.prefixlen
    raw = net.network_address.packed
    ctypes.memmove(k.addr, raw, len(raw))
    return bytes(k)


def _ranges(values) -> list[int]:
    out = []
    for v in values:
        lo, _, hi = v.partition(":")
        out += [schema.parse_int(lo), schema.parse_int(hi or lo)]
    return out


def _encode_match(m: enc.Match, ma: schema.MatchArg, slot: int, group: str, new_id,
                  entries: list[tuple[str, bytes]]) -> None:
    op = ma.operator
    m.slot = slot
    if group in ("string", "path") and op in schema.STRING_OPS:
        m.id = new_id()
        if op in ("Equal", "NotEqual"):
            m.op = enc.OPS["StrEqual" if op == "Equal" else "StrNotEqual"]
            entries += [("str_eq", _str_key(m.id, v)) for v in ma.values]
        elif op in ("Prefix", "NotPrefix"):
            m.op = enc.OPS[op]
            entries += [("str_prefix", _lpm_key(m.id, v.encode())) for v in ma.values]
        else:
            m.op = enc.OPS[op]
            entries += [("str_postfix", _lpm_key(m.id, v.encode()[::-1][: enc.POSTFIX_MAX]))
                        for v in ma.values]
        return
    m.op = enc.OPS[op]
    if op in ("SAddr", "NotSAddr", "DAddr", "NotDAddr"):
        m.id = new_id()
        entries += [("cidr", _cidr_key(m.id, v)) for v in ma.values]
        return
    if op in _RANGE_OPS:
        vals = _ranges(ma.values)
    elif op == "Protocol":
        vals = [schema.protocol_number(v) for v in ma.values]
    elif op == "Family":
        vals = [schema.family_number(v) for v in ma.values]
    else:
        vals = [schema.parse_int(v) for v in ma.values]
    if len(vals) > enc.MAX_VALUES:
        raise PolicyError("", [(ma.path, f"at most {enc.MAX_VALUES // 2} ranges")])
    m.nvals = len(vals)
    for i, v in enumerate(vals):
        m.vals[i] = _s64(v, ma.path)


def _s64(value: int, path: str) -> int:
    """A value for an s64 field: schema.int_range keeps values within 64
    bits; an unsigned one above 2^63 is stored as the s64 with its bits
    (the kernel extends a u64 argument to the same bits). ctypes would wrap
    anything silently, so nothing else gets here."""
    if not schema.ANY64[0] <= value <= schema.ANY64[1]:
        raise PolicyError("", [(path, f"{value} does not fit in 64 bits")])
    return value - (1 << 64) if value > schema.S64[1] else value


def _encode_action(a: enc.Action, action: schema.Action, hook: Hook) -> None:
    a.action = enc.ACTIONS[action.action]
    a.rate_limit_s = action.rate_limit_s
    if action.action == "Override":
        a.arg = action.arg_error
    elif action.action == "Signal":
        a.arg = action.arg_sig
    elif action.action in ("FollowFD", "UnfollowFD"):
        a.arg = action.arg_fd
        a.arg2 = action.arg_name


def _encode_selector(out: enc.Selector, sel: schema.Selector, hook: Hook, new_id,
                     entries: list[tuple[str, bytes]]) -> None:
    positions = {a.index: n for n, a in enumerate(hook.args)}
    out.nmatch = len(sel.match_args)
    for i, ma in enumerate(sel.match_args):
        arg = hook.arg(ma.index)
        _encode_match(out.match[i], ma, positions[ma.index], arg.group, new_id, entries)
    if sel.match_return_args:
        out.has_ret = 1
        ma = sel.match_return_args[0]
        _encode_match(out.ret_match, ma, enc.RETURN_SLOT, hook.return_arg.group, new_id, entries)
    if sel.match_pids:
        p = sel.match_pids[0]
        out.pid_op = enc.SETS[p.operator]
        out.npids = len(p.values)
        out.follow_forks = int(p.follow_forks)
        out.ns_pid = int(p.is_namespace_pid)
        for i, v in enumerate(p.values):
            out.pids[i] = v
    if sel.match_binaries:
        b = sel.match_binaries
        out.bin_op = enc.SETS[b.operator]
        out.bin_id = new_id()
        if b.operator in ("In", "NotIn"):
            # With the NUL: the trie's longest match is then an exact one.
            entries += [("str_prefix", _lpm_key(out.bin_id, v.encode() + b"\0")) for v in b.values]
        elif b.operator in ("Prefix", "NotPrefix"):
            entries += [("str_prefix", _lpm_key(out.bin_id, v.encode())) for v in b.values]
        else:
            entries += [("str_postfix", _lpm_key(out.bin_id, v.encode()[::-1][: enc.POSTFIX_MAX]))
                        for v in b.values]
    out.nact = len(sel.actions)
    for i, a in enumerate(sel.actions):
        _encode_action(out.act[i], a, hook)
    out.nret_act = len(sel.return_actions)
    for i, a in enumerate(sel.return_actions):
        _encode_action(out.ret_act[i], a, hook)


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


def compile_hook(policy: Policy, hook: Hook, facts: KernelFacts) -> CompiledHook:
    hook = _map_ops_as_equal(hook, facts)
    problems = []

    def refuse(path: str, reason: str):
        problems.append((path, reason))

    for s_i, sel in enumerate(hook.selectors):
        if len(sel.match_pids) > 1:
            refuse(f"{hook.path}.selectors[{s_i}].matchPIDs", "one matchPIDs entry per selector is supported")
        for a_i, a in enumerate(sel.actions + sel.return_actions):
            overridable = hook.kind == "lsm" or (hook.kind == "kprobe" and not hook.syscall)
            if a.action == "Override" and not overridable:
                refuse(f"{hook.path}.selectors[{s_i}]",
                       "Override needs an lsmhooks hook (or a kprobe on an error-injectable kernel "
                       "function); tetrad runs syscall hooks on tracepoints, which cannot change "
                       "a return value")
    postfix_slots = {m.index for s in hook.selectors for m in s.match_args
                     if m.operator in ("Postfix", "NotPostfix")}
    fields = None
    if hook.kind == "kprobe" and hook.syscall:
        kind = "syscall"
        name = syscall_name(hook.call)
        target = Target("syscall", name, function_name=f"{facts.arch_prefix}sys_{name}")
    elif hook.kind == "kprobe":
        kind = "kprobe"
        target = Target("kprobe", hook.call, function_name=hook.call)
    elif hook.kind == "tracepoint":
        kind = "tracepoint"
        subsys, event = hook.call.split("/", 1)
        if hook.raw:
            refuse(f"{hook.path}.raw", "raw tracepoints are not supported by tetrad")
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
    else:
        kind = "uprobe"
        target = Target("uprobe", hook.symbol, binary=hook.binary, function_name=hook.symbol)
    if hook.return_ and kind in ("lsm", "tracepoint"):
        refuse(f"{hook.path}.return", f"{kind} hooks have no return probe here")
    slots = []
    for arg in hook.args:
        try:
            slots.append(_slot(hook, arg, kind, fields, arg.index in postfix_slots))
        except PolicyError as err:
            problems += err.problems
    if not problems:
        problems += _auto_ranges(hook, slots)
    if problems:
        raise PolicyError(policy.source, problems)
    overriding = kind == "kprobe" and any(a.action == "Override" for s in hook.selectors
                                          for a in s.actions + s.return_actions)
    binaries = [s.match_binaries for s in hook.selectors if s.match_binaries]
    retry = (kind == "syscall" and target.name not in _EXEC_SYSCALLS
             and any(s.kind in _USER_MEMORY and not s.retcopy for s in slots))
    layout = Layout(kind, tuple(slots), hook.return_, _limits(hook),
                    lsm_hook=hook.call if kind == "lsm" else "", override_return=overriding,
                    needs_binary=bool(binaries),
                    binary_postfix=any(b.operator.endswith("Postfix") for b in binaries),
                    retry=retry)
    return CompiledHook(hook, target, layout, policy.name, policy.mode == "monitor", policy.workloads,
                        unreadable_match=policy.unreadable_match)


_USER_MEMORY = {enc.GA["ustr"], enc.GA["ubuf"], enc.GA["usockaddr"]}
_EXEC_SYSCALLS = {"execve", "execveat"}


def _auto_ranges(hook: Hook, slots: list[SlotLayout]) -> list[tuple[str, str]]:
    """`auto` arguments have the width of their tracepoint field (or 8
    unsigned bytes): integer values outside it can never match."""
    problems = []
    for sel in hook.selectors:
        for ma in sel.match_args:
            arg = hook.arg(ma.index)
            slot = slots[hook.args.index(arg)]
            if arg.type != "auto" or slot.kind != enc.GA["int"] or ma.operator not in schema.INT_OPS:
                continue
            low, high = schema.width_range(slot.size, slot.signed, ma.operator)
            ints = _ranges(ma.values) if ma.operator in _RANGE_OPS else map(schema.parse_int, ma.values)
            for v in ints:
                if not low <= v <= high:
                    problems.append((ma.path + ".values", f"{v} can never match: outside {low}..{high} "
                                     f"(this auto argument has {slot.size} "
                                     f"{'signed' if slot.signed else 'unsigned'} bytes)"))
    return problems


def compile_policy(policy: Policy, facts: KernelFacts) -> list[CompiledHook]:
    """All hooks of a policy, or PolicyError listing every hook's problems."""
    compiled, problems = [], []
    for hook in policy.hooks:
        try:
            compiled.append(compile_hook(policy, hook, facts))
            compiled[-1].encode(0)              # every value fits its field
        except PolicyError as err:
            problems += err.problems
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
