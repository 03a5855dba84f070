"""schema.py on argument fields: resolve, btfType, btfTypeModule, maxData,
struct-typed arguments and how matchArgs names an argument (`index`, or
`args: [n]` when an index appears more than once)."""

import pytest

from tetrad.policy.schema import PolicyError, parse

HEAD = 'apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: "t"\nspec:\n'


def policy(args: str, selectors: str = ""):
    return parse(HEAD + "  kprobes:\n  - call: commit_creds\n    syscall: false\n    args:\n" + args
                 + selectors, "t.yaml")


def problems(args: str, selectors: str = "") -> dict[str, str]:
    with pytest.raises(PolicyError) as info:
        policy(args, selectors)
    return dict(info.value.problems)


def test_resolve_btf_type_and_module_are_kept():
    [hook] = policy("    - index: 1\n      type: uint16\n      btfType: sockaddr_in\n"
                    "      btfTypeModule: af_alg\n      resolve: sin_port\n      label: port\n").hooks
    [a] = hook.args
    assert (a.resolve, a.btf_type, a.btf_type_module, a.label, a.where) == \
        ("sin_port", "sockaddr_in", "af_alg", "port", "spec.kprobes[0].args[0]")


@pytest.mark.parametrize("field, value, reason", [
    ("resolve", "a..b", "not a member path"),
    ("resolve", "a[x]", "not a member path"),
    ("resolve", ".".join("abcdefghijk"), "11 steps; at most 10"),
    ("btfType", "struct cred", "not a struct name"),
    ("btfTypeModule", "../etc", "not a kernel module name"),
])
def test_bad_names_and_paths_are_refused(field, value, reason):
    extra = "      btfType: x\n" if field == "btfTypeModule" else ""
    got = problems(f"    - index: 0\n      type: int\n      {field}: {value!r}\n{extra}")
    assert reason in got[f"spec.kprobes[0].args[0].{field}"]


def test_a_module_needs_a_type_and_max_data_a_buffer():
    got = problems("    - index: 0\n      type: int\n      btfTypeModule: af_alg\n"
                   "    - index: 1\n      type: cred\n      maxData: true\n")
    assert "it needs btfType" in got["spec.kprobes[0].args[0].btfTypeModule"]
    assert "char_buf, char_iovec and iov_iter" in got["spec.kprobes[0].args[1].maxData"]
    [hook] = policy("    - index: 1\n      type: char_buf\n      sizeArgIndex: 3\n      maxData: true\n"
                    "    - index: 2\n      type: size_t\n").hooks
    assert hook.args[0].max_data


def test_struct_typed_arguments_take_no_operator():
    got = problems("    - index: 0\n      type: cred\n",
                   "    selectors:\n    - matchArgs:\n      - index: 0\n        operator: Equal\n"
                   "        values: ['0']\n")
    assert "cred, shown whole: no matchArgs operator applies" in got["spec.kprobes[0].selectors[0].matchArgs[0].index"]


def test_capabilities_take_integer_operators_in_their_range():
    [hook] = policy("    - index: 2\n      type: capability\n    - index: 0\n      type: kernel_cap_t\n",
                    "    selectors:\n    - matchArgs:\n      - index: 2\n        operator: Equal\n"
                    "        values: ['21']\n      - index: 0\n        operator: Mask\n"
                    "        values: ['0x200000']\n").hooks
    assert [m.operator for m in hook.selectors[0].match_args] == ["Equal", "Mask"]
    got = problems("    - index: 2\n      type: capability\n",
                   "    selectors:\n    - matchArgs:\n      - index: 2\n        operator: Equal\n"
                   "        values: ['4294967296']\n")
    assert "can never match" in got["spec.kprobes[0].selectors[0].matchArgs[0].values[0]"]


def test_an_index_may_repeat_and_match_args_name_the_first_or_a_place():
    [hook] = policy("    - index: 0\n      type: int\n      resolve: uid.val\n"
                    "    - index: 0\n      type: nop\n"
                    "    - index: 0\n      type: int\n      resolve: euid.val\n",
                    "    selectors:\n    - matchArgs:\n      - index: 0\n        operator: Equal\n"
                    "        values: ['0']\n      - args: [2]\n        operator: Equal\n"
                    "        values: ['1']\n").hooks
    first, second = hook.selectors[0].match_args
    assert [a.resolve for a in hook.args] == ["uid.val", "euid.val"]     # the nop is not read
    assert (first.pos, second.pos) == (0, 1)


@pytest.mark.parametrize("selector, path, reason", [
    ("      - args: [1]\n", "args[0]", "args has 1 entries: no [1]"),
    ("      - args: [0, 1]\n", "args", "CapabilitiesGained"),
    ("      - args: [-1]\n", "args[0]", "out of range"),
])
def test_match_args_places_are_checked(selector, path, reason):
    got = problems("    - index: 0\n      type: int\n",
                   "    selectors:\n    - matchArgs:\n" + selector
                   + "        operator: Equal\n        values: ['1']\n")
    assert reason in got[f"spec.kprobes[0].selectors[0].matchArgs[0].{path}"], got


def test_a_return_value_is_not_walked():
    with pytest.raises(PolicyError) as info:
        parse(HEAD + "  kprobes:\n  - call: f\n    syscall: false\n    return: true\n"
              "    returnArg:\n      index: 0\n      type: int\n      resolve: a.b\n", "t.yaml")
    assert "not supported on returnArg" in dict(info.value.problems)["spec.kprobes[0].returnArg"]
