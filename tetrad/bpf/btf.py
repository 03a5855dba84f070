"""A reader for the kernel's BTF: struct layouts of the running kernel.

Used to learn the byte offsets of the few kernel struct fields our BPF code
follows (tetrad.bpf.offsets.py) and the BTF ids of kernel functions
(the LSM/fentry feature probes in tetrad/bpf/features.py). Pure Python, no
bcc; anyone may import it.

The raw format of /sys/kernel/btf/vmlinux is a header, a type section of
variable-length records (type ids count from 1 in file order; 0 is void)
and a string section of NUL-terminated names. A kernel has ~130,000 types
and callers want a dozen, so loading only records where each type starts
(one pass, a few integers per type); names, members and sizes are decoded
when a lookup reaches them, and the name index is built on the first
`find()`. On the 5.5 MB vmlinux of our 6.18 CI kernel that is well under
0.1 s where decoding everything took 0.3 s.

Lookups follow C: a member of an anonymous struct/union is reached by its
own name (`qstr.len`, `mm_struct.exe_file` in 6.x), and typedefs and
qualifiers are looked through when a path steps into an embedded struct
(`fs_struct.pwd.dentry`). Absent structs or members raise KeyError naming
both; malformed data, bitfields asked for a byte offset and paths that step
into a non-struct raise BtfError. Policy argument walks (`resolve:`) step
through types one by one with `resolved`, `member`, `array`, `params` and
`describe` (tetrad/policy/btfwalk.py).

A kernel module's BTF (/sys/kernel/btf/<module>) is split BTF: its type ids
and string offsets continue those of vmlinux, which it refers to. Load it
with `Btf.from_bytes(data, base=vmlinux())`; lookups of ids and strings
below the module's own go to the base.
"""

from __future__ import annotations

import functools
import struct
from array import array
from dataclasses import dataclass

MAGIC = 0xEB9F
_HEADER = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")            # name_off, info, size_or_type
_U32 = struct.Struct("<I")

# Kind ids 1..19 (include/uapi/linux/btf.h); the index is the id.
KINDS = ("unknown", "int", "ptr", "array", "struct", "union", "enum", "fwd", "typedef",
         "volatile", "const", "restrict", "func", "func_proto", "var", "datasec", "float",
         "decl_tag", "type_tag", "enum64")
_KIND_IDS = {name: kind_id for kind_id, name in enumerate(KINDS) if kind_id}
# Bytes after the 12-byte record: a fixed part, plus vlen items of a size.
_FIXED = (0, 4, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 4, 0, 0)
_ITEM = (0, 0, 0, 0, 12, 12, 8, 0, 0, 0, 0, 0, 0, 8, 0, 12, 0, 0, 0, 12)
_STRUCT, _UNION, _INT, _ARRAY, _PTR, _ENUM, _FUNC_PROTO, _ENUM64 = 4, 5, 1, 3, 2, 6, 13, 19
_LOOK_THROUGH = frozenset({8, 9, 10, 11, 18})   # typedef, volatile, const, restrict, type_tag
_SIZED = frozenset({1, 4, 5, 6, 15, 16, 19})    # size_or_type is a size in bytes
POINTER_SIZE = 8                                # BTF does not record it; 64-bit hosts only


class BtfError(ValueError):
    """Malformed BTF, or a member that has no answer (a bitfield's byte offset)."""


@dataclass(frozen=True, slots=True)
class Member:
    name: str                 # "" for an anonymous struct/union member
    type_id: int
    bit_offset: int
    bitfield_size: int        # 0 unless a bitfield


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type_id: int


@dataclass(frozen=True, slots=True)
class BtfType:
    kind: str
    name: str
    size_or_type: int         # size in bytes, or the id of the type referred to
    members: tuple[Member, ...] = ()       # structs and unions only


@dataclass(frozen=True, slots=True)
class ValueType:
    """What a value of a BTF type is, as a reader of its bytes needs it:
    `kind` after typedefs and qualifiers ("int", "ptr", "enum", "struct"...),
    its size, whether an integer is signed, and the type as C spells it
    ("struct linux_binprm *", "char *", "unsigned int")."""

    kind: str
    size: int
    signed: bool = False
    c_type: str = ""


@functools.cache
def vmlinux(path: str = "/sys/kernel/btf/vmlinux") -> "Btf":
    """The kernel's BTF, read and indexed once per process (the feature probe,
    the process sensor and the policy engine all ask)."""
    return Btf.load(path)


class Btf:
    """One parsed BTF blob. Build with `load()` or `from_bytes()`."""

    def __init__(self, data: bytes, strings_at: int, strings_len: int, starts: array,
                 base: Btf | None = None):
        self._data = data
        self._strings = (strings_at, strings_at + strings_len)
        self._starts = starts          # record offset of type id first + i at index i
        self._base = base
        # Split BTF: ids and string offsets continue the base's.
        self._first = base.count + 1 if base else 1
        self._str_base = base._strings[1] - base._strings[0] if base else 0
        self._decoded: dict[int, BtfType] = {0: BtfType("void", "", 0)}
        self._index: dict[tuple[int, int], int] | None = None   # (name_off, kind) -> id
        self._found: dict[tuple[str, int], int] = {}             # find()'s answers

    @property
    def count(self) -> int:
        """The highest type id (the base's included)."""
        return self._first - 1 + len(self._starts)

    @classmethod
    def load(cls, path: str = "/sys/kernel/btf/vmlinux") -> Btf:
        with open(path, "rb") as f:
            return cls.from_bytes(f.read())

    @classmethod
    def from_bytes(cls, data: bytes, base: Btf | None = None) -> Btf:
        """A BTF blob; `base` for split BTF (a module's, on vmlinux)."""
        data = bytes(data)
        if len(data) < _HEADER.size:
            raise BtfError("BTF data shorter than its header")
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = \
            _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise BtfError(f"bad BTF magic {magic:#x} (not BTF, or not little-endian)")
        types_at, strings_at = hdr_len + type_off, hdr_len + str_off
        if hdr_len < _HEADER.size or max(types_at + type_len, strings_at + str_len) > len(data):
            raise BtfError("BTF sections run past the end of the data")
        if base is None and (str_len == 0 or data[strings_at] != 0):
            raise BtfError("BTF string section does not start with the empty string")
        first = base.count + 1 if base else 1
        return cls(data, strings_at, str_len,
                   _record_starts(data, types_at, types_at + type_len, first), base)

    # ---- decoding ------------------------------------------------------------

    def _record(self, type_id: int) -> tuple[bytes, int, int, int, int]:
        """(data, record offset, name_off, info, size_or_type) of a type id,
        in the base's data for a split BTF's base ids."""
        if 0 < type_id < self._first:
            return self._base._record(type_id)
        if not self._first <= type_id <= self.count:
            raise BtfError(f"type id {type_id} out of range (1..{self.count})")
        pos = self._starts[type_id - self._first]
        return (self._data, pos, *_TYPE.unpack_from(self._data, pos))

    def _header(self, type_id: int) -> tuple[int, int, int]:
        """(name_off, info, size_or_type) of a type id."""
        return self._record(type_id)[2:]

    def _string(self, offset: int) -> str:
        if offset < self._str_base:
            return self._base._string(offset)
        start, end = self._strings
        at = start + offset - self._str_base
        stop = self._data.find(b"\0", at, end)
        if stop < 0:
            raise BtfError(f"string offset {offset} outside the string section")
        return self._data[at:stop].decode("utf-8", "replace")

    def type(self, type_id: int) -> BtfType:
        """The decoded type; names and members are read on first use."""
        if 0 < type_id < self._first:
            return self._base.type(type_id)
        found = self._decoded.get(type_id)
        if found is None:
            data, pos, name_off, info, size_or_type = self._record(type_id)
            kind_id, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            members = ()
            if kind_id in (_STRUCT, _UNION):
                items = data[pos + 12: pos + 12 + 12 * vlen]
                members = tuple(self._member(m, info >> 31) for m in struct.iter_unpack("<III", items))
            found = BtfType(KINDS[kind_id], self._string(name_off), size_or_type, members)
            self._decoded[type_id] = found
        return found

    def _member(self, raw: tuple[int, int, int], kflag: int) -> Member:
        name_off, type_id, offset = raw
        if kflag:                       # bits 0-23 offset, 24-31 bitfield size
            return Member(self._string(name_off), type_id, offset & 0xFFFFFF, offset >> 24)
        # Without kflag a bitfield is a member whose int type is narrower
        # than its size, with its own bit offset in the int's encoding.
        bits = 0
        resolved = self._resolve(type_id)
        if resolved:
            data, pos, _, info, size = self._record(resolved)
            if (info >> 24) & 0x1F == _INT:
                encoding = _U32.unpack_from(data, pos + 12)[0]
                if encoding & 0xFF != size * 8 or (encoding >> 16) & 0xFF:
                    bits, offset = encoding & 0xFF, offset + ((encoding >> 16) & 0xFF)
        return Member(self._string(name_off), type_id, offset, bits)

    def _resolve(self, type_id: int) -> int:
        """Follow typedefs and qualifiers to the underlying type id."""
        while type_id:
            _, info, refers_to = self._header(type_id)
            if (info >> 24) & 0x1F not in _LOOK_THROUGH:
                break
            type_id = refers_to
        return type_id

    # ---- lookups -------------------------------------------------------------

    def find(self, name: str, kind: str) -> int:
        """Type id of the named type of this kind ("struct", "func", ...).
        Where a struct or union name is defined twice, the first definition
        with members wins over an empty one. KeyError if absent."""
        kind_id = _KIND_IDS.get(kind)
        if kind_id is None:
            raise BtfError(f"unknown BTF kind {kind!r}; one of {', '.join(KINDS[1:])}")
        known = self._found.get((name, kind_id))
        if known is not None:
            return known
        if self._index is None:
            self._index = self._build_index()
        found = [self._index[key] for key in ((off, kind_id) for off in self._string_offsets(name))
                 if key in self._index]
        if not found:
            if self._base is not None:
                return self._base.find(name, kind)
            raise KeyError(f"BTF has no {kind} {name!r}")
        self._found[(name, kind_id)] = best = min(found, key=self._rank)
        return best

    def _rank(self, type_id: int) -> tuple[bool, int]:
        """Sort key among types of one name and kind: definitions before
        memberless structs/unions, then file order."""
        info = self._header(type_id)[1]
        return ((info >> 24) & 0x1F in (_STRUCT, _UNION) and not info & 0xFFFF, type_id)

    def _build_index(self) -> dict[tuple[int, int], int]:
        """This blob's own types by (name offset, kind)."""
        index: dict[tuple[int, int], int] = {}
        unpack, data = _TYPE.unpack_from, self._data
        for type_id, pos in enumerate(self._starts, self._first):
            name_off, info, _ = unpack(data, pos)
            if name_off:
                key = (name_off, (info >> 24) & 0x1F)
                seen = index.get(key)
                if seen is None or self._rank(type_id) < self._rank(seen):
                    index[key] = type_id
        return index

    def _string_offsets(self, name: str):
        """Offsets of `name` in the string sections (the base's too, for
        split BTF): one in deduplicated BTF such as vmlinux, possibly
        several elsewhere."""
        if self._base is not None:
            yield from self._base._string_offsets(name)
        start, end = self._strings
        needle = name.encode() + b"\0"
        if self._base is not None and self._data.startswith(needle, start):
            yield self._str_base                # a split section need not start with NUL
        needle = b"\0" + needle
        at = self._data.find(needle, start, end)
        while at >= 0:
            yield at + 1 - start + self._str_base
            at = self._data.find(needle, at + 1, end)

    def _struct(self, name: str) -> int:
        try:
            return self.find(name, "struct")
        except KeyError:
            try:
                return self.find(name, "union")
            except KeyError:
                raise KeyError(f"BTF has no struct or union {name!r}") from None

    def _find_member(self, type_id: int, name: str) -> tuple[int, Member] | None:
        """(bit offset, member) of `name` in a struct/union, looking through
        anonymous struct/union members as C does."""
        for m in self.type(type_id).members:
            if m.name == name:
                return m.bit_offset, m
            if not m.name:
                inner = self._resolve(m.type_id)
                if self.type(inner).kind in ("struct", "union"):
                    found = self._find_member(inner, name)
                    if found:
                        return m.bit_offset + found[0], found[1]
        return None

    def _walk(self, struct_name: str, path: str) -> tuple[int, Member]:
        type_id = self._struct(struct_name)
        bits, member = 0, None
        for step in path.split("."):
            if member is not None:
                type_id = self._resolve(member.type_id)
                kind = self.type(type_id).kind
                if kind not in ("struct", "union"):
                    raise BtfError(f"{struct_name}.{path}: {member.name} has kind {kind}, "
                                   f"not struct or union, so it has no {step!r}")
            found = self._find_member(type_id, step)
            if found is None:
                where = self.type(type_id)
                raise KeyError(f"BTF {where.kind} {where.name or '(anonymous)'} has no member "
                               f"{step!r} (looking up {struct_name}.{path})")
            bits += found[0]
            member = found[1]
        return bits, member

    def member_offset(self, struct_name: str, path: str) -> int:
        """Byte offset of `path` ("a.b.c") from the start of `struct_name`."""
        bits, member = self._walk(struct_name, path)
        if member.bitfield_size or bits % 8:
            raise BtfError(f"{struct_name}.{path} is a bitfield; it has no byte offset")
        return bits // 8

    def member_size(self, struct_name: str, path: str) -> int:
        """Size in bytes of the member's type (pointers are 8)."""
        _, member = self._walk(struct_name, path)
        return self.size_of(member.type_id)

    def has_member(self, struct_name: str, path: str) -> bool:
        try:
            self._walk(struct_name, path)
        except (KeyError, BtfError):
            return False
        return True

    def value_type(self, type_id: int) -> ValueType:
        """How a value of this type reads (see ValueType)."""
        resolved = self._resolve(type_id)
        if not resolved:
            return ValueType("void", 0, c_type="void")
        data, pos, _, info, size_or_type = self._record(resolved)
        kind_id = (info >> 24) & 0x1F
        if kind_id == _PTR:
            return ValueType("ptr", POINTER_SIZE, c_type=self._spelling(resolved))
        if kind_id == _INT:
            encoding = _U32.unpack_from(data, pos + 12)[0]
            return ValueType("int", size_or_type, bool((encoding >> 24) & 1), self._spelling(resolved))
        if kind_id in (_ENUM, _ENUM64):
            return ValueType("enum", size_or_type, bool(info >> 31), self._spelling(resolved))
        return ValueType(KINDS[kind_id], self.size_of(resolved) if kind_id in _SIZED else 0,
                         c_type=self._spelling(resolved))

    def _spelling(self, type_id: int) -> str:
        """A type's name as C spells it, through typedefs and qualifiers
        ("struct file", "char", "void", "int *")."""
        resolved = self._resolve(type_id)
        if not resolved:
            return "void"
        t = self.type(resolved)
        if t.kind == "ptr":
            return f"{self._spelling(t.size_or_type)} *"
        if t.kind in ("struct", "union", "enum"):
            return f"{t.kind} {t.name}".rstrip()
        return t.name or t.kind

    def size_of(self, type_id: int) -> int:
        """Size in bytes of a type, through typedefs and qualifiers."""
        resolved = self._resolve(type_id)
        if not resolved:
            raise BtfError(f"type {type_id} is void; it has no size")
        _, info, size_or_type = self._header(resolved)
        kind_id = (info >> 24) & 0x1F
        if kind_id in _SIZED:
            return size_or_type
        if kind_id == _PTR:
            return POINTER_SIZE
        if kind_id == _ARRAY:
            element, count = self.array(resolved)
            return count * self.size_of(element)
        raise BtfError(f"type {type_id} ({KINDS[kind_id]}) has no size")

    # ---- stepping through types (argument walks) -----------------------------

    def resolved(self, type_id: int) -> int:
        """The type under typedefs and qualifiers (0: void)."""
        return self._resolve(type_id)

    def kind(self, type_id: int) -> str:
        """The kind under typedefs and qualifiers: int, ptr, struct, ..."""
        resolved = self._resolve(type_id)
        return KINDS[(self._header(resolved)[1] >> 24) & 0x1F] if resolved else "void"

    def member(self, type_id: int, name: str) -> tuple[int, Member] | None:
        """(bit offset, member) of `name` in a struct or union (under
        typedefs), reached through anonymous members as C does; None if it
        has none."""
        return self._find_member(self._resolve(type_id), name)

    def array(self, type_id: int) -> tuple[int, int]:
        """(element type id, element count) of an array type (count 0: a
        flexible array member)."""
        data, pos, _, info, _ = self._record(self._resolve(type_id))
        if (info >> 24) & 0x1F != _ARRAY:
            raise BtfError(f"type {type_id} is not an array")
        element, _index_type, count = struct.unpack_from("<III", data, pos + 12)
        return element, count

    def int_encoding(self, type_id: int) -> tuple[int, bool]:
        """(size in bytes, signed) of an int type."""
        data, pos, _, info, size = self._record(self._resolve(type_id))
        if (info >> 24) & 0x1F != _INT:
            raise BtfError(f"type {type_id} is not an int")
        return size, bool(_U32.unpack_from(data, pos + 12)[0] >> 24 & 1)

    def enumerators(self, type_id: int) -> dict[str, int]:
        """Name -> value of an enum's (or enum64's) constants."""
        data, pos, _, info, _ = self._record(self._resolve(type_id))
        kind_id, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        if kind_id == 6:
            return {self._string(n): v for n, v in struct.iter_unpack("<Ii", data[pos + 12: pos + 12 + 8 * vlen])}
        if kind_id == 19:
            return {self._string(n): lo | hi << 32
                    for n, lo, hi in struct.iter_unpack("<III", data[pos + 12: pos + 12 + 12 * vlen])}
        raise BtfError(f"type {type_id} is not an enum")

    def params(self, type_id: int) -> tuple[Param, ...]:
        """The parameters of a function, a function prototype, or a
        typedef or pointer to one (btf_trace_* typedefs)."""
        while True:
            data, pos, _, info, refers_to = self._record(type_id)
            kind_id = (info >> 24) & 0x1F
            if kind_id != _PTR and kind_id != 12 and kind_id not in _LOOK_THROUGH:
                break
            type_id = refers_to
        if kind_id != 13:
            raise BtfError(f"type {type_id} ({KINDS[kind_id]}) is not a function")
        items = data[pos + 12: pos + 12 + 8 * (info & 0xFFFF)]
        return tuple(Param(self._string(n), t) for n, t in struct.iter_unpack("<II", items))

    def describe(self, type_id: int) -> str:
        """A type as C writes it, for messages: `struct cred *`, `char[16]`."""
        if not type_id:
            return "void"
        t = self.type(type_id)
        if t.kind in ("struct", "union", "enum", "fwd", "enum64"):
            tag = "enum" if t.kind == "enum64" else t.kind if t.kind != "fwd" else "struct"
            return f"{tag} {t.name or '(anonymous)'}"
        if t.kind in ("int", "typedef", "float"):
            return t.name
        if t.kind == "ptr":
            return f"{self.describe(t.size_or_type)} *"
        if t.kind == "array":
            element, count = self.array(type_id)
            return f"{self.describe(element)}[{count}]"
        if t.kind in ("const", "volatile", "restrict"):
            return f"{t.kind} {self.describe(t.size_or_type)}"
        if t.kind == "type_tag":
            return self.describe(t.size_or_type)
        return t.kind


def _record_starts(data: bytes, pos: int, end: int, first: int = 1) -> array:
    """Where each type record starts: the one pass over every type, so it
    reads only the info word and skips each record by its kind's length."""
    starts = array("I")
    append, unpack = starts.append, _U32.unpack_from
    while pos < end:
        info = unpack(data, pos + 4)[0]
        kind_id = (info >> 24) & 0x1F
        if not 0 < kind_id < len(KINDS):
            raise BtfError(f"unknown BTF kind {kind_id} (type {len(starts) + first})")
        append(pos)
        pos += 12 + _FIXED[kind_id] + _ITEM[kind_id] * (info & 0xFFFF)
    if pos != end:
        raise BtfError("BTF type section ends inside a type record")
    return starts
