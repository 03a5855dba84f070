from pathlib import Path

import pytest

from tetrad.policy.schema import PolicyError, parse

SEEDS = sorted(Path(__file__).parents[1].joinpath("policies", "seeds").glob("*.yaml"))
HEAD = 'apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: "t"\nspec:\n'


def problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(PolicyError) as info:
        parse(text, "t.yaml")
    assert str(info.value).startswith("t.yaml: ")
    return info.value.problems


def test_every_seed_policy_parses():
    assert len(SEEDS) == 6
    names = {parse(p.read_bytes(), str(p)).name for p in SEEDS}
    assert "monitor-network-activity-outside-cluster" in names


def test_seed_details_survive_parsing():
    seed = next(s for s in SEEDS if s.name == "syswritefollowfdpsswd.yaml")
    p = parse(seed.read_bytes(), str(seed))
    write = next(h for h in p.hooks if h.call == "sys_write")
    assert write.syscall and write.arg(1).size_arg_index == 2        # sizeArgIndex 3 counts from 1
    sel = write.selectors[0]
    assert sel.match_pids[0].operator == "NotIn" and sel.match_pids[0].values == (0, 1)
    assert sel.actions[0].action == "Sigkill"


def test_header_errors():
    text = 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: "Bad_Name"\nspec:\n  kprobes: []\n'
    paths = [p for p, _ in problems(text)]
    assert paths[:3] == ["apiVersion", "kind", "metadata.name"]


def test_all_problems_are_collected_with_yaml_paths():
    text = HEAD + """  kprobes:
  - call: "sys_openat"
    syscall: true
    args:
    - index: 1
      type: "string"
    selectors:
    - matchArgs:
      - index: 1
        operator: "GreaterThan"
        values: ["/etc"]
      - index: 3
        operator: "Equal"
        values: ["x"]
      matchActions:
      - action: Override
    - matchBinaries:
      - operator: "In"
        values: ["relative/path"]
      bogus: 1
"""
    got = dict(problems(text))
    assert "GreaterThan" in got["spec.kprobes[0].selectors[0].matchArgs[0].operator"]
    assert "no argument with index 3" in got["spec.kprobes[0].selectors[0].matchArgs[1].index"]
    assert "argError" in got["spec.kprobes[0].selectors[0].matchActions[0].argError"]
    assert "absolute" in got["spec.kprobes[0].selectors[1].matchBinaries[0].values[0]"]
    assert "unknown field" in got["spec.kprobes[0].selectors[1].bogus"]


def test_tetragon_limits():
    sel = "    - matchArgs:\n      - index: 0\n        operator: Equal\n        values: [1]\n"
    text = HEAD + "  kprobes:\n  - call: sys_read\n    args:\n    - index: 0\n      type: int\n" \
        "    selectors:\n" + sel * 6
    assert any("at most 5" in r for _, r in problems(text))
    many = HEAD + "  kprobes:\n  - call: sys_read\n    args:\n    - index: 0\n      type: int\n" \
        "    selectors:\n    - matchArgs:\n      - index: 0\n        operator: Equal\n" \
        "        values: [1, 2, 3, 4, 5, 6, 7, 8, 9]\n"
    assert any("at most 8 integer values per operator" in r for _, r in problems(many))
    args = HEAD + "  kprobes:\n  - call: sys_read\n    args:\n" + "".join(
        f"    - index: {i}\n      type: int\n" for i in range(6))
    assert any("at most 5" in r for _, r in problems(args))


def test_refuses_what_tetrad_does_not_implement_by_name():
    text = HEAD + "  fentries: []\n  kprobes:\n  - call: f\n    selectors:\n    - matchParentBinaries: []\n"
    got = dict(problems(text))
    assert "fentry hooks are not supported" in got["spec.fentries"]
    assert got["spec.kprobes[0].selectors[0].matchParentBinaries"] == \
        "matchParentBinaries is not supported by tetrad yet"


def test_values_are_checked_per_operator():
    text = HEAD + """  kprobes:
  - call: sys_connect
    args:
    - index: 1
      type: sockaddr
    selectors:
    - matchArgs:
      - index: 1
        operator: DAddr
        values: ["10.0.0.0/33"]
    - matchArgs:
      - index: 1
        operator: DPort
        values: ["90:80"]
"""
    got = dict(problems(text))
    assert "DAddr" in got["spec.kprobes[0].selectors[0].matchArgs[0].values[0]"]
    assert "empty" in got["spec.kprobes[0].selectors[1].matchArgs[0].values[0]"]


def test_mode_option_and_defaults():
    text = HEAD + "  options:\n  - name: policy-mode\n    value: monitor\n" \
        "  kprobes:\n  - call: __x64_sys_write\n  - call: tcp_connect\n"
    p = parse(text)
    assert p.mode == "monitor"
    assert [h.syscall for h in p.hooks] == [True, False]     # guessed from the name


def test_unreadable_args_option():
    """tetrad's own option: an unreadable user-memory argument matches
    ("match", the default) or not ("no-match"); anything else is refused
    by path with the allowed values named."""
    hooks = "  kprobes:\n  - call: sys_openat\n"
    assert parse(HEAD + hooks).unreadable_match is True
    for value, expected in (("match", True), ("no-match", False)):
        text = HEAD + f"  options:\n  - name: unreadable-args\n    value: {value}\n" + hooks
        assert parse(text).unreadable_match is expected
    both = HEAD + ("  options:\n  - name: policy-mode\n    value: monitor\n"
                   "  - name: unreadable-args\n    value: no-match\n") + hooks
    assert (parse(both).mode, parse(both).unreadable_match) == ("monitor", False)
    for bad, reason in (('"nomatch"', "supported: match, no-match"), ("[no-match]", "must be a string"),
                        ("false", "must be a string")):
        got = dict(problems(HEAD + f"  options:\n  - name: unreadable-args\n    value: {bad}\n" + hooks))
        assert reason in got["spec.options[0].value"], got


def test_yaml_syntax_error_is_reported():
    assert "not valid YAML" in problems("a: [\n")[0][1]


def test_json_policies():
    text = '{"apiVersion": "cilium.io/v1alpha1", "kind": "TracingPolicy", "metadata": {"name": "j"},' \
           ' "spec": {"tracepoints": [{"subsystem": "sched", "event": "sched_process_exec"}]}}'
    assert parse(text, "p.json").hooks[0].call == "sched/sched_process_exec"
