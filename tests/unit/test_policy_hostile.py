"""The corpus of policy files that ever broke the parser (tests/policies/hostile/).

Each killed the daemon, hung or exhausted `tetrad policy check`, changed
what a policy means, or leaked file content into a message (issues 12 and
13; the fuzzer in test_policy_fuzz.py found gt-on-file.yaml). A file
named NAME.recipe is a short JSON recipe for a big file NAME: `parts` is a
list of [text, times], `indented` a [line, levels] block map.

Every file goes through `tetrad policy check`'s code and through the
daemon's policy directory; each must be refused as that file's own error,
with its reason, and without a line of it in the message.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from tetrad.cli.policy import INVALID, check_file
from tetrad.policy import registry as reg
from tetrad.policy.compile import compile_policy
from tetrad.policy.directory import PolicyDirectory
from tetrad.policy.registry import PolicyRegistry
from tests.unit.test_policy_fuzz import FACTS

CORPUS = Path(__file__).parents[1] / "policies" / "hostile"
EXPECTED = {
    "action-map.yaml": "action must be a string",
    "address-quoted.yaml": "is not an IPv4 or IPv6 address",
    "argerror-wrap.yaml": "4294967295 is out of range -4095..-1",
    "bad-int-literal.yaml": "line 10, column 14: '0x_' is not a valid int",
    "billion-laughs.yaml": "more than 100000 values",
    "binary-prefix.yaml": "line 16, column 18: tag '!!binary' is not allowed",
    "bool-string.yaml": "must be a string, not a boolean",
    "call-unhashable.yaml": "call: must be a string, not a mapping",
    "deep-block-map.yaml": "nested deeper than 32",
    "deep-flow-map.yaml": "nested deeper than 32",
    "deep-flow-seq.yaml": "nested deeper than 32",
    "deep.json": "nested deeper than 32",
    "duplicate-key.json": "line 2, column 34: duplicate key 'name'",
    "duplicate-name.yaml": "line 5, column 3: duplicate key 'name'",
    "gt-on-file.yaml": "operator 'GT' does not apply to a file argument",
    "huge-int.json": "an integer of more than 64 characters",
    "huge-int.yaml": "a number of more than 64 characters",
    "int-2-64.yaml": "18446744073709551616 can never match: outside 0..18446744073709551615",
    "merge-key.yaml": "merge keys (<<) are not supported",
    "nan.json": "NaN is not a JSON number",
    "not-utf8.yaml": "not UTF-8 (line 16, byte offset 280)",
    "operator-list.yaml": "operator must be a string",
    "pid-wrap.yaml": "4294994151 is out of range 0..4294967295",
    "ratelimit-wrap.yaml": "359999999996400 seconds is out of range 0..4294967295",
    "recursive-alias.yaml": "inside its own anchor",
    "surrogate.json": "lone surrogate",
    "too-large.yaml": "more than the 1048576 a policy may have",
    "tracepoint-traversal.yaml": "is not a tracepoint subsystem",
    "type-list.yaml": "type: type must be a string",
}


def expand(recipe: Path, directory: Path) -> Path:
    spec = json.loads(recipe.read_text())
    text = "".join(part * times for part, times in spec["parts"])
    if "indented" in spec:
        line, levels = spec["indented"]
        text += "".join("  " * i + line + "\n" for i in range(levels))
    target = directory / recipe.name.removesuffix(".recipe")
    target.write_text(text)
    return target


def materialize(directory: Path) -> dict[str, Path]:
    files = {}
    for path in sorted(CORPUS.iterdir()):
        if path.name.endswith(".recipe"):
            target = expand(path, directory)
        else:
            target = directory / path.name
            shutil.copyfile(path, target)
        target.chmod(0o644)
        files[target.name] = target
    return files


def assert_quotes_no_content(message: str, content: bytes) -> None:
    """No 40 characters of the message appear in the file (an excerpt is
    at most 32, plus quotes)."""
    text = content.decode("utf-8", "replace")
    for line in message.splitlines():
        reason = line.split(": ", 1)[-1]        # after the file name
        for i in range(len(reason) - 39):
            assert reason[i:i + 40] not in text, line


def test_every_corpus_file_has_an_expectation(tmp_path):
    assert set(materialize(tmp_path)) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_check_refuses_each_with_its_reason(name, tmp_path):
    path = materialize(tmp_path)[name]
    verdict, line = check_file(str(path), as_root=False)
    assert verdict == INVALID and line.startswith(f"ERROR {path}: ")
    assert EXPECTED[name] in line
    assert_quotes_no_content(line, path.read_bytes())


def test_the_daemon_directory_refuses_each_and_keeps_running(tmp_path, caplog):
    directory = tmp_path / "policies.d"
    directory.mkdir()
    materialize(directory)
    loaded = []

    def load(policy):
        compile_policy(policy, FACTS)
        loaded.append(policy.source)
        return policy

    class Loader:                       # compiles as the daemon's loader does, loads nothing
        def load(self, policy):
            return load(policy)

        def unload(self, handle):
            pass
    registry = PolicyRegistry(Loader())
    desired = PolicyDirectory(str(directory), require_root=False).scan()
    with caplog.at_level(logging.ERROR):
        registry.reconcile(reg.DIRECTORY, desired)   # nothing escapes: each failure is that file's
    assert loaded == []
    entries = registry.entries()
    assert {Path(e.source).name for e in entries} == set(EXPECTED)
    for entry in entries:
        name = Path(entry.source).name
        assert EXPECTED[name] in entry.error, (name, entry.error)
        assert_quotes_no_content(entry.error, Path(entry.source).read_bytes())
