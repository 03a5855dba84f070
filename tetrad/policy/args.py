"""Policy arguments -> how the kernel reads each one (`ArgRead`). Pure but
for the BTF it is handed.

Owns the arrow "argument spec -> slot read" of compiling a hook
(tetrad/policy/compile.py calls `arg_read` once per argument):

- Where the value lives decides the read: syscall, uprobe and USDT
  arguments (and syscall tracepoint fields) are user-space values;
  kprobe, LSM and raw tracepoint arguments, and pointer fields of other
  tracepoints, are kernel values. A raw tracepoint's argument must have
  the C type (its TP_PROTO parameter's, from BTF) its policy type reads.
- A kernel value can be walked first: `resolve: a.b[2].c` follows members
  and pointers from the argument's type (the hook's BTF prototype, a
  tracepoint field's declared type, or `btfType`, a cast to a named struct,
  found in `btfTypeModule`'s BTF when given), tetrad/policy/btfwalk.py.
- Network types (sock, socket, skb, sockaddr, sockaddr_un, net_device)
  are read by the programs' own code at -DOFF_* offsets; a syscall's
  socket address takes its length from the syscall's length argument.
- Struct-typed arguments are kernel structs read by steps: linux_binprm
  (its file), kiocb (its file) and filename (its string) reach a member
  first; cred, user_namespace,
  bpf_attr, bpf_prog, bpf_map, perf_event, module and load_info gather
  the fields Tetragon shows into the slot (tetrad/abi/argstructs.py);
  capability and the kernel_cap_t family are integers; an iov_iter gathers
  what finds its first user buffer (GA_ITER).
- A struct-typed argument whose BTF type is known must be that struct (a
  `struct file *` read as a cred would be garbage): cast with btfType.

Offsets come from the running kernel's BTF, handed in as `btf(module)`
("" for vmlinux; OSError when there is none). What this kernel's BTF cannot
serve (no such struct or member, a type that does not fit) is not a
policy error: `arg_read` returns the reason, and the hook is valid but not
loadable here (tetrad/policy/kernel.py). What no kernel could serve (a
type on a hook kind that has no such values) is a PolicyError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable

from tetrad.abi import argstructs
from tetrad.abi import generic as enc
from tetrad.bpf.btf import Btf, BtfError, ValueType
from tetrad.policy import btfwalk, schema
from tetrad.policy.btfwalk import Step, Unresolvable, Value
from tetrad.policy.points import ArgRead
from tetrad.policy.schema import ArgSpec, Hook, PolicyError

INT_SIZES = schema.INT_WIDTHS         # (bytes, signed) by argument type
BtfSource = Callable[[str], Btf]      # module name ("" for vmlinux) -> its BTF

# Where the value lives, by hook kind.
USER_KINDS = {"syscall", "uprobe", "usdt"}
KERNEL_KINDS = {"kprobe", "lsm", "rawtp", "tracepoint"}

_USER_TYPES = {"string": "ustr", "char_buf": "ubuf", "fd": "fd", "sockaddr": "usockaddr",
               "sockaddr_un": "usockaddr_un", "char_iovec": "iovec"}
# Kernel values read without a walk of their own (offsets of their members
# are the programs' own, -DOFF_*).
_KERNEL_TYPES = {"string": "kstr", "fd": "fd", "file": "file", "path": "path", "sock": "sock",
                 "dentry": "dentry", "socket": "socket", "skb": "skb", "sockaddr": "ksockaddr",
                 "sockaddr_un": "ksockaddr_un", "net_device": "netdev"}
# Syscalls that take a socket address and its length: (address index,
# length index). An abstract unix name is bounded by the length alone.
_SOCKADDR_LENGTHS = {"connect": (1, 2), "bind": (1, 2), "sendto": (4, 5)}
# Syscalls that open a file by path, and the path's index. A call deferred
# to its exit (its path unreadable at entry) takes the path from the file
# it opened there: what the kernel resolved, not the caller's string again.
OPENED_PATHS = {"openat": 1, "openat2": 1, "open": 0, "creat": 0}
# Kernel structs reached through a member first: (struct, member, kind).
_MEMBER_TYPES = {"linux_binprm": ("struct linux_binprm", "file", "file"),
                 "kiocb": ("struct kiocb", "ki_filp", "file"),
                 "filename": ("struct filename", "name", "kstr")}
CAP_TYPES = {"kernel_cap_t", "cap_inheritable", "cap_permitted", "cap_effective"}
GATHER_TYPES = set(argstructs.LAYOUTS)
ITER_TYPE = "iov_iter"
# The struct an argument of each type points at (checked against BTF).
EXPECTED = {"file": "struct file", "path": "struct path", "dentry": "struct dentry",
            "sock": "struct sock", "socket": "struct socket", "skb": "struct sk_buff",
            "sockaddr": "struct sockaddr", "net_device": "struct net_device",
            **{t: s for t, (s, _, _) in _MEMBER_TYPES.items()},
            **{t: layout.struct for t, layout in argstructs.LAYOUTS.items()},
            ITER_TYPE: argstructs.ITER.struct}
_POINTER_DECL = re.compile(r"^(?:const\s+)?(struct|union)\s+(\w+)\s*\*$")


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
class Read:
    """An argument's read, and what the kernel must offer for it."""

    read: ArgRead
    btf: bool = False           # offsets from the kernel's BTF (feature "btf")
    unmet: str = ""             # why this kernel's BTF cannot serve it ("" if it can)


def arg_read(hook: Hook, arg: ArgSpec, kind: str, fields: list[TracepointField] | None,
             btf: BtfSource | None, params: list[ValueType] | None = None) -> Read:
    """How the kernel reads `arg` of `hook` (attached as `kind`: syscall,
    kprobe, lsm, tracepoint, rawtp, uprobe, usdt). `fields`: a tracepoint's
    format; `params`: a raw tracepoint's TP_PROTO parameters. When this
    kernel cannot serve it, a read that does nothing stands in and `unmet`
    says why. `btf` None: no BTF to compute offsets from (the "btf" feature
    is then missing). PolicyError for what no kernel could do."""
    where = arg.where or f"{hook.path}.args[{hook.args.index(arg)}]"
    src, field = arg.index, None
    user = kind in USER_KINDS
    if kind == "rawtp":
        assert params is not None
        if arg.index >= len(params):
            raise PolicyError("", [(f"{where}.index", f"raw tracepoint {hook.call} has {len(params)} "
                                                      "arguments (its TP_PROTO)")])
    if kind == "tracepoint":
        assert fields is not None
        if arg.index >= len(fields):
            raise PolicyError("", [(f"{where}.index", f"tracepoint {hook.call} has only {len(fields)} fields")])
        field = fields[arg.index]
        src = field.offset
        user = hook.call.startswith(("syscalls/", "raw_syscalls/"))
        plain = _tracepoint_plain(arg, field, user)
        if plain is not None:
            return Read(plain)
        if arg.type in ("char_buf", "char_iovec"):
            # their sizeArgIndex names a call argument; a tracepoint has fields
            raise PolicyError("", [(f"{where}.type", f"type {arg.type} is not supported on tracepoints")])
        if not field.pointer and arg.type not in INT_SIZES and arg.type != "capability":
            raise PolicyError("", [(f"{where}.type", f"type {arg.type} is not supported on tracepoints "
                                                     f"(field {field.name} is {field.type}, not a pointer)")])
    if (arg.resolve or arg.btf_type) and user:
        raise PolicyError("", [(where, "resolve and btfType walk kernel structs: kprobe, LSM and raw "
                                       "tracepoint arguments, and pointer fields of tracepoints (this "
                                       "argument is a user-space value)")])
    walked = bool(arg.resolve or arg.btf_type or arg.type in _MEMBER_TYPES or arg.type in GATHER_TYPES
                  or arg.type == ITER_TYPE)
    if kind == "rawtp" and not (arg.resolve or arg.btf_type):
        plain = _raw_read(hook, arg, params[arg.index], where)
        if not walked:
            return Read(plain)
    if arg.type in INT_SIZES and not arg.resolve and not arg.btf_type:
        size, signed = INT_SIZES[arg.type]
        return Read(ArgRead(enc.GA["int"], src, size, signed))
    if user and arg.type != "bpf_attr":
        return Read(_user_read(hook, arg, src, where, kind))
    if not user and not walked:
        return Read(_kernel_read(arg, src, where))
    if btf is None:
        return Read(ArgRead(enc.GA["none"], src), btf=True)
    try:
        if user:
            # bpf_attr: the syscall's attr as the caller wrote it (uapi layout)
            return Read(_gather(btf(""), "bpf_attr", src, [], user=True), btf=True)
        return Read(_walked_read(hook, arg, kind, src, field, btf, where), btf=True)
    except Unresolvable as err:
        return Read(ArgRead(enc.GA["none"], src), True, f"{where}: {err}")
    except OSError as err:
        return Read(ArgRead(enc.GA["none"], src), True, f"{where}: {_btf_missing(arg, err)}")
    except BtfError as err:
        return Read(ArgRead(enc.GA["none"], src), True, f"{where}: unreadable BTF ({err})")


def _tracepoint_plain(arg: ArgSpec, f: TracepointField, user: bool) -> ArgRead | None:
    """A tracepoint field read as the record holds it (no walk), or None."""
    if arg.resolve or arg.btf_type:
        return None
    if f.data_loc:
        return ArgRead(enc.GA["dataloc"], f.offset)
    if arg.type in ("string", "filename") and "struct filename" not in f.type or \
            (arg.type == "auto" and f.pointer and "char" in f.type):
        return ArgRead(enc.GA["ustr" if user else "kstr"], f.offset)
    if arg.type in schema.INT_TYPES:
        size, signed = (f.size, f.signed) if arg.type == "auto" else INT_SIZES[arg.type]
        return ArgRead(enc.GA["int"], f.offset, size, signed)
    if arg.type == "fd":
        return ArgRead(enc.GA["fd"], f.offset, 4, True)
    return None


def _raw_read(hook: Hook, arg: ArgSpec, param: ValueType, where: str) -> ArgRead | None:
    """A raw tracepoint's argument read as it is (None: a struct-typed
    argument that is walked); its parameter's C type must suit the policy's
    type."""
    t = arg.type
    is_a = f"argument {arg.index} of raw tracepoint {hook.call} is {param.c_type}"
    if t in schema.INT_TYPES or t == "capability":
        if param.kind not in ("int", "enum", "ptr"):
            raise PolicyError("", [(f"{where}.type", f"{is_a}" + (": give it a type" if t == "auto"
                                                                   else ", not an integer"))])
        if t == "auto":
            return ArgRead(enc.GA["int"], arg.index, param.size, param.signed)
    elif t in EXPECTED and param.c_type != f"{EXPECTED[t]} *":
        raise PolicyError("", [(f"{where}.type", f"{is_a}, not {EXPECTED[t]} * (type {t})")])
    elif t == "string" and param.c_type not in ("char *", "const char *"):
        raise PolicyError("", [(f"{where}.type", f"{is_a}, not a string (char *)")])
    elif t == "fd" and param.kind != "int":
        raise PolicyError("", [(f"{where}.type", f"{is_a}, not a file descriptor")])
    if t in INT_SIZES:
        size, signed = INT_SIZES[t]
        return ArgRead(enc.GA["int"], arg.index, size, signed)
    if t in _MEMBER_TYPES or t in GATHER_TYPES or t == ITER_TYPE:
        return None
    return _kernel_read(arg, arg.index, where)


def _user_read(hook: Hook, arg: ArgSpec, src: int, where: str, kind: str) -> ArgRead:
    strategy = _USER_TYPES.get(arg.type)
    if strategy is None:
        hooks = "syscall arguments" if kind in ("syscall", "tracepoint") else f"{kind} arguments"
        raise PolicyError("", [(f"{where}.type", f"type {arg.type} is not supported on {hooks} "
                                                 "(user-space values)")])
    if arg.size_arg_index is None and kind == "syscall" and strategy in ("usockaddr", "usockaddr_un"):
        addr_at, size_at = _SOCKADDR_LENGTHS.get(schema.syscall_name(hook.call), (None, None))
        if arg.index == addr_at:
            arg = replace(arg, size_arg_index=size_at)
    read = _sized(arg, strategy, src, where)
    if kind == "syscall" and strategy == "ustr" and \
            OPENED_PATHS.get(schema.syscall_name(hook.call)) == arg.index:
        read = replace(read, opened=True)
    return read


def _kernel_read(arg: ArgSpec, src: int, where: str) -> ArgRead:
    if arg.type == "capability":
        return ArgRead(enc.GA["int"], src, 4, True)
    if arg.type in CAP_TYPES:
        # A pointer to the 8 bytes of a capability set, in every kernel.
        return ArgRead(enc.GA["int"], src, 8, False, steps=(Step(enc.GO_LOAD, 0, 8),), nwalk=1)
    if arg.type == "char_buf":
        if arg.return_copy:
            return _sized(arg, "ubuf", src, where)
        return _sized(arg, "buf", src, where)
    strategy = _KERNEL_TYPES.get(arg.type)
    if strategy is None:
        raise PolicyError("", [(f"{where}.type", f"type {arg.type} is not supported on kernel hooks")])
    return _sized(arg, strategy, src, where)


def _sized(arg: ArgSpec, strategy: str, src: int, where: str) -> ArgRead:
    if strategy in ("ubuf", "buf", "iovec") and arg.size_arg_index is None and not arg.return_copy:
        raise PolicyError("", [(where, f"{arg.type} needs sizeArgIndex"
                                       + (" or returnCopy" if arg.type == "char_buf" else ""))])
    if strategy == "iovec" and arg.return_copy:
        raise PolicyError("", [(f"{where}.returnCopy", "returnCopy is not supported for char_iovec")])
    return ArgRead(enc.GA[strategy], src, 8, False, arg.size_arg_index, retcopy=arg.return_copy)


# ---- kernel structs ---------------------------------------------------------------

def _walked_read(hook: Hook, arg: ArgSpec, kind: str, src: int, field: TracepointField | None,
                 btf_of: BtfSource, where: str) -> ArgRead:
    btf = btf_of("")
    steps: list[Step] = []
    value = None
    if arg.btf_type:
        cast_btf = btf_of(arg.btf_type_module) if arg.btf_type_module else btf
        value = Value(_struct_id(cast_btf, arg.btf_type, arg.btf_type_module), address=True)
        btf = cast_btf
    else:
        value = _start(btf, hook, arg, kind, field)
    if arg.resolve:
        if value is None:
            raise Unresolvable(f"the type of argument {arg.index} of {hook.call} is not in this "
                               "kernel's BTF, so resolve has nothing to start from (cast it with btfType)")
        walked, value = btfwalk.walk(btf, value, btfwalk.parse_path(arg.resolve),
                                     f"argument {arg.index}")
        steps += walked
    read = _typed(btf, arg, src, value, steps, where)
    if len(read.steps) > enc.SLOT_OPS:
        raise Unresolvable(f"reading it takes {len(read.steps)} steps; a slot runs at most {enc.SLOT_OPS} "
                           "(shorten the resolve path)")
    return read


def _start(btf: Btf, hook: Hook, arg: ArgSpec, kind: str, field: TracepointField | None) -> Value | None:
    """The argument's type from BTF: the hook's prototype, or a tracepoint
    field's declaration; None when BTF does not say."""
    if kind == "tracepoint":
        m = _POINTER_DECL.match(field.type.strip())
        if m is None:
            return None
        try:
            return Value(btf.find(m.group(2), m.group(1)), address=True)
        except KeyError:
            return None
    name, skip = {"kprobe": (hook.call, 0), "lsm": (f"bpf_lsm_{hook.call}", 0),
                  "rawtp": (f"btf_trace_{hook.call.split('/', 1)[-1]}", 1)}[kind]
    try:
        params = btf.params(btf.find(name, "typedef" if kind == "rawtp" else "func"))
    except (KeyError, BtfError):
        return None
    index = arg.index + skip
    if index >= len(params):
        raise Unresolvable(f"{hook.call} has {len(params) - skip} arguments in this kernel's BTF, "
                           f"no index {arg.index}")
    return Value(params[index].type_id)


def _struct_id(btf: Btf, name: str, module: str = "") -> int:
    for kind in ("struct", "union"):
        try:
            return btf.find(name, kind)
        except KeyError:
            continue
    raise Unresolvable(f"no struct or union {name} in the BTF of "
                       + (f"module {module}" if module else "this kernel"))


def _typed(btf: Btf, arg: ArgSpec, src: int, value: Value | None, steps: list[Step], where: str) -> ArgRead:
    """The read of the walked value by the argument's type."""
    t = arg.type
    what = f"argument {arg.index}" + (f" resolved as {arg.resolve}" if arg.resolve else "")
    if t in INT_SIZES or t in ("capability",) or t in CAP_TYPES:
        if value is not None and not btfwalk.is_scalar(btf, value) and t not in CAP_TYPES:
            raise Unresolvable(f"{what} is {btfwalk.describe(btf, value)}, not an integer")
        if t in CAP_TYPES:
            if value is None or value.address or btf.kind(value.type_id) == "ptr":
                steps.append(Step(enc.GO_LOAD, 0, 8))
            return _read(enc.GA["int"], src, steps, size=8)
        size, signed = (4, True) if t == "capability" else INT_SIZES[t]
        return _read(enc.GA["int"], src, steps, size=size, signed=signed)
    if t in ("string", "char_buf"):
        if value is not None and not btfwalk.is_chars(btf, value):
            raise Unresolvable(f"{what} is {btfwalk.describe(btf, value)}, not a string")
        if t == "char_buf":
            return _read(enc.GA["buf"], src, steps, sizesrc=arg.size_arg_index)
        return _read(enc.GA["kstr"], src, steps)
    expected = EXPECTED.get(t)
    if expected is None:
        raise Unresolvable(f"type {t} cannot be read after resolve or btfType")
    if value is not None:
        got = btfwalk.struct_name(btf, value)
        if got != expected and (got or btfwalk.pointee(btf, value)):
            raise Unresolvable(f"{what} is {btfwalk.describe(btf, value)}, not {expected} *"
                               + ("" if arg.resolve else " (cast it with btfType)"))
    if t in _MEMBER_TYPES:
        struct_name, member, kind = _MEMBER_TYPES[t]
        walked, _ = btfwalk.walk(btf, Value(_struct_id(btf, struct_name.split()[1]), address=True),
                                 (member,), struct_name)
        return _read(enc.GA[kind], src, steps + walked)
    if t in GATHER_TYPES:
        return _gather(btf, t, src, steps)
    if t == ITER_TYPE:
        return _iov_iter(btf, src, steps)
    return _read(enc.GA[_KERNEL_TYPES[t]], src, steps, sizesrc=arg.size_arg_index)


def _gathered(btf: Btf, layout: argstructs.Layout, user: bool = False) -> list[Step]:
    struct_id = _struct_id(btf, layout.struct.split()[1])
    fields = tuple(btfwalk.Field(btfwalk.parse_path(f.path), dst, f.bytes, f.how, f.optional)
                   for f, dst in zip(layout.fields, layout.offsets))
    return btfwalk.gather(btf, struct_id, fields, user=user, what=layout.struct)


def _gather(btf: Btf, t: str, src: int, steps: list[Step], user: bool = False) -> ArgRead:
    layout = argstructs.LAYOUTS[t]
    return ArgRead(enc.GA["gather"], src, layout.size,
                   steps=tuple(steps) + tuple(_gathered(btf, layout, user)), nwalk=len(steps))


def _iov_iter(btf: Btf, src: int, steps: list[Step]) -> ArgRead:
    """The iterator's kind, count and vector; which kinds are which is the
    kernel's enum iter_type (its order changed in 6.4)."""
    try:
        kinds = btf.enumerators(btf.find("iter_type", "enum"))
    except KeyError:
        raise Unresolvable("this kernel's BTF has no enum iter_type (struct iov_iter "
                           "without iter_type: before 5.14)") from None
    if "ITER_IOVEC" not in kinds:
        raise Unresolvable("this kernel's enum iter_type has no ITER_IOVEC")
    return ArgRead(enc.GA["iter"], src, kinds["ITER_IOVEC"], False, kinds.get("ITER_UBUF", enc.NO_SLOT),
                   steps=tuple(steps) + tuple(_gathered(btf, argstructs.ITER)), nwalk=len(steps))


def _read(kind: int, src: int, steps: list[Step], size: int = 8, signed: bool = False,
          sizesrc: int | None = None) -> ArgRead:
    return ArgRead(kind, src, size, signed, sizesrc, steps=tuple(steps), nwalk=len(steps))


def _btf_missing(arg: ArgSpec, err: OSError) -> str:
    if arg.btf_type_module:
        return (f"btfTypeModule {arg.btf_type_module}: no BTF for that module on this kernel "
                f"(/sys/kernel/btf/{arg.btf_type_module}: {err.strerror}; is the module loaded, "
                "and the kernel built with CONFIG_DEBUG_INFO_BTF_MODULES?)")
    return f"this kernel's BTF cannot be read ({err.strerror})"
