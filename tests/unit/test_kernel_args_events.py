"""Kernel-struct arguments, from slot bytes to Tetragon's JSON: each type's
shape, checked against Tetragon's schema (tests/tetragon_schema.py), and
the error argument of a walk that met a bad pointer."""

import json
import struct

import pytest

from tetrad.abi import generic as enc
from tetrad.abi.argstructs import LAYOUTS, Layout
from tetrad.decode.generic import decode_policy
from tetrad.events import kernelargs
from tetrad.events.compact import event_line
from tetrad.events.policy import HookPlan, policy_event
from tetrad.policy.compile import KernelFacts, compile_policy
from tetrad.policy.schema import parse
from tests import tetragon_schema
from tests.unit.kernelbtf import kernel
from tests.unit.test_policy_events import CHILD, PARENT, T0, record

HEAD = 'apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: "p"\nspec:\n'
BTF = kernel()
FACTS = KernelFacts(btf=lambda module: BTF)


def pack(layout: str, **values) -> bytes:
    """Slot data as the kernel gathers it (fields not given are zero)."""
    lay: Layout = LAYOUTS[layout]
    out = bytearray(lay.size)
    for f, at in zip(lay.fields, lay.offsets):
        value = values.get(f.name, b"" if f.fmt == "s" else 0)
        raw = value.encode() if isinstance(value, str) else value
        struct.pack_into(f"<{f.size}s" if f.fmt == "s" else "<" + f.fmt, out, at, raw)
    return bytes(out)


def event(call: str, args: str, slots, **kw) -> dict:
    text = HEAD + f"  kprobes:\n  - call: {call}\n    syscall: false\n    args:\n{args}"
    [ch] = compile_policy(parse(text, "t.yaml"), FACTS)
    ev = policy_event(decode_policy(record(slots, **kw)), HookPlan(ch), T0, CHILD, PARENT)
    line = ev.to_json("n")
    tetragon_schema.assert_conforms(line)
    return json.loads(line)["process_kprobe"]


def arg(index: int, type_: str, extra: str = "") -> str:
    return f"    - index: {index}\n      type: {type_}\n{extra}"


CAP_SYS_ADMIN, CAP_CHOWN, CAP_BPF = 1 << 21, 1 << 0, 1 << 39


def test_cred_is_process_credentials_with_caps_and_user_namespace():
    data = pack("cred", uid=1000, gid=1001, suid=1002, sgid=1003, euid=0, egid=0, fsuid=7, fsgid=8,
                securebits=0x11, cap_permitted=CAP_SYS_ADMIN | CAP_CHOWN | (1 << 1),
                cap_effective=CAP_BPF, ns_level=1, ns_uid=1000, ns_gid=1000, ns_inum=4026532174)
    [got] = event("commit_creds", arg(0, "cred"), [(0, data, 0)])["args"]
    assert got == {"process_credentials_arg": {
        "uid": 1000, "gid": 1001, "euid": 0, "egid": 0, "suid": 1002, "sgid": 1003, "fsuid": 7,
        "fsgid": 8, "securebits": ["SecBitNoRoot", "SecBitKeepCaps"],
        "caps": {"permitted": ["CAP_CHOWN", "DAC_OVERRIDE", "CAP_SYS_ADMIN"], "effective": ["CAP_BPF"]},
        "user_ns": {"level": 1, "uid": 1000, "gid": 1000, "ns": {"inum": 4026532174}}}}


def test_the_host_user_namespace_is_marked():
    [got] = event("cap_capable", arg(1, "user_namespace"),
                  [(0, pack("user_namespace", inum=4026531837), 0)])["args"]
    assert got == {"user_ns_arg": {"level": 0, "uid": 0, "gid": 0,
                                   "ns": {"inum": 4026531837, "is_host": True}}}


def test_bpf_objects():
    ev = event("vfs_something", arg(0, "bpf_attr") + arg(1, "bpf_map") + arg(2, "perf_event"),
               [(0, pack("bpf_attr", prog_type=1, insn_cnt=2, prog_name="t_abc"), 0),
                (0, pack("bpf_map", map_type=1, key_size=4, value_size=8, max_entries=16, name="m1"), 0),
                (0, pack("perf_event", type=6, config=1 << 63, probe_offset=0, kprobe_func="do_sys_open"), 0)])
    assert ev["args"] == [
        {"bpf_attr_arg": {"ProgType": "BPF_PROG_TYPE_SOCKET_FILTER", "InsnCnt": 2, "ProgName": "t_abc"}},
        {"bpf_map_arg": {"MapType": "BPF_MAP_TYPE_HASH", "KeySize": 4, "ValueSize": 8, "MaxEntries": 16,
                         "MapName": "m1"}},
        {"perf_event_arg": {"KprobeFunc": "do_sys_open", "Type": "PERF_TYPE_MAX", "Config": str(1 << 63)}}]


def test_unknown_enum_values_are_numbers_and_zero_fields_left_out():
    [got] = event("vfs_something", arg(0, "bpf_map"), [(0, pack("bpf_map", map_type=999), 0)])["args"]
    assert got == {"bpf_map_arg": {"MapType": "999"}}
    [got] = event("vfs_something", arg(0, "bpf_attr"), [(0, pack("bpf_attr"), 0)])["args"]
    assert got == {"bpf_attr_arg": {"ProgType": "BPF_PROG_TYPE_UNSPEC"}}


def test_modules_name_signature_and_taints():
    ev = event("vfs_something", arg(0, "module") + arg(1, "load_info"),
               [(0, pack("module", name="dummy", taints=4096 | 8192), 0),
                (0, pack("load_info", name="dummy", sig_ok=0, taints=0), 0)])
    assert ev["args"] == [
        {"module_arg": {"name": "dummy", "tainted": ["TAINT_OUT_OF_TREE_MODULE", "TAINT_UNSIGNED_MODULE"]}},
        {"module_arg": {"name": "dummy", "signature_ok": False}}]
    [got] = event("vfs_something", arg(0, "module"), [(0, pack("module", taints=1), 0)])["args"]
    assert got == {"module_arg": {}}            # a module it could not name, as Tetragon


def test_capabilities_and_capability_sets():
    ev = event("vfs_something", arg(0, "capability") + arg(1, "kernel_cap_t") + arg(2, "cap_permitted"),
               [(21, b"", 0), (0x1ffffffffff, b"", 0), (0, b"", 0)])
    assert ev["args"] == [{"capability_arg": {"value": 21, "name": "CAP_SYS_ADMIN"}},
                          {"kernel_cap_t_arg": "000001ffffffffff"},
                          {"cap_permitted_arg": "0000000000000000"}]
    [got] = event("vfs_something", arg(0, "capability"), [(99, b"", 0)])["args"]
    assert got == {"capability_arg": {"value": 99}}


def test_strings_and_paths_of_struct_members():
    ev = event("vfs_something", arg(0, "net_device") + arg(1, "kiocb") + arg(2, "dentry"),
               [(0, b"lo", 0), (0, b"/tmp/x", 0), (0, b"/x", 0)])
    assert ev["args"] == [{"net_dev_arg": {"name": "lo"}}, {"file_arg": {"path": "/tmp/x"}},
                          {"path_arg": {"path": "/x"}}]


def test_a_walk_that_met_a_bad_pointer_is_tetragons_error_argument():
    ev = event("vfs_something", arg(0, "int", "      btfType: task_struct\n"
                                              "      resolve: real_parent.mm.owner.pid\n      label: gp\n")
               + arg(1, "cred"), [(0, b"", enc.SLOT_BADPTR | 2 << enc.SLOT_DEPTH_SHIFT),
                                  (0, bytes(80), enc.SLOT_BADPTR)])
    assert ev["args"] == [
        {"error_arg": {"Message": "Bad address encountered during resolve dereference at depth 2"},
         "label": "gp"},
        {"error_arg": {"Message": "Bad address encountered during resolve dereference at depth 0"}}]


def test_compact_lines_of_bpf_hooks():
    ev = event("bpf_check", arg(1, "bpf_attr"),
               [(0, pack("bpf_attr", prog_type=2, insn_cnt=9, prog_name="kp"), 0)])
    assert ev["function_name"] == "bpf_check"
    text = HEAD + "  kprobes:\n  - call: bpf_check\n    syscall: false\n    args:\n" + arg(1, "bpf_attr")
    [ch] = compile_policy(parse(text, "t.yaml"), FACTS)
    rec = decode_policy(record([(0, pack("bpf_attr", prog_type=2, insn_cnt=9, prog_name="kp"), 0)]))
    line = event_line(policy_event(rec, HookPlan(ch), T0, CHILD, PARENT), "n")
    assert line.startswith("🐝 bpf_load n /usr/bin/cat BPF_PROG_TYPE_KPROBE kp instruction count 9")


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_every_layout_fits_a_slot_and_reads_back(name):
    lay = LAYOUTS[name]
    assert lay.size <= 255
    values = {f.name: ("x" * (f.size - 1) if f.fmt == "s" else 1) for f in lay.fields}
    assert lay.unpack(pack(name, **values)) == values
    assert name in kernelargs.STRUCTS
