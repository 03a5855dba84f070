"""Struct walks: `resolve:` paths, `btfType` casts and the fields of
struct-typed arguments, as the steps a policy program runs. Pure: it reads
a parsed BTF (tetrad/bpf/btf.py) and nothing else.

Owns the arrow "argument spec + the running kernel's BTF -> a slot's steps"
(struct g_op, bpf/generic.h). The kernel side never knows a struct: it
runs a bounded list of steps on one 64-bit value `v`, with offsets
computed here from the running kernel's BTF (never from headers):

  GO_DEREF off      v = the pointer at v + off (NULL: stop, "bad address")
  GO_LOAD off size  v = the `size` bytes at v + off (a final scalar)
  GO_ADD off        v = v + off (the address of an embedded struct/array)
  GO_COPY off size dst, GO_STR off size dst
                    copy bytes / a string at v + off into the slot's data
  GO_BASE           v = the walked value again (a gather's next field)

A walk follows C: `a.b` steps into a struct or union member (anonymous
members included), through as many pointers as it meets (`->`); `a[3]`
indexes an array, or a pointer as an array. The value at the end is the
member itself when it is a scalar (integer, enum, pointer: loaded), or its
address when it is a struct, union or array (the argument type then reads
it: a path, a string, a struct's fields). Consecutive embedded members
cost nothing: their offsets add up into the next step.

What the kernel's BTF does not have (a struct, a member, a type that does
not fit) raises `Unresolvable`: the policy is valid, this kernel cannot
serve it. Bad syntax is the schema's (`parse_path`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tetrad.abi import generic as enc
from tetrad.bpf.btf import Btf, BtfError

MAX_DEPTH = 10                  # path components (Tetragon's MaxBTFArgDepth)
_COMPONENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d{1,9})\]")
_SCALARS = frozenset({"int", "enum", "enum64", "ptr"})
_OBJECTS = frozenset({"struct", "union", "array"})


class Unresolvable(Exception):
    """This kernel's BTF cannot serve a walk; the message says what is missing."""


@dataclass(frozen=True)
class Step:
    """One struct g_op."""

    code: int
    off: int = 0
    size: int = 0
    dst: int = 0
    depth: int = 0              # place in the resolve path (for the bad address message)


@dataclass(frozen=True)
class Value:
    """What a value is: a value of type `type_id` (an integer, a pointer),
    or (`address`) the address of an object of type `type_id`."""

    type_id: int
    address: bool = False


def parse_path(text: str) -> tuple[str | int, ...]:
    """`f_path.dentry`, `a[3].b`, `[0].x` -> ("f_path", "dentry"), ("a", 3, "b"),
    (0, "x"). ValueError with the reason when it is not such a path."""
    parts: list[str | int] = []
    at = 0
    while at < len(text):
        member = not parts
        if parts and text[at] == ".":
            at += 1
            member = True
        elif parts and text[at] != "[":
            raise ValueError(f"not a member path at character {at + 1} (write a.b.c or a[3].b)")
        m = _COMPONENT.match(text, at)
        if m is None or (member and parts and not m.group(1)):
            raise ValueError(f"not a member path at character {at + 1} (write a.b.c or a[3].b)")
        parts.append(m.group(1) or int(m.group(2)))
        at = m.end()
    if not parts or text.endswith("."):
        raise ValueError("an empty member path" if not parts else "a member path ending in '.'")
    if len(parts) > MAX_DEPTH:
        raise ValueError(f"{len(parts)} steps; at most {MAX_DEPTH}")
    return tuple(parts)


def text_of(path: tuple[str | int, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


# ---- walking -------------------------------------------------------------------

@dataclass(frozen=True)
class _At:
    """An object of type `type_id` at v + off (not loaded yet)."""

    type_id: int
    off: int


def _step(btf: Btf, steps: list[Step], place, part, depth: int, where: str):
    """One path component from `place` (a Value held in v, or an _At):
    pointers met on the way are followed (GO_DEREF)."""
    while True:
        if isinstance(place, Value):
            if place.address:
                place = _At(place.type_id, 0)
                continue
            if btf.kind(place.type_id) != "ptr":
                raise Unresolvable(f"{where} is {btf.describe(place.type_id)}, which has no "
                                   f"{_name(part)}")
            target = btf.type(btf.resolved(place.type_id)).size_or_type
            if isinstance(part, int):           # p[n]: a pointer as an array
                return _at(target, part * _size(btf, target, where), where)
            place = _At(target, 0)
            continue
        kind = btf.kind(place.type_id)
        if kind == "ptr":
            steps.append(Step(enc.GO_DEREF, place.off, 8, depth=max(depth - 1, 0)))
            place = Value(place.type_id)
            continue
        break
    if isinstance(part, int):
        if kind != "array":
            raise Unresolvable(f"{where} is {btf.describe(place.type_id)}, not an array: it has no [{part}]")
        element, count = btf.array(place.type_id)
        if count and part >= count:
            raise Unresolvable(f"{where} has {count} elements: [{part}] is past its end")
        return _at(element, place.off + part * _size(btf, element, where), where)
    if kind not in ("struct", "union"):
        raise Unresolvable(f"{where} is {btf.describe(place.type_id)}, not a struct or union: it has "
                           f"no member {part!r}")
    found = btf.member(place.type_id, part)
    if found is None:
        raise Unresolvable(f"{btf.describe(btf.resolved(place.type_id))} has no member {part!r} on "
                           "this kernel")
    bits, member = found
    if member.bitfield_size or bits % 8:
        raise Unresolvable(f"{where}.{part} is a bitfield; tetrad reads whole bytes")
    return _At(member.type_id, place.off + bits // 8)


def _at(type_id: int, off: int, where: str) -> _At:
    if off > 0xFFFFFFFF:
        raise Unresolvable(f"{where}: an offset of {off} bytes; a step holds 32 bits")
    return _At(type_id, off)


def _name(part) -> str:
    return f"[{part}]" if isinstance(part, int) else f"member {part!r}"


def _size(btf: Btf, type_id: int, where: str) -> int:
    try:
        return btf.size_of(type_id)
    except BtfError as err:
        raise Unresolvable(f"{where}: {err}") from None


def _to(btf: Btf, start: Value, path: tuple, what: str) -> tuple[list[Step], object]:
    steps: list[Step] = []
    place: object = start
    where = what
    for depth, part in enumerate(path):
        place = _step(btf, steps, place, part, depth, where)
        where = text_of(path[:depth + 1])
    return steps, place


def walk(btf: Btf, start: Value, path: tuple[str | int, ...], what: str = "the argument"
         ) -> tuple[list[Step], Value]:
    """The steps from `start` along `path` and the value they end with: a
    scalar member loaded, or the address of a struct, union or array."""
    steps, place = _to(btf, start, path, what)
    if isinstance(place, Value):
        return steps, place
    kind = btf.kind(place.type_id)
    if kind in _SCALARS:
        size = _size(btf, place.type_id, what)
        if size > 8:
            raise Unresolvable(f"{text_of(path)} is {size} bytes; at most 8 are read as a value")
        steps.append(Step(enc.GO_LOAD, place.off, size))
        return steps, Value(place.type_id)
    if kind in _OBJECTS:
        if place.off:
            steps.append(Step(enc.GO_ADD, place.off))
        return steps, Value(place.type_id, address=True)
    raise Unresolvable(f"{text_of(path)} is {btf.describe(place.type_id)}: nothing to read")


# ---- what a value is --------------------------------------------------------------

def pointee(btf: Btf, value: Value) -> int:
    """The type of the object a value points at or is the address of (0 if
    it is neither)."""
    if value.address:
        return btf.resolved(value.type_id)
    if btf.kind(value.type_id) == "ptr":
        return btf.resolved(btf.type(btf.resolved(value.type_id)).size_or_type)
    return 0


def struct_name(btf: Btf, value: Value) -> str:
    """`struct cred`, `union bpf_attr` for what the value points at; "" when
    it points at no struct or union."""
    target = pointee(btf, value)
    if target and btf.kind(target) in ("struct", "union", "fwd"):
        t = btf.type(target)
        return f"{'struct' if t.kind == 'fwd' else t.kind} {t.name}"
    return ""


def is_chars(btf: Btf, value: Value) -> bool:
    """Whether the value is a string's address: a char array, a char pointer."""
    target = pointee(btf, value)
    if not target:
        return False
    if btf.kind(target) == "array":
        target = btf.resolved(btf.array(target)[0])
    return btf.kind(target) == "int" and btf.size_of(target) == 1


def is_scalar(btf: Btf, value: Value) -> bool:
    return not value.address and btf.kind(value.type_id) in _SCALARS


def describe(btf: Btf, value: Value) -> str:
    text = btf.describe(value.type_id)
    return f"{text} (embedded)" if value.address else text


# ---- gathering a struct's fields ----------------------------------------------------

@dataclass(frozen=True)
class Field:
    """A field a struct-typed argument gathers into its slot (its layout is
    tetrad/abi/argstructs.py)."""

    path: tuple[str | int, ...]
    dst: int
    size: int
    how: str                    # copy, str (kernel string), ustr (user string at a pointer)
    optional: bool = False      # absent on some kernels (then left zero)


def gather(btf: Btf, struct_id: int, fields: tuple[Field, ...], user: bool = False,
           what: str = "") -> list[Step]:
    """Steps that copy `fields` of the struct whose address is the walked
    value into the slot's data; `user`: the struct is in user memory."""
    flag = enc.GO_USER if user else 0
    steps: list[Step] = []
    chain: tuple | None = ()            # derefs v went through since the walked value
    used = sorted((f.dst, f.dst + f.size) for f in fields)
    for f in fields:
        try:
            derefs, place = _to(btf, Value(struct_id, address=True), f.path, what)
        except Unresolvable:
            if f.optional:
                continue
            raise
        key = tuple(derefs)
        if chain != key:
            if chain != ():
                steps.append(Step(enc.GO_BASE))
            steps += [Step(s.code | flag, s.off, s.size, depth=s.depth) for s in derefs]
            chain = key
        kind = btf.kind(place.type_id)
        where = f"{what} {text_of(f.path)}"
        if f.how == "copy":
            size = _size(btf, place.type_id, where)
            if size > f.size:
                raise Unresolvable(f"{where} has {size} bytes on this kernel; tetrad reads {f.size}")
            _copy(steps, Step(enc.GO_COPY | flag, place.off, size, f.dst), used)
        elif f.how == "str" and kind == "array":
            size = min(_size(btf, place.type_id, where), f.size)
            steps.append(Step(enc.GO_STR | flag, place.off, size, f.dst))
        elif f.how == "str" and kind == "ptr":
            steps += [Step(enc.GO_LOAD | flag, place.off, 8), Step(enc.GO_STR | flag, 0, f.size, f.dst)]
            chain = None
        elif f.how == "ustr" and kind in ("int", "ptr") and _size(btf, place.type_id, where) == 8:
            steps += [Step(enc.GO_LOAD | flag, place.off, 8), Step(enc.GO_STR | enc.GO_USER, 0, f.size, f.dst)]
            chain = None
        else:
            raise Unresolvable(f"{where} is {btf.describe(place.type_id)} on this kernel, not a string")
    return steps


def _copy(steps: list[Step], new: Step, used: list[tuple[int, int]]) -> None:
    """Appends a copy, or extends the previous copy over it when the kernel
    has the two fields as far apart as the slot does and the bytes between
    belong to no field."""
    if steps:
        last = steps[-1]
        gap = (last.dst + last.size, new.dst)
        if (last.code == new.code and new.off - last.off == new.dst - last.dst and gap[0] <= gap[1]
                and new.dst + new.size - last.dst <= 255
                and not any(lo < gap[1] and hi > gap[0] for lo, hi in used)):
            steps[-1] = Step(last.code, last.off, new.dst + new.size - last.dst, last.dst)
            return
    steps.append(new)
