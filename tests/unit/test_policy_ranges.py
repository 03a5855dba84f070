"""Integers that wrap (issue 12, section 3): every number is checked against
the kernel field it fills and the argument type it is compared with, and
what is accepted is encoded without aliasing another value."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tetrad.abi import generic as enc
from tetrad.policy import schema
from tetrad.policy.compile import KernelFacts, TracepointField, compile_policy
from tetrad.policy.schema import PolicyError, parse
from tests.unit import tables

HEAD = 'apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: "t"\nspec:\n'
FACTS = KernelFacts(arch_prefix="__x64_")


def lseek(type_: str, op: str, values: str, actions: str = "") -> str:
    return HEAD + f"""  kprobes:
  - call: sys_lseek
    syscall: true
    args:
    - index: 1
      type: {type_}
    selectors:
    - matchArgs:
      - index: 1
        operator: {op}
        values: [{values}]
{actions}"""


def pids(values: str) -> str:
    return HEAD + f"""  kprobes:
  - call: sys_lseek
    syscall: true
    selectors:
    - matchPIDs:
      - operator: In
        values: [{values}]
      matchActions:
      - action: Sigkill
"""


def action(kind: str, fields: str) -> str:
    if kind == "lsm":
        return HEAD + f"""  lsmhooks:
  - hook: file_open
    selectors:
    - matchActions:
      - {fields}
"""
    return HEAD + f"""  kprobes:
  - call: security_file_open
    syscall: false
    args:
    - index: 0
      type: file
    selectors:
    - matchActions:
      - {fields}
"""


def problem(text: str) -> tuple[str, str]:
    with pytest.raises(PolicyError) as info:
        parse(text, "t.yaml")
    [got] = info.value.problems
    return got


def compiled(text: str):
    [ch] = compile_policy(parse(text, "t.yaml"), FACTS)
    return ch


def compiled_selector(text: str) -> enc.Selector:
    return tables.hook_struct(compiled(text)).sel[0]


PID = "spec.kprobes[0].selectors[0].matchPIDs[0].values[0]"
VALUE = "spec.kprobes[0].selectors[0].matchArgs[0].values[0]"


@pytest.mark.parametrize("value", [2 ** 32 + 4242, 2 ** 33 + 4242, -1, 2 ** 64])
def test_matchpids_out_of_u32_is_refused(value):
    """`In [4294994151]` (2^32 + P) Sigkilled PID P: pids are u32."""
    assert problem(pids(str(value))) == (PID, f"{value} is out of range 0..4294967295 "
                                              "(a PID is a 32-bit number)")


def test_matchpids_at_the_edge_are_kept_exactly():
    entries = tables.pid_entries(compiled(pids("0, 4242, 4294967295")))
    assert sorted(entries) == [0, 4242, 4294967295]


@pytest.mark.parametrize("type_,op,value,bounds", [
    ("uint32", "Equal", 2 ** 32, "0..4294967295"),
    ("uint32", "Equal", -1, "0..4294967295"),
    ("int", "Equal", 2 ** 31, "-2147483648..2147483647"),
    ("int", "NotEqual", -2 ** 31 - 1, "-2147483648..2147483647"),
    ("uint8", "Equal", 256, "0..255"),
    ("int16", "Equal", -32769, "-32768..32767"),
    ("uint64", "Equal", 2 ** 64, "0..18446744073709551615"),
    ("long", "Equal", 2 ** 63, "-9223372036854775808..9223372036854775807"),
    ("size_t", "GreaterThan", 2 ** 63, "0..9223372036854775807"),
    ("uint64", "LT", -1, "0..9223372036854775807"),
    ("int", "Mask", 2 ** 32, "-2147483648..4294967295"),
    ("auto", "Equal", 2 ** 64, "-9223372036854775808..18446744073709551615"),
])
def test_int_values_outside_the_argument_type_are_refused(type_, op, value, bounds):
    path, reason = problem(lseek(type_, op, f'"{value}"'))
    assert path == VALUE
    assert f"{value} can never match: outside {bounds}" in reason, reason


def test_ranges_are_checked_at_both_ends():
    path, reason = problem(lseek("uint32", "InRange", '"5:4294967296"'))
    assert "4294967296 can never match: outside 0..4294967295" in reason
    assert problem(lseek("uint32", "InRange", '"9:5"'))[1] == "bad value for InRange: range '9:5' is empty"


def test_unsigned_64_bit_ordering_stays_below_2_63():
    """The kernel compares as s64: GreaterThan 2^63 on a u64 would hold for
    every value below 2^63."""
    reason = problem(lseek("uint64", "GreaterThan", '"9223372036854775808"'))[1]
    assert reason.endswith("(a uint64 argument holds 0..18446744073709551615; the kernel compares "
                           "64-bit values as signed)")


@pytest.mark.parametrize("op,value,reason", [
    ("DPort", "65536", "65536 is not a port (0..65535)"),
    ("SPort", "1:70000", "70000 is not a port (0..65535)"),
    ("Family", "65536", "65536 is out of range 0..65535"),
    ("Family", "AF_BOGUS", "'AF_BOGUS' is not a name Tetragon knows for Family, a number or a range "
                           "low:high"),
    ("Family", "10:2", "range '10:2' is empty"),
])
def test_network_values(op, value, reason):
    text = HEAD + f"""  kprobes:
  - call: sys_connect
    syscall: true
    args:
    - index: 1
      type: sockaddr
    selectors:
    - matchArgs:
      - index: 1
        operator: {op}
        values: ["{value}"]
"""
    assert problem(text) == (VALUE, f"bad value for {op}: {reason}")


def test_yaml_base_60_stays_a_port_range():
    """YAML 1.1 reads 80:443 as 80*60+443 = 48443; Tetragon reads the text."""
    text = HEAD + """  kprobes:
  - call: sys_connect
    syscall: true
    args:
    - index: 1
      type: sockaddr
    selectors:
    - matchArgs:
      - index: 1
        operator: DPort
        values: [80:443]
"""
    [m] = tables.int_tests(compiled(text))
    assert list(m.vals)[:m.nvals] == [80, 443]


ACTION = "spec.{}[0].selectors[0].matchActions[0].{}"


@pytest.mark.parametrize("kind,fields,key,reason", [
    ("lsm", "{action: Override, argError: 4294967295}", "argError",
     "4294967295 is out of range -4095..-1 (a negative errno, e.g. -1 for EPERM)"),
    ("lsm", "{action: Override, argError: 1}", "argError",
     "1 is out of range -4095..-1 (a negative errno, e.g. -1 for EPERM)"),
    ("kprobe", "{action: Override, argError: -4096}", "argError",
     "-4096 is out of range -4095..4095 (an errno such as -1 for EPERM, or a small return value)"),
    ("kprobe", "{action: Override, argError: 0}", "argError",
     "0 overrides nothing; use an errno such as -1 for EPERM"),
    ("kprobe", "{action: Post, argError: 2147483648}", "argError",
     "2147483648 is out of range -2147483648..2147483647"),
    ("kprobe", "{action: Signal, argSig: 65}", "argSig", "65 is out of range 1..64 (a signal number)"),
    ("kprobe", "{action: Signal, argSig: 0}", "argSig", "0 is out of range 1..64 (a signal number)"),
    ("kprobe", "{action: FollowFD, argFd: 6, argName: 1}", "argFd",
     "6 is out of range 0..5 (an argument index)"),
    ("kprobe", "{action: FollowFD, argFd: 0, argName: 4294967296}", "argName",
     "4294967296 is out of range 0..5 (an argument index)"),
    ("kprobe", "{action: Post, rateLimit: 99999999999h}", "rateLimit",
     "359999999996400 seconds is out of range 0..4294967295 (the kernel keeps seconds in 32 bits)"),
    ("kprobe", "{action: Post, rateLimit: 4294967296}", "rateLimit",
     "4294967296 seconds is out of range 0..4294967295 (the kernel keeps seconds in 32 bits)"),
])
def test_action_numbers(kind, fields, key, reason):
    spec_key = "lsmhooks" if kind == "lsm" else "kprobes"
    assert problem(action(kind, fields)) == (ACTION.format(spec_key, key), reason)


def test_action_numbers_at_the_edge_are_kept():
    act = compiled_selector(action("kprobe", "{action: Override, argError: 1}")).act[0]
    assert act.arg == 1                              # Tetragon's overlayfs example
    act = compiled_selector(action("lsm", "{action: Override, argError: -4095}")).act[0]
    assert act.arg == -4095
    act = compiled_selector(action("kprobe", "{action: Post, rateLimit: 4294967295}")).act[0]
    assert act.rate_limit_s == 4294967295


def test_arg_indexes():
    text = HEAD + """  kprobes:
  - call: sys_read
    syscall: true
    args:
    - index: 6
      type: int
    - index: 1
      type: char_buf
      sizeArgIndex: 7
"""
    with pytest.raises(PolicyError) as info:
        parse(text, "t.yaml")
    assert dict(info.value.problems) == {
        "spec.kprobes[0].args[0].index": "6 is out of range 0..5 (the arguments a hook can read)",
        "spec.kprobes[0].args[1].sizeArgIndex": "7 is out of range 0..6 (it counts from 1; 0 is unset)"}


def test_size_arg_index_0_is_unset_as_in_tetragon():
    """Tetragon counts sizeArgIndex from 1 and its default is 0: a policy
    that writes 0 has no size argument (not argument -1, not an error)."""
    def hook(extra: str):
        return HEAD + f"""  kprobes:
  - call: sys_read
    syscall: true
    args:
    - index: 1
      type: char_buf
      sizeArgIndex: 0
{extra}"""
    [h] = parse(hook("      returnCopy: true\n"), "t.yaml").hooks
    assert h.args[0].size_arg_index is None and h.args[0].return_copy
    [ch] = compile_policy(parse(hook("      returnCopy: true\n"), "t.yaml"), KernelFacts())
    assert ch.reads[0].sizesrc is None and ch.reads[0].retcopy
    # Without returnCopy it is a char_buf with no size, as if sizeArgIndex were absent.
    with pytest.raises(PolicyError, match="char_buf needs sizeArgIndex or returnCopy"):
        compile_policy(parse(hook(""), "t.yaml"), KernelFacts())


@settings(max_examples=300, deadline=None, database=None)
@given(st.sampled_from(sorted(schema.INT_TYPES)), st.sampled_from(["Equal", "Mask", "GreaterThan"]),
       st.one_of(st.integers(-2 ** 65, 2 ** 65), st.sampled_from(
           [2 ** 63, 2 ** 63 - 1, -2 ** 63, 2 ** 64 - 1, 2 ** 32, 2 ** 32 - 1, -1, 2 ** 31])))
def test_what_is_accepted_is_encoded_without_aliasing(type_, op, value):
    """A compiled value holds the same 64 bits as the number the policy
    wrote, and an accepted value lies in a range less than 2^64 wide: two
    accepted values of one argument never share an encoding (2^64 would
    have become 0, 2^32 + P the same as P)."""
    # An auto argument of a syscall hook is read as 8 unsigned bytes.
    low, high = schema.width_range(8, False, op) if type_ == "auto" else schema.int_range(type_, op)
    if op != "Mask":            # a mask is its bits: -1 and 2^64 - 1 are the same mask
        assert high - low < 2 ** 64
    try:
        [m] = tables.int_tests(compiled(lseek(type_, op, f'"{value}"')))
    except PolicyError:
        assert not low <= value <= high
        return
    assert low <= value <= high
    raw = struct.unpack_from("<Q", bytes(m), enc.IPred.vals.offset)[0]
    assert raw == value % 2 ** 64


def test_auto_arguments_take_their_fields_width():
    text = HEAD + """  tracepoints:
  - subsystem: syscalls
    event: sys_enter_lseek
    args:
    - index: 2
      type: auto
    selectors:
    - matchArgs:
      - index: 2
        operator: Equal
        values: ["4294967296", "-1"]
"""
    fields = [TracepointField("fd", "unsigned int", 16, 4, False, False, False)] * 3
    facts = KernelFacts(tracepoint_fields=lambda subsys, event: fields)
    with pytest.raises(PolicyError) as info:
        compile_policy(parse(text, "t.yaml"), facts)
    assert info.value.problems == [
        ("spec.tracepoints[0].selectors[0].matchArgs[0].values",
         "4294967296 can never match: outside 0..4294967295 (this auto argument has 4 unsigned bytes)"),
        ("spec.tracepoints[0].selectors[0].matchArgs[0].values",
         "-1 can never match: outside 0..4294967295 (this auto argument has 4 unsigned bytes)")]
