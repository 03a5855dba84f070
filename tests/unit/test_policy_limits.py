"""Size, count and type rules of the schema (tetrad/policy/limits.py), each
at its edge: the limit is accepted, one more is refused with its path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tetrad.policy import limits
from tetrad.policy.schema import PolicyError, parse

REPO = Path(__file__).parents[2]


def doc(hooks: str, name: str = "t", extra: str = "") -> str:
    return (f'apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: "{name}"\n'
            f"{extra}spec:\n{hooks}")


def kprobe(body: str = "", call: str = "sys_openat") -> str:
    return f'  - call: "{call}"\n    syscall: true\n{body}'


def string_hook(values: list[str], op: str = "Equal") -> str:
    vals = ", ".join(f'"{v}"' for v in values)
    return kprobe(f"    args:\n    - index: 1\n      type: string\n    selectors:\n"
                  f"    - matchArgs:\n      - index: 1\n        operator: {op}\n        values: [{vals}]\n")


def problems(text: str) -> dict[str, str]:
    with pytest.raises(PolicyError) as info:
        parse(text, "t.yaml")
    return dict(info.value.problems)


def test_name_is_a_dns_subdomain():
    longest = ".".join(["a" * 63] * 4)[: limits.NAME]
    assert parse(doc("  kprobes:\n" + kprobe(), name=longest)).name == longest
    for bad in (longest + "a", "Upper", "a..b", "-a", "a-", "a.-b", "a_b", "é"):
        assert "metadata.name" in problems(doc("  kprobes:\n" + kprobe(), name=bad)), bad
    assert "must be a string, not an integer" in problems(doc("  kprobes:\n" + kprobe()).replace(
        'name: "t"', "name: 12"))["metadata.name"]


def test_tags():
    ok = [f"tag-{i}" for i in range(limits.TAGS)]
    hook = kprobe(f"    tags: [{', '.join(ok)}]\n")
    assert parse(doc("  kprobes:\n" + hook)).hooks[0].tags == tuple(ok)
    got = problems(doc("  kprobes:\n" + kprobe(f"    tags: [{', '.join(ok + ['one-more'])}]\n")))
    assert got["spec.kprobes[0].tags"] == "17 tags; at most 16"
    got = problems(doc("  kprobes:\n" + kprobe(f"    tags: [x, {'y' * 129}, {'z' * 128}, [a]]\n")))
    assert got["spec.kprobes[0].tags[0]"] == "at least 2 characters"
    assert got["spec.kprobes[0].tags[1]"] == "129 characters; at most 128"
    assert "spec.kprobes[0].tags[2]" not in got
    assert got["spec.kprobes[0].tags[3]"] == "must be a string, not a list"


def test_message_and_label():
    hook = kprobe(f'    message: "{"m" * limits.MESSAGE}"\n    args:\n    - index: 1\n      type: string\n'
                  f'      label: "{"l" * limits.LABEL}"\n')
    assert len(parse(doc("  kprobes:\n" + hook)).hooks[0].message) == limits.MESSAGE
    got = problems(doc("  kprobes:\n" + hook.replace("m" * limits.MESSAGE, "m" * 257)
                       .replace("l" * limits.LABEL, "l" * 129)))
    assert got["spec.kprobes[0].message"] == "257 characters; at most 256"
    assert got["spec.kprobes[0].args[0].label"] == "129 characters; at most 128"
    # The 751-byte policy of issue 13: an alias made its message 11.5 MB.
    got = problems(doc("  kprobes:\n" + kprobe("    message: *m\n"), extra='  annotations:\n    m: &m [a, b]\n'))
    assert got["spec.kprobes[0].message"] == "must be a string, not a list"


def test_hooks_per_policy():
    many = "  kprobes:\n" + kprobe() * (limits.HOOKS - 1) + "  tracepoints:\n" \
        "  - subsystem: sched\n    event: sched_process_exec\n"
    assert len(parse(doc(many)).hooks) == limits.HOOKS
    got = problems(doc(many + "  - subsystem: sched\n    event: sched_process_fork\n"))
    assert "more than 32 hooks in one policy" in got["spec.tracepoints"]


def test_values_in_kernel_maps_per_policy():
    """32 hooks x 2 selectors x 8 Prefix values = 512; one binary more is refused."""
    per_selector = 8
    sel = ("    - matchArgs:\n      - index: 0\n        operator: Prefix\n"
           f"        values: [{', '.join(f'/p{j}' for j in range(per_selector))}]\n")
    hook = ('  - call: "security_file_open"\n    syscall: false\n    args:\n    - index: 0\n'
            "      type: file\n    selectors:\n" + sel * 2)
    assert limits.HOOKS * 2 * per_selector == limits.MAP_VALUES
    assert parse(doc("  kprobes:\n" + hook * limits.HOOKS))
    more = hook + "      matchBinaries:\n      - operator: In\n        values: [/usr/bin/cat]\n"
    got = problems(doc("  kprobes:\n" + hook * (limits.HOOKS - 1) + more))
    assert got["spec"].startswith(f"{limits.MAP_VALUES + 1} string, path, binary and address values; "
                                  f"at most {limits.MAP_VALUES} per policy")


def test_map_value_limit_fits_the_kernel_maps():
    source = (REPO / "bpf" / "generic_hook.c").read_text()
    tries = re.findall(r"struct g_bits, (str_fwd|str_rev|cidr), G_TRIE_ENTRIES", source)
    assert sorted(tries) == ["cidr", "str_fwd", "str_rev"]
    loader = (REPO / "tetrad" / "sensors" / "generic.py").read_text()
    assert f"TRIE_ENTRIES = {limits.KERNEL_MAP_ENTRIES}" in loader
    assert limits.MAP_VALUES < limits.KERNEL_MAP_ENTRIES


def test_string_value_lengths():
    assert parse(doc("  kprobes:\n" + string_hook(["/" * 247])))
    got = problems(doc("  kprobes:\n" + string_hook(["/" * 248])))
    assert got["spec.kprobes[0].selectors[0].matchArgs[0].values[0]"] == \
        "bad value for Equal: an Equal value of a string is at most 247 bytes"
    got = problems(doc("  kprobes:\n" + string_hook(["/" * 256])))
    assert got["spec.kprobes[0].selectors[0].matchArgs[0].values[0]"] == "256 bytes; at most 255"
    got = problems(doc("  kprobes:\n" + string_hook(["/" * 249], "Prefix")))
    assert "prefix longer than 248 bytes" in got["spec.kprobes[0].selectors[0].matchArgs[0].values[0]"]


def test_a_wrong_type_is_that_fields_error():
    """Issue 13: `type: [string]`, `operator: [Prefix]`, `action: {...}`
    raised TypeError (unhashable) and stopped the daemon."""
    text = doc("  kprobes:\n" + kprobe(
        "    args:\n    - index: 1\n      type: [string]\n    - index: 2\n      type: int\n"
        "    selectors:\n    - matchArgs:\n      - index: 2\n        operator: [Equal]\n"
        "        values: [1]\n      matchActions:\n      - action: {Sigkill: 1}\n"
        "      matchPIDs:\n      - operator: {In: 1}\n        values: [[1]]\n        followForks: \"yes\"\n"
        "      matchBinaries:\n      - operator: In\n        values: [{a: 1}]\n", call="sys_read")
        .replace("syscall: true", "syscall: [true]"))
    got = problems(text)
    s = "spec.kprobes[0].selectors[0]"
    assert got == {
        "spec.kprobes[0].syscall": "must be true or false, not a list",
        "spec.kprobes[0].args[0].type": "type must be a string, one of " + ", ".join(
            sorted(__import__("tetrad.policy.schema", fromlist=["x"]).ARG_TYPES)) + "; not a list",
        f"{s}.matchArgs[0].operator": "operator must be a string, one of Equal, GT, GreaterThan, "
                                      "InMap, InRange, LT, LessThan, Mask, NotEqual, NotInMap, NotInRange; "
                                      "not a list",
        f"{s}.matchPIDs[0].operator": "operator must be a string, one of In, NotIn; not a mapping",
        f"{s}.matchPIDs[0].values[0]": "a list is not a number; an integer is expected",
        f"{s}.matchPIDs[0].followForks": "must be true or false, not 'yes'",
        f"{s}.matchBinaries[0].values[0]": "must be a string, not a mapping",
        f"{s}.matchActions[0].action": "action must be a string, one of DnsLookup, FollowFD, GetUrl, "
                                       "NoPost, NotifyEnforcer, Override, Post, Sigkill, Signal, "
                                       "TrackSock, UnfollowFD, UntrackSock; not a mapping",
    }


def test_no_coercion_where_a_string_belongs():
    got = problems(doc("  kprobes:\n" + string_hook(["x"]).replace('["x"]', "[true, 1.5, null, [a]]")))
    prefix = "spec.kprobes[0].selectors[0].matchArgs[0].values"
    assert got == {f"{prefix}[0]": "must be a string, not a boolean (quote it)",
                   f"{prefix}[1]": "must be a string, not a number with a fraction (quote it)",
                   f"{prefix}[2]": "must be a string, not null",
                   f"{prefix}[3]": "must be a string, not a list"}
    # An unquoted integer is its decimal text, as Tetragon reads it.
    policy = parse(doc("  kprobes:\n" + string_hook(["x"]).replace('["x"]', "[1234]")))
    assert policy.hooks[0].selectors[0].match_args[0].values == ("1234",)


def test_one_mistake_is_reported_once():
    """An argument of an unknown type does not also fail the matchArgs
    naming it (Tetragon's `skb` made 14 problems of one, when tetrad had no skb)."""
    text = doc("  kprobes:\n" + kprobe(
        "    args:\n    - index: 1\n      type: const_buf\n    selectors:\n    - matchArgs:\n"
        "      - index: 1\n        operator: Protocol\n        values: [IPPROTO_TCP]\n"
        "    - matchArgs:\n      - index: 1\n        operator: DAddr\n        values: [10.0.0.0/8]\n",
        call="ip_output").replace("syscall: true", "syscall: false"))
    assert list(problems(text)) == ["spec.kprobes[0].args[0].type"]


def test_names_reaching_the_kernel_are_checked():
    got = problems(doc("  tracepoints:\n  - subsystem: ../../../etc\n    event: shadow\n"
                       "  kprobes:\n" + kprobe(call="sys_open at") + kprobe(call="x" * 513)
                       + "  uprobes:\n  - path: relative/bin\n    symbols: [main]\n"
                       "  lsmhooks:\n  - hook: \"file_open\\0x\"\n"))
    assert got["spec.tracepoints[0].subsystem"] == "'../../../etc' is not a tracepoint subsystem"
    assert got["spec.kprobes[0].call"] == "'sys_open at' is not a kernel function name (call)"
    assert got["spec.kprobes[1].call"] == "513 characters; at most 512"
    assert got["spec.uprobes[0].path"] == "'relative/bin' is not an absolute path"
    assert got["spec.lsmhooks[0].hook"] == "contains a NUL character"


def test_a_nul_may_end_a_string_value():
    """Tetragon's examples match "security.capability\\0"; for Equal the
    kernel key is the same as without it."""
    policy = parse(doc("  kprobes:\n" + string_hook(["security.capability\\0"])))
    assert policy.hooks[0].selectors[0].match_args[0].values == ("security.capability\0",)


def test_messages_quote_values_only_as_short_excerpts():
    secret = "root:$6$saltsaltsalt$hashhashhashhashhash:19000:0:99999:7:::"
    text = doc("  kprobes:\n" + kprobe(
        f'    args:\n    - index: 1\n      type: "{secret}"\n    - index: 2\n      type: sockaddr\n'
        f'    selectors:\n    - matchArgs:\n      - index: 2\n        operator: "{secret}"\n'
        f'        values: ["{secret}"]\n      "{secret}": 1\n'), name=secret)
    for path, reason in parse_problems(text):
        assert secret not in path + reason and secret[:33] not in path + reason, (path, reason)


def parse_problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(PolicyError) as info:
        parse(text, "t.yaml")
    return info.value.problems
