"""btfwalk: resolve paths and struct fields -> the steps the kernel runs,
on a kernel written in BTF (tests/unit/kernelbtf.py) with its own offsets."""

import pytest

from tetrad.abi import generic as enc
from tetrad.abi.argstructs import LAYOUTS
from tetrad.policy import btfwalk
from tetrad.policy.btfwalk import Field, Step, Unresolvable, Value, gather, parse_path, walk
from tests.unit.kernelbtf import OFF, kernel

BTF = kernel()
DEREF, LOAD, ADD, COPY, STR, BASE = (enc.GO_DEREF, enc.GO_LOAD, enc.GO_ADD, enc.GO_COPY, enc.GO_STR,
                                     enc.GO_BASE)


def at(name: str) -> Value:
    """The address of a struct (a pointer argument to it)."""
    return Value(BTF.find(name, "struct"), address=True)


@pytest.mark.parametrize("text, parts", [
    ("pid", ("pid",)),
    ("f_path.dentry.d_name.name", ("f_path", "dentry", "d_name", "name")),
    ("a[3].b", ("a", 3, "b")),
    ("[0].x", (0, "x")),
    ("a[1][2]", ("a", 1, 2)),
])
def test_paths_parse(text, parts):
    assert parse_path(text) == parts
    assert btfwalk.text_of(parts) == text


@pytest.mark.parametrize("text", ["", "a..b", "a.", ".a", "a[x]", "a[-1]", "a b", "a.[1]", "a]b",
                                  "1a", "a[1]b", ".".join("abcdefghijk")])
def test_bad_paths_are_refused(text):
    with pytest.raises(ValueError):
        parse_path(text)


def test_a_scalar_member_through_pointers_and_an_anonymous_struct():
    steps, value = walk(BTF, at("linux_binprm"), parse_path("mm.owner.real_parent.pid"))
    assert steps == [Step(DEREF, OFF["linux_binprm.mm"], 8, depth=0),
                     Step(DEREF, OFF["mm_struct.owner"], 8, depth=1),
                     Step(DEREF, OFF["task_struct.real_parent"], 8, depth=2),
                     Step(LOAD, OFF["task_struct.pid"], 4)]
    assert BTF.describe(value.type_id) == "int" and not value.address


def test_an_array_member_is_its_address():
    steps, value = walk(BTF, at("linux_binprm"), parse_path("mm.owner.comm"))
    assert steps[-1] == Step(ADD, OFF["task_struct.comm"])
    assert value.address and btfwalk.is_chars(BTF, value)


def test_embedded_structs_add_up_into_one_step():
    steps, value = walk(BTF, at("linux_binprm"), parse_path("file.f_path.dentry"))
    assert steps == [Step(DEREF, OFF["linux_binprm.file"], 8),
                     Step(LOAD, OFF["file.f_path"] + OFF["path.dentry"], 8)]
    assert btfwalk.struct_name(BTF, value) == "struct dentry"
    steps, value = walk(BTF, at("linux_binprm"), parse_path("file.f_path"))
    assert steps[-1] == Step(ADD, OFF["file.f_path"]) and btfwalk.struct_name(BTF, value) == "struct path"


def test_a_pointer_to_a_pointer_is_followed_first():
    [_, new] = BTF.params(BTF.find("security_inode_copy_up", "func"))
    steps, _ = walk(BTF, Value(new.type_id), parse_path("uid.val"))
    assert steps == [Step(DEREF, 0, 8), Step(LOAD, OFF["cred.uid"], 4)]


def test_array_indexes_and_pointers_used_as_arrays():
    steps, _ = walk(BTF, at("task_struct"), parse_path("nums[2]"))
    assert steps == [Step(LOAD, 8, 4)]
    steps, _ = walk(BTF, at("task_struct"), parse_path("real_parent[0].pid"))
    assert steps == [Step(DEREF, OFF["task_struct.real_parent"], 8), Step(LOAD, OFF["task_struct.pid"], 4)]
    steps, value = walk(BTF, at("task_struct"), parse_path("comm[3]"))
    assert steps == [Step(LOAD, OFF["task_struct.comm"] + 3, 1)]


@pytest.mark.parametrize("path, reason", [
    ("nope", "struct task_struct has no member 'nope'"),
    ("nums[4]", "has 4 elements"),
    ("pid[0]", "not an array"),
    ("pid.x", "pid is int, not a struct or union: it has no member 'x'"),
    ("comm.x", "not a struct or union"),
    ("mm.nope", "struct mm_struct has no member 'nope'"),
])
def test_what_the_kernel_lacks_is_named(path, reason):
    with pytest.raises(Unresolvable, match=reason):
        walk(BTF, at("task_struct"), parse_path(path))


def test_bitfields_are_refused():
    from tests.unit.btfgen import BtfBuilder
    from tetrad.bpf.btf import Btf
    b = BtfBuilder()
    u32 = b.int("unsigned int", 4)
    s = b.struct("s", 4, [("a", u32, 0, 3), ("b", u32, 3, 5)], bitfields=True)
    btf = Btf.from_bytes(b.build())
    with pytest.raises(Unresolvable, match="bitfield"):
        walk(btf, Value(s, address=True), ("b",))


def fields(layout: str) -> tuple[Field, ...]:
    lay = LAYOUTS[layout]
    return tuple(Field(parse_path(f.path), dst, f.bytes, f.how, f.optional)
                 for f, dst in zip(lay.fields, lay.offsets))


def test_cred_fields_side_by_side_in_the_kernel_are_copied_in_one_step():
    steps = gather(BTF, BTF.find("cred", "struct"), fields("cred"))
    uid, ns = OFF["cred.uid"], OFF["user_namespace.level"]
    assert steps == [Step(COPY, uid, 64, 0),                      # ids, securebits, caps
                     Step(DEREF, OFF["cred.user_ns"], 8),
                     Step(COPY, ns, 12, 64),                      # level, owner, group
                     Step(COPY, OFF["user_namespace.ns"] + OFF["ns_common.inum"], 4, 76)]


def test_strings_through_pointers_start_again_from_the_struct():
    steps = gather(BTF, BTF.find("load_info", "struct"), fields("load_info"))
    assert steps == [Step(COPY, OFF["load_info.sig_ok"], 1, 0),
                     Step(LOAD, OFF["load_info.name"], 8), Step(STR, 0, 64, 1),
                     Step(BASE), Step(DEREF, OFF["load_info.mod"], 8),
                     Step(COPY, OFF["module.taints"], 8, 72)]


def test_a_user_string_behind_a_number_and_user_memory_structs():
    steps = gather(BTF, BTF.find("perf_event", "struct"), fields("perf_event"))
    attr = OFF["perf_event.attr"]
    assert steps == [Step(COPY, attr, 16, 0),             # type, size (into padding), config
                     Step(COPY, attr + OFF["perf_event_attr.probe_offset"], 8, 16),
                     Step(LOAD, attr + OFF["perf_event_attr.kprobe_func"], 8),
                     Step(STR | enc.GO_USER, 0, 128, 24)]
    user = gather(BTF, BTF.find("bpf_attr", "union"), fields("bpf_attr"), user=True)
    assert user == [Step(COPY | enc.GO_USER, 0, 8, 0), Step(COPY | enc.GO_USER, 48, 16, 8)]


def test_a_char_array_string_is_cut_to_its_size():
    steps = gather(BTF, BTF.find("module", "struct"), fields("module"))
    assert steps == [Step(COPY, OFF["module.taints"], 8, 0), Step(STR, OFF["module.name"], 56, 8)]


def test_optional_fields_may_be_missing_and_sizes_must_fit():
    from tests.unit.btfgen import BtfBuilder
    from tetrad.bpf.btf import Btf
    b = BtfBuilder()
    u64 = b.int("long long unsigned int", 8)
    s = b.struct("s", 16, [("a", u64, 0)])
    btf = Btf.from_bytes(b.build())
    assert gather(btf, s, (Field(("gone",), 0, 1, "copy", optional=True), Field(("a",), 8, 8, "copy"))) \
        == [Step(COPY, 0, 8, 8)]
    with pytest.raises(Unresolvable, match="8 bytes on this kernel; tetrad reads 4"):
        gather(btf, s, (Field(("a",), 0, 4, "copy"),))
    with pytest.raises(Unresolvable, match="no member 'gone'"):
        gather(btf, s, (Field(("gone",), 0, 1, "copy"),))
    with pytest.raises(Unresolvable, match="not a string"):
        gather(btf, s, (Field(("a",), 0, 8, "str"),))
