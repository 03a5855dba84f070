"""Struct-typed policy arguments: which fields of a kernel struct a slot
gathers, where in the slot's data each one lands, and how to read them back.

One table for both ends: the compiler (tetrad/policy/args.py) walks each
field's member path in the running kernel's BTF and emits the steps that
copy it to its place (tetrad/policy/btfwalk.py); the event builder
(tetrad/events/kernelargs.py) unpacks the slot with the same layout. The
fields are what Tetragon shows for each type (its KprobeCred,
KprobeBpfAttr, ... messages); their order follows the kernel's, so that
fields the kernel keeps side by side are copied in one step.

A place is aligned to its size; strings are NUL-terminated within their
size. A layout holds at most 255 bytes (a slot's data is 256).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_FORMATS = {"B": 1, "I": 4, "i": 4, "Q": 8}


@dataclass(frozen=True)
class Field:
    name: str
    path: str                   # member path from the struct, pointers followed
    fmt: str                    # B, I, i, Q; or "s" (a string of `size` bytes)
    how: str = "copy"           # copy; str: a kernel string; ustr: a user string at a pointer
    size: int = 0               # strings: bytes kept with the NUL
    optional: bool = False      # absent on some kernels (left zero)

    @property
    def bytes(self) -> int:
        return self.size if self.fmt == "s" else _FORMATS[self.fmt]


class Layout:
    """The slot data of one struct type."""

    def __init__(self, struct_name: str, *fields: Field):
        self.struct = struct_name                   # "struct cred", "union bpf_attr"
        self.fields = fields
        offsets, at, fmt = [], 0, "<"
        for f in fields:
            align = 1 if f.fmt == "s" else f.bytes
            pad = -at % align
            fmt += f"{pad}x" if pad else ""
            at += pad
            offsets.append(at)
            fmt += f"{f.size}s" if f.fmt == "s" else f.fmt
            at += f.bytes
        if at > 255:
            raise ValueError(f"{struct_name}: {at} bytes of fields, a slot holds 255")
        self.offsets = tuple(offsets)
        self.size = at
        self._struct = struct.Struct(fmt)

    def unpack(self, data: bytes) -> dict[str, int | str]:
        """Field name -> value (strings up to their NUL, as text)."""
        values = self._struct.unpack(data[:self.size].ljust(self.size, b"\0"))
        out: dict[str, int | str] = {}
        for f, v in zip(self.fields, values):
            out[f.name] = v.split(b"\0", 1)[0].decode("utf-8", "backslashreplace") if f.fmt == "s" else v
        return out


_IDS = ("uid", "gid", "suid", "sgid", "euid", "egid", "fsuid", "fsgid")

LAYOUTS: dict[str, Layout] = {
    "cred": Layout(
        "struct cred",
        *(Field(n, n, "I") for n in _IDS),
        Field("securebits", "securebits", "I"),
        Field("cap_inheritable", "cap_inheritable", "Q"),
        Field("cap_permitted", "cap_permitted", "Q"),
        Field("cap_effective", "cap_effective", "Q"),
        Field("ns_level", "user_ns.level", "i"),
        Field("ns_uid", "user_ns.owner", "I"),
        Field("ns_gid", "user_ns.group", "I"),
        Field("ns_inum", "user_ns.ns.inum", "I")),
    "user_namespace": Layout(
        "struct user_namespace",
        Field("level", "level", "i"),
        Field("uid", "owner", "I"),
        Field("gid", "group", "I"),
        Field("inum", "ns.inum", "I")),
    "bpf_attr": Layout(
        "union bpf_attr",
        Field("prog_type", "prog_type", "I"),
        Field("insn_cnt", "insn_cnt", "I"),
        Field("prog_name", "prog_name", "s", size=16)),
    "bpf_prog": Layout(
        "struct bpf_prog",
        Field("prog_type", "type", "I"),
        Field("insn_cnt", "len", "I"),
        Field("prog_name", "aux.name", "s", size=16)),
    "bpf_map": Layout(
        "struct bpf_map",
        Field("map_type", "map_type", "I"),
        Field("key_size", "key_size", "I"),
        Field("value_size", "value_size", "I"),
        Field("max_entries", "max_entries", "I"),
        Field("name", "name", "s", size=16)),
    "perf_event": Layout(
        "struct perf_event",
        Field("type", "attr.type", "I"),
        Field("config", "attr.config", "Q"),
        Field("probe_offset", "attr.probe_offset", "Q"),
        # the kprobe's function name, as the caller of perf_event_open gave it
        Field("kprobe_func", "attr.kprobe_func", "s", how="ustr", size=128)),
    "module": Layout(
        "struct module",
        Field("taints", "taints", "Q"),
        Field("name", "name", "s", how="str", size=64)),
    "load_info": Layout(
        "struct load_info",
        Field("sig_ok", "sig_ok", "B", optional=True),      # CONFIG_MODULE_SIG
        Field("name", "name", "s", how="str", size=64),
        Field("taints", "mod.taints", "Q")),
}

# struct iov_iter: what the kernel needs to find its first user buffer
# (GA_ITER, bpf/generic.h); the vector pointer is a member of a union whose
# other members (ubuf, __iov) share its place.
ITER = Layout(
    "struct iov_iter",
    Field("iter_type", "iter_type", "B"),
    Field("count", "count", "Q"),
    Field("vector", "kvec", "Q"))
