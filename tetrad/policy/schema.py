"""TracingPolicy files -> validated, typed policies. Pure: no kernel.

Owns the arrow "file -> parse/validate". Accepts Tetragon's `TracingPolicy`
(apiVersion cilium.io/v1alpha1) unchanged, in YAML or JSON, and checks it
against Tetragon's schema and limits (tetrad/policy/limits.py: 5 selectors
per hook, 5 args, values per operator, one matchArgs per arg index; first
selector that matches wins). Every problem is reported with the file, the
YAML path (`spec.kprobes[0].selectors[1].matchArgs[0].operator`) and the
reason; all problems of a file are collected, not just the first, but one
mistake is reported once (an argument of an unknown type does not also
fail every matchArgs that names it).

Input is hostile: the text is loaded by tetrad.policy.document (strict
YAML, bounded depth and size), every field is checked for its type before
it is used (a list where a string belongs is that field's error, not a
TypeError), every string for its length, and every number for the range of
the kernel field it fills (tetrad/abi/generic.py) and of the argument type
it is compared with: a matchPIDs value of 2^32 + P would otherwise select
PID P, an integer of 2^64 would become 0. Messages never quote the file:
values are named by type or by a short escaped excerpt (errors.describe).
Any failure while validating one file is that file's PolicyError.

What tetrad does not implement is refused here by name, so a policy is
never half-understood; what this *kernel* cannot do is decided later, when
the policy is compiled for the running kernel.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import urllib.parse
from dataclasses import replace
from dataclasses import dataclass, field

from tetrad.abi import state as proc_state
from tetrad import netnames
from tetrad.policy import btfwalk, document, limits, source, tetragon_fields
from tetrad.policy import workloads as workload_scope
from tetrad.policy.errors import PolicyError, describe, kind_of, path_key
from tetrad.policy.workloads import Workloads

__all__ = ["PolicyError", "Policy", "Hook", "Selector", "MatchArg", "MatchPIDs", "MatchBinaries",
           "Action", "ArgSpec", "parse"]

log = logging.getLogger(__name__)

API_VERSION = "cilium.io/v1alpha1"
MAX_SELECTORS = limits.SELECTORS
MAX_ARGS = limits.ARGS
MAX_MATCH_ARGS = limits.MATCH_ARGS
MAX_PIDS = limits.PIDS
MAX_ACTIONS = limits.ACTIONS
PREFIX_MAX = limits.PREFIX_BYTES
POSTFIX_MAX = limits.POSTFIX_BYTES
STRING_MAX = limits.STRING_BYTES

# Integer argument types: (bytes, signed), as the kernel reads them.
INT_WIDTHS = {"int": (4, True), "sint32": (4, True), "int32": (4, True), "s32": (4, True),
              "uint32": (4, False), "u32": (4, False), "uint": (4, False),
              "sint8": (1, True), "int8": (1, True), "uint8": (1, False),
              "sint16": (2, True), "int16": (2, True), "uint16": (2, False),
              "long": (8, True), "sint64": (8, True), "int64": (8, True), "s64": (8, True),
              "ulong": (8, False), "uint64": (8, False), "u64": (8, False),
              "size_t": (8, False), "auto": (8, False),
              "syscall64": (8, True)}         # raw_syscalls' `long id`, shown as syscall_id
INT_TYPES = set(INT_WIDTHS)
# Integers with a kernel meaning: a capability number, capability sets
# (read through a kernel_cap_t pointer).
CAP_WIDTHS = {"capability": (4, True), "kernel_cap_t": (8, False), "cap_inheritable": (8, False),
              "cap_permitted": (8, False), "cap_effective": (8, False)}
STRING_TYPES = {"string", "char_buf", "data_loc", "filename", "char_iovec", "iov_iter"}
PATH_TYPES = {"fd", "file", "path", "linux_binprm", "dentry", "kiocb"}
# Network types. sock, socket (its sock) and skb have both ends of a
# connection; sockaddr one address (tetrad lets S* and D* operators both see
# it); sockaddr_un a family and a path; net_device a name (a string).
SOCK_TYPES = {"sock", "socket"}
NET_TYPES = SOCK_TYPES | {"skb", "sockaddr", "sockaddr_un", "net_device"}
# Kernel structs shown whole (tetrad/abi/argstructs.py): no operator applies.
STRUCT_TYPES = {"cred", "user_namespace", "bpf_attr", "bpf_prog", "bpf_map", "perf_event",
                "module", "load_info"}
NOP_TYPE = "nop"                # a placeholder: neither read nor shown, as in Tetragon
ARG_TYPES = (INT_TYPES | set(CAP_WIDTHS) | STRING_TYPES | PATH_TYPES | NET_TYPES | STRUCT_TYPES
             | {NOP_TYPE})

INT_OPS = {"Equal", "NotEqual", "Mask", "GreaterThan", "LessThan", "InRange", "NotInRange",
           "InMap", "NotInMap"}
# InMap/NotInMap on integers: values (or list:NAME of a syscalls list) compiled
# as Equal/NotEqual; syscall names become numbers when compiled for a machine.
MAP_OPS = {"InMap": "Equal", "NotInMap": "NotEqual"}
# spec.lists kinds: names of syscalls; every syscall; kernel functions whose
# names match a pattern (from tracefs, when the policy is compiled).
LIST_TYPES = {"syscalls", "generated_syscalls", "generated_ftrace"}
GENERATED = {"generated_syscalls": "syscalls", "generated_ftrace": "ftrace"}
LIST_PREFIX = "list:"
STRING_OPS = {"Equal", "NotEqual", "Prefix", "NotPrefix", "Postfix", "NotPostfix"}
ADDR_OPS = {"SAddr", "NotSAddr", "DAddr", "NotDAddr"}
PORT_OPS = {"SPort", "NotSPort", "DPort", "NotDPort"}
# Privileged ports (0..1023); they take no values.
PRIV_OPS = {"SPortPriv", "NotSPortPriv", "DPortPriv", "NotDPortPriv"}
# Protocol, Family and State: a name or a number, or a range of numbers.
NAMED_OPS = {"Protocol", "Family", "State"}
NET_OPS = ADDR_OPS | PORT_OPS | PRIV_OPS | NAMED_OPS
OPS_BY_GROUP = {"int": INT_OPS, "string": STRING_OPS, "path": STRING_OPS, "net": NET_OPS,
                "sockaddr": NET_OPS - {"Protocol", "State"},
                "sockaddr_un": STRING_OPS | {"Family"}, "struct": set()}
ORDER_OPS = {"GreaterThan", "LessThan", "InRange", "NotInRange"}
ACTIONS = {"Post", "NoPost", "Sigkill", "Signal", "Override", "FollowFD", "UnfollowFD",
           "TrackSock", "UntrackSock", "GetUrl", "DnsLookup", "NotifyEnforcer"}
SOCK_ACTIONS = {"TrackSock", "UntrackSock"}     # socket tracking (argSock, returnArgAction)
USER_ACTIONS = {"GetUrl", "DnsLookup"}           # done by the daemon when the event comes
ENFORCING_ACTIONS = {"Sigkill", "Signal", "Override", "NotifyEnforcer"}
BINARY_OPS = {"In", "NotIn", "Prefix", "NotPrefix", "Postfix", "NotPostfix"}
PID_OPS = {"In", "NotIn"}
SET_OPS = {"In", "NotIn"}               # namespaces, capabilities and their changes
HOST_NS = "host_ns"                     # a matchNamespaces value: the host's, resolved at load
NS_VALUES = 4                           # values per matchNamespaces entry (Tetragon's limit)
UNSUPPORTED_SPEC = {"fentries": "fentry hooks", "selectorsMacros": "selector macros"}
KINDS = ("TracingPolicy", "TracingPolicyNamespaced")
# A Kubernetes namespace name: a lower-case RFC 1123 DNS label.
NAMESPACE_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# A Kubernetes object name: a lower-case RFC 1123 DNS subdomain.
NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
KERNEL_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")        # functions, LSM hooks
TRACEFS_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")   # tracefs directory names
USDT_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")          # what sys/sdt.h takes
SYSCALL_PREFIX = re.compile(r"^(__x64_|__arm64_|__ia32_)?sys_")
# binaryDigests algorithms and their lengths in hex digits (build-id: any).
DIGEST_HEX = {"sha1": 40, "sha256": 64, "sha384": 96, "sha512": 128, "build-id": 0}

# Ranges of the kernel fields numbers go into (tetrad/abi/generic.py).
U16 = (0, (1 << 16) - 1)
U32 = (0, (1 << 32) - 1)
U64 = (0, (1 << 64) - 1)
S32 = (-(1 << 31), (1 << 31) - 1)
S64 = (-(1 << 63), (1 << 63) - 1)
ANY64 = (-(1 << 63), (1 << 64) - 1)     # fits 64 bits as either signed or unsigned
MAX_ERRNO = 4095
SIGNALS = (1, 64)
NAMED_RANGES = {"Protocol": U16, "Family": U16, "State": (0, 255)}
URL_CHARS = 2048                # argUrl
FQDN_CHARS = 253                # argFqdn (RFC 1035)
FQDN_RE = re.compile(r"(?=.{1,253}\.?$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)"
                     r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?")
# tetrad's own option (not Tetragon's): what an argument in user memory that
# cannot be read (at entry, nor at syscall exit) does to a selector: "match"
# (the default: it matches every operator, so enforcement fails closed) or
# "no-match" (it matches none). Either way the read is counted.
UNREADABLE_ARGS = "unreadable-args"
# A USDT probe's arguments: the first 8 of its note (G_MAX_ARGV).
MAX_ARG_INDEX = {"kprobe": 5, "uprobe": 5, "lsm": 5, "tracepoint": 63, "rawtp": 5, "usdt": 7}
BTF_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")       # a struct (btfType)
MODULE_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")  # a kernel module (btfTypeModule)


@dataclass(frozen=True)
class ArgSpec:
    index: int
    type: str
    label: str = ""
    size_arg_index: int | None = None     # 0-based index of the size argument
    return_copy: bool = False
    resolve: str = ""                       # a member path walked from the argument
    btf_type: str = ""                      # cast to this struct first
    btf_type_module: str = ""               # ... found in this module's BTF
    max_data: bool = False                  # Tetragon's large buffers (tetrad: 256 bytes)
    where: str = ""                         # its YAML path, for messages

    @property
    def group(self) -> str:
        return arg_group(self.type)


@dataclass(frozen=True)
class MatchArg:
    index: int
    operator: str
    values: tuple[str, ...]
    path: str
    pos: int = 0                # the argument's place in Hook.args (return value: 0)


@dataclass(frozen=True)
class MatchPIDs:
    operator: str
    values: tuple[int, ...]
    follow_forks: bool
    is_namespace_pid: bool


@dataclass(frozen=True)
class MatchBinaries:
    operator: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class MatchNamespace:
    """The caller's namespace of one type is (In) or is not (NotIn) one of
    `values`: inode numbers, or HOST_NS."""
    namespace: int                      # tetrad.abi.state.NAMESPACES index
    operator: str
    values: tuple[int | str, ...]


@dataclass(frozen=True)
class MatchNamespaceChanges:
    """In: one of these namespaces differs from the one the caller's image
    started in; NotIn: one not listed does."""
    operator: str
    namespaces: frozenset[int]


@dataclass(frozen=True)
class MatchCapabilities:
    """The caller's capability set `cap_set` has (In) or lacks (NotIn) any
    capability of `mask`; with `namespace_capability`, only outside the
    host's user namespace. For MatchCapabilityChanges: the set changed in
    these capabilities (In) or only in others (NotIn) since the image
    started."""
    cap_set: int                        # tetrad.abi.state.CAP_SETS index
    operator: str
    namespace_capability: bool
    mask: int


@dataclass(frozen=True)
class Action:
    action: str
    arg_error: int = 0
    arg_sig: int = 0
    arg_fd: int = 0
    arg_name: int = 0
    rate_limit_s: int = 0
    arg_sock: int = 0           # TrackSock/UntrackSock: a sock argument's place in Hook.args
    arg_url: str = ""           # GetUrl
    arg_fqdn: str = ""          # DnsLookup
    kernel_stack: bool = False          # Post: kernelStackTrace
    user_stack: bool = False            # Post: userStackTrace


@dataclass(frozen=True)
class Selector:
    match_args: tuple[MatchArg, ...] = ()
    match_return_args: tuple[MatchArg, ...] = ()
    match_pids: tuple[MatchPIDs, ...] = ()
    match_binaries: MatchBinaries | None = None
    actions: tuple[Action, ...] = ()
    return_actions: tuple[Action, ...] = ()
    match_namespaces: tuple[MatchNamespace, ...] = ()
    match_namespace_changes: MatchNamespaceChanges | None = None
    match_capabilities: tuple[MatchCapabilities, ...] = ()
    match_capability_changes: tuple[MatchCapabilities, ...] = ()

    @property
    def reads_state(self) -> bool:
        """Whether the caller's credentials or namespaces are tested."""
        return bool(self.match_namespaces or self.match_namespace_changes
                    or self.match_capabilities or self.match_capability_changes)


@dataclass(frozen=True)
class Hook:
    """One hook of a policy. `kind` is kprobe, tracepoint, uprobe, usdt or lsm."""

    kind: str
    path: str                               # e.g. spec.kprobes[0]
    call: str = ""                          # kprobe function / lsm hook / tracepoint "subsys/event"
    syscall: bool = False
    return_: bool = False
    return_arg: ArgSpec | None = None
    args: tuple[ArgSpec, ...] = ()
    selectors: tuple[Selector, ...] = ()
    binary: str = ""                        # uprobes, usdts
    symbol: str = ""                        # uprobes: "symbol" or "symbol+offset"; usdts: the name
    message: str = ""
    tags: tuple[str, ...] = ()
    raw: bool = False                       # raw tracepoint
    return_arg_action: str = ""             # TrackSock/UntrackSock on the returned sock
    offset: int = 0                         # uprobes: a file offset (offsets), or past the symbol
    address: int = 0                        # uprobes: a virtual address (addrs)
    ref_ctr_offset: int = 0                 # uprobes: the semaphore's file offset (refCtrOffsets)
    digests: tuple[str, ...] = ()           # uprobes: binaryDigests, "algorithm:hex"
    ignore_digest: bool = False             # uprobes: ignore.digestVerificationFailure
    ignore_missing: bool = False            # kprobes: ignore.callNotFound
    provider: str = ""                      # usdts
    loader: bool = False                    # spec.loader's hook: process_loader events
    generated: str = ""                     # call is a generated list: "syscalls" or "ftrace"
    pattern: str = ""                       # ... of kernel functions matching this

    def arg(self, index: int) -> ArgSpec | None:
        return next((a for a in self.args if a.index == index), None)


@dataclass
class _HookArgs:
    """A hook's args as matchArgs name them: by `index` (the first spec
    argument with that index, as Tetragon picks it) or by `args: [n]` (the
    n-th spec argument)."""

    by_index: dict[int, ArgSpec]
    by_pos: dict[int, ArgSpec]          # spec position -> spec, usable ones only
    kept: list[ArgSpec]                 # read and shown (not nop), as Hook.args
    count: int                          # spec positions, usable or not

    def pos(self, spec: ArgSpec) -> int:
        return next(n for n, a in enumerate(self.kept) if a is spec)


@dataclass(frozen=True)
class Policy:
    name: str
    source: str
    mode: str                               # "enforce" or "monitor"
    hooks: tuple[Hook, ...] = field(default_factory=tuple)
    workloads: Workloads | None = None      # containerSelector/hostSelector; None: everywhere
    # Option unreadable-args: whether an argument in user memory that cannot
    # be read matches ("match", the default) or not ("no-match").
    unreadable_match: bool = True
    # spec.enforcers: the syscalls NotifyEnforcer makes fail, as named there
    # (sys_dup, __ia32_sys_dup; lists expanded).
    enforcers: tuple[str, ...] = ()

    @property
    def enforces(self) -> bool:
        return any(a.action in ENFORCING_ACTIONS for h in self.hooks for s in h.selectors
                   for a in s.actions + s.return_actions)

    @property
    def tracks_socks(self) -> bool:
        """Some hook tracks socks (TrackSock/UntrackSock, returnArgAction):
        the policy's hooks then report a tracked sock's owner."""
        return any(h.return_arg_action or any(a.action in SOCK_ACTIONS for s in h.selectors
                                                for a in s.actions + s.return_actions)
                   for h in self.hooks)


# spec.loader: true. Tetragon reports each executable mapping of a file (its
# loader sensor reads perf's mmap records from a kprobe). tetrad hooks the
# mmap syscall instead, where a file is mapped executable (PROT_EXEC, 4) and
# the descriptor names a file (its path starts with "/"): what the dynamic
# loader does for each library. Its events are process_loader.
LOADER_HOOK = Hook(
    kind="kprobe", path="spec.loader", call="sys_mmap", syscall=True, loader=True,
    args=(ArgSpec(2, "int32", "prot"), ArgSpec(4, "fd", "fd")),
    selectors=(Selector(match_args=(MatchArg(2, "Mask", ("4",), "spec.loader", 0),
                                    MatchArg(4, "Prefix", ("/",), "spec.loader", 1))),))


def syscall_name(call: str) -> str:
    """sys_openat, __x64_sys_openat -> openat"""
    return SYSCALL_PREFIX.sub("", call)


def arg_group(type_: str) -> str:
    if type_ in STRING_TYPES:
        return "string"
    if type_ in PATH_TYPES:
        return "path"
    if type_ == "net_device":
        return "string"
    if type_ in ("sockaddr", "sockaddr_un"):
        return type_
    if type_ in NET_TYPES:
        return "net"
    if type_ in STRUCT_TYPES:
        return "struct"
    return "int"


def int_range(type_: str, operator: str) -> tuple[int, int]:
    """The values an integer operator can meaningfully hold for an argument
    of this type (see width_range). `auto` takes a tracepoint field's own
    type, known only to the compiler, which checks it again with
    width_range: here, any 64-bit value."""
    if type_ == "auto":
        return S64 if operator in ORDER_OPS else ANY64
    return width_range(*(INT_WIDTHS.get(type_) or CAP_WIDTHS[type_]), operator)


def width_range(size: int, signed: bool, operator: str) -> tuple[int, int]:
    """The kernel extends an argument of `size` bytes to s64 (sign- or
    zero-extending it) and compares as s64: a value outside the
    argument's range never matches; a Mask may be written either way; an
    ordering compare of a 64-bit unsigned argument is signed, so its values
    stay below 2^63."""
    bits = 8 * size
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if operator == "Mask":
        return low, (1 << bits) - 1
    if not signed:
        low, high = 0, (1 << bits) - 1
    if operator in ORDER_OPS:
        high = min(high, S64[1])
    return low, high


def parse_int(value) -> int:
    """Tetragon accepts decimal, hex (0x) and octal (0o / leading 0) values."""
    if isinstance(value, bool):
        raise ValueError(f"{describe(value)} is not a number")
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{kind_of(value)} is not a number")
    text = value.strip()
    if len(text) > limits.NUMBER_CHARS:
        raise ValueError(f"a number of more than {limits.NUMBER_CHARS} characters")
    try:
        if re.fullmatch(r"-?0[0-7]+", text):
            return int(text, 8)
        return int(text, 0)
    except ValueError:
        raise ValueError(f"{describe(value)} is not an integer") from None


def parse_duration(value) -> int:
    """rateLimit values: "30s", "5m", "1h" or a number of seconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = re.fullmatch(r"\s*(\d{1,20})\s*([smh]?)\s*", value) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"{describe(value)} is not a duration such as 30s, 5m or 1h")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def named_range(op: str, value: str) -> tuple[int, int]:
    """A Protocol, Family or State value as a range: Tetragon's name of one
    (IPPROTO_UDP, AF_INET6, TCP_LISTEN), a number, or "low:high"."""
    table = {"Protocol": "protocol", "Family": "family", "State": "state"}[op]
    found = netnames.number(table, value)
    if found is not None:
        return found, found
    lo, _, hi = value.partition(":")
    return parse_int(lo), parse_int(hi or lo)


def _in(value: int, bounds: tuple[int, int]) -> bool:
    return bounds[0] <= value <= bounds[1]


def _range_text(bounds: tuple[int, int]) -> str:
    return f"{bounds[0]}..{bounds[1]}"


class _Checker:
    """Walks the document, building dataclasses and collecting problems.
    Every accessor checks the type of what it reads first."""

    def __init__(self):
        self.problems: list[tuple[str, str]] = []
        self.map_values = 0                  # values that take a kernel map entry
        self.lists: dict[str, tuple[str, ...]] = {}   # spec.lists: name -> syscall names
        self.generated: dict[str, tuple[str, str]] = {}   # name -> (syscalls|ftrace, pattern)
        self.lists_refused = False           # a list was refused: list:NAME naming it is not
        self.enforcers: list[str] = []       # spec.enforcers' calls

    def fail(self, path: str, reason: str) -> None:
        self.problems.append((path, reason))

    def _failed(self, path: str) -> bool:
        return any(p == path for p, _ in self.problems)

    # ---- typed access ----------------------------------------------------------

    def mapping(self, value, path: str, allowed: set[str], tetragon: str | None = None) -> dict:
        """`value` as a mapping whose keys are all in `allowed`. A key of
        Tetragon's object `tetragon` (tetragon_fields.FIELDS) that tetrad
        does not handle is "not supported by tetrad yet", any other key
        an unknown field."""
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping, not {kind_of(value)}")
            return {}
        theirs = tetragon_fields.FIELDS[tetragon] if tetragon else frozenset()
        for key in value:
            if key not in allowed:
                where = f"{path}.{path_key(key)}" if path else path_key(key)
                if key in theirs:
                    self.fail(where, f"{key} is not supported by tetrad yet")
                else:
                    self.fail(where, f"unknown field (known: {', '.join(sorted(allowed | theirs))})")
        return value

    def seq(self, value, path: str) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(path, f"must be a list, not {kind_of(value)}")
            return []
        return value

    def text(self, value, path: str, max_chars: int | None = None,
             max_bytes: int | None = None, nul: bool = False) -> str | None:
        """A string, or None (and a problem) for anything else. No lone
        surrogate, and no NUL unless `nul` (names reach C strings, where
        what follows a NUL is lost; a matchArgs value may end in one, as
        Tetragon's examples write "security.capability\\0")."""
        if not isinstance(value, str):
            quote = " (quote it)" if isinstance(value, (bool, int, float)) else ""
            self.fail(path, f"must be a string, not {kind_of(value)}{quote}")
            return None
        if "\0" in value and not nul:
            self.fail(path, "contains a NUL character")
            return None
        try:
            size = len(value.encode())
        except UnicodeEncodeError:
            self.fail(path, "contains a lone surrogate (not a Unicode character)")
            return None
        if max_chars is not None and len(value) > max_chars:
            self.fail(path, f"{len(value)} characters; at most {max_chars}")
            return None
        if max_bytes is not None and size > max_bytes:
            self.fail(path, f"{size} bytes; at most {max_bytes}")
            return None
        return value

    def optional_text(self, raw: dict, key: str, path: str, max_chars: int, default: str = "") -> str:
        if raw.get(key) is None:
            return default
        value = self.text(raw[key], f"{path}.{key}", max_chars=max_chars)
        return default if value is None else value

    def choice(self, value, path: str, allowed: set[str], what: str) -> str | None:
        """One of `allowed`, or None (and a problem)."""
        if not isinstance(value, str):
            self.fail(path, f"{what} must be a string, one of {', '.join(sorted(allowed))}; "
                            f"not {kind_of(value)}")
            return None
        if value not in allowed:
            self.fail(path, f"unknown or unsupported {what} {describe(value)} "
                            f"(supported: {', '.join(sorted(allowed))})")
            return None
        return value

    def flag(self, raw: dict, key: str, path: str, default: bool = False) -> bool:
        value = raw.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(f"{path}.{key}", f"must be true or false, not {describe(value)}")
            return default
        return value

    def integer(self, value, path: str, bounds: tuple[int, int], why: str = "",
                default: int | None = None) -> int | None:
        """An integer within `bounds` (written as a number or a string of
        one), or `default` and a problem."""
        if value is None:
            return default
        try:
            number = parse_int(value)
        except ValueError as err:
            self.fail(path, f"{err}; an integer is expected")
            return default
        if not _in(number, bounds):
            self.fail(path, f"{describe(number)} is out of range {_range_text(bounds)}"
                            + (f" ({why})" if why else ""))
            return default
        return number

    # ---- hooks -------------------------------------------------------------------

    def arg(self, raw, path: str, max_index: int, broken: set) -> ArgSpec | None:
        """An argument spec, or None when it is unusable; then its index goes
        into `broken`, so matchArgs naming it are not reported again."""
        raw = self.mapping(raw, path, {"index", "type", "label", "sizeArgIndex", "returnCopy",
                                       "maxData", "resolve", "btfType", "btfTypeModule"}, "arg")
        if raw.get("index") is None:
            self.fail(path, "index is required")
            return None
        index = self.integer(raw["index"], f"{path}.index", (0, max_index),
                             "the arguments a hook can read")
        if index is None:
            return None
        type_ = raw.get("type", "auto")
        if isinstance(type_, str) and type_ in tetragon_fields.ARG_TYPES and type_ not in ARG_TYPES:
            self.fail(f"{path}.type", f"type {type_} is not supported by tetrad yet")
            type_ = None
        else:
            type_ = self.choice(type_, f"{path}.type", ARG_TYPES, "type")
        if type_ is None:
            broken.add(index)
            return None
        label = self.optional_text(raw, "label", path, limits.LABEL)
        size_arg = self.integer(raw.get("sizeArgIndex"), f"{path}.sizeArgIndex", (0, max_index + 1),
                                "it counts from 1; 0 is unset")
        if size_arg:
            size_arg -= 1       # Tetragon's documented quirk: sizeArgIndex counts from 1
        else:
            size_arg = None     # 0 is Tetragon's default: no size argument
        max_data = self.flag(raw, "maxData", path)
        if max_data and type_ not in ("char_buf", "char_iovec", "iov_iter"):
            self.fail(f"{path}.maxData", "maxData applies to char_buf, char_iovec and iov_iter arguments")
        resolve = self.optional_text(raw, "resolve", path, limits.SYMBOL)
        if resolve:
            try:
                btfwalk.parse_path(resolve)
            except ValueError as err:
                self.fail(f"{path}.resolve", f"{describe(resolve)}: {err}")
                resolve = ""
        btf_type = self.optional_text(raw, "btfType", path, limits.SYMBOL)
        if btf_type and not BTF_NAME_RE.fullmatch(btf_type):
            self.fail(f"{path}.btfType", f"{describe(btf_type)} is not a struct name (without `struct`)")
        module = self.optional_text(raw, "btfTypeModule", path, limits.SYMBOL)
        if module and not MODULE_NAME_RE.fullmatch(module):
            self.fail(f"{path}.btfTypeModule", f"{describe(module)} is not a kernel module name")
        elif module and not btf_type:
            self.fail(f"{path}.btfTypeModule", "btfTypeModule names where btfType is found: it needs btfType")
        return ArgSpec(index, type_, label, size_arg, self.flag(raw, "returnCopy", path), resolve,
                       btf_type, module, max_data, path)

    def values(self, raw, path: str, limit: int | None) -> list:
        """The values of one operator. Values kept in the kernel's maps
        (strings, paths, binaries, addresses: `limit` None) are bounded per
        policy (limits.MAP_VALUES), as in Tetragon; integers per operator,
        by what a selector's kernel entry holds."""
        values = self.seq(raw, path)
        if not values:
            self.fail(path, "at least one value is required")
        if limit is not None and len(values) > limit:
            self.fail(path, f"{len(values)} values; at most {limit} integer values per operator "
                            "(a selector's kernel entry holds no more)")
            return []
        if len(values) > limits.MAP_VALUES:
            self.fail(path, f"{len(values)} values; at most {limits.MAP_VALUES} per policy")
            return []
        return values

    def match_arg(self, raw, path: str, hook_args: _HookArgs, return_arg: ArgSpec | None,
                  is_return: bool, broken: set, kind: str = "") -> MatchArg | None:
        raw = self.mapping(raw, path, {"index", "args", "operator", "values"}, "matchArgs")
        pos = 0
        if is_return:
            if "return" in broken:
                return None
            spec = return_arg
            if spec is None:
                self.fail(path, "matchReturnArgs needs `return: true` and `returnArg`")
                return None
            index = 0
        else:
            spec = self._matched_arg(raw, path, hook_args, broken, kind)
            if spec is None:
                return None
            index = spec.index
            if spec.type == NOP_TYPE:
                self.fail(f"{path}.index", f"argument {index} is of type nop (not read): it "
                                           "cannot be matched")
                return None
            pos = hook_args.pos(spec)
        allowed = OPS_BY_GROUP[spec.group]
        if spec.group == "int":
            allowed = allowed | {"GT", "LT"}        # Tetragon's short names
        if not allowed:
            self.fail(f"{path}.index", f"argument {index} is a {spec.type}, shown whole: no matchArgs "
                                       "operator applies (resolve one of its members as an integer or "
                                       "a string to match it)")
            return None
        op = raw.get("operator")
        if isinstance(op, str) and op not in allowed:
            self.fail(f"{path}.operator", f"operator {describe(op)} does not apply to a {spec.type} "
                                          f"argument (use one of {', '.join(sorted(allowed))})")
            return None
        op = self.choice(op, f"{path}.operator", allowed, "operator")
        if op is None:
            return None
        op = {"GT": "GreaterThan", "LT": "LessThan"}.get(op, op)
        if op == "State" and spec.type not in SOCK_TYPES:
            self.fail(f"{path}.operator", f"State applies to sock and socket arguments, not {spec.type} "
                                          "(Tetragon's never matches there)")
            return None
        if op in PRIV_OPS:
            if raw.get("values"):
                self.fail(f"{path}.values", f"{op} takes no values (it means ports 0..1023)")
                return None
            return MatchArg(index, op, (), path, pos)
        in_maps = spec.group in ("string", "path") or op in ADDR_OPS or (
            spec.group == "sockaddr_un" and op in STRING_OPS)
        limit = None if in_maps or op in MAP_OPS else limits.VALUES
        where = f"{path}.values"
        values = []
        for i, v in enumerate(self.values(raw.get("values"), where, limit)):
            if op in MAP_OPS and isinstance(v, str) and v.startswith(LIST_PREFIX):
                values += self.list_values(v, f"{where}[{i}]")
                continue
            text = self._value(spec, MAP_OPS.get(op, op), v, f"{where}[{i}]")
            if text is not None:
                values.append(text)
        if op in MAP_OPS and len(values) > limits.VALUES:
            self.fail(where, f"{len(values)} values; InMap on an integer holds at most "
                             f"{limits.VALUES} (a selector's kernel entry)")
        if in_maps:
            self.map_values += len(values)
        return MatchArg(index, op, tuple(values), path, pos)

    def _matched_arg(self, raw: dict, path: str, hook_args: _HookArgs, broken: set,
                     kind: str) -> ArgSpec | None:
        """The spec argument a matchArgs entry names: `args: [n]` (its place
        in args) or `index` (the first argument with that index); None
        when it names none (reported once)."""
        if raw.get("args") is not None:
            places = self.seq(raw["args"], f"{path}.args")
            if len(places) != 1:
                self.fail(f"{path}.args", "one argument: operators on several arguments "
                                          "(CapabilitiesGained) are not supported by tetrad yet")
                return None
            n = self.integer(places[0], f"{path}.args[0]", (0, MAX_ARGS - 1), "a place in args")
            if n is None:
                return None
            if n >= hook_args.count:
                self.fail(f"{path}.args[0]", f"args has {hook_args.count} entries: no [{n}]")
            return hook_args.by_pos.get(n)          # broken: reported where it is
        index = self.integer(raw.get("index", 0), f"{path}.index", (0, 63), default=None)
        if index is None or index in broken:
            return None
        spec = hook_args.by_index.get(index)
        if spec is None and kind == "tracepoint" and index < hook_args.count:
            # Tetragon reads a tracepoint's matchArgs index that names no
            # field of its args as a position in args.
            return hook_args.by_pos.get(index)
        if spec is None:
            self.fail(f"{path}.index", f"no argument with index {index} in this hook's args")
        return spec

    def _value(self, spec: ArgSpec, op: str, value, path: str) -> str | None:
        """One matchArgs value as the compiler reads it (a string), checked
        against the operator and the argument's type; None if it is bad.
        An unquoted integer is its decimal text, as Tetragon reads it."""
        if isinstance(value, int) and not isinstance(value, bool):
            if not -10 ** limits.NUMBER_CHARS < value < 10 ** limits.NUMBER_CHARS:
                self.fail(path, f"a number of more than {limits.NUMBER_CHARS} digits")
                return None
            value = str(value)
        text = self.text(value, path, max_bytes=STRING_MAX - 1, nul=True)
        if text is None:
            return None
        try:
            if op in ADDR_OPS:
                try:
                    ipaddress.ip_network(text, strict=False)
                except ValueError:      # its message quotes the value whole
                    raise ValueError(f"{describe(text)} is not an IPv4 or IPv6 address or "
                                     "network (CIDR)") from None
            elif op in PORT_OPS or op in ("InRange", "NotInRange"):
                bounds = U16 if op in PORT_OPS else int_range(spec.type, op)
                lo, _, hi = text.partition(":")
                lo_i, hi_i = parse_int(lo), parse_int(hi or lo)
                for number in (lo_i, hi_i):
                    if not _in(number, bounds):
                        raise ValueError(self._out_of_range(number, bounds, spec, op))
                if lo_i > hi_i:
                    raise ValueError(f"range {describe(text)} is empty")
            elif op in NAMED_OPS:
                try:
                    lo_i, hi_i = named_range(op, text)
                except ValueError:
                    raise ValueError(f"{describe(text)} is not a name Tetragon knows for {op}, a number "
                                     "or a range low:high") from None
                bounds = NAMED_RANGES[op]
                for number in (lo_i, hi_i):
                    if not _in(number, bounds):
                        raise ValueError(f"{describe(number)} is out of range {_range_text(bounds)}")
                if lo_i > hi_i:
                    raise ValueError(f"range {describe(text)} is empty")
            elif spec.group == "int":
                bounds = int_range(spec.type, op)
                if not _in(number := parse_int(text), bounds):
                    raise ValueError(self._out_of_range(number, bounds, spec, op))
            elif op in ("Equal", "NotEqual") and len(text.encode()) > limits.EQUAL_BYTES:
                raise ValueError(f"an Equal value of a {spec.group} is at most {limits.EQUAL_BYTES} bytes")
            elif op in ("Prefix", "NotPrefix") and len(text.encode()) > PREFIX_MAX:
                raise ValueError(f"prefix longer than {PREFIX_MAX} bytes")
            elif op in ("Postfix", "NotPostfix") and len(text.encode()) > POSTFIX_MAX:
                raise ValueError(f"postfix longer than {POSTFIX_MAX} bytes")
        except ValueError as err:
            self.fail(path, f"bad value for {op}: {err}")
            return None
        return text

    @staticmethod
    def _out_of_range(number: int, bounds: tuple[int, int], spec: ArgSpec, op: str) -> str:
        if op in PORT_OPS:
            return f"{describe(number)} is not a port ({_range_text(bounds)})"
        why = f"a {spec.type} argument holds {_range_text(int_range(spec.type, 'Equal'))}"
        if op in ORDER_OPS and bounds[1] == S64[1] and spec.type != "auto":
            why += "; the kernel compares 64-bit values as signed"
        return f"{describe(number)} can never match: outside {_range_text(bounds)} ({why})"

    def action(self, raw, path: str, kind: str) -> Action | None:
        raw = self.mapping(raw, path, {"action", "argError", "argSig", "argFd", "argName",
                                       "argSock", "argUrl", "argFqdn",
                                       "rateLimit", "rateLimitScope", "kernelStackTrace",
                                       "userStackTrace", "imaHash"}, "action")
        name = self.choice(raw.get("action"), f"{path}.action", ACTIONS, "action")
        if name is None:
            return None
        for unsupported in ("imaHash", "rateLimitScope"):
            if raw.get(unsupported):
                self.fail(f"{path}.{unsupported}", f"{unsupported} is not supported by tetrad yet")
        stacks = {key: self.flag(raw, key, path) for key in ("kernelStackTrace", "userStackTrace")}
        for key, wanted in stacks.items():
            if wanted and name != "Post":
                self.fail(f"{path}.{key}", f"{key} applies to Post only")
            elif wanted and kind != "kprobe":
                # Tetragon's events carry stacks on process_kprobe only.
                self.fail(f"{path}.{key}", f"{key} applies to kprobes (and syscall hooks) only; "
                                           f"this is a {kind}")
        if name == "Override":
            # A BPF LSM program may return 0 or a negative errno; a kprobe
            # override any small value (Tetragon's examples use 1).
            bounds = (-MAX_ERRNO, -1) if kind == "lsm" else (-MAX_ERRNO, MAX_ERRNO)
            why = ("a negative errno, e.g. -1 for EPERM" if kind == "lsm"
                   else "an errno such as -1 for EPERM, or a small return value")
            if raw.get("argError") is None:
                self.fail(f"{path}.argError", "Override needs argError (e.g. -1 for EPERM)")
            arg_error = self.integer(raw.get("argError"), f"{path}.argError", bounds, why, 0)
            if arg_error == 0 and raw.get("argError") is not None and not self._failed(f"{path}.argError"):
                self.fail(f"{path}.argError", "0 overrides nothing; use an errno such as -1 for EPERM")
        elif name == "NotifyEnforcer":
            # What the syscall returns instead of running: an errno, as Override.
            arg_error = self.integer(raw.get("argError"), f"{path}.argError", (-MAX_ERRNO, -1),
                                     "a negative errno, e.g. -1 for EPERM", 0)
        else:
            arg_error = self.integer(raw.get("argError"), f"{path}.argError", S32, "", 0)
        arg_sig = self.integer(raw.get("argSig"), f"{path}.argSig", SIGNALS, "a signal number", 0)
        if name == "Signal" and raw.get("argSig") is None:
            self.fail(f"{path}.argSig", "Signal needs argSig, a signal number 1..64")
        if name == "NotifyEnforcer" and raw.get("argError") is None and raw.get("argSig") is None:
            self.fail(path, "NotifyEnforcer needs argError (the error the syscall returns), "
                            "argSig (a signal sent to the caller) or both")
        slots = (0, MAX_ARG_INDEX[kind])
        arg_fd = self.integer(raw.get("argFd"), f"{path}.argFd", slots, "an argument index", 0)
        arg_name = self.integer(raw.get("argName"), f"{path}.argName", slots, "an argument index", 0)
        rate = 0
        if "rateLimit" in raw:
            if name != "Post":
                self.fail(f"{path}.rateLimit", "rateLimit applies to Post only")
            try:
                rate = parse_duration(raw["rateLimit"])
            except ValueError as err:
                self.fail(f"{path}.rateLimit", str(err))
            if not _in(rate, U32):
                self.fail(f"{path}.rateLimit", f"{describe(rate)} seconds is out of range "
                                               f"{_range_text(U32)} (the kernel keeps seconds in "
                                               "32 bits)")
                rate = 0
        arg_sock = self.integer(raw.get("argSock"), f"{path}.argSock", slots,
                                "the position of a sock argument in args", 0)
        arg_url = arg_fqdn = ""
        if name == "GetUrl":
            arg_url = self.url(raw.get("argUrl"), f"{path}.argUrl")
        elif "argUrl" in raw:
            self.fail(f"{path}.argUrl", "argUrl applies to GetUrl only")
        if name == "DnsLookup":
            arg_fqdn = self.fqdn(raw.get("argFqdn"), f"{path}.argFqdn")
        elif "argFqdn" in raw:
            self.fail(f"{path}.argFqdn", "argFqdn applies to DnsLookup only")
        return Action(name, arg_error or 0, arg_sig or 0, arg_fd or 0, arg_name or 0, rate,
                      arg_sock or 0, arg_url, arg_fqdn, kernel_stack=stacks["kernelStackTrace"],
                      user_stack=stacks["userStackTrace"])

    def url(self, value, path: str) -> str:
        """GetUrl's argUrl: an http or https URL with a host."""
        if value is None:
            self.fail(path, "GetUrl needs argUrl, the http:// or https:// URL to request")
            return ""
        text = self.text(value, path, max_chars=URL_CHARS)
        if text is None:
            return ""
        try:
            parts = urllib.parse.urlsplit(text)
            parts.port                      # raises on a port that is not a number
        except ValueError:
            parts = None
        if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname
                or any(c.isspace() or not c.isprintable() for c in text)):
            self.fail(path, f"{describe(text)} is not an http:// or https:// URL with a host")
            return ""
        return text

    def fqdn(self, value, path: str) -> str:
        """DnsLookup's argFqdn: a domain name (letters, digits, '-', '_',
        labels of 1..63 characters, 253 in all)."""
        if value is None:
            self.fail(path, "DnsLookup needs argFqdn, the domain name to look up")
            return ""
        text = self.text(value, path, max_chars=FQDN_CHARS + 1)
        if text is None:
            return ""
        if not FQDN_RE.fullmatch(text):
            self.fail(path, f"{describe(text)} is not a domain name")
            return ""
        return text

    def match_pids(self, raw, where: str) -> MatchPIDs | None:
        m = self.mapping(raw, where, {"operator", "values", "followForks", "isNamespacePID"}, "matchPIDs")
        op = self.choice(m.get("operator"), f"{where}.operator", PID_OPS, "operator")
        pids = []
        for j, x in enumerate(self.values(m.get("values"), f"{where}.values", limits.PIDS)):
            pid = self.integer(x, f"{where}.values[{j}]", U32, "a PID is a 32-bit number")
            if pid is not None:
                pids.append(pid)
        follow = self.flag(m, "followForks", where)
        ns_pid = self.flag(m, "isNamespacePID", where)
        return MatchPIDs(op, tuple(pids), follow, ns_pid) if op else None

    def match_binaries(self, raw, where: str) -> MatchBinaries | None:
        m = self.mapping(raw, where, {"operator", "values", "followChildren"}, "matchBinaries")
        op = self.choice(m.get("operator"), f"{where}.operator", BINARY_OPS, "operator")
        if self.flag(m, "followChildren", where):
            self.fail(f"{where}.followChildren", "followChildren is not supported by tetrad yet")
        # Kernel lookup keys: a trie key holds 248 bytes (In/NotIn keep
        # their NUL there), a Postfix key 128.
        limit = {"In": PREFIX_MAX - 1, "NotIn": PREFIX_MAX - 1, "Prefix": PREFIX_MAX,
                 "NotPrefix": PREFIX_MAX}.get(op, POSTFIX_MAX)
        values = []
        for j, v in enumerate(self.values(m.get("values"), f"{where}.values", None)):
            text = self.text(v, f"{where}.values[{j}]", max_bytes=limit)
            if text is None:
                continue
            if op in ("In", "NotIn", "Prefix", "NotPrefix") and not text.startswith("/"):
                self.fail(f"{where}.values[{j}]", f"{describe(text)} must be an absolute path")
                continue
            values.append(text)
        self.map_values += len(values)
        return MatchBinaries(op, tuple(values)) if op else None

    def match_namespace(self, raw, where: str) -> MatchNamespace | None:
        m = self.mapping(raw, where, {"namespace", "operator", "values"}, "matchNamespaces")
        ns = self.choice_nocase(m.get("namespace"), f"{where}.namespace", proc_state.NAMESPACES,
                                "namespace", ("Uts", "Ipc", "Mnt", "Pid", "PidForChildren", "Net",
                                              "Time", "TimeForChildren", "Cgroup", "User"))
        op = self.choice(m.get("operator"), f"{where}.operator", SET_OPS, "operator")
        values: list[int | str] = []
        for j, v in enumerate(self.values(m.get("values"), f"{where}.values", NS_VALUES)):
            if v == HOST_NS:
                values.append(HOST_NS)
                continue
            why = 'a namespace inode number (as `lsns` shows) or "host_ns"'
            try:
                parse_int(v)
            except ValueError:
                self.fail(f"{where}.values[{j}]", f"{describe(v)} is not {why}")
                continue
            inum = self.integer(v, f"{where}.values[{j}]", U32, why)
            if inum is not None:
                values.append(inum)
        return MatchNamespace(ns, op, tuple(values)) if ns is not None and op else None

    def match_namespace_changes(self, raw, where: str) -> MatchNamespaceChanges | None:
        m = self.mapping(raw, where, {"operator", "values"}, "matchNamespaceChanges")
        op = self.choice(m.get("operator"), f"{where}.operator", SET_OPS, "operator")
        namespaces = set()
        for j, v in enumerate(self.values(m.get("values"), f"{where}.values", None)):
            ns = self.choice_nocase(v, f"{where}.values[{j}]", proc_state.NAMESPACES, "namespace",
                                    ("Uts", "Ipc", "Mnt", "Pid", "PidForChildren", "Net", "Time",
                                     "TimeForChildren", "Cgroup", "User"))
            if ns is not None:
                namespaces.add(ns)
        return MatchNamespaceChanges(op, frozenset(namespaces)) if op and namespaces else None

    def match_capabilities(self, raw, where: str, what: str) -> MatchCapabilities | None:
        m = self.mapping(raw, where, {"type", "operator", "isNamespaceCapability", "values"}, what)
        cap_set = self.choice_nocase(m.get("type", "Effective"), f"{where}.type", proc_state.CAP_SETS,
                                     "capability set", ("Effective", "Inheritable", "Permitted"))
        op = self.choice(m.get("operator"), f"{where}.operator", SET_OPS, "operator")
        ns_cap = self.flag(m, "isNamespaceCapability", where)
        mask = 0
        for j, v in enumerate(self.values(m.get("values"), f"{where}.values", None)):
            number = proc_state.capability_number(v) if isinstance(v, str) else None
            if number is None:
                self.fail(f"{where}.values[{j}]", f"{describe(v)} is not a capability "
                                                  "(CAP_CHOWN, CAP_SYS_ADMIN, ...: capabilities(7))")
                continue
            mask |= 1 << number
        return MatchCapabilities(cap_set, op, ns_cap, mask) if cap_set is not None and op and mask else None

    def choice_nocase(self, value, path: str, names: tuple[str, ...], what: str,
                      shown: tuple[str, ...]) -> int | None:
        """The index in `names` (lower case) of a name given in any case, as
        Tetragon reads namespace and capability set names; None and a
        problem naming the `shown` spellings otherwise."""
        if isinstance(value, str) and value.lower() in names:
            return names.index(value.lower())
        self.fail(path, f"unknown {what} {describe(value)} (one of {', '.join(shown)})")
        return None

    def selector(self, raw, path: str, hook_args: _HookArgs,
                 return_arg: ArgSpec | None, kind: str, broken: set) -> Selector:
        raw = self.mapping(raw, path, {"label", "matchArgs", "matchReturnArgs", "matchPIDs",
                                       "matchBinaries", "matchActions", "matchReturnActions",
                                       "matchNamespaces", "matchNamespaceChanges",
                                       "matchCapabilities", "matchCapabilityChanges"},
                           "selector")
        if raw.get("label") is not None:
            self.text(raw["label"], f"{path}.label", max_chars=limits.LABEL)
        raw_args = self.seq(raw.get("matchArgs"), f"{path}.matchArgs")
        if len(raw_args) > MAX_MATCH_ARGS:
            self.fail(f"{path}.matchArgs", f"{len(raw_args)} entries; at most {MAX_MATCH_ARGS}")
            raw_args = []
        # Several entries may name one argument; all must hold, as in Tetragon.
        match_args = [parsed for i, m in enumerate(raw_args)
                      if (parsed := self.match_arg(m, f"{path}.matchArgs[{i}]", hook_args,
                                                   return_arg, False, broken, kind))]
        raw_ret = self.seq(raw.get("matchReturnArgs"), f"{path}.matchReturnArgs")
        if len(raw_ret) > 1:
            self.fail(f"{path}.matchReturnArgs", "at most one entry (the return value)")
            raw_ret = []
        return_args = [r for i, m in enumerate(raw_ret)
                       if (r := self.match_arg(m, f"{path}.matchReturnArgs[{i}]", hook_args,
                                               return_arg, True, broken))]
        pids = [p for i, m in enumerate(self.seq(raw.get("matchPIDs"), f"{path}.matchPIDs"))
                if (p := self.match_pids(m, f"{path}.matchPIDs[{i}]"))]
        binaries = None
        raw_bins = self.seq(raw.get("matchBinaries"), f"{path}.matchBinaries")
        if len(raw_bins) > 1:
            self.fail(f"{path}.matchBinaries", "at most one entry per selector (Tetragon's limit)")
        for i, m in enumerate(raw_bins[:1]):
            binaries = self.match_binaries(m, f"{path}.matchBinaries[{i}]")
        actions = self._sock_args(self._actions(raw.get("matchActions"), f"{path}.matchActions", kind),
                                  f"{path}.matchActions", hook_args)
        ret_actions = self._sock_args(self._actions(raw.get("matchReturnActions"),
                                                    f"{path}.matchReturnActions", kind),
                                      f"{path}.matchReturnActions", hook_args)
        if ret_actions and return_arg is None and "return" not in broken:
            self.fail(f"{path}.matchReturnActions", "needs `return: true` and `returnArg`")
        raw_ns = self.seq(raw.get("matchNamespaces"), f"{path}.matchNamespaces")
        if len(raw_ns) > len(proc_state.NAMESPACES):
            self.fail(f"{path}.matchNamespaces", f"{len(raw_ns)} entries; at most "
                                                 f"{len(proc_state.NAMESPACES)}, one per namespace type")
            raw_ns = []
        namespaces = [n for i, m in enumerate(raw_ns)
                      if (n := self.match_namespace(m, f"{path}.matchNamespaces[{i}]"))]
        ns_changes = None
        raw_nc = self.seq(raw.get("matchNamespaceChanges"), f"{path}.matchNamespaceChanges")
        if len(raw_nc) > 1:
            self.fail(f"{path}.matchNamespaceChanges", "at most one entry (Tetragon's limit)")
        for i, m in enumerate(raw_nc[:1]):
            ns_changes = self.match_namespace_changes(m, f"{path}.matchNamespaceChanges[{i}]")
        caps = [c for i, m in enumerate(self.seq(raw.get("matchCapabilities"), f"{path}.matchCapabilities"))
                if (c := self.match_capabilities(m, f"{path}.matchCapabilities[{i}]", "matchCapabilities"))]
        cap_changes = [c for i, m in enumerate(self.seq(raw.get("matchCapabilityChanges"),
                                                        f"{path}.matchCapabilityChanges"))
                       if (c := self.match_capabilities(m, f"{path}.matchCapabilityChanges[{i}]",
                                                        "matchCapabilityChanges"))]
        return Selector(tuple(match_args), tuple(return_args), tuple(pids), binaries,
                        tuple(actions), tuple(ret_actions), tuple(namespaces), ns_changes,
                        tuple(caps), tuple(cap_changes))

    def _sock_args(self, actions: list[Action], path: str, hook_args: _HookArgs) -> list[Action]:
        """TrackSock/UntrackSock: argSock is a position in the hook's args
        (as Tetragon counts it), which must be a sock or socket; the action
        keeps that argument's place in Hook.args (its record slot: nop
        arguments are not there, and an index may appear more than once)."""
        out = []
        for i, a in enumerate(actions):
            if a.action in SOCK_ACTIONS:
                arg = hook_args.by_pos.get(a.arg_sock)
                if arg is None or arg.type not in SOCK_TYPES:
                    what = f"argument {a.arg_sock} is of type {arg.type}" if arg else \
                        f"there is no argument {a.arg_sock}"
                    self.fail(f"{path}[{i}].argSock", f"{a.action} needs argSock, the position in args "
                                                      f"of a sock or socket argument; {what}")
                    continue
                a = replace(a, arg_sock=hook_args.pos(arg))
            out.append(a)
        return out

    def _actions(self, raw, path: str, kind: str) -> list[Action]:
        raw = self.seq(raw, path)
        if len(raw) > MAX_ACTIONS:
            self.fail(path, f"{len(raw)} actions; at most {MAX_ACTIONS} per selector")
            return []
        return [a for i, x in enumerate(raw) if (a := self.action(x, f"{path}[{i}]", kind))]

    def enforcer_calls(self, raw) -> None:
        """spec.enforcers: the syscalls NotifyEnforcer actions make fail
        (Tetragon's `calls`, syscall names or list:NAME)."""
        for i, entry in enumerate(self.seq(raw, "spec.enforcers")):
            where = f"spec.enforcers[{i}]"
            entry = self.mapping(entry, where, {"calls"}, "enforcer")
            calls = self.values(entry.get("calls"), f"{where}.calls", None)
            for j, v in enumerate(calls):
                path = f"{where}.calls[{j}]"
                if isinstance(v, str) and v.startswith(LIST_PREFIX):
                    self.enforcers += [c for c in self.list_values(v, path) if c not in self.enforcers]
                    continue
                call = self.name(v, path, KERNEL_NAME_RE, "a syscall name")
                if call is not None and call not in self.enforcers:
                    self.enforcers.append(call)

    def named_lists(self, raw) -> None:
        """spec.lists: named lists of syscalls, for `call: list:NAME` and
        InMap values, and Tetragon's generated lists (every syscall, kernel
        functions matching a pattern) for `call: list:NAME`, which the
        compiler expands on the running kernel."""
        for i, entry in enumerate(self.seq(raw, "spec.lists")):
            where = f"spec.lists[{i}]"
            entry = self.mapping(entry, where, {"name", "type", "values", "validated", "pattern"}, "list")
            name = self.text(entry.get("name"), f"{where}.name", max_chars=limits.NAME)
            kind = self.choice(entry.get("type"), f"{where}.type", LIST_TYPES, "list type")
            self.flag(entry, "validated", where)
            if kind in GENERATED:
                pattern = self.list_pattern(entry, where, kind)
                if entry.get("values") is not None:
                    self.fail(f"{where}.values", f"a {kind} list makes its own values")
                if name is None or pattern is None:
                    self.lists_refused = True
                elif name in self.lists or name in self.generated:
                    self.fail(f"{where}.name", f"a second list named {describe(name)}")
                else:
                    self.generated[name] = (GENERATED[kind], pattern)
                continue
            if entry.get("pattern") is not None:
                self.fail(f"{where}.pattern", "pattern is for generated_ftrace lists")
            values = []
            raw_values = self.values(entry.get("values"), f"{where}.values", limits.HOOKS) if kind else []
            for j, v in enumerate(raw_values):
                call = self.name(v, f"{where}.values[{j}]", KERNEL_NAME_RE, "a syscall name")
                if call is not None:
                    values.append(call)
            if name is None or kind is None:
                self.lists_refused = True
                continue
            if name in self.lists or name in self.generated:
                self.fail(f"{where}.name", f"a second list named {describe(name)}")
            self.lists[name] = tuple(values)

    def list_pattern(self, entry: dict, where: str, kind: str) -> str | None:
        """A generated_ftrace list's pattern, a regular expression over
        kernel function names (generated_syscalls: "")."""
        if kind == "generated_syscalls":
            if entry.get("pattern") is not None:
                self.fail(f"{where}.pattern", "pattern is for generated_ftrace lists")
            return ""
        if entry.get("pattern") is None:
            self.fail(f"{where}.pattern", "a generated_ftrace list needs a pattern (a regular "
                                          "expression over kernel function names)")
            return None
        pattern = self.text(entry["pattern"], f"{where}.pattern", max_chars=limits.SYMBOL)
        if pattern is None:
            return None
        try:
            re.compile(pattern)
        except re.error as err:
            self.fail(f"{where}.pattern", f"not a regular expression: {err}")
            return None
        return pattern

    def list_values(self, ref: str, path: str) -> list[str]:
        """The values of `list:NAME`; [] (and one error) when there is no
        such list."""
        name = ref[len(LIST_PREFIX):]
        if name in self.lists:
            return list(self.lists[name])
        if name in self.generated:
            self.fail(path, f"list {describe(name)} is generated: only a kprobe's call can name it")
            return []
        if not self.lists_refused:
            self.fail(path, f"no list named {describe(name)} in spec.lists")
        return []

    def name(self, value, path: str, pattern: re.Pattern, what: str) -> str | None:
        text = self.text(value, path, max_chars=limits.SYMBOL)
        if text is None:
            return None
        if not text:
            self.fail(path, f"{what} is required")
            return None
        if text.startswith(LIST_PREFIX):
            self.fail(path, "list:NAME is only for a kprobe's call or InMap values")
            return None
        if not pattern.fullmatch(text):
            self.fail(path, f"{describe(text)} is not {what}")
            return None
        return text

    def return_arg_action(self, raw: dict, path: str, return_: bool, return_arg: ArgSpec | None) -> str:
        """returnArgAction: Post (the default) or TrackSock/UntrackSock on
        the returned sock; "" for Post."""
        value = raw.get("returnArgAction")
        if value is None:
            return ""
        action = self.choice(value, f"{path}.returnArgAction", {"Post"} | SOCK_ACTIONS, "returnArgAction")
        if action in SOCK_ACTIONS:
            if not return_ or return_arg is None or return_arg.type != "sock":
                self.fail(f"{path}.returnArgAction", f"{action} needs `return: true` and a returnArg of "
                                                     "type sock")
            return action
        return ""

    def hook(self, raw, kind: str, path: str) -> list[Hook]:
        """The hooks of one entry: one, or one per syscall of a `list:NAME`
        call, or one per uprobe symbol, as Tetragon attaches them."""
        common = {"args", "selectors", "message", "tags"}
        allowed = {
            "kprobe": common | {"call", "syscall", "return", "returnArg", "returnArgAction", "ignore"},
            "tracepoint": common | {"subsystem", "event", "raw"},
            "uprobe": common | {"path", "symbols", "offsets", "addrs", "refCtrOffsets", "return",
                                "returnArg", "binaryDigests", "ignore"},
            "usdt": common | {"path", "provider", "name"},
            "lsm": common | {"hook"},
        }[kind]
        raw = self.mapping(raw, path, allowed, kind)
        if raw.get("ignore") is not None and not isinstance(raw["ignore"], dict):
            self.fail(f"{path}.ignore", f"must be a mapping, not {kind_of(raw['ignore'])}")
        ignore_missing = False
        if kind == "kprobe" and isinstance(raw.get("ignore"), dict):
            ignore = self.mapping(raw["ignore"], f"{path}.ignore", {"callNotFound"})
            ignore_missing = self.flag(ignore, "callNotFound", f"{path}.ignore")
        broken: set = set()
        args_raw = self.seq(raw.get("args"), f"{path}.args")
        if len(args_raw) > MAX_ARGS:
            self.fail(f"{path}.args", f"{len(args_raw)} args; Tetragon allows at most {MAX_ARGS}")
            args_raw = []
        # Tracepoint indexes count the fields of the tracepoint's format; a
        # raw tracepoint's, its arguments (at most 6, as Tetragon reads).
        raw_tp = kind == "tracepoint" and raw.get("raw") is True
        max_index = MAX_ARG_INDEX["rawtp" if raw_tp else kind]
        # An index may appear more than once (several members of one struct
        # argument, each resolved): matchArgs `index` names the first.
        by_pos = {i: a for i, x in enumerate(args_raw)
                  if (a := self.arg(x, f"{path}.args[{i}]", max_index, broken))}
        args = list(by_pos.values())
        by_index: dict[int, ArgSpec] = {}
        for a in args:
            by_index.setdefault(a.index, a)
        for a in args:
            if a.size_arg_index is not None and a.size_arg_index not in set(by_index) | broken:
                self.fail(f"{a.where}.sizeArgIndex",
                          f"no argument with index {a.size_arg_index} (sizeArgIndex counts from 1)")
            if a.return_copy and kind != "kprobe":
                self.fail(f"{a.where}.returnCopy", "returnCopy applies to kprobes")
        hook_args = _HookArgs(by_index, by_pos, [a for a in args if a.type != NOP_TYPE], len(args_raw))
        return_ = self.flag(raw, "return", path)
        return_arg = None
        if "returnArg" in raw:
            return_broken: set = set()
            return_arg = self.arg(raw["returnArg"], f"{path}.returnArg", max_index, return_broken)
            if return_arg is not None and (return_arg.resolve or return_arg.btf_type):
                # the return value is shown as the integer it is
                self.fail(f"{path}.returnArg", "resolve and btfType are not supported on returnArg "
                                               "by tetrad yet")
                return_arg = None
            if return_arg is None:
                broken.add("return")
        if return_ and return_arg is None and "return" not in broken:
            self.fail(f"{path}.returnArg", "`return: true` needs returnArg")
        if not return_:
            return_arg = None       # Tetragon ignores returnArg without `return: true`
            broken.discard("return")
        ret_action = self.return_arg_action(raw, path, return_, return_arg)
        sel_raw = self.seq(raw.get("selectors"), f"{path}.selectors")
        if len(sel_raw) > MAX_SELECTORS:
            self.fail(f"{path}.selectors", f"{len(sel_raw)} selectors; Tetragon allows at most {MAX_SELECTORS}")
            sel_raw = []
        selectors = tuple(self.selector(s, f"{path}.selectors[{i}]", hook_args, return_arg, kind, broken)
                          for i, s in enumerate(sel_raw))
        tags_raw = self.seq(raw.get("tags"), f"{path}.tags")
        if len(tags_raw) > limits.TAGS:
            self.fail(f"{path}.tags", f"{len(tags_raw)} tags; at most {limits.TAGS}")
            tags_raw = []
        tags = []
        for i, t in enumerate(tags_raw):
            tag = self.text(t, f"{path}.tags[{i}]", max_chars=limits.TAG_MAX)
            if tag is not None and len(tag) < limits.TAG_MIN:
                self.fail(f"{path}.tags[{i}]", f"at least {limits.TAG_MIN} characters")
            elif tag is not None:
                tags.append(tag)
        message = self.optional_text(raw, "message", path, limits.MESSAGE)
        base = dict(kind=kind, path=path, args=tuple(hook_args.kept), selectors=selectors, message=message,
                    tags=tuple(tags), return_=return_, return_arg=return_arg,
                    return_arg_action=ret_action, ignore_missing=ignore_missing)
        if kind == "kprobe":
            call = raw.get("call", "")
            if isinstance(call, str) and call.startswith(LIST_PREFIX):
                if call[len(LIST_PREFIX):] in self.generated:
                    # Expanded on the running kernel (tetrad/policy/compile.py).
                    generated, pattern = self.generated[call[len(LIST_PREFIX):]]
                    return [Hook(call=call, syscall=generated == "syscalls", generated=generated,
                                 pattern=pattern, **base)]
                # One hook per syscall of the list, as Tetragon attaches them.
                return [Hook(call=c, syscall=True, **base)
                        for c in self.list_values(call, f"{path}.call")]
            call = self.name(call, f"{path}.call", KERNEL_NAME_RE, "a kernel function name (call)")
            if call is None:
                return []
            if "syscall" not in raw:
                # The CRD defaults to true, Tetragon's prose to false: guess from
                # the name, as users write both, and say nothing.
                syscall = call.startswith(("sys_", "__x64_sys_", "__arm64_sys_"))
            else:
                syscall = self.flag(raw, "syscall", path)
            if syscall and ret_action:
                self.fail(f"{path}.returnArgAction", f"{ret_action} tracks the struct sock * a kernel "
                                                     "function returns; a syscall returns a number")
            return [Hook(call=call, syscall=syscall, **base)]
        if kind == "tracepoint":
            subsystem = self.name(raw.get("subsystem", ""), f"{path}.subsystem", TRACEFS_NAME_RE,
                                  "a tracepoint subsystem")
            event = self.name(raw.get("event", ""), f"{path}.event", TRACEFS_NAME_RE,
                              "a tracepoint event")
            if subsystem is None or event is None:
                return []
            if return_:
                self.fail(f"{path}.return", "tracepoints have no return value")
            return [Hook(call=f"{subsystem}/{event}", raw=self.flag(raw, "raw", path), **base)]
        if kind == "lsm":
            name = self.name(raw.get("hook", ""), f"{path}.hook", KERNEL_NAME_RE,
                             "an LSM hook name (e.g. file_open)")
            return [Hook(call=name, **base)] if name else []
        binary = None
        if raw.get("path") is None:
            self.fail(f"{path}.path", "path (absolute path of the binary) is required")
        else:
            binary = self.text(raw["path"], f"{path}.path", max_bytes=limits.PATH_BYTES)
        if binary is not None and not binary.startswith("/"):
            self.fail(f"{path}.path", f"{describe(binary)} is not an absolute path")
            binary = None
        if kind == "usdt":
            return self.usdt(raw, path, binary, base)
        return self.uprobe(raw, path, binary, base)

    def uprobe(self, raw: dict, path: str, binary: str | None, base: dict) -> list[Hook]:
        """One hook per symbol, offset or address, as Tetragon attaches them
        (exactly one of the three lists), each with its refCtrOffsets entry."""
        places = {key: self.seq(raw.get(key), f"{path}.{key}") for key in ("symbols", "offsets", "addrs")}
        given = [key for key, values in places.items() if values]
        if len(given) != 1:
            self.fail(path, "a uprobe needs exactly one of symbols, offsets or addrs"
                            + (f" (it has {', '.join(given)})" if given else ""))
            return []
        key = given[0]
        ref_ctrs = [self.integer(v, f"{path}.refCtrOffsets[{i}]", U64, "a file offset", 0)
                    for i, v in enumerate(self.seq(raw.get("refCtrOffsets"), f"{path}.refCtrOffsets"))]
        if ref_ctrs and len(ref_ctrs) != len(places[key]):
            self.fail(f"{path}.refCtrOffsets", f"{len(ref_ctrs)} entries for {len(places[key])} {key}; "
                                               "one per probe, in their order")
            ref_ctrs = []
        digests = self.digests(raw.get("binaryDigests"), f"{path}.binaryDigests")
        ignore = raw.get("ignore")
        ignore_digest = False
        if isinstance(ignore, dict):
            ignore = self.mapping(ignore, f"{path}.ignore", {"digestVerificationFailure"})
            ignore_digest = self.flag(ignore, "digestVerificationFailure", f"{path}.ignore")
        common = dict(binary=binary, digests=digests, ignore_digest=ignore_digest, **base)
        hooks = []
        for i, value in enumerate(places[key]):
            where = f"{path}.{key}[{i}]"
            ref_ctr = ref_ctrs[i] if ref_ctrs else 0
            if key == "symbols":
                symbol = self.text(value, where, max_chars=limits.SYMBOL)
                if symbol == "":
                    self.fail(where, "the symbol name is required")
                    continue
                if symbol is None:
                    continue
                name, plus, offset = symbol.partition("+")
                try:
                    extra = parse_int(offset) if plus else 0
                except ValueError:
                    extra = -1
                if not name or not _in(extra, U64):
                    self.fail(where, f"{describe(symbol)} is not a symbol or symbol+offset")
                    continue
                if binary is not None:
                    hooks.append(Hook(symbol=symbol, call=symbol, offset=extra, ref_ctr_offset=ref_ctr,
                                      **common))
                continue
            number = self.integer(value, where, U64, "a file offset" if key == "offsets" else "an address")
            if number is not None and binary is not None:
                place = {"offset": number} if key == "offsets" else {"address": number}
                hooks.append(Hook(call=f"{number:#x}", ref_ctr_offset=ref_ctr, **place, **common))
        return hooks

    def digests(self, raw, path: str) -> tuple[str, ...]:
        """binaryDigests: "algorithm:hex" with one of Tetragon's algorithms."""
        out = []
        for i, value in enumerate(self.seq(raw, path)):
            text = self.text(value, f"{path}[{i}]", max_chars=200)
            if text is None:
                continue
            algorithm, _, digest = text.partition(":")
            algorithm, digest = algorithm.strip().lower(), digest.strip().lower()
            length = DIGEST_HEX.get(algorithm)
            if length is None:
                self.fail(f"{path}[{i}]", f"{describe(text)} is not ALGORITHM:HEX with an algorithm of "
                                          f"{', '.join(sorted(DIGEST_HEX))}")
            elif not re.fullmatch(r"[0-9a-f]+", digest) or not (
                    len(digest) == length if length else len(digest) % 2 == 0 and 2 <= len(digest) <= 128):
                self.fail(f"{path}[{i}]", f"{describe(text)}: {algorithm} is "
                                          + (f"{length} hex digits" if length else "an even number of hex digits"))
            else:
                out.append(f"{algorithm}:{digest}")
        return tuple(out)

    def usdt(self, raw: dict, path: str, binary: str | None, base: dict) -> list[Hook]:
        """A USDT probe by provider and name; which places in the binary it
        has is read from its notes when the policy is compiled."""
        provider = self.name(raw.get("provider", ""), f"{path}.provider", USDT_NAME_RE, "a USDT provider")
        name = self.name(raw.get("name", ""), f"{path}.name", USDT_NAME_RE, "a USDT probe name")
        if provider is None or name is None or binary is None:
            return []
        return [Hook(binary=binary, provider=provider, symbol=name, call=f"{provider}:{name}", **base)]

    # ---- the document --------------------------------------------------------------

    def policy(self, doc) -> tuple[str, str, list[Hook], Workloads | None, bool]:
        doc = self.mapping(doc, "", {"apiVersion", "kind", "metadata", "spec"}, "document")
        if doc.get("apiVersion") != API_VERSION:
            self.fail("apiVersion", f"must be {API_VERSION}, not {describe(doc.get('apiVersion'))}")
        kind = doc.get("kind")
        if kind not in KINDS:
            self.fail("kind", f"must be TracingPolicy or TracingPolicyNamespaced, not {describe(kind)}")
        # Every field of a Kubernetes object's metadata is accepted (a policy
        # exported with kubectl has them); tetrad uses name and namespace.
        meta = self.mapping(doc.get("metadata", {}), "metadata", tetragon_fields.FIELDS["metadata"])
        name = self.text(meta.get("name"), "metadata.name")
        if name is not None and (len(name) > limits.NAME or not NAME_RE.fullmatch(name)):
            self.fail("metadata.name", f"{describe(name)} is not a valid name (a DNS subdomain: "
                                       f"at most {limits.NAME} lower-case letters, digits, '-' "
                                       "and '.', starting and ending each part with a letter or digit)")
        namespace = ""
        if meta.get("namespace") is not None:
            namespace = self.text(meta["namespace"], "metadata.namespace", max_chars=limits.NAME) or ""
        if kind == "TracingPolicyNamespaced" and not NAMESPACE_RE.fullmatch(namespace):
            self.fail("metadata.namespace", "a TracingPolicyNamespaced applies to the pods of its "
                                            "namespace: name it here (a DNS label: at most 63 "
                                            "lower-case letters, digits and '-')"
                      if not namespace else f"{describe(namespace)} is not a namespace name (a DNS "
                                            "label: at most 63 lower-case letters, digits and '-')")
        elif kind != "TracingPolicyNamespaced":
            namespace = ""                   # a cluster-wide policy's namespace means nothing
        for key in ("labels", "annotations"):
            entries = meta.get(key)
            if entries is not None and not isinstance(entries, dict):
                self.fail(f"metadata.{key}", f"must be a mapping, not {kind_of(entries)}")
            elif entries:
                for k, v in entries.items():
                    self.text(v, f"metadata.{key}.{path_key(k)}")
        spec = self.mapping(doc.get("spec", {}), "spec", {"kprobes", "tracepoints", "uprobes", "usdts", "lsmhooks",
                                                          "options", "containerSelector", "hostSelector",
                                                          "podSelector", "lists", "enforcers",
                                                          "loader", *UNSUPPORTED_SPEC}, "spec")
        for key, what in UNSUPPORTED_SPEC.items():
            if key in spec:
                self.fail(f"spec.{key}", f"{what} are not supported by tetrad yet")
        self.named_lists(spec.get("lists"))
        self.enforcer_calls(spec.get("enforcers"))
        workloads, problems = workload_scope.parse(spec, namespace)
        self.problems += problems
        mode = "enforce"
        unreadable = "match"
        for i, opt in enumerate(self.seq(spec.get("options"), "spec.options")):
            where = f"spec.options[{i}]"
            opt = self.mapping(opt, where, {"name", "value"}, "option")
            option = self.choice(opt.get("name"), f"{where}.name",
                                 {"policy-mode", "disable-kprobe-multi", "disable-uprobe-multi",
                                  UNREADABLE_ARGS}, "option")
            if option == "policy-mode":
                mode = self.choice(opt.get("value"), f"{where}.value", {"enforce", "monitor"},
                                   "policy-mode") or mode
            elif option == UNREADABLE_ARGS:
                unreadable = self.choice(opt.get("value"), f"{where}.value", {"match", "no-match"},
                                         UNREADABLE_ARGS) or unreadable
        hooks = []
        count = 0
        for key, kind in (("kprobes", "kprobe"), ("tracepoints", "tracepoint"), ("uprobes", "uprobe"),
                          ("usdts", "usdt"), ("lsmhooks", "lsm")):
            entries = self.seq(spec.get(key), f"spec.{key}")
            count += len(entries)
            if count > limits.HOOKS:
                self.fail(f"spec.{key}", f"more than {limits.HOOKS} hooks in one policy; split it "
                                         "into several files")
                break
            for i, raw in enumerate(entries):
                hooks += self.hook(raw, kind, f"spec.{key}[{i}]")
        if len(hooks) > limits.HOOKS:
            self.fail("spec", f"{len(hooks)} hooks once lists and symbols are expanded; at most "
                              f"{limits.HOOKS} in one policy: split it into several files")
        if self.map_values > limits.MAP_VALUES:
            self.fail("spec", f"{self.map_values} string, path, binary and address values; at most "
                              f"{limits.MAP_VALUES} per policy (they share kernel maps of "
                              f"{limits.KERNEL_MAP_ENTRIES} entries with other policies)")
        if self.flag(spec, "loader", "spec"):
            hooks.append(LOADER_HOOK)
        if not hooks and not self.problems:
            self.fail("spec", "no hooks: add kprobes, tracepoints, uprobes, usdts or lsmhooks")
        notifies = any(a.action == "NotifyEnforcer" for h in hooks for s in h.selectors
                       for a in s.actions + s.return_actions)
        if notifies and not self.enforcers and "enforcers" not in spec:
            self.fail("spec.enforcers", "NotifyEnforcer needs spec.enforcers: the syscalls "
                                        "(calls) it makes fail")
        elif self.enforcers and not notifies:
            self.fail("spec.enforcers", "no hook has a NotifyEnforcer action: these syscalls "
                                        "would never fail")
        return name or "", mode, hooks, workloads, unreadable == "match"


def parse(data: str | bytes, source_name: str = "<policy>") -> Policy:
    """Validate a policy document (text, or bytes as read from a file);
    raises PolicyError listing every problem, and nothing else."""
    text = source.text(data, source_name) if isinstance(data, bytes) else data
    doc = document.load(text, source_name)
    checker = _Checker()
    try:
        name, mode, hooks, workloads, unreadable_match = checker.policy(doc)
    except Exception as err:
        # A bug here must still be this file's error, not the daemon's.
        log.error("validating %s failed unexpectedly", source_name, exc_info=True)
        raise PolicyError(source_name, [("", f"internal error while validating "
                                             f"({type(err).__name__}); this is a bug in tetrad: "
                                             "please report it with the policy")]) from err
    if checker.problems:
        raise PolicyError(source_name, checker.problems)
    return Policy(name, source_name, mode, tuple(hooks), workloads, unreadable_match,
                  tuple(checker.enforcers))
