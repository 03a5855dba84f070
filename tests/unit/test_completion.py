"""Bash completion (packaging/bash-completion/tetrad) offers what the
command lines take: every command and option of the argparse parsers (the
same list --help prints), the choices of options, and files where files go.
Policy names from the daemon: tests/kernel/test_service.py."""

from __future__ import annotations

import pytest

from tests.completion import complete
from tests.unit.test_manpages import commands
from tetrad.cli import main, tetra
from tetrad.filters import EVENT_SET

PARSERS = {"tetrad": main._parser, "tetra": tetra._parser}


def cases():
    """Each command line to a (sub)command, once by each alias of its last step."""
    for program, parser in PARSERS.items():
        for path, sub in commands(parser()):
            for alias in path[-1] if path else ("",):
                yield " ".join([program, *(names[0] for names in path[:-1]), alias]).strip(), sub


@pytest.mark.parametrize("line, parser", list(cases()), ids=[line for line, _ in cases()])
def test_options_and_commands_are_the_parsers(line, parser):
    options = {o for a in parser._actions for o in a.option_strings}
    assert set(complete(line + " -")) == options
    subcommands = {name for a in parser._actions if not a.option_strings
                   and isinstance(a.choices, dict) for name in a.choices}
    if subcommands:
        assert set(complete(line + " ")) == subcommands


def test_commands_are_found_past_options_and_their_values():
    assert complete("tetra --socket /run/x.sock policy ") == ["list", "add", "delete", "enable",
                                                              "disable"]
    assert "--quiet" in complete("tetrad --log-level debug run --policy-dir /etc --")


@pytest.mark.parametrize("line, offered", [
    ("tetrad --log-level ", {"debug", "info", "warning", "error"}),
    ("tetra getevents -o ", {"compact", "json"}),
    ("tetra status --output ", {"text", "json"}),
    ("tetra getevents --event-types ", set(EVENT_SET)),
    ("tetra getevents --event-types PROCESS_E", {"PROCESS_EXEC", "PROCESS_EXIT"}),
])
def test_option_values(line, offered):
    assert set(complete(line)) == offered


def test_choices_are_the_parsers():
    top = next(p for path, p in commands(main._parser()) if path == ())
    level = next(a for a in top._actions if "--log-level" in a.option_strings)
    assert set(complete("tetrad --log-level ")) == set(level.choices)
    getevents = next(p for path, p in commands(tetra._parser()) if path == (("getevents",),))
    output = next(a for a in getevents._actions if "-o" in a.option_strings)
    assert set(complete("tetra getevents -o ")) == set(output.choices)


def test_policy_files_and_directories(tmp_path):
    for name in ("a.yaml", "b.yml", "c.json", "notes.txt"):
        (tmp_path / name).write_text("")
    (tmp_path / "sub").mkdir()
    assert set(complete("tetrad policy check ", cwd=tmp_path)) == {"a.yaml", "b.yml", "c.json", "sub"}
    assert set(complete("tetra policy add ", cwd=tmp_path)) == {"a.yaml", "b.yml", "c.json", "sub"}
    assert set(complete("tetrad run --policy-dir ", cwd=tmp_path)) == {"sub"}


def test_no_daemon_no_names():
    assert complete("tetra --socket /nonexistent.sock policy delete ") == []
