"""tetrad.policy.document: strict YAML and JSON, limits before building."""

from __future__ import annotations

import pytest

from tetrad.policy import limits
from tetrad.policy.document import load
from tetrad.policy.errors import PolicyError


def refused(text: str, source: str = "p.yaml") -> str:
    with pytest.raises(PolicyError) as info:
        load(text, source)
    [(path, reason)] = info.value.problems
    assert path == ""
    return reason


def nested(depth: int, flow: bool = True) -> str:
    if flow:
        return "a: " + "[" * depth + "]" * depth + "\n"
    return "".join("  " * i + "a:\n" for i in range(depth)) + "  " * depth + "a: 1\n"


def test_duplicate_keys_are_refused_with_their_position():
    assert refused('metadata:\n  name: "a"\n  name: "b"\n') == \
        "not valid YAML: line 3, column 3: duplicate key 'name' in this mapping"
    assert refused('{"a": {"name": 1,\n "name": 2}}', "p.json") == \
        "not valid JSON: line 2, column 2: duplicate key 'name' in this object"
    assert refused('{"a": 1, "\\u0061": 2}', "p.json").endswith("duplicate key 'a' in this object")
    # The same key in different mappings is fine.
    assert load('{"a": {"k": 1}, "b": {"k": 2}}', "p.json") == {"a": {"k": 1}, "b": {"k": 2}}


@pytest.mark.parametrize("tag", ["!!binary aGk=", "!!timestamp 2024-01-01", "!!python/object:os.system x",
                                 "!!python/name:os.system", "!!set {a}", "!!omap [a: 1]", "!!pairs [a: 1]",
                                 "!custom x", "!!merge x", "!!value x"])
def test_tags_other_than_the_plain_ones_are_refused(tag):
    assert "is not allowed" in refused(f"a: {tag}\n")


def test_no_coercion_of_plain_scalars():
    got = load("a: [2024-01-01, 2001-12-14t21:59:43.10-05:00, 80:443, 1:30:00, 0x10, 010, 1_000, "
               "yes, off, ~, 1.5, '1', !!str 12, !!int '7']\n", "p.yaml")
    assert got == {"a": ["2024-01-01", "2001-12-14t21:59:43.10-05:00", "80:443", "1:30:00", 16, 8,
                         1000, True, False, None, 1.5, "1", "12", 7]}


def test_merge_keys_are_refused():
    text = "base: &b {call: x}\nhook:\n  <<: *b\n  call: y\n"
    assert refused(text) == ("not valid YAML: line 3, column 3: merge keys (<<) are not "
                             "supported; write the fields out")
    assert load("'<<': 1\n", "p.yaml") == {"<<": 1}        # a quoted key is just a key


def test_keys_must_be_strings():
    assert "a mapping key must be a string, not 1" in refused("1: a\n")
    assert "not a list" in refused("? [a]\n: 1\n")
    assert "not true" in refused("on: 1\n")         # YAML 1.1 reads `on` as a boolean
    assert "not null" in refused("~: 1\n")


def test_aliases_are_allowed_and_counted_as_expanded():
    assert load("a: &x [1, 2]\nb: *x\n", "p.yaml") == {"a": [1, 2], "b": [1, 2]}
    many = "a: &x 1\n" + "".join(f"k{i}: *x\n" for i in range(limits.ALIASES))
    assert len(load(many, "p.yaml")) == limits.ALIASES + 1
    assert f"more than {limits.ALIASES} aliases" in refused(many + "last: *x\n")
    laughs = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
        f"{c}: &{c} [" + ", ".join([f"*{p}"] * 9) + "]\n" for p, c in zip("abcdef", "bcdefg"))
    assert f"more than {limits.NODES} values" in refused(laughs)


def test_alias_depth_counts_what_it_stands_for():
    inner = "[" * 20 + "]" * 20
    assert "nested deeper than 32" in refused(f"a: &x {inner}\nb: {'[' * 15}*x{']' * 15}\n")


def test_recursive_and_undefined_aliases_are_refused():
    assert "inside its own anchor" in refused("a: &x [*x]\n")
    assert "has no anchor before it" in refused("a: *x\n")
    assert "defined twice" in refused("a: &x 1\nb: &x 2\n")


@pytest.mark.parametrize("flow", [True, False])
def test_nesting_depth(flow):
    assert load(nested(limits.DEPTH - 1, flow), "p.yaml")
    assert "nested deeper than 32" in refused(nested(limits.DEPTH, flow))
    assert "nested deeper than 32" in refused("[" * 100_000)


def test_json_limits():
    deep_ok = "[" * limits.DEPTH + "]" * limits.DEPTH
    assert load(deep_ok, "p.json")
    assert refused("[" * (limits.DEPTH + 1) + "]" * (limits.DEPTH + 1), "p.json") == \
        "not valid JSON: line 1, column 33: nested deeper than 32 lists and mappings"
    assert "nested deeper" in refused("[" * 200_000, "p.json")
    # Brackets inside strings are text, not nesting.
    assert load('{"a": "' + "[" * 100 + '"}', "p.json") == {"a": "[" * 100}
    assert "NaN is not a JSON number" in refused('{"a": NaN}', "p.json")
    assert "Infinity is not a JSON number" in refused('{"a": -Infinity}', "p.json")
    assert "more than 64 characters" in refused('{"a": ' + "9" * 5000 + "}", "p.json")
    assert f"more than {limits.NODES} values" in refused("[" + "1," * limits.NODES + "1]", "p.json")


def test_huge_and_malformed_integers_are_errors_not_exceptions():
    assert "a number of more than 64 characters" in refused("a: " + "9" * 5000 + "\n")
    assert "'0x_' is not a valid int" in refused("a: !!int 0x_\n")
    assert "is not a valid bool" in refused("a: !!bool maybe\n")


def test_one_document_per_file():
    assert load("---\n---\na: 1\n---\n", "p.yaml") == {"a": 1}
    assert "a second policy document" in refused("a: 1\n---\nb: 2\n")
    assert refused("# nothing\n") == "no policy document in the file"


def test_errors_give_line_and_column_never_the_line():
    secret = "root:$6$saltsaltsalt$hashhashhashhashhash:19000:0:99999:7:::"
    for text in (f"{secret}\n  - [\n", f"a: '{secret}\n", f"a: \"{secret}\\q\"\n",
                 f"{secret}\x01\n", f"a:\n\tb: {secret}\n"):
        reason = refused(text)
        assert secret[:20] not in reason and "^" not in reason, reason
        assert reason.startswith("not valid YAML: line "), reason


def test_text_with_a_lone_surrogate_is_refused():
    assert "lone surrogate" in refused('{"a": "\ud800"}', "p.json")
