"""Policy text -> plain values (dict, list, str, int, float, bool, None), strictly.

Owns the step between reading a file (source.py) and validating it
(schema.py). PyYAML's safe_load builds whatever the text describes: it
recurses until RecursionError on deep nesting, keeps the last of two equal
keys (a duplicate `name:` silently renamed a policy), turns `!!binary` into
bytes and `2024-01-01` into a date, reads `1:30` as the base-60 number 90,
and expands aliases without bound when the result is walked. This module
builds values itself from the parser's events, so every limit holds before
anything is built:

YAML (1.1, as Tetragon reads it through Kubernetes' yaml library)
- Nesting is at most limits.DEPTH lists/mappings, aliases expanded.
- Anchors and aliases are allowed, at most limits.ALIASES aliases, and an
  alias counts as everything it stands for: the whole document, expanded,
  holds at most limits.NODES values (billion laughs is refused, not built).
  An alias to its own anchor (a recursive structure) is refused.
- A key appears once per mapping, and keys are strings.
- Merge keys (`<<: *base`) are refused: a merge overrides keys silently,
  the problem duplicate keys have; write the fields out.
- Plain scalars resolve as in YAML 1.1 to null, booleans, integers and
  floats, except that nothing becomes a timestamp (`2024-01-01` stays the
  string as written), and base-60 numbers stay strings (`80:443`, as port
  ranges are written, is not 48443).
- Explicit tags: only !!str, !!int, !!float, !!bool, !!null, !!seq and
  !!map. !!binary, !!timestamp, !!set, !!omap, !!pairs, !!python/... and
  application tags are refused.
- One document per file (empty documents are ignored).

JSON: the same depth, count, key and integer rules, checked on the text
before json.loads (which recurses) builds anything; NaN and Infinity are
refused.

Errors say "line L, column C: problem" and never quote the line.
"""

from __future__ import annotations

import json
import re

import yaml
from yaml.events import (AliasEvent, MappingEndEvent, ScalarEvent,
                         SequenceEndEvent, SequenceStartEvent, StreamEndEvent)

from tetrad.policy import limits
from tetrad.policy.errors import PolicyError, describe

try:
    from yaml.cyaml import CParser as _Parser          # libyaml: 3x faster, same events
except ImportError:                                     # PyYAML built without libyaml
    class _Parser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
        def __init__(self, stream):
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)

TAG = "tag:yaml.org,2002:"
SCALAR_TAGS = {TAG + t for t in ("str", "int", "float", "bool", "null")}

# YAML 1.1's resolvers (PyYAML's), without base 60.
_INT = re.compile(r"""[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+""", re.X)
_FLOAT = re.compile(r"""[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN)""", re.X)
_BOOL = {v: True for v in ("yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON")}
_BOOL.update({v: False for v in ("no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF")})
_NULL = {"", "~", "null", "Null", "NULL"}


class _Refused(Exception):
    """A problem with the text, its position already in the message."""


def _at(mark, problem: str) -> _Refused:
    return _Refused(f"line {mark.line + 1}, column {mark.column + 1}: {problem}")


def _at_index(text: str, index: int, problem: str) -> _Refused:
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return _Refused(f"line {line}, column {column}: {problem}")


def yaml_int(text: str) -> int:
    """A YAML 1.1 integer (0b, 0x, leading-0 octal, `_` separators)."""
    digits = text.replace("_", "")
    sign = -1 if digits.startswith("-") else 1
    digits = digits.lstrip("+-")
    if digits.startswith("0b"):
        return sign * int(digits[2:], 2)
    if digits.startswith("0x"):
        return sign * int(digits[2:], 16)
    if len(digits) > 1 and digits.startswith("0"):
        return sign * int(digits, 8)
    return sign * int(digits)


def _yaml_float(text: str) -> float:
    digits = text.replace("_", "").lower()
    return float(digits.replace(".inf", "inf").replace(".nan", "nan"))


def _tag_name(tag: str) -> str:
    return describe("!!" + tag[len(TAG):] if tag.startswith(TAG) else tag)


class _Composer:
    """Values from one YAML stream's events, counting as it goes."""

    def __init__(self, text: str):
        self.parser = _Parser(text)
        self.anchors: dict[str, tuple[object, int, int]] = {}   # value, height, size
        self.open: set[str] = set()
        self.aliases = 0
        self.nodes = 0

    def documents(self) -> list:
        self.parser.get_event()                         # StreamStart
        docs = []
        while not self.parser.check_event(StreamEndEvent):
            start = self.parser.get_event()             # DocumentStart
            self.anchors = {}
            value, _, _ = self.node(0)
            self.parser.get_event()                     # DocumentEnd
            if value is not None:
                docs.append(value)
            if len(docs) > 1:
                raise _at(start.start_mark, "a second policy document; put one policy in each file")
        return docs

    def count(self, mark, size: int) -> None:
        self.nodes += size
        if self.nodes > limits.NODES:
            raise _at(mark, f"more than {limits.NODES} values (an alias counts as all it stands for)")

    def node(self, depth: int) -> tuple[object, int, int]:
        """The next value, its height (nested collections in it, itself
        included) and its size (values in it, aliases expanded). `depth` is
        the number of collections around it."""
        event = self.parser.get_event()
        mark = event.start_mark
        if isinstance(event, AliasEvent):
            return self.alias(event, depth)
        if event.anchor is not None and (event.anchor in self.anchors or event.anchor in self.open):
            raise _at(mark, f"anchor &{describe(event.anchor)} is defined twice")
        self.count(mark, 1)
        if isinstance(event, ScalarEvent):
            result = (self.scalar(event), 0, 1)
        elif depth >= limits.DEPTH:
            raise _at(mark, f"nested deeper than {limits.DEPTH} lists and mappings")
        else:
            if event.anchor is not None:
                self.open.add(event.anchor)
            if isinstance(event, SequenceStartEvent):
                result = self.sequence(event, depth + 1)
            else:
                result = self.mapping(event, depth + 1)
            self.open.discard(event.anchor)
        if event.anchor is not None:
            self.anchors[event.anchor] = result
        return result

    def alias(self, event, depth: int) -> tuple[object, int, int]:
        mark = event.start_mark
        if event.anchor in self.open:
            raise _at(mark, f"alias *{describe(event.anchor)} is inside its own anchor "
                            "(a recursive structure)")
        if event.anchor not in self.anchors:
            raise _at(mark, f"alias *{describe(event.anchor)} has no anchor before it")
        self.aliases += 1
        if self.aliases > limits.ALIASES:
            raise _at(mark, f"more than {limits.ALIASES} aliases")
        value, height, size = self.anchors[event.anchor]
        if depth + height > limits.DEPTH:
            raise _at(mark, f"nested deeper than {limits.DEPTH} lists and mappings "
                            "(aliases counted as expanded)")
        self.count(mark, size)
        return value, height, size

    def _collection_tag(self, event, tag: str) -> None:
        if event.tag not in (None, "!", TAG + tag):
            raise _at(event.start_mark, f"tag {_tag_name(event.tag)} is not allowed here "
                                        "(tetrad reads plain YAML: no tags but !!str, !!int, "
                                        "!!float, !!bool, !!null, !!seq, !!map)")

    def sequence(self, event, depth: int) -> tuple[list, int, int]:
        self._collection_tag(event, "seq")
        items, height, size = [], 1, 1
        while not self.parser.check_event(SequenceEndEvent):
            value, h, s = self.node(depth)
            items.append(value)
            height, size = max(height, h + 1), size + s
        self.parser.get_event()
        return items, height, size

    def mapping(self, event, depth: int) -> tuple[dict, int, int]:
        self._collection_tag(event, "map")
        out, height, size = {}, 1, 1
        while not self.parser.check_event(MappingEndEvent):
            key_event = self.parser.peek_event()
            key, _, _ = self.node(depth)
            if not isinstance(key_event, ScalarEvent) or not isinstance(key, str):
                raise _at(key_event.start_mark, f"a mapping key must be a string, not "
                                                f"{describe(key)}")
            if key == "<<" and key_event.tag is None and key_event.implicit[0]:
                raise _at(key_event.start_mark, "merge keys (<<) are not supported; "
                                                "write the fields out")
            if key in out:
                raise _at(key_event.start_mark, f"duplicate key {describe(key)} in this mapping")
            value, h, s = self.node(depth)
            out[key] = value
            height, size = max(height, h + 1), size + s + 1
        self.parser.get_event()
        return out, height, size

    def scalar(self, event):
        text, tag = event.value, event.tag
        if tag in (None, "!"):
            plain = tag is None and event.implicit[0]
            tag = self.resolve(text) if plain else TAG + "str"
        if tag not in SCALAR_TAGS:
            raise _at(event.start_mark, f"tag {_tag_name(tag)} is not allowed (tetrad reads plain "
                                        "YAML: no tags but !!str, !!int, !!float, !!bool, !!null)")
        kind = tag[len(TAG):]
        if kind in ("int", "float") and len(text) > limits.NUMBER_CHARS:
            raise _at(event.start_mark, f"a number of more than {limits.NUMBER_CHARS} characters")
        try:
            if kind == "str":
                return text
            if kind == "int":
                return yaml_int(text)
            if kind == "float":
                return _yaml_float(text)
            if kind == "bool":
                return _BOOL[text]
            if text not in _NULL:
                raise ValueError("not null")
            return None
        except (ValueError, KeyError):
            raise _at(event.start_mark, f"{describe(text)} is not a valid {kind}") from None

    @staticmethod
    def resolve(text: str) -> str:
        if text in _NULL:
            return TAG + "null"
        if text in _BOOL:
            return TAG + "bool"
        if _INT.fullmatch(text):
            return TAG + "int"
        if _FLOAT.fullmatch(text):
            return TAG + "float"
        return TAG + "str"


def _yaml_problem(text: str, err: yaml.YAMLError) -> _Refused:
    """PyYAML's own message without the snippet of the line it quotes."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or getattr(err, "reason", None) or "syntax error"
    problem = problem.encode("ascii", "backslashreplace").decode()[:120]
    if mark is not None:
        return _at(mark, problem)
    position = getattr(err, "position", None)          # a ReaderError: an index into the text
    return _at_index(text, position, problem) if position is not None else _Refused(problem)


def load_yaml(text: str) -> list:
    """The documents of a YAML stream (empty ones left out)."""
    try:
        return _Composer(text).documents()
    except yaml.YAMLError as err:
        raise _yaml_problem(text, err) from None


# ---- JSON ---------------------------------------------------------------------

# What the pre-scan needs to see: strings whole (a key when a colon follows),
# brackets and commas. Inside a string nothing counts.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"(\s*:)?|[\[\]{},]', re.S)


def _scan_json(text: str) -> None:
    """Depth, value count and duplicate keys, on the text: json.loads
    recurses and keeps the last of two keys."""
    keys: list[set | None] = []            # per open bracket: the object's keys, or None
    nodes = 1
    for m in _JSON_TOKEN.finditer(text):
        token = m.group(0)
        if token in ("[", "{"):
            keys.append(set() if token == "{" else None)
            nodes += 1
            if len(keys) > limits.DEPTH:
                raise _at_index(text, m.start(), f"nested deeper than {limits.DEPTH} lists "
                                                 "and mappings")
        elif token in ("]", "}"):
            if keys:
                keys.pop()
        elif token == ",":
            nodes += 1
        elif m.group(1) and keys and keys[-1] is not None:
            try:
                key = json.loads(token[: m.start(1) - m.start()])
            except ValueError:
                continue                    # json.loads reports it
            if key in keys[-1]:
                raise _at_index(text, m.start(), f"duplicate key {describe(key)} in this object")
            keys[-1].add(key)
        if nodes > limits.NODES:
            raise _at_index(text, m.start(), f"more than {limits.NODES} values")


def _json_int(text: str) -> int:
    if len(text) > limits.NUMBER_CHARS:
        raise ValueError(f"an integer of more than {limits.NUMBER_CHARS} characters")
    return int(text)


def _json_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def load_json(text: str):
    _scan_json(text)
    try:
        return json.loads(text, parse_int=_json_int, parse_constant=_json_constant)
    except json.JSONDecodeError as err:
        raise _Refused(f"line {err.lineno}, column {err.colno}: {err.msg}") from None
    except ValueError as err:               # from the hooks above, which know no position
        raise _Refused(str(err)) from None


def load(text: str, source: str):
    """The one policy document of `text`: JSON when `source` ends in .json,
    else YAML. Raises PolicyError."""
    json_file = source.endswith(".json")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:     # text from the API, not from a file's bytes
        raise PolicyError(source, [("", f"not valid text: a lone surrogate at character "
                                        f"{err.start}")]) from None
    try:
        if json_file:
            return load_json(text)
        docs = load_yaml(text)
    except _Refused as err:
        raise PolicyError(source, [("", f"not valid {'JSON' if json_file else 'YAML'}: {err}")]) from None
    if len(docs) != 1:
        raise PolicyError(source, [("", "no policy document in the file")])
    return docs[0]
