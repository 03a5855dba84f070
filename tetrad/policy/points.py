"""The tables of one attach point: what bpf/generic_hook.c reads. Pure.

Owns the arrow "compiled hooks -> kernel table values". Every hook that
attaches at one point (a syscall, a kprobe function, an LSM hook, a
tracepoint, a uprobe) shares the point's tables (bpf/generic.h):

- Slots: each distinct argument read (`ArgRead`) of the point's hooks is
  one slot, read once per call however many hooks use it.
- Predicates: each distinct test in the hooks' selectors ("the slot has one
  of these prefixes", "the port is in one of these ranges") is one bit of
  the point. Two policies that test the same thing share the bit.
  - String predicates (Equal, Prefix on strings, paths and buffers) live in
    the trie `str_fwd`, Postfix in `str_rev` (values reversed), addresses in
    `cidr`, under the id point << 8 | table << 4 | slot. A trie entry's
    value is the set of predicates that hold for every string it is the
    longest match of: the bits of the entry's own predicates and of every
    entry that is a prefix of it. One lookup per slot and trie then answers
    every string predicate of every hook at the point. Equal values carry
    their NUL (so their longest match is an exact one), and so does the
    looked-up string when it fits.
  - Integer predicates (Equal, Mask, GreaterThan, LessThan, InRange on
    integers; SPort, DPort, Protocol, Family on sockets) are evaluated in a
    loop, each once per call.
  - The Not* operators use the same predicate as their positive twin and
    require its bit clear.
- Caller predicates (matchBinaries, matchPIDs, matchNamespaces,
  matchCapabilities and their *Changes) are bits of a separate word,
  answered before any argument is read: the binary's tries under slot 15,
  pids in `pid_sel` keyed by (point, pid), the state predicates (namespaces
  and capabilities) in a loop over the point's `spred`, each once per call.
- A selector is masks: caller bits that must hold and must not, argument
  bits that must hold and must not, its matchReturnArgs test, its actions.
- A record carries the hook's own arguments, in its order: `argslot` maps
  them to the point's slots. A uprobe's returned string is one more slot
  (GS_RETVAL, the point POINT_RETVAL), read at the return; its
  matchReturnArgs are trie predicates like an argument's, decided there,
  instead of the selector's integer `ret` test.
- Struct walks (resolve:, btfType, struct-typed arguments: the steps of
  tetrad/policy/btfwalk.py) live in the point's `ops`, each slot's steps
  side by side from its `op_at`: at most MAX_OPS for all slots of a point.

Bits and slots are allocated stably: a hook added or removed leaves every
other hook's bits, slots and trie values as they were, so the kernel can be
updated entry by entry while calls run (tetrad/sensors/generic.py).
"""

from __future__ import annotations

import ctypes
import ipaddress
from dataclasses import dataclass, field

from tetrad.abi import generic as enc
from tetrad.abi import state as proc_state
from tetrad.policy import schema
from tetrad.policy.errors import PolicyError

ARG_BITS = 64 * enc.WORDS
CALLER_BITS = 64
CALLER_TABLES = ("bin_fwd", "bin_rev", "pid", "state")
RANGE_OPS = {"InRange", "NotInRange", "SPort", "NotSPort", "DPort", "NotDPort"}
# Argument reads in user memory, which a syscall point reads again at exit
# when they were unreadable at entry.
USER_MEMORY = {enc.GA["ustr"], enc.GA["ubuf"], enc.GA["usockaddr"], enc.GA["usockaddr_un"]}
# Reads whose slot holds a struct sock's g_sockinfo (socket tracking).
SOCK_READS = {enc.GA["sock"], enc.GA["socket"]}
# SPortPriv and the like: a port range, privileged ports.
_PRIV = {"SPortPriv": ("SPort", False), "NotSPortPriv": ("SPort", True),
         "DPortPriv": ("DPort", False), "NotDPortPriv": ("DPort", True)}
_NOT = {"NotEqual": "Equal", "NotPrefix": "Prefix", "NotPostfix": "Postfix",
        "NotInRange": "InRange", "NotSAddr": "SAddr", "NotDAddr": "DAddr",
        "NotSPort": "SPort", "NotDPort": "DPort", "NotIn": "In"}


@dataclass(frozen=True)
class ArgRead:
    """How the kernel reads one argument (struct g_slot_desc). Equal reads at
    one point share a slot."""

    kind: int                   # enc.GA
    src: int                    # argument index, or tracepoint field offset
    size: int = 8               # integers: bytes
    signed: bool = False
    sizesrc: int | None = None  # argument holding a buffer's length
    retcopy: bool = False       # a buffer the call fills: read at return
    retval: bool = False        # the return value (a string, a sock): read at return
    steps: tuple = ()           # struct walk, then gather (btfwalk.Step)
    nwalk: int = 0              # steps of the walk
    opened: bool = False        # an open-family syscall's path: a deferred call's comes from
                                # the file it opened (bpf/generic_hook.c, GSX_OPENED)

    @property
    def user(self) -> bool:
        return self.kind in USER_MEMORY and not self.retcopy and not self.retval


class PointFull(PolicyError):
    """A hook does not fit in its attach point's tables, next to the hooks
    already there; the message says which limit."""

    def __init__(self, reason: str):
        super().__init__("", [("", reason)])


@dataclass(frozen=True)
class _Pred:
    """One predicate's identity: equal identities share a bit."""

    table: str                  # fwd, rev, saddr, daddr, int; bin_fwd, bin_rev, pid, state
    slot: int                   # argument slot (caller predicates: 0; state: ns or cap set)
    op: int = 0                 # int: enc.IOPS; pid: 0 pid, 1 forks, 2 nspid; state: enc.SP_*
    values: tuple = ()          # trie keys (bytes or networks), ints, pids;
                                # state: inode numbers, or (mask, host user ns)


@dataclass
class _HookEntry:
    ch: object                  # a CompiledHook (tetrad.policy.compile)
    slots: tuple[int, ...]      # its record's slots: the args' in order, then a struct return's
    track: int = 0              # its policy's socktrack scope (0: the policy tracks none)
    preds: set = field(default_factory=set)         # _Pred it uses


def record_reads(ch) -> tuple[ArgRead, ...]:
    """What a hook's record carries: its arguments, then a struct return
    value (read at return)."""
    return ch.reads + ((ch.ret_read,) if ch.ret_read is not None else ())


@dataclass(frozen=True)
class Tables:
    """What the kernel should hold for one point: map name -> {key: value}
    (bytes), plus the point's and its hooks' structs."""

    point: bytes
    hooks: dict[int, bytes]
    entries: dict[str, dict[bytes, bytes]]


class PointTables:
    """The tables of one logical point, kept as hooks come and go."""

    def __init__(self, lpoint: int):
        self.lpoint = lpoint
        self._hooks: dict[int, _HookEntry] = {}     # hook id -> entry, in attach order
        self._slots: dict[ArgRead, int] = {}
        self._bits: dict[_Pred, int] = {}
        self._users: dict[_Pred, set[int]] = {}
        self._slot_users: dict[ArgRead, set[int]] = {}

    @property
    def hook_ids(self) -> list[int]:
        return list(self._hooks)

    def __len__(self) -> int:
        return len(self._hooks)

    # ---- changes ------------------------------------------------------------

    def add(self, hook_id: int, ch, track: int = 0) -> None:
        """Add a compiled hook (`track`: its policy's socktrack scope, when
        the policy tracks socks); PointFull (nothing changed) when the
        point's tables cannot hold it next to the others."""
        if len(self._hooks) >= enc.POINT_HOOKS:
            raise PointFull(f"{enc.POINT_HOOKS} policy hooks are attached at "
                            f"{ch.target.function_name} already, the most one attach point takes")
        snapshot = (dict(self._slots), dict(self._bits), {k: set(v) for k, v in self._users.items()},
                    {k: set(v) for k, v in self._slot_users.items()})
        try:
            slots = tuple(self._slot(read, hook_id) for read in record_reads(ch))
            entry = _HookEntry(ch, slots, track)
            for sel in ch.hook.selectors:
                for pred, _ in self._selector_preds(ch, slots, sel):
                    self._use(pred, hook_id)
                    entry.preds.add(pred)
            self._hooks[hook_id] = entry
            self._check_counts(ch)
        except PolicyError:
            self._slots, self._bits, self._users, self._slot_users = snapshot
            self._hooks.pop(hook_id, None)
            raise

    def remove(self, hook_id: int) -> None:
        entry = self._hooks.pop(hook_id, None)
        if entry is None:
            return
        for pred in entry.preds:
            users = self._users[pred]
            users.discard(hook_id)
            if not users:
                del self._users[pred]
                del self._bits[pred]
        for read in record_reads(entry.ch):
            users = self._slot_users[read]
            users.discard(hook_id)
            if not users:
                del self._slot_users[read]
                del self._slots[read]

    def _slot(self, read: ArgRead, hook_id: int) -> int:
        if read not in self._slots:
            free = sorted(set(range(enc.MAX_SLOTS)) - set(self._slots.values()))
            if not free:
                raise PointFull(f"the hooks at this attach point read more than {enc.MAX_SLOTS} "
                                "distinct arguments")
            self._slots[read] = free[0]
        self._slot_users.setdefault(read, set()).add(hook_id)
        return self._slots[read]

    def _use(self, pred: _Pred, hook_id: int) -> None:
        if pred not in self._bits:
            caller = pred.table in CALLER_TABLES
            taken = {b for p, b in self._bits.items() if (p.table in CALLER_TABLES) == caller}
            limit = CALLER_BITS if caller else ARG_BITS
            free = next((b for b in range(limit) if b not in taken), None)
            if free is None:
                what = ("matchBinaries, matchPIDs, namespace and capability tests" if caller
                        else "argument tests")
                raise PointFull(f"the hooks at this attach point have more than {limit} distinct {what}")
            self._bits[pred] = free
        self._users.setdefault(pred, set()).add(hook_id)

    def _check_counts(self, ch) -> None:
        ints = sum(1 for p in self._bits if p.table == "int")
        if ints > enc.MAX_IPREDS:
            raise PointFull(f"the hooks at this attach point have more than {enc.MAX_IPREDS} distinct "
                            "integer tests")
        ops = sum(len(read.steps) for read in self._slots)
        if ops > enc.MAX_OPS:
            raise PointFull(f"the arguments read at this attach point take {ops} struct walk steps; "
                            f"a point holds {enc.MAX_OPS}")
        states = sum(1 for p in self._bits if p.table == "state")
        if states > enc.MAX_SPREDS:
            raise PointFull(f"the hooks at this attach point have more than {enc.MAX_SPREDS} distinct "
                            "namespace and capability tests")

    # ---- predicates of a selector -------------------------------------------

    def _selector_preds(self, ch, slots: tuple[int, ...], sel: schema.Selector):
        """(predicate, negated) for every test of a selector."""
        hook = ch.hook
        for ma in sel.match_args:
            yield _arg_pred(ma, slots[ma.pos], hook.args[ma.pos].type)
        if sel.match_return_args and _tested_as_slot(ch):
            # A returned string: its slot, after the arguments'.
            yield _arg_pred(sel.match_return_args[0], slots[len(hook.args)], hook.return_arg.type)
        if sel.match_binaries is not None:
            yield _binary_pred(sel.match_binaries)
        for mp in sel.match_pids:
            kind = 2 if mp.is_namespace_pid else 1 if mp.follow_forks else 0
            yield _Pred("pid", 0, kind, tuple(sorted(set(mp.values)))), mp.operator == "NotIn"
        yield from _state_preds(sel, ch.host_user_ns)

    # ---- what the kernel holds ----------------------------------------------

    def tables(self) -> Tables:
        point = enc.Point()
        point.flags = enc.POINT_ACTIVE if self._hooks else 0
        point.nslots = (max(self._slots.values()) + 1) if self._slots else 0
        point.nhooks = len(self._hooks)
        for i, hook_id in enumerate(self._hooks):
            point.hooks[i] = hook_id
        uses = {}
        for pred, bit in self._bits.items():
            if pred.table in ("fwd", "rev", "saddr", "daddr", "int"):
                _set(point.slot_bits, pred.slot * 64 * enc.WORDS + bit)
                uses.setdefault(pred.slot, set()).add(pred.table)
        table_flags = {"fwd": enc.GS_FWD, "rev": enc.GS_REV, "saddr": enc.GS_SADDR,
                       "daddr": enc.GS_DADDR}
        op_at = 0
        for read, slot in sorted(self._slots.items(), key=lambda item: item[1]):
            d = point.slot[slot]
            d.kind, d.src, d.size = read.kind, read.src, read.size
            d.op_at, d.nwalk, d.ngather = op_at, read.nwalk, len(read.steps) - read.nwalk
            for step in read.steps:
                op = point.ops[op_at]
                op.off, op.code, op.size, op.dst, op.depth = (step.off, step.code, step.size, step.dst,
                                                              step.depth)
                op_at += 1
            d.sizesrc = enc.NO_SLOT if read.sizesrc is None else read.sizesrc
            d.xflags = enc.GSX_OPENED if read.opened else 0
            d.flags = ((enc.GS_SIGNED if read.signed else 0) | (enc.GS_RETCOPY if read.retcopy else 0)
                       | (enc.GS_USER if read.user else 0) | (enc.GS_RETVAL if read.retval else 0))
            for table in uses.get(slot, ()):
                d.flags |= table_flags.get(table, 0)
        ints = sorted((b, p) for p, b in self._bits.items() if p.table == "int")
        point.npreds = len(ints)
        for i, (bit, pred) in enumerate(ints):
            _fill_ipred(point.pred[i], pred.op, pred.values)
            point.pred[i].slot, point.pred[i].bit = pred.slot, bit
        states = sorted((b, p) for p, b in self._bits.items() if p.table == "state")
        point.nspreds = len(states)
        for i, (bit, pred) in enumerate(states):
            _fill_spred(point.spred[i], pred, bit)
        if states:
            point.flags |= enc.POINT_STATE
        if any(p.op in (enc.SP_NSCHG, enc.SP_CAPCHG_IN, enc.SP_CAPCHG_NOTIN) for _, p in states):
            point.flags |= enc.POINT_BASE
        tables = {p.table for p in self._bits}
        if tables & {"bin_fwd", "bin_rev"}:
            point.flags |= enc.POINT_BINARY
        if "bin_rev" in tables:
            point.flags |= enc.POINT_BIN_REV
        pid_kinds = {p.op for p in self._bits if p.table == "pid"}
        if pid_kinds:
            point.flags |= enc.POINT_PIDS
        if 1 in pid_kinds:
            point.flags |= enc.POINT_FORKS
        if 2 in pid_kinds:
            point.flags |= enc.POINT_NSPID
        # A point where a hook leaves a note for the enforcer decides every
        # call at entry: a note left at the syscall's exit would make the
        # thread's next call fail instead.
        if (any(e.ch.retry for e in self._hooks.values())
                and not any(e.ch.notes for e in self._hooks.values())):
            point.flags |= enc.POINT_RETRY
        if any(e.ch.target.sysnr_field for e in self._hooks.values()):
            point.flags |= enc.POINT_SYSNR
        if any(read.retval for read in self._slots):
            point.flags |= enc.POINT_RETVAL
        hooks = {hook_id: self._hook_bytes(hook_id, e) for hook_id, e in self._hooks.items()}
        return Tables(bytes(point), hooks, self._entries())

    def _hook_bytes(self, hook_id: int, entry: _HookEntry) -> bytes:
        ch = entry.ch
        h = enc.Hook()
        h.id = hook_id
        h.flags = (enc.HOOK_ACTIVE | (enc.HOOK_MONITOR if ch.monitor else 0)
                   | (enc.HOOK_CGROUPS if ch.workloads is not None else 0)
                   | (0 if ch.unreadable_match else enc.HOOK_UNREADABLE_NOMATCH)
                   | (enc.HOOK_RETURN if ch.has_return else 0)
                   | (enc.HOOK_RETSLOT if ch.ret_read is not None else 0))
        h.nsel = len(ch.hook.selectors)
        h.nargs = len(entry.slots)
        for i, slot in enumerate(entry.slots):
            h.argslot[i] = slot
        if entry.track:
            h.track = entry.track
            h.ret_action = enc.ACTIONS.get(ch.hook.return_arg_action, 0)
            h.sockargs = sum(1 << i for i, read in enumerate(record_reads(ch)) if read.kind in SOCK_READS)
        for i, sel in enumerate(ch.hook.selectors):
            out = h.sel[i]
            for pred, negated in self._selector_preds(ch, entry.slots, sel):
                bit = self._bits[pred]
                if pred.table in CALLER_TABLES:
                    if negated:
                        out.cneg |= 1 << bit
                    else:
                        out.cpos |= 1 << bit
                else:
                    _set(out.neg if negated else out.pos, bit)
            out.chg = ((enc.SEL_NSCHG if sel.match_namespace_changes else 0)
                       | (enc.SEL_CAPCHG if sel.match_capability_changes else 0))
            if sel.match_return_args and not _tested_as_slot(ch):
                ma = sel.match_return_args[0]
                out.has_ret = 1
                op = _NOT.get(ma.operator, ma.operator)
                _fill_ipred(out.ret, enc.IOPS[op], _int_values(ma, op))
                out.ret.negate = int(op != ma.operator)
            out.nact = len(sel.actions)
            for j, a in enumerate(sel.actions):
                _fill_action(out.act[j], a)
            out.nret_act = len(sel.return_actions)
            for j, a in enumerate(sel.return_actions):
                _fill_action(out.ret_act[j], a)
        return bytes(h)

    def _entries(self) -> dict[str, dict[bytes, bytes]]:
        """Trie and pid_sel entries: for each trie id, every key's value is
        the union of the bits of the keys that are its prefixes."""
        by_id: dict[tuple[str, int], dict[object, int]] = {}
        pids: dict[int, list[int]] = {}
        for pred, bit in self._bits.items():
            if pred.table in ("int", "state"):
                continue
            if pred.table == "pid":
                for pid in pred.values:
                    pids.setdefault(pid, [0, 0, 0])[pred.op] |= 1 << bit
                continue
            table, slot = {"fwd": ("str_fwd", pred.slot), "rev": ("str_rev", pred.slot),
                           "saddr": ("cidr", pred.slot), "daddr": ("cidr", pred.slot),
                           "bin_fwd": ("str_fwd", enc.BINARY_SLOT),
                           "bin_rev": ("str_rev", enc.BINARY_SLOT)}[pred.table]
            sub = {"fwd": enc.TRIE_FWD, "rev": enc.TRIE_REV, "saddr": enc.TRIE_SADDR,
                   "daddr": enc.TRIE_DADDR, "bin_fwd": enc.TRIE_FWD, "bin_rev": enc.TRIE_REV}[pred.table]
            keys = by_id.setdefault((table, enc.trie_id(self.lpoint, sub, slot)), {})
            for key in pred.values:
                keys[key] = keys.get(key, 0) | (1 << bit)
        out: dict[str, dict[bytes, bytes]] = {"str_fwd": {}, "str_rev": {}, "cidr": {}, "pid_sel": {}}
        for (table, id_), keys in by_id.items():
            if table == "cidr":
                for net, bits in _union_nets(keys).items():
                    out[table][_cidr_key(id_, net)] = _bits_value(bits)
            else:
                for raw, bits in _union_prefixes(keys).items():
                    out[table][_str_key(id_, raw)] = _bits_value(bits)
        for pid, (direct, forks, nspid) in pids.items():
            key = enc.PidKey(self.lpoint, pid)
            out["pid_sel"][bytes(key)] = bytes(enc.PidBits(direct, forks, nspid))
        return out


# ---- encodings ----------------------------------------------------------------

def _tested_as_slot(ch) -> bool:
    """Whether the hook's return value is a slot of its own (a returned
    string, GS_RETVAL), tested by predicate bits like an argument, rather
    than the integer `retval` a selector's `ret` test compares."""
    return bool(ch.reads) and ch.reads[-1].retval

def _set(words, bit: int) -> None:
    words[bit // 64] |= 1 << (bit % 64)


def _arg_pred(ma: schema.MatchArg, slot: int, type_: str) -> tuple[_Pred, bool]:
    if ma.operator in _PRIV:
        op, negated = _PRIV[ma.operator]
        return _Pred("int", slot, enc.IOPS[op], (0, 1023)), negated
    op = _NOT.get(ma.operator, ma.operator)
    negated = op != ma.operator
    group = schema.arg_group(type_)
    if group == "sockaddr_un" and op == "Family":
        # A sockaddr_un slot holds its family in ival.
        return _Pred("int", slot, enc.IOPS["InRange"], tuple(_int_values(ma, op))), negated
    if group in ("string", "path", "sockaddr_un") and ma.operator in schema.STRING_OPS:
        if op == "Equal":
            return _Pred("fwd", slot, 0, _keys(v.encode() + b"\0" for v in ma.values)), negated
        if op == "Prefix":
            return _Pred("fwd", slot, 0, _keys(v.encode() for v in ma.values)), negated
        return _Pred("rev", slot, 0, _keys(_reversed(v) for v in ma.values)), negated
    if op in ("SAddr", "DAddr"):
        nets = tuple(sorted({ipaddress.ip_network(v, strict=False) for v in ma.values},
                            key=lambda n: (n.version, int(n.network_address), n.prefixlen)))
        return _Pred("saddr" if op == "SAddr" else "daddr", slot, 0, nets), negated
    return _Pred("int", slot, enc.IOPS[op], tuple(_int_values(ma, op))), negated


def _binary_pred(mb: schema.MatchBinaries) -> tuple[_Pred, bool]:
    op = _NOT.get(mb.operator, mb.operator)
    negated = op != mb.operator
    if op == "In":
        return _Pred("bin_fwd", 0, 0, _keys(v.encode() + b"\0" for v in mb.values)), negated
    if op == "Prefix":
        return _Pred("bin_fwd", 0, 0, _keys(v.encode() for v in mb.values)), negated
    return _Pred("bin_rev", 0, 0, _keys(_reversed(v) for v in mb.values)), negated


def _state_preds(sel: schema.Selector, host_user_ns: int):
    """(predicate, negated) for the selector's namespace and capability
    tests. Namespace values must be inode numbers by now (compile.py
    resolves host_ns)."""
    for mn in sel.match_namespaces:
        yield _Pred("state", mn.namespace, enc.SP_NS, tuple(sorted(set(mn.values)))), mn.operator == "NotIn"
    nc = sel.match_namespace_changes
    if nc is not None:
        listed = sum(1 << ns for ns in nc.namespaces)
        mask = listed if nc.operator == "In" else ((1 << len(proc_state.NAMESPACES)) - 1) & ~listed
        yield _Pred("state", 0, enc.SP_NSCHG, (mask, 0)), False
    for mc in sel.match_capabilities:
        op = enc.SP_CAPS_IN if mc.operator == "In" else enc.SP_CAPS_NOTIN
        yield _Pred("state", mc.cap_set, op, (mc.mask, host_user_ns if mc.namespace_capability else 0)), False
    for mc in sel.match_capability_changes:
        op = enc.SP_CAPCHG_IN if mc.operator == "In" else enc.SP_CAPCHG_NOTIN
        yield _Pred("state", mc.cap_set, op, (mc.mask, host_user_ns if mc.namespace_capability else 0)), False


def _fill_spred(q: enc.SPred, pred: _Pred, bit: int) -> None:
    q.kind, q.index, q.bit = pred.op, pred.slot, bit
    if pred.op == enc.SP_NS:
        q.nvals = len(pred.values)
        for i, inum in enumerate(pred.values):
            q.vals[i] = inum
    else:
        q.mask, q.userns = pred.values


def _keys(values) -> tuple[bytes, ...]:
    return tuple(sorted(set(values)))


def _reversed(value: str) -> bytes:
    return value.encode()[::-1][: enc.POSTFIX_MAX]


def _int_values(ma: schema.MatchArg, op: str) -> list[int]:
    if op in RANGE_OPS:
        vals = []
        for v in ma.values:
            lo, _, hi = v.partition(":")
            vals += [schema.parse_int(lo), schema.parse_int(hi or lo)]
    elif op in schema.NAMED_OPS:
        vals = [n for v in ma.values for n in schema.named_range(op, v)]
    else:
        vals = [schema.parse_int(v) for v in ma.values]
    if len(vals) > enc.MAX_VALUES:
        raise PolicyError("", [(ma.path, f"at most {enc.MAX_VALUES} integer values "
                                         f"({enc.MAX_VALUES // 2} ranges) per operator")])
    for v in vals:
        if not schema.ANY64[0] <= v <= schema.ANY64[1]:
            raise PolicyError("", [(ma.path, f"{v} does not fit in 64 bits")])
    return vals


def _fill_ipred(q: enc.IPred, op: int, values) -> None:
    q.op = op
    q.nvals = len(values)
    for i, v in enumerate(values):
        # An unsigned value above 2^63 is the s64 with the same bits (the
        # kernel extends a u64 argument to the same bits).
        q.vals[i] = v - (1 << 64) if v > schema.S64[1] else v


def _fill_action(a: enc.Action, action: schema.Action) -> None:
    a.action = enc.ACTIONS[action.action]
    a.rate_limit_s = action.rate_limit_s
    a.stack = ((enc.STACK_KERNEL if action.kernel_stack else 0)
               | (enc.STACK_USER if action.user_stack else 0))
    if action.action == "Override":
        a.arg = action.arg_error
    elif action.action == "Signal":
        a.arg = action.arg_sig
    elif action.action in ("FollowFD", "UnfollowFD"):
        a.arg = action.arg_fd
        a.arg2 = action.arg_name
    elif action.action == "NotifyEnforcer":
        a.arg = action.arg_error
        a.arg2 = action.arg_sig
    elif action.action in schema.SOCK_ACTIONS:
        a.arg = action.arg_sock                 # the sock's record slot


def _union_prefixes(keys: dict[bytes, int]) -> dict[bytes, int]:
    """Each key's bits, with the bits of every key that is its prefix."""
    out = {}
    for raw, bits in keys.items():
        for n in range(len(raw)):
            bits |= keys.get(raw[:n], 0)
        out[raw] = bits
    return out


def _union_nets(keys: dict, ) -> dict:
    out = {}
    for net, bits in keys.items():
        for other, more in keys.items():
            if other is not net and other.version == net.version and net.subnet_of(other):
                bits |= more
        out[net] = bits
    return out


def _str_key(id_: int, raw: bytes) -> bytes:
    k = enc.LpmStrKey()
    k.id = id_
    k.prefixlen = 32 + 8 * len(raw)
    k.data = raw
    return bytes(k)


def _cidr_key(id_: int, net) -> bytes:
    k = enc.LpmAddrKey()
    k.id = id_
    k.family = 2 if net.version == 4 else 10
    k.prefixlen = 32 + 8 + net.prefixlen
    raw = net.network_address.packed
    ctypes.memmove(k.addr, raw, len(raw))
    return bytes(k)


def _bits_value(bits: int) -> bytes:
    b = enc.Bits()
    for w in range(enc.WORDS):
        b.w[w] = (bits >> (64 * w)) & 0xFFFFFFFFFFFFFFFF
    return bytes(b)
