"""The man pages (debian/tetrad.8, debian/tetra.8) say what --help says:
every command and option of the command lines, and every exit status.
(lintian, run by tests/packaging, checks that they render cleanly.)"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from tetrad.api import client
from tetrad.cli import main, tetra

DEBIAN = Path(__file__).resolve().parents[2] / "debian"
PAGES = {"tetrad": (main._parser, main.EXIT_STATUSES), "tetra": (tetra._parser, client.EXIT_STATUSES)}


def commands(parser: argparse.ArgumentParser, path: tuple[tuple[str, ...], ...] = ()):
    """(the command's path, its parser) for the program and every
    subcommand, as argparse builds --help from them; each step of a path is
    the subcommand's name and its aliases: (("policy", "tp"), ("add",))."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: dict[int, list[str]] = {}
            for name, sub in action.choices.items():
                seen.setdefault(id(sub), []).append(name)
            for names in seen.values():
                yield from commands(action.choices[names[0]], path + (tuple(names),))


def page_text(program: str) -> str:
    """The page's text with groff's escapes for '-' and fonts taken out."""
    text = (DEBIAN / f"{program}.8").read_text()
    return re.sub(r"\\f[BIRP]", "", text.replace("\\-", "-"))


def mentioned(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


@pytest.mark.parametrize("program", PAGES)
def test_every_command_and_option_of_help_is_in_the_man_page(program):
    text = page_text(program)
    missing = []
    for path, parser in commands(PAGES[program][0]()):
        help_text = parser.format_help()                  # what --help prints
        missing += [f"command {name}" for names in path for name in names if not mentioned(text, name)]
        for action in parser._actions:
            for option in action.option_strings:
                assert option in help_text
                if not mentioned(text, option):
                    missing.append(f"{' '.join([program] + [n[0] for n in path])} {option}")
    assert missing == [], f"debian/{program}.8 lacks: {missing}"


@pytest.mark.parametrize("program", PAGES)
def test_exit_statuses_of_help_and_man_page_are_the_same(program):
    parser, statuses = PAGES[program][0](), PAGES[program][1]
    epilog = parser.format_help().split("exit status:", 1)[1]
    in_help = {int(code) for code in re.findall(r"^  (\d+) ", epilog, re.M)}
    section = page_text(program).split(".SH EXIT STATUS", 1)[1].split("\n.SH ", 1)[0]
    in_page = {int(code) for code in re.findall(r"^\.TP\n\.B (\d+)$", section, re.M)}
    assert in_help == set(statuses) == in_page
