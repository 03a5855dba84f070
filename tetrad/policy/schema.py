"""TracingPolicy files -> validated, typed policies. Pure: no kernel.

Owns the arrow "file -> parse/validate". Accepts Tetragon's `TracingPolicy`
(apiVersion cilium.io/v1alpha1) unchanged, in YAML or JSON, and checks it
against Tetragon's schema and limits (5 selectors per hook, 5 args, 4 values
per operator, one matchArgs per arg index, first selector that matches
wins). Every problem is reported with the file, the YAML path
(`spec.kprobes[0].selectors[1].matchArgs[0].operator`) and the reason; all
problems of a file are collected, not just the first.

What tetrad does not implement is refused here by name, so a policy is
never half-understood; what this *kernel* cannot do is decided later, when
the policy is compiled for the running kernel.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tetrad.policy import workloads as workload_scope
from tetrad.policy.workloads import Workloads

API_VERSION = "cilium.io/v1alpha1"
MAX_SELECTORS = 5
MAX_ARGS = 5
MAX_VALUES = 4
MAX_MATCH_ARGS = 5
MAX_PIDS = 4
MAX_ACTIONS = 3
PREFIX_MAX = 248        # bytes; an LPM trie key holds 256 (4 go to the match id)
POSTFIX_MAX = 128
STRING_MAX = 256        # bytes of a string or path argument kept

INT_TYPES = {"int", "sint8", "int8", "sint16", "int16", "sint32", "int32", "long", "sint64",
             "int64", "uint8", "uint16", "uint32", "ulong", "uint64", "size_t", "u32", "u64",
             "s32", "s64", "uint", "auto"}
STRING_TYPES = {"string", "char_buf", "data_loc", "filename"}
PATH_TYPES = {"fd", "file", "path", "linux_binprm"}
NET_TYPES = {"sock", "sockaddr"}
ARG_TYPES = INT_TYPES | STRING_TYPES | PATH_TYPES | NET_TYPES

INT_OPS = {"Equal", "NotEqual", "Mask", "GreaterThan", "GT", "LessThan", "LT", "InRange",
           "NotInRange"}
STRING_OPS = {"Equal", "NotEqual", "Prefix", "NotPrefix", "Postfix", "NotPostfix"}
NET_OPS = {"SAddr", "NotSAddr", "DAddr", "NotDAddr", "SPort", "NotSPort", "DPort", "NotDPort",
           "Protocol", "Family"}
OPS_BY_GROUP = {"int": INT_OPS, "string": STRING_OPS, "path": STRING_OPS, "net": NET_OPS}
ACTIONS = {"Post", "NoPost", "Sigkill", "Signal", "Override", "FollowFD", "UnfollowFD"}
ENFORCING_ACTIONS = {"Sigkill", "Signal", "Override"}
BINARY_OPS = {"In", "NotIn", "Prefix", "NotPrefix", "Postfix", "NotPostfix"}
PID_OPS = {"In", "NotIn"}
UNSUPPORTED_SPEC = {
    "usdts": "USDT probes", "fentries": "fentry hooks", "loader": "process_loader events",
    "lists": "named lists", "enforcers": "NotifyEnforcer", "selectorsMacros": "selector macros",
    "podSelector": "pod selectors (no Kubernetes here)",
}
UNSUPPORTED_SELECTOR = {
    "matchData": "matchData", "matchParentBinaries": "matchParentBinaries",
    "matchNamespaceChanges": "matchNamespaceChanges",
    "matchCapabilityChanges": "matchCapabilityChanges", "matchWorkloads": "matchWorkloads",
    "matchNamespaces": "matchNamespaces", "matchCapabilities": "matchCapabilities",
    "macros": "selector macros",
}
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class PolicyError(Exception):
    """One or more problems with a policy file; the message lists them all,
    each as `FILE: YAML.PATH: reason`."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {path + ': ' if path else ''}{reason}" for path, reason in problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class ArgSpec:
    index: int
    type: str
    label: str = ""
    size_arg_index: int | None = None     # 0-based index of the size argument
    return_copy: bool = False

    @property
    def group(self) -> str:
        return arg_group(self.type)


@dataclass(frozen=True)
class MatchArg:
    index: int
    operator: str
    values: tuple[str, ...]
    path: str


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
class Action:
    action: str
    arg_error: int = 0
    arg_sig: int = 0
    arg_fd: int = 0
    arg_name: int = 0
    rate_limit_s: int = 0


@dataclass(frozen=True)
class Selector:
    match_args: tuple[MatchArg, ...] = ()
    match_return_args: tuple[MatchArg, ...] = ()
    match_pids: tuple[MatchPIDs, ...] = ()
    match_binaries: MatchBinaries | None = None
    actions: tuple[Action, ...] = ()
    return_actions: tuple[Action, ...] = ()


@dataclass(frozen=True)
class Hook:
    """One hook of a policy. `kind` is kprobe, tracepoint, uprobe or lsm."""

    kind: str
    path: str                               # e.g. spec.kprobes[0]
    call: str = ""                          # kprobe function / lsm hook / tracepoint "subsys/event"
    syscall: bool = False
    return_: bool = False
    return_arg: ArgSpec | None = None
    args: tuple[ArgSpec, ...] = ()
    selectors: tuple[Selector, ...] = ()
    binary: str = ""                        # uprobes
    symbol: str = ""                        # uprobes
    message: str = ""
    tags: tuple[str, ...] = ()
    raw: bool = False                       # raw tracepoint

    def arg(self, index: int) -> ArgSpec | None:
        return next((a for a in self.args if a.index == index), None)


@dataclass(frozen=True)
class Policy:
    name: str
    source: str
    content_hash: str
    mode: str                               # "enforce" or "monitor"
    hooks: tuple[Hook, ...] = field(default_factory=tuple)
    workloads: Workloads | None = None      # containerSelector/hostSelector; None: everywhere

    @property
    def enforces(self) -> bool:
        return any(a.action in ENFORCING_ACTIONS for h in self.hooks for s in h.selectors
                   for a in s.actions + s.return_actions)


def arg_group(type_: str) -> str:
    if type_ in STRING_TYPES:
        return "string"
    if type_ in PATH_TYPES:
        return "path"
    if type_ in NET_TYPES:
        return "net"
    return "int"


def parse_int(value) -> int:
    """Tetragon accepts decimal, hex (0x) and octal (0o / leading 0) values."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if re.fullmatch(r"-?0[0-7]+", text):
        return int(text, 8)
    return int(text, 0)


def parse_duration(value) -> int:
    """rateLimit values: "30s", "5m", "1h" or a number of seconds."""
    m = re.fullmatch(r"\s*(\d+)\s*([smh]?)\s*", str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration such as 30s, 5m or 1h")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


class _Checker:
    """Walks the document, building dataclasses and collecting problems."""

    def __init__(self):
        self.problems: list[tuple[str, str]] = []

    def fail(self, path: str, reason: str) -> None:
        self.problems.append((path, reason))

    def mapping(self, value, path: str, allowed: set[str]) -> dict:
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping, not {type(value).__name__}")
            return {}
        for key in value:
            if key not in allowed:
                self.fail(f"{path}.{key}" if path else str(key),
                          f"unknown field (known: {', '.join(sorted(allowed))})")
        return value

    def seq(self, value, path: str) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(path, f"must be a list, not {type(value).__name__}")
            return []
        return value

    def integer(self, value, path: str, default: int | None = None) -> int | None:
        if value is None:
            return default
        try:
            return parse_int(value)
        except (ValueError, TypeError):
            self.fail(path, f"{value!r} is not an integer")
            return default

    # ---- hooks ---------------------------------------------------------------

    def arg(self, raw, path: str, max_index: int = 5) -> ArgSpec | None:
        raw = self.mapping(raw, path, {"index", "type", "label", "sizeArgIndex", "returnCopy",
                                       "maxData", "resolve", "btfType", "source"})
        for unsupported in ("resolve", "btfType", "source"):
            if unsupported in raw:
                self.fail(f"{path}.{unsupported}", f"{unsupported} is not supported by tetrad")
        index = self.integer(raw.get("index"), f"{path}.index")
        type_ = raw.get("type", "auto")
        if index is None:
            self.fail(path, "index is required")
            return None
        if not 0 <= index <= max_index:
            self.fail(f"{path}.index", f"{index} is out of range 0..{max_index}")
        if type_ not in ARG_TYPES:
            self.fail(f"{path}.type", f"unknown or unsupported type {type_!r} "
                                      f"(supported: {', '.join(sorted(ARG_TYPES))})")
        size_arg = self.integer(raw.get("sizeArgIndex"), f"{path}.sizeArgIndex")
        if size_arg is not None:
            # Tetragon's documented quirk: sizeArgIndex counts from 1.
            if not 1 <= size_arg <= 6:
                self.fail(f"{path}.sizeArgIndex", f"{size_arg} is out of range 1..6 (it counts from 1)")
            size_arg -= 1
        if raw.get("maxData"):
            self.fail(f"{path}.maxData", "maxData is not supported by tetrad (buffers are cut at 256 bytes)")
        return ArgSpec(index, type_, str(raw.get("label", "")), size_arg, bool(raw.get("returnCopy", False)))

    def values(self, raw, path: str, limit: int = MAX_VALUES) -> tuple[str, ...]:
        values = self.seq(raw, path)
        if not values:
            self.fail(path, "at least one value is required")
        if len(values) > limit:
            self.fail(path, f"{len(values)} values; Tetragon allows at most {limit} per operator")
        return tuple(str(v) for v in values)

    def match_arg(self, raw, path: str, hook_args: dict[int, ArgSpec], return_arg: ArgSpec | None,
                  is_return: bool) -> MatchArg | None:
        raw = self.mapping(raw, path, {"index", "operator", "values", "args"})
        if "args" in raw:
            self.fail(f"{path}.args", "matchArgs.args is not supported by tetrad; use index")
        index = self.integer(raw.get("index", 0), f"{path}.index", 0)
        op = raw.get("operator")
        if is_return:
            spec = return_arg
            if spec is None:
                self.fail(path, "matchReturnArgs needs `return: true` and `returnArg`")
                return None
        else:
            spec = hook_args.get(index)
            if spec is None:
                self.fail(f"{path}.index", f"no argument with index {index} in this hook's args")
                return None
        allowed = OPS_BY_GROUP[spec.group]
        if op == "GT":
            op = "GreaterThan"
        elif op == "LT":
            op = "LessThan"
        if op not in allowed:
            self.fail(f"{path}.operator", f"operator {op!r} does not apply to a {spec.type} argument "
                                          f"(use one of {', '.join(sorted(allowed))})")
            return None
        limit = 8 if spec.group == "path" and op in ("Equal", "NotEqual", "Prefix", "NotPrefix") else MAX_VALUES
        values = self.values(raw.get("values"), f"{path}.values", limit)
        self._check_values(spec, op, values, f"{path}.values")
        return MatchArg(index, op, values, path)

    def _check_values(self, spec: ArgSpec, op: str, values, path: str) -> None:
        import ipaddress
        for i, v in enumerate(values):
            where = f"{path}[{i}]"
            try:
                if op in ("SAddr", "NotSAddr", "DAddr", "NotDAddr"):
                    ipaddress.ip_network(v, strict=False)
                elif op in ("SPort", "NotSPort", "DPort", "NotDPort", "InRange", "NotInRange"):
                    lo, _, hi = v.partition(":")
                    lo_i, hi_i = parse_int(lo), parse_int(hi or lo)
                    if lo_i > hi_i:
                        raise ValueError(f"range {v} is empty")
                elif op == "Protocol":
                    protocol_number(v)
                elif op == "Family":
                    family_number(v)
                elif spec.group == "int":
                    parse_int(v)
                elif op in ("Prefix", "NotPrefix") and len(v.encode()) > PREFIX_MAX:
                    raise ValueError(f"prefix longer than {PREFIX_MAX} bytes")
                elif op in ("Postfix", "NotPostfix") and len(v.encode()) > POSTFIX_MAX:
                    raise ValueError(f"postfix longer than {POSTFIX_MAX} bytes")
                elif spec.group in ("string", "path") and len(v.encode()) > STRING_MAX - 1:
                    raise ValueError(f"longer than {STRING_MAX - 1} bytes")
            except ValueError as err:
                self.fail(where, f"bad value for {op}: {err}")

    def action(self, raw, path: str) -> Action | None:
        raw = self.mapping(raw, path, {"action", "argError", "argSig", "argFd", "argName",
                                       "rateLimit", "rateLimitScope", "kernelStackTrace",
                                       "userStackTrace", "imaHash"})
        name = raw.get("action")
        if name not in ACTIONS:
            self.fail(f"{path}.action", f"unknown or unsupported action {name!r} "
                                        f"(supported: {', '.join(sorted(ACTIONS))})")
            return None
        for unsupported in ("kernelStackTrace", "userStackTrace", "imaHash", "rateLimitScope"):
            if raw.get(unsupported):
                self.fail(f"{path}.{unsupported}", f"{unsupported} is not supported by tetrad")
        arg_error = self.integer(raw.get("argError"), f"{path}.argError", 0)
        arg_sig = self.integer(raw.get("argSig"), f"{path}.argSig", 0)
        if name == "Override" and not arg_error:
            self.fail(f"{path}.argError", "Override needs argError (e.g. -1 for EPERM)")
        if name == "Signal" and not 1 <= (arg_sig or 0) <= 64:
            self.fail(f"{path}.argSig", "Signal needs argSig, a signal number 1..64")
        rate = 0
        if "rateLimit" in raw:
            if name != "Post":
                self.fail(f"{path}.rateLimit", "rateLimit applies to Post only")
            try:
                rate = parse_duration(raw["rateLimit"])
            except ValueError as err:
                self.fail(f"{path}.rateLimit", str(err))
        return Action(name, arg_error or 0, arg_sig or 0,
                      self.integer(raw.get("argFd"), f"{path}.argFd", 0) or 0,
                      self.integer(raw.get("argName"), f"{path}.argName", 0) or 0, rate)

    def selector(self, raw, path: str, hook_args: dict[int, ArgSpec],
                 return_arg: ArgSpec | None) -> Selector:
        raw = self.mapping(raw, path, {"matchArgs", "matchReturnArgs", "matchPIDs",
                                       "matchBinaries", "matchActions", "matchReturnActions",
                                       *UNSUPPORTED_SELECTOR})
        for key, what in UNSUPPORTED_SELECTOR.items():
            if key in raw:
                self.fail(f"{path}.{key}", f"{what} is not supported by tetrad yet")
        match_args = []
        seen = set()
        for i, m in enumerate(self.seq(raw.get("matchArgs"), f"{path}.matchArgs")):
            parsed = self.match_arg(m, f"{path}.matchArgs[{i}]", hook_args, return_arg, False)
            if parsed:
                if parsed.index in seen:
                    self.fail(f"{path}.matchArgs[{i}]", f"a second matchArgs for index {parsed.index}; "
                                                      "Tetragon allows one per argument")
                seen.add(parsed.index)
                match_args.append(parsed)
        if len(match_args) > MAX_MATCH_ARGS:
            self.fail(f"{path}.matchArgs", f"at most {MAX_MATCH_ARGS} entries")
        return_args = [r for i, m in enumerate(self.seq(raw.get("matchReturnArgs"), f"{path}.matchReturnArgs"))
                       if (r := self.match_arg(m, f"{path}.matchReturnArgs[{i}]", hook_args, return_arg, True))]
        if len(return_args) > 1:
            self.fail(f"{path}.matchReturnArgs", "at most one entry (the return value)")
        pids = []
        for i, m in enumerate(self.seq(raw.get("matchPIDs"), f"{path}.matchPIDs")):
            where = f"{path}.matchPIDs[{i}]"
            m = self.mapping(m, where, {"operator", "values", "followForks", "isNamespacePID"})
            op = m.get("operator")
            if op not in PID_OPS:
                self.fail(f"{where}.operator", f"operator {op!r} is not In or NotIn")
            values = self.values(m.get("values"), f"{where}.values", MAX_PIDS)
            ints = tuple(v for j, x in enumerate(values)
                         if (v := self.integer(x, f"{where}.values[{j}]")) is not None)
            pids.append(MatchPIDs(op, ints, bool(m.get("followForks")), bool(m.get("isNamespacePID"))))
        binaries = None
        raw_bins = self.seq(raw.get("matchBinaries"), f"{path}.matchBinaries")
        if len(raw_bins) > 1:
            self.fail(f"{path}.matchBinaries", "at most one entry per selector (Tetragon's limit)")
        for i, m in enumerate(raw_bins[:1]):
            where = f"{path}.matchBinaries[{i}]"
            m = self.mapping(m, where, {"operator", "values", "followChildren"})
            op = m.get("operator")
            if op not in BINARY_OPS:
                self.fail(f"{where}.operator", f"operator {op!r} is not one of {', '.join(sorted(BINARY_OPS))}")
            if m.get("followChildren"):
                self.fail(f"{where}.followChildren", "followChildren is not supported by tetrad yet")
            values = self.values(m.get("values"), f"{where}.values", 8)
            for j, v in enumerate(values):
                if op in ("In", "NotIn", "Prefix", "NotPrefix") and not v.startswith("/"):
                    self.fail(f"{where}.values[{j}]", f"{v!r} must be an absolute path")
                # Kernel lookup keys: a trie key holds 248 bytes (In/NotIn
                # keep their NUL there), a Postfix key 128.
                limit = {"In": PREFIX_MAX - 1, "NotIn": PREFIX_MAX - 1, "Prefix": PREFIX_MAX,
                         "NotPrefix": PREFIX_MAX}.get(op, POSTFIX_MAX)
                if len(v.encode()) > limit:
                    self.fail(f"{where}.values[{j}]", f"longer than {limit} bytes")
            binaries = MatchBinaries(op, values)
        actions = self._actions(raw.get("matchActions"), f"{path}.matchActions")
        ret_actions = self._actions(raw.get("matchReturnActions"), f"{path}.matchReturnActions")
        if ret_actions and return_arg is None:
            self.fail(f"{path}.matchReturnActions", "needs `return: true` and `returnArg`")
        return Selector(tuple(match_args), tuple(return_args), tuple(pids), binaries,
                        tuple(actions), tuple(ret_actions))

    def _actions(self, raw, path: str) -> list[Action]:
        actions = [a for i, x in enumerate(self.seq(raw, path)) if (a := self.action(x, f"{path}[{i}]"))]
        if len(actions) > MAX_ACTIONS:
            self.fail(path, f"at most {MAX_ACTIONS} actions per selector")
        return actions

    def hook(self, raw, kind: str, path: str) -> Hook | None:
        common = {"args", "selectors", "message", "tags", "ignore"}
        allowed = {
            "kprobe": common | {"call", "syscall", "return", "returnArg", "returnArgAction", "data"},
            "tracepoint": common | {"subsystem", "event", "raw"},
            "uprobe": common | {"path", "symbols", "offsets", "addrs", "refCtrOffsets", "btfPath",
                                "binaryDigests"},
            "lsm": common | {"hook"},
        }[kind]
        raw = self.mapping(raw, path, allowed)
        for unsupported in ("data", "offsets", "addrs", "refCtrOffsets", "btfPath", "binaryDigests"):
            if unsupported in raw:
                self.fail(f"{path}.{unsupported}", f"{unsupported} is not supported by tetrad")
        args_raw = self.seq(raw.get("args"), f"{path}.args")
        if len(args_raw) > MAX_ARGS:
            self.fail(f"{path}.args", f"{len(args_raw)} args; Tetragon allows at most {MAX_ARGS}")
        # Tracepoint indexes count the fields of the tracepoint's format.
        max_index = 63 if kind == "tracepoint" else 5
        args = [a for i, x in enumerate(args_raw) if (a := self.arg(x, f"{path}.args[{i}]", max_index))]
        by_index = {}
        for i, a in enumerate(args):
            if a.index in by_index:
                self.fail(f"{path}.args[{i}].index", f"index {a.index} appears twice")
            by_index[a.index] = a
        for i, a in enumerate(args):
            if a.size_arg_index is not None and a.size_arg_index not in by_index:
                self.fail(f"{path}.args[{i}].sizeArgIndex",
                          f"no argument with index {a.size_arg_index} (sizeArgIndex counts from 1)")
            if a.return_copy and kind != "kprobe":
                self.fail(f"{path}.args[{i}].returnCopy", "returnCopy applies to kprobes")
        return_ = bool(raw.get("return", False))
        return_arg = None
        if "returnArg" in raw:
            return_arg = self.arg(raw["returnArg"], f"{path}.returnArg")
        if return_ and return_arg is None:
            self.fail(f"{path}.returnArg", "`return: true` needs returnArg")
        if return_arg is not None and not return_:
            self.fail(f"{path}.return", "returnArg needs `return: true`")
        if raw.get("returnArgAction") not in (None, "Post"):
            self.fail(f"{path}.returnArgAction", "only Post is supported (TrackSock/UntrackSock are not)")
        sel_raw = self.seq(raw.get("selectors"), f"{path}.selectors")
        if len(sel_raw) > MAX_SELECTORS:
            self.fail(f"{path}.selectors", f"{len(sel_raw)} selectors; Tetragon allows at most {MAX_SELECTORS}")
        selectors = tuple(self.selector(s, f"{path}.selectors[{i}]", by_index, return_arg)
                          for i, s in enumerate(sel_raw))
        tags = tuple(str(t) for t in self.seq(raw.get("tags"), f"{path}.tags"))
        if len(tags) > 16:
            self.fail(f"{path}.tags", "at most 16 tags")
        message = str(raw.get("message", ""))
        if len(message) > 256:
            self.fail(f"{path}.message", "at most 256 characters")
        base = dict(kind=kind, path=path, args=tuple(args), selectors=selectors, message=message,
                    tags=tags, return_=return_, return_arg=return_arg)
        if kind == "kprobe":
            call = raw.get("call")
            if not isinstance(call, str) or not call:
                self.fail(f"{path}.call", "call (the kernel function) is required")
                return None
            if "syscall" not in raw:
                # The CRD defaults to true, Tetragon's prose to false: guess from
                # the name, as users write both, and say nothing.
                syscall = call.startswith(("sys_", "__x64_sys_", "__arm64_sys_"))
            else:
                syscall = bool(raw["syscall"])
            return Hook(call=call, syscall=syscall, **base)
        if kind == "tracepoint":
            subsystem, event = raw.get("subsystem"), raw.get("event")
            if not subsystem or not event:
                self.fail(path, "subsystem and event are required")
                return None
            if return_:
                self.fail(f"{path}.return", "tracepoints have no return value")
            return Hook(call=f"{subsystem}/{event}", raw=bool(raw.get("raw")), **base)
        if kind == "lsm":
            name = raw.get("hook")
            if not isinstance(name, str) or not name:
                self.fail(f"{path}.hook", "hook (the LSM hook name, e.g. file_open) is required")
                return None
            return Hook(call=name, **base)
        binary, symbols = raw.get("path"), self.seq(raw.get("symbols"), f"{path}.symbols")
        if not binary or not str(binary).startswith("/"):
            self.fail(f"{path}.path", "path (absolute path of the binary) is required")
        if len(symbols) != 1:
            self.fail(f"{path}.symbols", "exactly one symbol per uprobe entry is supported")
            return None
        return Hook(binary=str(binary or ""), symbol=str(symbols[0]), call=str(symbols[0]), **base)


def protocol_number(value: str) -> int:
    names = {"IPPROTO_TCP": 6, "IPPROTO_UDP": 17, "IPPROTO_ICMP": 1, "IPPROTO_ICMPV6": 58,
             "IPPROTO_RAW": 255, "IPPROTO_SCTP": 132}
    return names[value] if value in names else parse_int(value)


def family_number(value: str) -> int:
    names = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16, "AF_PACKET": 17}
    return names[value] if value in names else parse_int(value)


def load_document(text: str, source: str):
    try:
        if source.endswith(".json"):
            return json.loads(text)
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise PolicyError(source, [("", f"not valid YAML/JSON: {err}")]) from None
    if len(docs) != 1:
        raise PolicyError(source, [("", f"expected one policy document, found {len(docs)}")])
    return docs[0]


def parse(text: str, source: str = "<policy>") -> Policy:
    """Validate a policy document; raises PolicyError listing every problem."""
    doc = load_document(text, source)
    c = _Checker()
    doc = c.mapping(doc, "", {"apiVersion", "kind", "metadata", "spec"})
    if doc.get("apiVersion") != API_VERSION:
        c.fail("apiVersion", f"must be {API_VERSION}, not {doc.get('apiVersion')!r}")
    if doc.get("kind") != "TracingPolicy":
        hint = " (namespaced policies need Kubernetes)" if doc.get("kind") == "TracingPolicyNamespaced" else ""
        c.fail("kind", f"must be TracingPolicy, not {doc.get('kind')!r}{hint}")
    meta = c.mapping(doc.get("metadata", {}), "metadata", {"name", "namespace", "labels", "annotations"})
    name = meta.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        c.fail("metadata.name", f"{name!r} is not a valid name (lower case letters, digits, '-', '.')")
    spec = c.mapping(doc.get("spec", {}), "spec", {"kprobes", "tracepoints", "uprobes", "lsmhooks",
                                                    "options", "containerSelector", "hostSelector",
                                                    *UNSUPPORTED_SPEC})
    for key, what in UNSUPPORTED_SPEC.items():
        if key in spec:
            c.fail(f"spec.{key}", f"{what} are not supported by tetrad")
    workloads, problems = workload_scope.parse(spec)
    c.problems += problems
    mode = "enforce"
    for i, opt in enumerate(c.seq(spec.get("options"), "spec.options")):
        opt = c.mapping(opt, f"spec.options[{i}]", {"name", "value"})
        if opt.get("name") == "policy-mode":
            if opt.get("value") not in ("enforce", "monitor"):
                c.fail(f"spec.options[{i}].value", "policy-mode is enforce or monitor")
            else:
                mode = opt["value"]
        elif opt.get("name") not in ("disable-kprobe-multi", "disable-uprobe-multi"):
            c.fail(f"spec.options[{i}].name", f"unknown option {opt.get('name')!r}")
    hooks = []
    for key, kind in (("kprobes", "kprobe"), ("tracepoints", "tracepoint"), ("uprobes", "uprobe"),
                      ("lsmhooks", "lsm")):
        for i, raw in enumerate(c.seq(spec.get(key), f"spec.{key}")):
            hook = c.hook(raw, kind, f"spec.{key}[{i}]")
            if hook:
                hooks.append(hook)
    if not hooks and not c.problems:
        c.fail("spec", "no hooks: add kprobes, tracepoints, uprobes or lsmhooks")
    if c.problems:
        raise PolicyError(source, c.problems)
    return Policy(name, source, hashlib.sha256(text.encode()).hexdigest(), mode, tuple(hooks),
                  workloads)


def read(path: str) -> Policy:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise PolicyError(path, [("", f"cannot read: {err}")]) from None
    return parse(text, path)
