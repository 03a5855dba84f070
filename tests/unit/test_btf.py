import pytest

from tetrad.bpf.btf import Btf, BtfError
from tests.unit.btfgen import BtfBuilder


def kernelish() -> Btf:
    """Shapes that real kernels use: anonymous unions/structs, typedef
    chains, bitfields, and kinds the parser must skip by length."""
    b = BtfBuilder()
    u32 = b.int("unsigned int", 4)
    u64 = b.int("long long unsigned int", 8)
    char = b.int("char", 1)
    b.enum64("big", [("A", 1 << 40)])                      # skipped by length
    name_ptr = b.const(b.ptr(char))
    # struct qstr { union { struct { u32 hash; u32 len; }; u64 hash_len; }; const char *name; }
    inner = b.struct("", 8, [("hash", u32, 0), ("len", u32, 32)])
    anon = b.struct("", 8, [("", inner, 0), ("hash_len", u64, 0)], kind="union")
    qstr = b.struct("qstr", 16, [("", anon, 0), ("name", name_ptr, 64)])
    dentry = b.struct("dentry", 64, [("d_flags", u32, 0), ("d_parent", b.ptr(0), 192),
                                     ("d_name", qstr, 256)])
    b.decl_tag("tag", dentry)
    path = b.struct("path", 16, [("mnt", b.ptr(0), 0), ("dentry", b.ptr(dentry), 64)])
    path_t = b.typedef("path_t", b.const(path))
    b.struct("fs_struct", 56, [("users", u32, 0), ("root", path_t, 192), ("pwd", path, 320)])
    b.struct("flags", 4, [("a", u32, 0, 3), ("b", u32, 3, 5), ("c", u32, 8)], bitfields=True)
    b.struct("task_struct", 0, [])                          # forward-ish, empty
    b.struct("task_struct", 4096, [("pid", u32, 8 * 1200), ("tgid", u32, 8 * 1204)])
    b.func("bpf_lsm_file_open", b.func_proto(u32, [("file", b.ptr(0))]))
    return Btf.from_bytes(b.build())


def test_nested_paths_through_typedefs_and_qualifiers():
    btf = kernelish()
    assert btf.member_offset("fs_struct", "pwd") == 40
    assert btf.member_offset("fs_struct", "pwd.dentry") == 48
    assert btf.member_offset("fs_struct", "root.dentry") == 32     # typedef + const
    assert btf.member_offset("dentry", "d_name.name") == 40


def test_members_inside_anonymous_unions_and_structs():
    btf = kernelish()
    assert btf.member_offset("qstr", "len") == 4
    assert btf.member_offset("qstr", "hash_len") == 0
    assert btf.member_offset("qstr", "name") == 8
    assert btf.member_size("qstr", "name") == 8 and btf.member_size("qstr", "len") == 4


def test_definition_wins_over_empty_declaration():
    btf = kernelish()
    assert btf.member_offset("task_struct", "tgid") == 1204


def test_bitfields_have_no_byte_offset_but_following_members_do():
    btf = kernelish()
    with pytest.raises(BtfError, match="bitfield"):
        btf.member_offset("flags", "b")
    assert btf.member_offset("flags", "c") == 1


def test_missing_things_are_named():
    btf = kernelish()
    with pytest.raises(KeyError, match="no member nope"):
        btf.member_offset("dentry", "nope")
    with pytest.raises(KeyError, match="struct 'absent'|union 'absent'"):
        btf.member_offset("absent", "x")
    assert not btf.has_member("dentry", "d_name.nope")
    assert btf.has_member("dentry", "d_name.len")


def test_functions_by_name():
    btf = kernelish()
    assert btf.type(btf.find("bpf_lsm_file_open", "func")).kind == "func"


def test_rejects_non_btf():
    with pytest.raises(BtfError, match="magic"):
        Btf.from_bytes(b"\x00" * 64)
    with pytest.raises(BtfError, match="shorter"):
        Btf.from_bytes(b"\x9f\xeb")
