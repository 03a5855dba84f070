"""Override on syscall hooks and NotifyEnforcer with spec.enforcers: what is
accepted, which syscall functions get an enforcer (bpf/enforcer.c), what
the kernel must have, and how the point's tables change."""

import pytest

from tetrad.abi import generic as enc
from tetrad.bpf import unistd
from tetrad.policy.compile import KernelFacts, compile_policy, parse_tracepoint_format
from tetrad.policy.errors import PolicyError
from tetrad.policy.kernel import required_features
from tetrad.policy.points import PointTables
from tetrad.policy.schema import parse
from tests.unit.tables import alone, hook_struct

NUMBERS = {"dup": 32, "dup2": 33, "openat": 257, "lseek": 8}


def number(name: str) -> int:
    if name not in NUMBERS:
        raise unistd.UnknownSyscall(f"no syscall named {name} on this machine")
    return NUMBERS[name]


FACTS = KernelFacts(arch_prefix="__x64_", syscall_number=number)
HEAD = 'apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: "e"\nspec:\n'

KILLER = HEAD + """  lists:
  - name: "dups"
    type: "syscalls"
    values: ["sys_dup", "sys_dup2", "__ia32_sys_dup"]
  enforcers:
  - calls: ["list:dups"]
  kprobes:
  - call: sys_lseek
    syscall: true
    args:
    - index: 1
      type: long
    selectors:
    - matchArgs:
      - index: 1
        operator: Equal
        values: ["77"]
      matchActions:
      - action: NotifyEnforcer
        argError: -1
        argSig: 9
"""

OVERRIDE = HEAD + """  kprobes:
  - call: sys_openat
    syscall: true
    args:
    - index: 1
      type: string
    selectors:
    - matchArgs:
      - index: 1
        operator: Prefix
        values: ["/etc/secret"]
      matchActions:
      - action: Override
        argError: -13
"""


def compiled(text: str):
    return compile_policy(parse(text, "e.yaml"), FACTS)


def problems(text: str) -> dict:
    with pytest.raises(PolicyError) as err:
        compiled(text)
    return dict(err.value.problems)


def test_notify_enforcer_attaches_an_enforcer_to_each_listed_syscall():
    policy = parse(KILLER, "e.yaml")
    assert policy.enforcers == ("sys_dup", "sys_dup2", "__ia32_sys_dup")
    [ch] = compile_policy(policy, FACTS)
    # native syscalls take notes for their own number; another ABI's, any
    assert ch.enforced == (("__x64_sys_dup", 32), ("__x64_sys_dup2", 33), ("__ia32_sys_dup", None))
    needs = dict(required_features(ch))
    assert "syscall_override" in needs and "NotifyEnforcer" in needs["syscall_override"]
    assert "argSig" in needs["send_signal"]
    act = hook_struct(ch).sel[0].act[0]
    assert (act.action, act.arg, act.arg2) == (enc.ACTIONS["NotifyEnforcer"], -1, 9)


def test_override_on_a_syscall_hook_is_made_by_its_own_enforcer_and_decided_at_entry():
    [ch] = compiled(OVERRIDE)
    assert ch.enforced == (("__x64_sys_openat", 257),)
    assert not ch.override_return                     # not a kprobe override of its own
    # a string argument would otherwise be read again at sys_exit: a note
    # left there would fail the thread's next openat instead
    assert not ch.retry
    point = enc.Point.from_buffer_copy(alone(ch).point)
    assert not point.flags & enc.POINT_RETRY
    assert dict(required_features(ch))["syscall_override"].endswith("Override")


def test_a_point_with_a_noting_hook_never_defers_another_hooks_calls():
    [noting] = compiled(OVERRIDE)
    [plain] = compiled(OVERRIDE.replace('name: "e"', 'name: "p"').replace(
        "      matchActions:\n      - action: Override\n        argError: -13\n", ""))
    assert plain.retry and not plain.enforced
    pt = PointTables(1)
    pt.add(0, plain)
    assert enc.Point.from_buffer_copy(pt.tables().point).flags & enc.POINT_RETRY
    pt.add(1, noting)
    assert not enc.Point.from_buffer_copy(pt.tables().point).flags & enc.POINT_RETRY


def test_raw_syscalls_sys_enter_points_name_the_syscall_for_the_note():
    facts = KernelFacts(arch_prefix="__x64_", syscall_number=number,
                        tracepoint_fields=lambda subsys, event: parse_tracepoint_format(RAW_FORMAT))
    text = KILLER.replace("""  kprobes:
  - call: sys_lseek
    syscall: true
    args:
    - index: 1
      type: long
    selectors:
    - matchArgs:
      - index: 1
        operator: Equal
        values: ["77"]""", """  tracepoints:
  - subsystem: raw_syscalls
    event: sys_enter
    args:
    - index: 4
      type: syscall64
    selectors:
    - matchArgs:
      - index: 0
        operator: InMap
        values: ["list:dups"]""")
    [ch] = compile_policy(parse(text, "e.yaml"), facts)
    assert ch.target.sysnr_field
    assert enc.Point.from_buffer_copy(alone(ch).point).flags & enc.POINT_SYSNR


RAW_FORMAT = """name: sys_enter
ID: 22
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:long id;\toffset:8;\tsize:8;\tsigned:1;
\tfield:unsigned long args[6];\toffset:16;\tsize:48;\tsigned:0;

print fmt: "NR %ld (%lx, %lx, %lx, %lx, %lx, %lx)", REC->id, REC->args[0]
"""


@pytest.mark.parametrize("text, path, expected", [
    (KILLER.replace("  enforcers:\n  - calls: [\"list:dups\"]\n", ""), "spec.enforcers",
     "NotifyEnforcer needs spec.enforcers"),
    (KILLER.replace("action: NotifyEnforcer", "action: Post"), "spec.enforcers",
     "no hook has a NotifyEnforcer action"),
    (KILLER.replace("        argError: -1\n        argSig: 9\n", ""),
     "spec.kprobes[0].selectors[0].matchActions[0]", "NotifyEnforcer needs argError"),
    (KILLER.replace("argError: -1", "argError: 5"),
     "spec.kprobes[0].selectors[0].matchActions[0].argError", "a negative errno"),
    (KILLER.replace('"list:dups"', '"list:nope"'), "spec.enforcers[0].calls[0]", "no list named"),
])
def test_wrong_enforcer_policies_are_named(text, path, expected):
    assert expected in problems(text)[path]


def test_an_unknown_enforced_syscall_is_refused():
    got = problems(KILLER.replace('"sys_dup2", ', '"sys_nosuch", '))
    assert got == {"spec.enforcers (sys_nosuch)": "no syscall named nosuch on this machine"}


def test_override_in_return_actions_of_a_syscall_hook_is_refused():
    text = OVERRIDE.replace("      matchActions:", "      matchReturnActions:").replace(
        "    syscall: true\n", "    syscall: true\n    return: true\n    returnArg:\n      index: 0\n"
                              "      type: int\n")
    assert any("decides before the call" in v for v in problems(text).values())
