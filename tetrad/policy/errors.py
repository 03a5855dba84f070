"""PolicyError, and how a problem names a value without quoting the file.

The bottom of tetrad.policy: imported by the reader (source.py), the
loader (document.py), the validator (schema.py, which re-exports
PolicyError) and the compiler. A policy file may be anything a hostile
administrator or a broken disk hands us, including a hard link to a secret,
so a message names a value by its type, or by a short escaped excerpt when
it is a string: never the raw text of the file, and never more than a few
dozen characters of it.
"""

from __future__ import annotations

import re

EXCERPT_CHARS = 32
NUMBER_DIGITS = 24          # integers longer than this are described by their size


class PolicyError(Exception):
    """One or more problems with a policy file; the message lists them all,
    each as `FILE: YAML.PATH: reason`."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {path + ': ' if path else ''}{reason}" for path, reason in problems]
        super().__init__("\n".join(lines))


def kind_of(value) -> str:
    """What a parsed value is, in the words of a YAML author."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def describe(value) -> str:
    """A value as a message may show it: strings as a short escaped excerpt,
    booleans and short integers as written, anything else by its kind."""
    if isinstance(value, str):
        shown = repr(value[:EXCERPT_CHARS])
        return shown + ("..." if len(value) > EXCERPT_CHARS else "")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if -10 ** NUMBER_DIGITS < value < 10 ** NUMBER_DIGITS:
            return str(value)
        return f"an integer of more than {NUMBER_DIGITS} digits"
    return kind_of(value)


def path_key(key) -> str:
    """A mapping key as a YAML path shows it: as written when it is a short
    plain word, else as an escaped excerpt."""
    if isinstance(key, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,32}", key):
        return key
    return describe(key)
