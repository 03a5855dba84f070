"""BTF parser on hand-built blobs: kernel shapes without a kernel."""

import struct

import pytest

from tetrad.bpf.btf import Btf, BtfError, ValueType
from tests.unit.btfgen import BtfBuilder


def kernelish() -> Btf:
    """Shapes that real kernels use: anonymous unions/structs, typedef
    chains, bitfields, and kinds the parser must skip by their length."""
    b = BtfBuilder()
    u32 = b.int("unsigned int", 4)
    u64 = b.int("long long unsigned int", 8)
    char = b.int("char", 1)
    b.enum64("big", [("A", 1 << 40), ("B", 2)])
    name_ptr = b.const(b.ptr(char))
    # struct qstr { union { struct { u32 hash; u32 len; }; u64 hash_len; }; const char *name; }
    inner = b.struct("", 8, [("hash", u32, 0), ("len", u32, 32)])
    anon = b.struct("", 8, [("", inner, 0), ("hash_len", u64, 0)], kind="union")
    qstr = b.struct("qstr", 16, [("", anon, 0), ("name", name_ptr, 64)])
    b.fwd("dentry")
    dentry = b.struct("dentry", 64, [("d_flags", u32, 0), ("d_parent", b.ptr(0), 192),
                                     ("d_name", qstr, 256),
                                     ("d_iname", b.array(char, u32, 8), 384)])
    b.decl_tag("tag", dentry, component=1)
    path = b.struct("path", 16, [("mnt", b.ptr(0), 0), ("dentry", b.ptr(dentry), 64)])
    path_t = b.typedef("path_t", b.modifier("volatile", b.const(path)))
    b.struct("fs_struct", 56, [("users", u32, 0), ("root", path_t, 192), ("pwd", path, 320)])
    b.struct("flags", 4, [("a", u32, 0, 3), ("b", u32, 3, 5), ("c", u32, 8)], bitfields=True)
    b.struct("task_struct", 0, [])
    b.struct("task_struct", 4096, [("pid", u32, 8 * 1200), ("tgid", u32, 8 * 1204)])
    b.func("bpf_lsm_file_open", b.func_proto(u32, [("file", b.ptr(0))]))
    return Btf.from_bytes(b.build())


def test_plain_struct_members():
    btf = kernelish()
    assert btf.member_offset("path", "mnt") == 0
    assert btf.member_offset("path", "dentry") == 8
    assert btf.member_offset("dentry", "d_parent") == 24
    assert btf.member_size("dentry", "d_flags") == 4


def test_nested_paths_through_typedefs_and_qualifiers():
    btf = kernelish()
    assert btf.member_offset("fs_struct", "pwd") == 40
    assert btf.member_offset("fs_struct", "pwd.dentry") == 48
    assert btf.member_offset("fs_struct", "root.dentry") == 32    # typedef -> volatile -> const
    assert btf.member_offset("dentry", "d_name.name") == 40
    assert btf.member_size("fs_struct", "root") == 16


def test_members_inside_anonymous_unions_and_structs():
    btf = kernelish()
    assert btf.member_offset("qstr", "hash") == 0
    assert btf.member_offset("qstr", "len") == 4
    assert btf.member_offset("qstr", "hash_len") == 0
    assert btf.member_offset("qstr", "name") == 8
    assert btf.member_offset("dentry", "d_name.len") == 36


def test_member_sizes_of_pointers_arrays_and_structs():
    btf = kernelish()
    assert btf.member_size("qstr", "name") == 8                    # const char *
    assert btf.member_size("qstr", "hash_len") == 8
    assert btf.member_size("dentry", "d_iname") == 8               # char[8]
    assert btf.member_size("dentry", "d_name") == 16


def test_a_definition_wins_over_an_empty_struct_and_a_forward_declaration():
    btf = kernelish()
    assert btf.member_offset("task_struct", "tgid") == 1204
    assert btf.type(btf.find("dentry", "struct")).size_or_type == 64
    assert btf.type(btf.find("dentry", "fwd")).kind == "fwd"


def test_kflag_bitfields_have_no_byte_offset_but_following_members_do():
    btf = kernelish()
    with pytest.raises(BtfError, match="flags.b is a bitfield"):
        btf.member_offset("flags", "b")
    assert btf.member_offset("flags", "c") == 1
    members = {m.name: m for m in btf.type(btf.find("flags", "struct")).members}
    assert (members["b"].bit_offset, members["b"].bitfield_size) == (3, 5)


def test_bitfields_encoded_in_the_int_type_without_kflag():
    b = BtfBuilder()
    u32 = b.int("unsigned int", 4)
    three_bits = b.int("unsigned int", 4, bits=3, bit_offset=8)   # bits 8..10 of the word
    b.struct("old", 8, [("x", three_bits, 0), ("y", u32, 32)])
    btf = Btf.from_bytes(b.build())
    x = btf.type(btf.find("old", "struct")).members[0]
    assert (x.bit_offset, x.bitfield_size) == (8, 3)
    with pytest.raises(BtfError, match="bitfield"):
        btf.member_offset("old", "x")
    assert btf.member_offset("old", "y") == 4


def test_every_kind_is_skipped_by_its_length():
    """One record of each kind 1..19 before the struct we look up: a wrong
    length for any kind would misplace everything after it."""
    b = BtfBuilder()
    i32 = b.int()
    b.ptr(i32)
    b.array(i32, i32, 4)
    b.struct("s", 4, [("v", i32, 0)])
    b.struct("u", 4, [("v", i32, 0), ("w", i32, 0)], kind="union")
    b.enum("e", [("E0", 0), ("E1", -1)])
    b.fwd("f", union=True)
    b.typedef("t", i32)
    for kind in ("volatile", "const", "restrict"):
        b.modifier(kind, i32)
    proto = b.func_proto(i32, [("a", i32), ("b", i32)])
    b.func("fn", proto)
    var = b.var("v", i32)
    b.datasec(".data", 4, [(var, 0, 4)])
    b.float()
    b.decl_tag("d", i32)
    b.modifier("type_tag", i32, "user")
    b.enum64("e64", [("X", 1 << 33)])
    b.struct("after", 16, [("one", i32, 0), ("two", i32, 96)])
    btf = Btf.from_bytes(b.build())
    assert btf.member_offset("after", "two") == 12
    assert btf.type(btf.find("e64", "enum64")).size_or_type == 8
    assert btf.type(btf.find(".data", "datasec")).kind == "datasec"
    assert btf.find("user", "type_tag") == btf.find("e64", "enum64") - 1


def test_names_come_from_the_string_section_per_kind():
    b = BtfBuilder()
    i32 = b.int()
    s = b.struct("thing", 4, [("len", i32, 0)])
    t = b.typedef("thing", s)
    b.struct("hash_len", 4, [("x", i32, 0)])     # "len" is also a suffix of this string
    btf = Btf.from_bytes(b.build())
    assert btf.find("thing", "struct") == s
    assert btf.find("thing", "typedef") == t
    assert btf.type(t).name == "thing"
    with pytest.raises(KeyError, match="no func 'thing'"):
        btf.find("thing", "func")
    with pytest.raises(KeyError):
        btf.find("len", "struct")                 # a member name, and a suffix
    with pytest.raises(BtfError, match="unknown BTF kind 'structure'"):
        btf.find("thing", "structure")


def test_functions_by_name():
    btf = kernelish()
    assert btf.type(btf.find("bpf_lsm_file_open", "func")).kind == "func"


def test_missing_things_are_named():
    btf = kernelish()
    with pytest.raises(KeyError, match="struct dentry has no member 'nope'"):
        btf.member_offset("dentry", "nope")
    with pytest.raises(KeyError, match="struct qstr has no member 'nope'.*dentry.d_name.nope"):
        btf.member_offset("dentry", "d_name.nope")
    with pytest.raises(KeyError, match="no struct or union 'absent'"):
        btf.member_offset("absent", "x")
    with pytest.raises(BtfError, match="d_flags has kind int, not struct or union"):
        btf.member_offset("dentry", "d_flags.x")
    assert not btf.has_member("dentry", "d_name.nope")
    assert not btf.has_member("absent", "x")
    assert btf.has_member("dentry", "d_name.len")


def test_rejects_what_is_not_btf():
    b = BtfBuilder()
    b.struct("s", 4, [("v", b.int(), 0)])
    data = b.build()
    with pytest.raises(BtfError, match="magic"):
        Btf.from_bytes(b"\x00" * 64)
    with pytest.raises(BtfError, match="magic"):
        Btf.from_bytes(BtfBuilder().build(magic=0x9FEB))          # big-endian BTF
    with pytest.raises(BtfError, match="shorter"):
        Btf.from_bytes(b"\x9f\xeb")
    with pytest.raises(BtfError, match="past the end"):
        Btf.from_bytes(data[:-4])
    with pytest.raises(BtfError, match="unknown BTF kind 25"):
        bad = bytearray(data)
        struct.pack_into("<I", bad, 24 + 4, 25 << 24)               # first record's info
        Btf.from_bytes(bytes(bad))


# ---- stepping through types (argument walks) -----------------------------------

def test_function_parameters_through_funcs_typedefs_and_pointers():
    b = BtfBuilder()
    i32 = b.int()
    cred = b.struct("cred", 8, [("uid", i32, 0)])
    void_ptr = b.ptr(0)
    proto = b.func_proto(i32, [("new", b.ptr(cred)), ("flags", i32)])
    fn = b.func("commit_creds", proto)
    tp = b.typedef("btf_trace_x", b.ptr(b.func_proto(0, [("", void_ptr), ("", b.ptr(cred))])))
    btf = Btf.from_bytes(b.build())
    assert [(p.name, btf.describe(p.type_id)) for p in btf.params(fn)] == \
        [("new", "struct cred *"), ("flags", "int")]
    assert [btf.describe(p.type_id) for p in btf.params(tp)] == ["void *", "struct cred *"]
    with pytest.raises(BtfError, match="not a function"):
        btf.params(cred)


def test_kinds_arrays_ints_and_descriptions():
    btf = kernelish()
    dentry = btf.find("dentry", "struct")
    bits, member = btf.member(dentry, "d_iname")
    assert bits == 384 and btf.kind(member.type_id) == "array"
    element, count = btf.array(member.type_id)
    assert count == 8 and btf.describe(element) == "char"
    assert btf.describe(member.type_id) == "char[8]"
    assert btf.int_encoding(element) == (1, False)
    assert btf.member(dentry, "nope") is None
    root = btf.member(btf.find("fs_struct", "struct"), "root")[1].type_id
    assert btf.kind(root) == "struct"                  # under typedef, volatile, const
    assert btf.describe(root) == "path_t"
    assert btf.describe(btf.member(btf.find("qstr", "struct"), "name")[1].type_id) == "const char *"
    with pytest.raises(BtfError, match="not an array"):
        btf.array(dentry)


def test_module_btf_continues_the_kernels_ids_and_strings():
    base = BtfBuilder()
    u32 = base.int("unsigned int", 4)
    sock = base.struct("sock", 8, [("sk_mark", u32, 0)])
    vmlinux = Btf.from_bytes(base.build())
    mod = BtfBuilder(base=base)
    # a module type naming a kernel type, and a name the kernel has too
    alg = mod.struct("sockaddr_alg_new", 96, [("salg_family", u32, 0),
                                             ("sk", mod.ptr(sock), 64), ("sk_mark", u32, 128)])
    module = Btf.from_bytes(mod.build(), base=vmlinux)
    assert vmlinux.count == 2 and alg == 4 and module.count == 4    # its pointer is 3
    assert module.find("sockaddr_alg_new", "struct") == alg
    assert module.member_offset("sockaddr_alg_new", "sk_mark") == 16
    assert module.find("sock", "struct") == sock               # found in the base
    assert module.describe(module.member(alg, "sk")[1].type_id) == "struct sock *"
    assert module.type(sock).name == "sock"
    assert module.value_type(module.member(alg, "sk")[1].type_id).c_type == "struct sock *"
    with pytest.raises(KeyError):
        vmlinux.find("sockaddr_alg_new", "struct")
    with pytest.raises(BtfError, match="out of range"):
        vmlinux.type(alg)


def test_value_types_of_base_types_through_a_module():
    """A module's BTF reads a kernel type's record, its int encoding
    included, in the kernel's data."""
    base = BtfBuilder()
    s16 = base.int("short", 2, signed=True)
    vmlinux = Btf.from_bytes(base.build())
    mod = BtfBuilder(base=base)
    mod.struct("m", 8, [("a", mod.int("unsigned int", 4), 0), ("b", s16, 32)])
    module = Btf.from_bytes(mod.build(), base=vmlinux)
    assert module.value_type(s16) == ValueType("int", 2, True, "short")


def test_enum_constants():
    b = BtfBuilder()
    small = b.enum("iter_type", [("ITER_UBUF", 0), ("ITER_IOVEC", 1), ("NEG", -1)])
    big = b.enum64("big", [("X", 1 << 40)])
    number = b.int()
    btf = Btf.from_bytes(b.build())
    assert btf.enumerators(small) == {"ITER_UBUF": 0, "ITER_IOVEC": 1, "NEG": -1}
    assert btf.enumerators(big) == {"X": 1 << 40}
    with pytest.raises(BtfError, match="not an enum"):
        btf.enumerators(number)


def test_raw_tracepoint_prototypes_and_the_types_of_their_parameters():
    """btf_trace_<event> is a typedef of a pointer to a prototype; the
    parameters' types are told as C spells them, with width and sign."""
    b = BtfBuilder()
    void_ptr = b.ptr(0)
    s32 = b.int("int", 4, signed=True)
    pid_t = b.typedef("pid_t", s32)
    char = b.int("char", 1, signed=True)
    binprm = b.struct("linux_binprm", 64, [])
    task = b.struct("task_struct", 64, [])
    kind = b.enum("kind", [("A", 1)])
    proto = b.func_proto(0, [("__data", void_ptr), ("p", b.ptr(task)), ("old_pid", pid_t),
                             ("bprm", b.ptr(binprm)), ("name", b.ptr(b.const(char))), ("k", kind)])
    b.typedef("btf_trace_sched_process_exec", b.ptr(proto))
    btf = Btf.from_bytes(b.build())
    params = btf.params(btf.find("btf_trace_sched_process_exec", "typedef"))
    assert [p.name for p in params] == ["__data", "p", "old_pid", "bprm", "name", "k"]
    types = [btf.value_type(p.type_id) for p in params]
    assert [(t.kind, t.size, t.signed, t.c_type) for t in types] == [
        ("ptr", 8, False, "void *"), ("ptr", 8, False, "struct task_struct *"),
        ("int", 4, True, "int"), ("ptr", 8, False, "struct linux_binprm *"),
        ("ptr", 8, False, "char *"), ("enum", 4, False, "enum kind")]
    with pytest.raises(BtfError, match="not a function"):
        btf.params(binprm)
