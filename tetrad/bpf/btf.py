"""A reader for the kernel's BTF: struct layouts of the running kernel.

Used to learn the byte offsets of the few kernel struct fields our BPF code
follows (tetrad/sensors/offsets.py) and the BTF ids of kernel functions
(feature probes for LSM/fentry). Parses the raw format of
/sys/kernel/btf/vmlinux: a header, a type section of variable-length
records (type ids count from 1 in file order), and a string section.
Only what those callers need is decoded eagerly: each type's kind, name,
size/type and members; everything else is skipped by its known length.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = 0xEB9F
_HEADER = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")

KINDS = {1: "int", 2: "ptr", 3: "array", 4: "struct", 5: "union", 6: "enum", 7: "fwd",
         8: "typedef", 9: "volatile", 10: "const", 11: "restrict", 12: "func",
         13: "func_proto", 14: "var", 15: "datasec", 16: "float", 17: "decl_tag",
         18: "type_tag", 19: "enum64"}
# Bytes that follow the 12-byte type record: fixed, or per member (vlen).
_FIXED_EXTRA = {1: 4, 3: 12, 14: 4, 17: 4}
_PER_MEMBER = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}
_MODIFIERS = {"typedef", "volatile", "const", "restrict", "type_tag"}


class BtfError(ValueError):
    """Not BTF, or a struct/member the kernel does not have."""


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int


@dataclass(frozen=True, slots=True)
class BtfType:
    kind: str
    name: str
    size_or_type: int
    members: tuple[Member, ...] = ()


class Btf:
    def __init__(self, types: list[BtfType]):
        self._types = types          # index = type id; 0 is "void"
        self._by_name: dict[tuple[str, str], int] | None = None

    @classmethod
    def load(cls, path: str = "/sys/kernel/btf/vmlinux") -> "Btf":
        with open(path, "rb") as f:
            return cls.from_bytes(f.read())

    @classmethod
    def from_bytes(cls, data: bytes) -> "Btf":
        if len(data) < _HEADER.size:
            raise BtfError("BTF data shorter than its header")
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = \
            _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise BtfError(f"bad BTF magic {magic:#x} (is this little-endian BTF?)")
        types_at = hdr_len + type_off
        strings = data[hdr_len + str_off: hdr_len + str_off + str_len]
        if types_at + type_len > len(data) or len(strings) != str_len:
            raise BtfError("BTF sections run past the end of the data")

        def name_at(offset: int) -> str:
            end = strings.find(b"\0", offset)
            return strings[offset:end].decode("ascii", "replace")

        types: list[BtfType] = [BtfType("void", "", 0)]
        pos, end = types_at, types_at + type_len
        unpack_type, unpack_member = _TYPE.unpack_from, _TYPE.unpack_from
        while pos < end:
            name_off, info, size_or_type = unpack_type(data, pos)
            pos += 12
            kind_id = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            kind = KINDS.get(kind_id)
            if kind is None:
                raise BtfError(f"unknown BTF kind {kind_id} at type {len(types)}")
            members: tuple[Member, ...] = ()
            if kind_id in (4, 5):
                kflag = info >> 31
                out = []
                for i in range(vlen):
                    m_name, m_type, m_off = unpack_member(data, pos + 12 * i)
                    if kflag:
                        out.append(Member(name_at(m_name), m_type, m_off & 0xFFFFFF, m_off >> 24))
                    else:
                        out.append(Member(name_at(m_name), m_type, m_off, 0))
                members = tuple(out)
            pos += _FIXED_EXTRA.get(kind_id, 0) + _PER_MEMBER.get(kind_id, 0) * vlen
            types.append(BtfType(kind, name_at(name_off) if name_off else "", size_or_type, members))
        return cls(types)

    # ---- lookups ---------------------------------------------------------

    def find(self, name: str, kind: str) -> int:
        """Type id of the named type of this kind; for structs and unions a
        definition wins over a forward declaration. KeyError if absent."""
        if self._by_name is None:
            index: dict[tuple[str, str], int] = {}
            for type_id, t in enumerate(self._types):
                if t.name and ((t.name, t.kind) not in index or t.members):
                    index[(t.name, t.kind)] = type_id
            self._by_name = index
        try:
            return self._by_name[(name, kind)]
        except KeyError:
            raise KeyError(f"BTF has no {kind} {name!r}") from None

    def type(self, type_id: int) -> BtfType:
        return self._types[type_id]

    def _resolve(self, type_id: int) -> int:
        """Follow typedefs and qualifiers to the underlying type."""
        while self._types[type_id].kind in _MODIFIERS:
            type_id = self._types[type_id].size_or_type
        return type_id

    def _member(self, type_id: int, name: str) -> tuple[int, Member] | None:
        """(bit offset, member) of `name` in a struct/union, looking through
        anonymous struct/union members as C does."""
        for m in self._types[type_id].members:
            if m.name == name:
                return m.bit_offset, m
            if not m.name:
                inner = self._resolve(m.type_id)
                if self._types[inner].kind in ("struct", "union"):
                    found = self._member(inner, name)
                    if found:
                        return m.bit_offset + found[0], found[1]
        return None

    def _walk(self, struct_name: str, path: str) -> tuple[int, Member]:
        try:
            type_id = self.find(struct_name, "struct")
        except KeyError:
            type_id = self.find(struct_name, "union")
        bits, member = 0, None
        for step in path.split("."):
            if member is not None:
                type_id = self._resolve(member.type_id)
                if self._types[type_id].kind not in ("struct", "union"):
                    raise BtfError(f"{struct_name}.{path}: {step!r} follows a non-struct member")
            found = self._member(type_id, step)
            if found is None:
                raise KeyError(f"BTF struct {struct_name} has no member {path}")
            bits += found[0]
            member = found[1]
        return bits, member

    def member_offset(self, struct_name: str, path: str) -> int:
        """Byte offset of `path` ("a.b.c") inside `struct_name`."""
        bits, member = self._walk(struct_name, path)
        if member.bitfield_size or bits % 8:
            raise BtfError(f"{struct_name}.{path} is a bitfield; it has no byte offset")
        return bits // 8

    def member_size(self, struct_name: str, path: str) -> int:
        """Size in bytes of the member's type (pointers are 8)."""
        _, member = self._walk(struct_name, path)
        return self.size_of(member.type_id)

    def size_of(self, type_id: int) -> int:
        t = self._types[self._resolve(type_id)]
        if t.kind == "ptr":
            return 8
        if t.kind == "array":
            raise BtfError("array sizes are not decoded")
        return t.size_or_type

    def has_member(self, struct_name: str, path: str) -> bool:
        try:
            self._walk(struct_name, path)
        except (KeyError, BtfError):
            return False
        return True
