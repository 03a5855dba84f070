"""compile.py, byte for byte: the encodings bpf/generic_hook.c reads."""

import ctypes
import struct
from pathlib import Path

import pytest

from tetrad.abi import generic as enc
from tetrad.policy.compile import (KernelFacts, compile_policy, parse_tracepoint_format,
                                   syscall_name)
from tetrad.policy.schema import PolicyError, parse

HEAD = 'apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: "t"\nspec:\n'
FACTS = KernelFacts(arch_prefix="__x64_")


def one(text: str):
    [ch] = compile_policy(parse(HEAD + text, "t.yaml"), FACTS)
    return ch


OPENAT = """  kprobes:
  - call: sys_openat
    syscall: true
    args:
    - index: 0
      type: int
    - index: 1
      type: string
    - index: 2
      type: uint32
    selectors:
    - matchArgs:
      - index: 1
        operator: Prefix
        values: ["/etc/"]
      - index: 2
        operator: Mask
        values: ["0x241"]
      matchBinaries:
      - operator: In
        values: ["/usr/bin/cat"]
      matchActions:
      - action: Sigkill
"""


def test_syscall_hook_target_and_layout():
    ch = one(OPENAT)
    assert (ch.target.kind, ch.target.name, ch.target.function_name) == \
        ("syscall", "openat", "__x64_sys_openat")
    kinds = [s.kind for s in ch.layout.slots]
    assert kinds == [enc.GA["int"], enc.GA["ustr"], enc.GA["int"]]
    assert [(s.src, s.size, s.signed) for s in ch.layout.slots] == [(0, 4, True), (1, 8, False), (2, 4, False)]
    flags = ch.layout.cflags()
    assert "-DG_KIND=1" in flags and "-DARG1_KIND=2" in flags and "-DG_SEL_LIMIT=1" in flags
    assert "-DG_MATCH_LIMIT=2" in flags


def test_hook_bytes():
    config, entries = one(OPENAT).encode(hook_id=3)
    h = enc.Hook.from_buffer_copy(config)
    assert (h.id, h.flags, h.nsel) == (3, enc.HOOK_ACTIVE, 1)
    s = h.sel[0]
    assert (s.nmatch, s.nact, s.act[0].action) == (2, 1, enc.ACTIONS["Sigkill"])
    prefix, mask = s.match[0], s.match[1]
    assert (prefix.slot, prefix.op, prefix.id) == (1, enc.OPS["Prefix"], 3 * 64 + 1)
    assert (mask.slot, mask.op, mask.nvals, mask.vals[0]) == (2, enc.OPS["Mask"], 1, 0x241)
    assert (s.bin_op, s.bin_id) == (enc.SETS["In"], 3 * 64 + 2)
    # LPM key: prefixlen bits (32 for the id + 8 per byte), id, bytes
    lpm = struct.pack("<II", 32 + 8 * 5, 193) + b"/etc/".ljust(enc.LPM_STR, b"\0")
    # matchBinaries In: an LPM key that includes the NUL (an exact match)
    binary = struct.pack("<II", 32 + 8 * 13, 194) + b"/usr/bin/cat\0".ljust(enc.LPM_STR, b"\0")
    assert entries == [("str_prefix", lpm), ("str_prefix", binary)]


def test_postfix_values_are_stored_reversed_and_mark_the_slot():
    ch = one("""  kprobes:
  - call: sys_openat
    args:
    - index: 1
      type: string
    selectors:
    - matchArgs:
      - index: 1
        operator: NotPostfix
        values: [".so"]
""")
    _, entries = ch.encode(0)
    assert entries == [("str_postfix", struct.pack("<II", 56, 1) + b"os.".ljust(enc.LPM_STR, b"\0"))]
    assert ch.layout.slots[0].reverse


def test_network_values():
    ch = one("""  kprobes:
  - call: sys_connect
    args:
    - index: 1
      type: sockaddr
    selectors:
    - matchArgs:
      - index: 1
        operator: NotDAddr
        values: ["127.0.0.1", "10.42.0.0/16", "::1"]
    - matchArgs:
      - index: 1
        operator: DPort
        values: ["80", "8000:8080"]
""")
    config, entries = ch.encode(1)
    port = enc.Hook.from_buffer_copy(config).sel[1].match[0]
    assert (port.op, port.nvals, list(port.vals)[:4]) == (enc.OPS["DPort"], 4, [80, 80, 8000, 8080])
    v4 = entries[1][1]
    k = enc.LpmAddrKey.from_buffer_copy(v4)
    assert (k.prefixlen, k.id, k.family, bytes(k.addr)[:3]) == (32 + 8 + 16, 65, 2, b"\x0a\x2a\x00")
    k6 = enc.LpmAddrKey.from_buffer_copy(entries[2][1])
    assert (k6.prefixlen, k6.family, bytes(k6.addr)[-1]) == (32 + 8 + 128, 10, 1)
    assert ch.layout.slots[0].kind == enc.GA["usockaddr"]


def test_monitor_mode_and_no_selectors():
    ch = one("  options:\n  - name: policy-mode\n    value: monitor\n"
             "  kprobes:\n  - call: sys_close\n    args:\n    - index: 0\n      type: fd\n")
    h = enc.Hook.from_buffer_copy(ch.encode(0)[0])
    assert h.flags == enc.HOOK_ACTIVE | enc.HOOK_MONITOR and h.nsel == 0
    assert ch.layout.slots[0].kind == enc.GA["fd"]


def test_unreadable_args_no_match_sets_the_hook_flag():
    text = "  kprobes:\n  - call: sys_openat\n    args:\n    - index: 1\n      type: string\n"
    default = enc.Hook.from_buffer_copy(one(text).encode(0)[0])
    opted = enc.Hook.from_buffer_copy(one("  options:\n  - name: unreadable-args\n    value: no-match\n"
                                          + text).encode(0)[0])
    assert default.flags == enc.HOOK_ACTIVE
    assert opted.flags == enc.HOOK_ACTIVE | enc.HOOK_UNREADABLE_NOMATCH


@pytest.mark.parametrize("hook,retry", [
    # a string, a buffer, a socket address in user memory: read again at sys_exit
    ("  - call: sys_openat\n    args:\n    - index: 1\n      type: string\n", True),
    ("  - call: sys_write\n    args:\n    - index: 1\n      type: char_buf\n      sizeArgIndex: 3\n"
     "    - index: 2\n      type: size_t\n", True),
    ("  - call: sys_connect\n    args:\n    - index: 1\n      type: sockaddr\n", True),
    # integers and fds are not in user memory; a returnCopy buffer is read at return anyway
    ("  - call: sys_lseek\n    args:\n    - index: 1\n      type: long\n", False),
    ("  - call: sys_read\n    return: true\n    returnArg:\n      index: 0\n      type: int\n"
     "    args:\n    - index: 0\n      type: fd\n    - index: 1\n      type: char_buf\n"
     "      returnCopy: true\n", False),
    # after a successful exec the caller's memory is gone: decided at entry
    ("  - call: sys_execve\n    args:\n    - index: 0\n      type: string\n", False),
    ("  - call: sys_execveat\n    args:\n    - index: 1\n      type: string\n", False),
    # no exit to pair with: a uprobe without return
    ("  - call: security_bprm_check\n    syscall: false\n    args:\n    - index: 0\n"
     "      type: linux_binprm\n", False),
])
def test_syscall_hooks_with_user_memory_read_it_again_at_exit(hook, retry):
    ch = one("  kprobes:\n" + hook)
    assert ch.layout.retry is retry
    assert f"-DG_RETRY={int(retry)}" in ch.layout.cflags()


def test_return_values_and_buffers():
    ch = one("""  kprobes:
  - call: sys_read
    return: true
    returnArg:
      index: 0
      type: int
    args:
    - index: 0
      type: fd
    - index: 1
      type: char_buf
      returnCopy: true
    - index: 2
      type: size_t
    selectors:
    - matchReturnArgs:
      - index: 0
        operator: LessThan
        values: ["0"]
""")
    assert ch.layout.has_return and ch.layout.slots[1].retcopy
    sel = enc.Hook.from_buffer_copy(ch.encode(0)[0]).sel[0]
    assert (sel.has_ret, sel.ret_match.slot, sel.ret_match.op) == (1, enc.RETURN_SLOT, enc.OPS["LessThan"])


def test_what_cannot_be_compiled_is_refused_with_the_path():
    with pytest.raises(PolicyError) as info:
        compile_policy(parse(HEAD + """  kprobes:
  - call: sys_openat
    args:
    - index: 0
      type: file
    selectors:
    - matchActions:
      - action: Override
        argError: -1
""", "t.yaml"), FACTS)
    got = dict(info.value.problems)
    assert "user-space" in got["spec.kprobes[0].args[0].type"]
    assert "lsmhooks" in got["spec.kprobes[0].selectors[0]"]


def test_kernel_hooks_read_kernel_values():
    ch = one("  lsmhooks:\n  - hook: file_open\n    args:\n    - index: 0\n      type: file\n")
    assert ch.layout.kind == "lsm" and ch.layout.lsm_hook == "file_open"
    assert ch.layout.slots[0].kind == enc.GA["file"]
    assert "-DG_LSM_HOOK=file_open" in ch.layout.cflags()


FORMAT = """name: sys_enter_openat
ID: 782
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:__data_loc char[] name;\toffset:32;\tsize:4;\tsigned:0;
"""


def test_tracepoint_format_and_field_indexes():
    fields = parse_tracepoint_format(FORMAT)
    assert [f.name for f in fields] == ["common_type", "common_flags", "common_preempt_count",
                                        "common_pid", "__syscall_nr", "dfd", "filename", "name"]
    assert fields[6].pointer and fields[7].data_loc and fields[3].signed
    facts = KernelFacts(tracepoint_fields=lambda s, e: fields)
    [ch] = compile_policy(parse(HEAD + """  tracepoints:
  - subsystem: syscalls
    event: sys_enter_openat
    args:
    - index: 6
      type: string
    - index: 5
      type: int
    - index: 7
      type: string
""", "t.yaml"), facts)
    assert [(s.kind, s.src) for s in ch.layout.slots] == [
        (enc.GA["ustr"], 24), (enc.GA["int"], 16), (enc.GA["dataloc"], 32)]


@pytest.mark.parametrize("call,name", [("sys_openat", "openat"), ("__x64_sys_write", "write"),
                                       ("__arm64_sys_read", "read")])
def test_syscall_names(call, name):
    assert syscall_name(call) == name


def test_encoding_sizes_are_what_the_c_side_expects():
    # the kernel-side layout test compares every field; these pin the sizes
    # the map definitions depend on
    assert ctypes.sizeof(enc.LpmStrKey) == 4 + 4 + 248
    assert ctypes.sizeof(enc.StrKey) == 260


SHIPPED = sorted((Path(__file__).parents[2] / "etc").glob("*/*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_policy_parses_and_compiles(path):
    """The policies installed by default and the examples in the docs."""
    policy = parse(path.read_bytes(), str(path))
    assert compile_policy(policy, FACTS)
