"""Fuzzing the policy parser and compiler (issue 13): whatever a file holds,
parse and compile return or raise PolicyError, nothing else.

The documents follow the TracingPolicy schema's shapes, so most of them get
past the first checks, and then at every field may hold the wrong type, a
deep structure, an integer at a field's edge (2^32 + 1, 2^64), an odd
string (NUL, control characters, lone surrogates, right-to-left marks,
long runs), or nothing. They are written as YAML and as JSON, and as text
mangled after writing. A fake tracefs answers the compiler. A problem
message must not quote more than a short excerpt of a value (SECRET below
is longer than errors.EXCERPT_CHARS) and must not be an internal error
(the parser's safety net must not hide a bug from this test).

Bounded: 250 examples per test, about 4 s in all.
"""

from __future__ import annotations

import copy
import json
import os

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tetrad.policy import schema
from tetrad.policy.compile import KernelFacts, TracepointField, compile_policy
from tests.unit.kernelbtf import kernel
from tetrad.policy.errors import EXCERPT_CHARS, PolicyError

SECRET = "SECRET-0123456789-" * 4
assert len(SECRET) > EXCERPT_CHARS + 2

FIELDS = [TracepointField("common_type", "unsigned short", 0, 2, False, False, False),
          TracepointField("common_pid", "int", 4, 4, True, False, False),
          TracepointField("nr", "int", 8, 4, True, False, False),
          TracepointField("filename", "const char *", 16, 8, False, False, True),
          TracepointField("name", "__data_loc char[]", 24, 4, False, True, False),
          TracepointField("count", "size_t", 32, 8, False, False, False)]


def fake_fields(subsys: str, event: str):
    if event == "missing":
        raise FileNotFoundError(2, "no such tracepoint")
    return FIELDS


BTF = kernel()


def fake_btf(module: str):
    """The small kernel of tests/unit/kernelbtf.py; no module has BTF."""
    if module:
        raise FileNotFoundError(2, "No such file or directory")
    return BTF


FACTS = KernelFacts(arch_prefix="__x64_", tracepoint_fields=fake_fields, btf=fake_btf)

EDGE_INTS = [0, 1, -1, 5, 6, 63, 64, 65, 4095, -4095, -4096, 65535, 65536,
             2 ** 31 - 1, 2 ** 31, -2 ** 31, -2 ** 31 - 1, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 4242,
             2 ** 33 + 7, 2 ** 63 - 1, 2 ** 63, -2 ** 63, -2 ** 63 - 1, 2 ** 64 - 1, 2 ** 64,
             2 ** 64 + 1, 10 ** 30, -10 ** 30]
ODD_TEXT = ["", " ", "\0", "a\0b", "\x01\x1b[31m", "\u202e", "\ud800", "\udfff", "\ufeff",
            "é", "∞", "0x", "0x_", "0b", "08", "0o17", "1_000", "-", "1:2:3", "5:1", "lo:hi",
            "::", "10.0.0.0/33", "fe80::1%eth0/64", "/etc/", "/", "relative", "list:foo",
            "..", "../../etc", "sys_", "99999999999h", "1m", "30s", "5x", "IPPROTO_TCP",
            "AF_INET", "AF_BOGUS", "Post", "Sigkill", "In", "Prefix", "true", "null", "~",
            "2024-01-01", "80:443", "<<", "x" * 300, SECRET, "/" + SECRET * 4, "é" * 200]

words = st.sampled_from(["net", "file access", "observability.filesystem", "x" * 129, "é" * 3])
ints = st.one_of(st.sampled_from(EDGE_INTS), st.integers(-70, 70),
                 st.integers(-2 ** 70, 2 ** 70))
odd_text = st.one_of(st.sampled_from(ODD_TEXT), st.text(max_size=12),
                     st.text(st.characters(blacklist_categories=()), max_size=8))
scalars = st.one_of(st.none(), st.booleans(), ints, st.floats(allow_nan=True), odd_text,
                    ints.map(str), ints.map(hex))
junk = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(odd_text, inner, max_size=2), max_leaves=5)


def deep(n: int):
    value: object = 1
    for _ in range(n):
        value = [value]
    return value


def pick(options):
    return st.sampled_from(options)


def mostly(good, bad):
    """`good` three times in four."""
    return st.one_of(good, good, good, bad)


INT_VALUE = mostly(st.integers(-1000, 1000), st.one_of(ints, ints.map(str), ints.map(hex), odd_text))
STRING_VALUE = mostly(pick(["/etc/", "/etc/passwd", "/tmp/x", ".so", "/", ""]),
                      st.one_of(odd_text, ints))
VALUES = {
    "int": INT_VALUE,
    "string": STRING_VALUE,
    "path": STRING_VALUE,
    "addr": mostly(pick(["10.0.0.0/8", "127.0.0.1", "::1/128", "0.0.0.0/0", "fe80::/10"]),
                   odd_text),
    "port": mostly(st.integers(0, 70000).map(str),
                   st.one_of(ints, st.tuples(ints, ints).map(lambda p: f"{p[0]}:{p[1]}"), odd_text)),
    "Protocol": mostly(pick(["IPPROTO_TCP", "IPPROTO_UDP", "6"]), pick(["256", "-1", "x"])),
    "Family": mostly(pick(["AF_INET", "AF_INET6", "2"]), pick(["65536", "AF_BOGUS"])),
}
TYPES = {"syscall": ["int", "uint32", "long", "uint64", "size_t", "int8", "uint16", "string",
                     "char_buf", "fd", "sockaddr", "skb", "bpf_attr", "char_iovec", "cred"],
         "kprobe": ["int", "u64", "s32", "file", "path", "sock", "string", "linux_binprm",
                    "auto", "nop", "cred", "user_namespace", "bpf_map", "perf_event", "module",
                    "load_info", "capability", "kernel_cap_t", "dentry", "kiocb", "net_device",
                    "iov_iter", "char_buf"],
         "tracepoint": ["auto", "int", "uint64", "string", "filename", "fd", "data_loc", "cred"],
         "lsm": ["file", "path", "int", "linux_binprm", "string"],
         "uprobe": ["int", "string", "uint64"]}
RESOLVE = mostly(pick(["uid.val", "mm.owner.comm", "file.f_path", "nums[2]", "real_parent[0].pid",
                       "user_ns.ns.inum"]),
                 st.one_of(pick(["a..b", "[x]", "a" * 300, ".".join("abcdefghijkl")]), odd_text))


def value_for(type_: str, op: str):
    group = schema.arg_group(type_)
    if op in schema.ADDR_OPS:
        return VALUES["addr"]
    if op in schema.PORT_OPS:
        return VALUES["port"]
    if op in ("Protocol", "Family"):
        return VALUES[op]
    if op in ("InRange", "NotInRange"):
        return VALUES["port"]
    return VALUES.get(group, VALUES["int"])


@st.composite
def action(draw, kind: str):
    name = draw(pick(sorted(schema.ACTIONS) * 3 + ["TrackSock"]))
    out = {"action": name}
    extra = draw(pick(["", "", "", "", "argError", "argSig", "argFd", "argName", "rateLimit"]))
    if name == "Override" or extra == "argError":
        out["argError"] = draw(st.one_of(pick([-1, -13, 1, 0, -4095, -4096, 4096, 2 ** 31, -2 ** 32]),
                                         ints))
    if name == "Signal" or extra == "argSig":
        out["argSig"] = draw(st.one_of(pick([1, 9, 64, 65, 0, -1]), ints))
    if name in ("FollowFD", "UnfollowFD") or extra in ("argFd", "argName"):
        out["argFd"], out["argName"] = draw(ints), draw(ints)
    if extra == "rateLimit" or (name == "Post" and draw(st.booleans())):
        out["rateLimit"] = draw(st.one_of(pick(["1m", "30s", "1h", "99999999999h", "4294967295",
                                                "4294967296s", "5x"]), ints))
    return out


@st.composite
def hook(draw, kind: str):
    """A hook whose selectors mostly fit its args: most get past the
    schema, to the compiler."""
    types = draw(st.lists(pick(TYPES[kind]), max_size=3))
    first = 0 if kind != "tracepoint" else draw(st.integers(0, 3))
    args = [{"index": first + i, "type": t} for i, t in enumerate(types)]
    if draw(st.booleans()) and args:
        args[0]["label"] = draw(mostly(words, odd_text))
    for sized in ("char_buf", "char_iovec"):
        if sized in types:
            args[types.index(sized)]["sizeArgIndex"] = draw(st.one_of(st.integers(0, 7), ints))
    for a in args:
        if draw(st.integers(0, 3)) == 0:
            a["resolve"] = draw(RESOLVE)
        if draw(st.integers(0, 7)) == 0:
            a["btfType"] = draw(mostly(pick(["task_struct", "cred", "file", "nope"]), odd_text))
    selectors = []
    for _ in range(draw(st.integers(0, 2))):
        sel: dict = {}
        matches = []
        for a in args:
            if draw(st.booleans()):
                group = schema.arg_group(a["type"])
                op = draw(pick(sorted(schema.OPS_BY_GROUP[group]) * 3 + ["GT", "Instring"]))
                values = draw(st.lists(value_for(a["type"], op), min_size=1, max_size=3))
                matches.append({"index": a["index"], "operator": op, "values": values})
        if matches:
            sel["matchArgs"] = matches
        if draw(st.booleans()):
            sel["matchPIDs"] = [{"operator": draw(pick(["In", "NotIn"])),
                                 "values": draw(st.lists(mostly(st.integers(0, 2 ** 22), st.one_of(pick(
                                     [0, 1, 2 ** 32 - 1, 2 ** 32 + 4242, 2 ** 33, -1]), ints)),
                                                         min_size=1, max_size=3)),
                                 "followForks": draw(st.booleans())}]
        if draw(st.booleans()):
            sel["matchBinaries"] = [{"operator": draw(pick(sorted(schema.BINARY_OPS))),
                                     "values": draw(st.lists(mostly(
                                         pick(["/usr/bin/cat", "/bin/", "/usr/sbin/sshd"]),
                                         st.one_of(pick(["sh", "/" + "x" * 300]), odd_text)),
                                         min_size=1, max_size=3))}]
        if draw(st.booleans()):
            sel["matchActions"] = draw(st.lists(action(kind), min_size=1, max_size=2))
        selectors.append(sel)
    out: dict = {"args": args, "selectors": selectors}
    if draw(st.booleans()):
        out["message"] = draw(mostly(words, odd_text))
    if draw(st.booleans()):
        out["tags"] = draw(st.lists(mostly(words, odd_text), max_size=3))
    if kind == "syscall":
        out.update(call=draw(pick(["sys_openat", "sys_lseek", "__x64_sys_write", "sys_connect"])),
                   syscall=True)
    elif kind == "kprobe":
        out.update(call=draw(pick(["tcp_connect", "security_file_open", "fd_install", "commit_creds",
                                   "tty_write", "cap_capable"])),
                   syscall=False)
        if draw(st.booleans()):
            out.update({"return": True, "returnArg": {"index": 0, "type": "int"}})
    elif kind == "tracepoint":
        out.update(subsystem="syscalls", event=draw(pick(["sys_enter_openat", "missing"])))
    elif kind == "lsm":
        out["hook"] = draw(pick(["file_open", "bprm_check_security"]))
    else:
        out.update(path="/usr/bin/bash", symbols=["readline"])
    return kind, out


SPEC_KEYS = {"syscall": "kprobes", "kprobe": "kprobes", "tracepoint": "tracepoints",
             "lsm": "lsmhooks", "uprobe": "uprobes"}


@st.composite
def policy_doc(draw):
    spec: dict = {}
    for kind, h in draw(st.lists(st.one_of(*(hook(k) for k in TYPES)), min_size=1, max_size=3)):
        spec.setdefault(SPEC_KEYS[kind], []).append(h)
    if draw(st.booleans()):
        spec["options"] = [{"name": "policy-mode", "value": draw(pick(["monitor", "enforce"]))}]
    if draw(st.booleans()):
        spec["containerSelector"] = {"matchLabels": {draw(pick(["name", "repo", "image"] * 3 + ["bogus"])):
                                                     draw(mostly(words, odd_text))}}
    name = draw(pick(["p", "a.b-c", "x" * 253] * 6 + ["Bad", "a..b", "a" * 254, SECRET]))
    return {"apiVersion": schema.API_VERSION, "kind": "TracingPolicy",
            "metadata": {"name": name}, "spec": spec}


def _places(value, path=()):
    """Every (container path, key) of a document."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield path, k
            yield from _places(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield path, i
            yield from _places(v, path + (i,))


@st.composite
def mutated(draw, base):
    """`base` with up to three of its values replaced by the wrong kind of
    value, wrapped in a list or mapping, nested deep, or removed."""
    doc = copy.deepcopy(draw(base))
    for _ in range(draw(st.integers(0, 3))):
        places = list(_places(doc))
        if not places:
            break
        path, key = draw(pick(places))
        parent = doc
        for step in path:
            parent = parent[step]
        how = draw(pick(["replace", "replace", "wrap", "map", "deep", "remove"]))
        if how == "remove":
            del parent[key]
        elif how == "wrap":
            parent[key] = [parent[key]]
        elif how == "map":
            parent[key] = {"k": parent[key]}
        elif how == "deep":
            parent[key] = deep(draw(st.integers(20, 40)))
        else:
            parent[key] = draw(junk)
    return doc


def check(data, source: str) -> None:
    """The property: a Policy and compiled hooks, or a PolicyError whose
    problems are short, quote no long value and are not internal errors."""
    try:
        compile_policy(schema.parse(data, source), FACTS)
    except PolicyError as err:
        for path, reason in err.problems:
            assert "internal error" not in reason, err
            assert SECRET not in path + reason, (path, reason)
            assert len(path) < 300 and len(reason) < 600, (path, reason)


def as_yaml(doc) -> str | None:
    try:
        return yaml.safe_dump(doc, allow_unicode=True)
    except yaml.YAMLError:
        return None          # PyYAML cannot write it (e.g. a lone surrogate)


# TETRAD_FUZZ_EXAMPLES=20000 for a longer hunt.
FUZZ = settings(max_examples=int(os.environ.get("TETRAD_FUZZ_EXAMPLES", "250")), deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


@FUZZ
@given(mutated(policy_doc()))
def test_documents_of_the_schemas_shape(doc):
    check(json.dumps(doc), "f.json")
    text = as_yaml(doc)
    if text is not None:
        check(text, "f.yaml")
        check(text.encode("utf-8", "surrogatepass"), "f.yaml")


INSERTS = ["[", "{", "]", "}", ":", "- ", "\n", "\t", "&a ", "*a", "!!binary ", "<<: ", "'", '"',
           "\\", "\0", "\xff", "---\n", "? ", "#", "%YAML 1.1\n", "\ud800", "9" * 80, "[" * 50]


@FUZZ
@given(policy_doc(), st.lists(st.tuples(st.integers(0, 10 ** 6), st.sampled_from(INSERTS)), max_size=5))
def test_mangled_text(doc, edits):
    text = as_yaml(doc) or json.dumps(doc)
    for where, insert in edits:
        at = where % (len(text) + 1)
        text = text[:at] + insert + text[at:]
    check(text, "f.yaml")
    check(text, "f.json")
    check(text.encode("utf-8", "surrogatepass"), "f.yaml")


@FUZZ
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200)))
def test_arbitrary_input(data):
    check(data, "f.yaml")
    check(data, "f.json")
