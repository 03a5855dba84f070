"""Tetragon's policies read as Tetragon reads them (issue 15, parser fidelity).

Each rule with a policy of our own in the shape Tetragon's library uses:
what Tetragon accepts is accepted with Tetragon's meaning, what tetrad has
not implemented is named as such ("not supported by tetrad yet"), and only
what nobody's schema has is an unknown field.
"""

from __future__ import annotations

import pytest

from tetrad.abi import generic as enc
from tetrad.decode.generic import Slot
from tetrad.bpf.unistd import NATIVE_ABI
from tetrad.events.policy import _renderer
from tetrad.policy import limits
from tetrad.policy.compile import KernelFacts, compile_policy, parse_tracepoint_format
from tetrad.policy.schema import ArgSpec, PolicyError, parse
from tests.unit import tables

HEAD = 'apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: "t"\n'


def doc(spec: str, head: str = HEAD) -> str:
    return f"{head}spec:\n{spec}"


def problems(text: str) -> dict[str, str]:
    with pytest.raises(PolicyError) as info:
        parse(text, "t.yaml")
    return dict(info.value.problems)


def openat(selectors: str, args: str = "    - index: 1\n      type: string\n") -> str:
    return doc('  kprobes:\n  - call: "sys_openat"\n    syscall: true\n    args:\n'
               f"{args}    selectors:\n{selectors}")


def test_string_values_have_no_per_operator_limit():
    """The quickstart watches 14 prefixes in one operator; tetrad said
    Tetragon allowed at most 8."""
    values = ", ".join(f'"/etc/d{i}/"' for i in range(14))
    p = parse(openat(f"    - matchArgs:\n      - index: 1\n        operator: Prefix\n"
                     f"        values: [{values}]\n"))
    assert len(p.hooks[0].selectors[0].match_args[0].values) == 14


def test_binaries_have_no_per_operator_limit():
    values = ", ".join(f'"/usr/bin/b{i}"' for i in range(20))
    p = parse(openat(f"    - matchBinaries:\n      - operator: In\n        values: [{values}]\n"))
    assert len(p.hooks[0].selectors[0].match_binaries.values) == 20


def test_map_values_are_still_bounded_per_policy():
    values = ", ".join(f'"/p{i}"' for i in range(limits.MAP_VALUES + 1))
    got = problems(openat(f"    - matchArgs:\n      - index: 1\n        operator: Prefix\n"
                          f"        values: [{values}]\n"))
    assert f"at most {limits.MAP_VALUES}" in got["spec.kprobes[0].selectors[0].matchArgs[0].values"]


def test_integer_values_per_operator_are_what_a_selector_holds():
    ints = lambda n: ", ".join(str(i) for i in range(n))    # noqa: E731
    arg = "    - index: 2\n      type: int\n"
    sel = "    - matchArgs:\n      - index: 2\n        operator: Equal\n        values: [{}]\n"
    assert parse(openat(sel.format(ints(limits.VALUES)), arg))
    got = problems(openat(sel.format(ints(limits.VALUES + 1)), arg))
    assert (f"at most {limits.VALUES} integer values per operator"
            in got["spec.kprobes[0].selectors[0].matchArgs[0].values"])


def test_several_match_args_on_one_index_must_all_hold():
    """Tetragon's dns-only-specified-servers puts four on one argument."""
    p = parse(openat("    - matchArgs:\n      - index: 1\n        operator: Prefix\n"
                     "        values: [/tmp/x/]\n      - index: 1\n        operator: Postfix\n"
                     "        values: [.secret]\n"))
    matches = p.hooks[0].selectors[0].match_args
    assert [(m.index, m.operator) for m in matches] == [(1, "Prefix"), (1, "Postfix")]
    [ch] = compile_policy(p, KernelFacts(arch_prefix="__x64_"))
    t = tables.alone(ch)
    point = enc.Point.from_buffer_copy(t.point)
    sel = enc.Hook.from_buffer_copy(t.hooks[0]).sel[0]
    assert point.nslots == 1                                # one argument read, two tests
    assert point.slot[0].flags & enc.GS_FWD and point.slot[0].flags & enc.GS_REV
    assert bin(tables.bits(sel.pos)).count("1") == 2        # both must hold


def test_tracepoint_match_index_may_be_a_position_in_args():
    """Tetragon remaps a tracepoint matchArgs index that names no field of
    args to that position in args (its list-syscalls example matches
    index 0 for field 4)."""
    text = doc("  tracepoints:\n  - subsystem: raw_syscalls\n    event: sys_enter\n    args:\n"
               "    - index: 4\n      type: syscall64\n    selectors:\n    - matchArgs:\n"
               "      - index: 0\n        operator: Equal\n        values: [8]\n")
    assert parse(text).hooks[0].selectors[0].match_args[0].index == 4
    by_field = text.replace("      - index: 0\n", "      - index: 4\n")
    assert parse(by_field).hooks[0].selectors[0].match_args[0].index == 4
    beyond = text.replace("      - index: 0\n", "      - index: 1\n")
    assert "no argument with index 1" in problems(beyond)["spec.tracepoints[0].selectors[0].matchArgs[0].index"]


def test_return_arg_without_return_is_ignored_as_tetragon_does():
    p = parse(doc('  kprobes:\n  - call: "sys_openat"\n    syscall: true\n'
                  "    returnArg:\n      index: 0\n      type: int\n"))
    assert p.hooks[0].return_arg is None


def test_a_nop_argument_is_neither_read_nor_matched():
    p = parse(openat("    - matchArgs:\n      - index: 1\n        operator: Prefix\n"
                     "        values: [/tmp/]\n",
                     args="    - index: 0\n      type: nop\n    - index: 1\n      type: string\n"))
    assert [a.index for a in p.hooks[0].args] == [1]
    got = problems(openat("    - matchArgs:\n      - index: 0\n        operator: Equal\n"
                          "        values: [1]\n", args="    - index: 0\n      type: nop\n"))
    assert "type nop" in got["spec.kprobes[0].selectors[0].matchArgs[0].index"]


def test_syscall64_is_shown_as_tetragons_syscall_id():
    render = _renderer(ArgSpec(4, "syscall64"))
    assert render(Slot(ival=257, data=b"", flags=0)) == {"syscall_id": {"id": 257, "abi": NATIVE_ABI}}
    assert render(Slot(ival=0, data=b"", flags=0)) == {"syscall_id": {"abi": NATIVE_ABI}}   # read: 0 left out


def test_every_kubernetes_metadata_field_is_accepted():
    head = (HEAD + "  namespace: default\n  uid: 0b5d3a4e-1b2c-4d5e-8f90-123456789abc\n"
            "  resourceVersion: \"1234\"\n  generation: 2\n"
            "  creationTimestamp: \"2024-05-01T10:00:00Z\"\n  labels: {app: x}\n"
            "  annotations: {note: y}\n  finalizers: [a]\n  managedFields: []\n")
    assert parse(doc('  kprobes:\n  - call: "sys_openat"\n    syscall: true\n', head)).name == "t"


@pytest.mark.parametrize("where, text, path", [
    ("uprobe btfPath", '  uprobes:\n  - path: /bin/true\n    symbols: [main]\n    btfPath: /b\n',
     "spec.uprobes[0].btfPath"),
    ("source", '  kprobes:\n  - call: "x"\n    args:\n    - index: 0\n      type: int\n'
     "      source: current_task\n", "spec.kprobes[0].args[0].source"),
    ("argIndex", '  kprobes:\n  - call: "x"\n    selectors:\n    - matchActions:\n'
     "      - action: Post\n        argIndex: 0\n", "spec.kprobes[0].selectors[0].matchActions[0].argIndex"),
    ("nodeSelector", '  nodeSelector: {}\n  kprobes:\n  - call: "x"\n', "spec.nodeSelector"),
])
def test_tetragon_fields_tetrad_lacks_are_named_as_not_yet_supported(where, text, path):
    got = problems(doc(text))
    assert got[path].endswith("is not supported by tetrad yet"), got


def test_tetragon_types_tetrad_lacks_are_named_and_do_not_cascade():
    got = problems(openat("    - matchArgs:\n      - index: 1\n        operator: Equal\n"
                          "        values: [lo]\n", args="    - index: 1\n      type: const_buf\n"))
    assert got == {"spec.kprobes[0].args[0].type": "type const_buf is not supported by tetrad yet"}


def test_a_field_nobody_has_is_unknown():
    got = problems(openat("    - matchArgz: []\n"))
    assert got["spec.kprobes[0].selectors[0].matchArgz"].startswith("unknown field (known: ")


RAW_SYS_ENTER = parse_tracepoint_format("""name: sys_enter
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:long id;	offset:8;	size:8;	signed:1;
	field:unsigned long args[6];	offset:16;	size:48;	signed:0;
""")
LISTS = ("  lists:\n  - name: dups\n    type: syscalls\n    values: [sys_dup, sys_dup2]\n")


def test_a_kprobe_on_a_syscalls_list_is_one_hook_per_syscall():
    p = parse(doc(LISTS + '  kprobes:\n  - call: "list:dups"\n'))
    assert [(h.call, h.syscall) for h in p.hooks] == [("sys_dup", True), ("sys_dup2", True)]
    compiled = compile_policy(p, KernelFacts(arch_prefix="__x64_"))
    assert [ch.target.function_name for ch in compiled] == ["__x64_sys_dup", "__x64_sys_dup2"]


def test_in_map_on_a_syscall_id_takes_the_lists_numbers():
    text = doc(LISTS + "  tracepoints:\n  - subsystem: raw_syscalls\n    event: sys_enter\n"
               "    args:\n    - index: 4\n      type: syscall64\n    selectors:\n    - matchArgs:\n"
               "      - index: 0\n        operator: InMap\n        values: [\"list:dups\", 3]\n")
    numbers = {"dup": 32, "dup2": 33}
    facts = KernelFacts(arch_prefix="__x64_", syscall_number=numbers.__getitem__,
                        tracepoint_fields=lambda s, e: RAW_SYS_ENTER)
    [ch] = compile_policy(parse(text), facts)
    [m] = tables.int_tests(ch)
    assert (m.op, list(m.vals[:m.nvals])) == (enc.IOPS["Equal"], [32, 33, 3])
    assert tables.bits(tables.hook_struct(ch).sel[0].pos) == 1 << m.bit
    not_in = text.replace("operator: InMap", "operator: NotInMap")
    [ch] = compile_policy(parse(not_in), facts)
    [m] = tables.int_tests(ch)
    sel = tables.hook_struct(ch).sel[0]
    assert tables.bits(sel.neg) == 1 << m.bit and tables.bits(sel.pos) == 0


def test_generated_lists_are_kept_for_the_compiler_and_names_it_does_not_know_are_refused():
    generated = doc("  lists:\n  - name: all\n    type: generated_syscalls\n"
                    "  - name: ksys\n    type: generated_ftrace\n    pattern: '^ksys_*'\n"
                    '  kprobes:\n  - call: "list:all"\n  - call: "list:ksys"\n')
    assert [(h.call, h.syscall, h.generated, h.pattern) for h in parse(generated).hooks] == [
        ("list:all", True, "syscalls", ""), ("list:ksys", False, "ftrace", "^ksys_*")]
    bad = problems(doc("  lists:\n  - name: f\n    type: generated_ftrace\n"
                       "  - name: g\n    type: generated_ftrace\n    pattern: '(x'\n"
                       "  - name: s\n    type: generated_syscalls\n    values: [sys_dup]\n"
                       '  kprobes:\n  - call: "sys_dup"\n    args:\n    - index: 0\n      type: int\n'
                       "    selectors:\n    - matchArgs:\n      - index: 0\n        operator: InMap\n"
                       '        values: ["list:s"]\n'))
    assert "needs a pattern" in bad["spec.lists[0].pattern"]
    assert "not a regular expression" in bad["spec.lists[1].pattern"]
    assert "makes its own values" in bad["spec.lists[2].values"]
    assert "is generated" in bad["spec.kprobes[0].selectors[0].matchArgs[0].values[0]"]
    missing = problems(doc(LISTS + '  kprobes:\n  - call: "list:other"\n'))
    assert missing == {"spec.kprobes[0].call": "no list named 'other' in spec.lists"}


def test_expanded_hooks_count_against_the_policys_limit():
    names = ", ".join(f"sys_s{i}" for i in range(limits.HOOKS))
    text = doc(f"  lists:\n  - name: many\n    type: syscalls\n    values: [{names}]\n"
               '  kprobes:\n  - call: "list:many"\n  - call: "sys_close"\n')
    assert "hooks once lists and symbols are expanded" in problems(text)["spec"]


def test_a_uprobe_with_several_symbols_is_one_hook_per_symbol():
    p = parse(doc("  uprobes:\n  - path: /usr/bin/bash\n    symbols: [readline, main]\n"))
    assert [(h.binary, h.symbol) for h in p.hooks] == [("/usr/bin/bash", "readline"),
                                                        ("/usr/bin/bash", "main")]


def test_ignore_call_not_found_is_kept_on_the_hook_and_other_keys_are_refused():
    p = parse(doc('  kprobes:\n  - call: "sys_dup"\n    ignore:\n      callNotFound: true\n'))
    assert p.hooks[0].ignore_missing
    got = problems(doc('  kprobes:\n  - call: "sys_dup"\n    ignore:\n      callNotFund: true\n'))
    assert "unknown field" in got["spec.kprobes[0].ignore.callNotFund"]
