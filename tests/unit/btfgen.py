"""A tiny BTF encoder for tests: builds raw BTF blobs type by type.

Each method appends one type record in the layout of include/uapi/linux/btf.h
and returns its type id, so tests can write kernel-like shapes without a
kernel. Strings are not deduplicated (the parser must cope either way).
`BtfBuilder(base=other)` builds split BTF on `other` (a kernel module's):
its ids and string offsets continue the base's.
"""

import struct

KIND = {"int": 1, "ptr": 2, "array": 3, "struct": 4, "union": 5, "enum": 6, "fwd": 7,
        "typedef": 8, "volatile": 9, "const": 10, "restrict": 11, "func": 12, "func_proto": 13,
        "var": 14, "datasec": 15, "float": 16, "decl_tag": 17, "type_tag": 18, "enum64": 19}


class BtfBuilder:
    def __init__(self, base: "BtfBuilder | None" = None):
        self.strings = b"" if base else b"\0"
        self.types = b""
        self.count = base.count if base else 0
        self._str_base = len(base.strings) if base else 0

    def _str(self, name: str) -> int:
        if not name:
            return 0
        off = self._str_base + len(self.strings)
        self.strings += name.encode() + b"\0"
        return off

    def _add(self, kind, name, vlen, size_or_type, extra=b"", kflag=0) -> int:
        info = (kflag << 31) | (KIND[kind] << 24) | vlen
        self.types += struct.pack("<III", self._str(name), info, size_or_type) + extra
        self.count += 1
        return self.count

    def int(self, name="int", size=4, bits=None, bit_offset=0, signed=False):
        encoding = (int(signed) << 24) | (bit_offset << 16) | (size * 8 if bits is None else bits)
        return self._add("int", name, 0, size, struct.pack("<I", encoding))

    def ptr(self, to):
        return self._add("ptr", "", 0, to)

    def array(self, elem, index, n):
        return self._add("array", "", 0, 0, struct.pack("<III", elem, index, n))

    def struct(self, name, size, members, kind="struct", bitfields=False):
        """members: (name, type_id, bit_offset[, bitfield_size]); with
        bitfields, the kflag encoding packs the size into the offset."""
        extra = b""
        for m in members:
            off = m[2] | (m[3] << 24 if len(m) > 3 else 0) if bitfields else m[2]
            extra += struct.pack("<III", self._str(m[0]), m[1], off)
        return self._add(kind, name, len(members), size, extra, kflag=int(bitfields))

    def enum(self, name, values):
        extra = b"".join(struct.pack("<Ii", self._str(n), v) for n, v in values)
        return self._add("enum", name, len(values), 4, extra)

    def fwd(self, name, union=False):
        return self._add("fwd", name, 0, 0, kflag=int(union))

    def modifier(self, kind, to, name=""):
        """typedef (named), volatile, const, restrict, type_tag (named)."""
        return self._add(kind, name, 0, to)

    def typedef(self, name, to):
        return self.modifier("typedef", to, name)

    def const(self, to):
        return self.modifier("const", to)

    def func(self, name, proto, linkage=1):
        return self._add("func", name, linkage, proto)

    def func_proto(self, ret, params):
        extra = b"".join(struct.pack("<II", self._str(n), t) for n, t in params)
        return self._add("func_proto", "", len(params), ret, extra)

    def var(self, name, type_id, linkage=1):
        return self._add("var", name, 0, type_id, struct.pack("<I", linkage))

    def datasec(self, name, size, entries):
        """entries: (var type id, offset, size)"""
        extra = b"".join(struct.pack("<III", *e) for e in entries)
        return self._add("datasec", name, len(entries), size, extra)

    def float(self, name="double", size=8):
        return self._add("float", name, 0, size)

    def decl_tag(self, name, to, component=-1):
        return self._add("decl_tag", name, 0, to, struct.pack("<i", component))

    def enum64(self, name, values):
        extra = b"".join(struct.pack("<III", self._str(n), v & 0xFFFFFFFF, v >> 32)
                         for n, v in values)
        return self._add("enum64", name, len(values), 8, extra)

    def build(self, magic=0xEB9F) -> bytes:
        hdr_len = 24
        return struct.pack("<HBBIIIII", magic, 1, 0, hdr_len, 0, len(self.types),
                           len(self.types), len(self.strings)) + self.types + self.strings
