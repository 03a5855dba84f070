"""Redaction of secrets in process arguments: Tetragon's redaction filters.

Owns one step of the arrow "decode -> process cache": the cache passes each
process's `arguments` text (argv[1:] joined as Tetragon joins them, see
tetrad.process.model.join_arguments) through `Redaction.apply` once, when
the process enters the cache (an exec record or the /proc scan; a clone
shares its parent's text). Every event that names the process or its parent
(exec, exit, policy hits) and every sink (terminal, journald MESSAGE and
TETRAD_JSON, the JSON file, the API stream) then has only the redacted text.
Imported by tetrad.config, which compiles the filters once at load.

A filter has the fields of Tetragon's RedactionFilter:
  redact        regular expressions; in each match, the text of every capture
                group is replaced by "*****" (a group inside one already
                replaced is skipped); (?:...) keeps context visible
  binary_regex  optional; regular expressions searched in the binary's path:
                the filter applies only when one of them matches
Filters apply in order, each to what the one before left. A filter is a
table, or a JSON object as a string (a line of Tetragon's --redaction-filters).

Decided here, where Tetragon is silent or differs:
- Python's `re`, not RE2: the same syntax for groups, classes and (?i); `re`
  also has lookaround and backreferences but backtracks, so a pattern such
  as (a+)+ can be slow on hostile input: keep patterns linear.
- A redact pattern without a capture group would redact nothing (Tetragon
  accepts it silently): here it is a config error, as is Tetragon's
  deprecated `match`.
- As in Tetragon, patterns see the joined text, so one pattern can see
  `--password VALUE` across two arguments; an argument that holds whitespace
  is in double quotes there, with \\" and \\\\ escaped.

Cost: every exec pays for this in the event path. Patterns are compiled
once; the filters that apply to a binary are looked up once per binary
path (a bounded cache); and a prefilter skips the patterns: from each
parsed pattern come literal strings one of which every match contains, and
an ASCII command line that holds none of them (lower-cased) is returned
after a few substring tests. A pattern without such literals always runs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
# re's own parser (in the standard library, private since 3.11): the
# prefilter reads what a pattern must contain from the tree re compiles.
from re import _constants as sre
from re import _parser as sre_parse

REDACTED = "*****"
BINARY_CACHE = 4096             # binary paths whose filters are remembered
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)


class RedactionError(ValueError):
    """A filter is wrong; the message starts with where, e.g. `[2].redact[0]`."""


def required_literals(pattern: re.Pattern) -> tuple[str, ...] | None:
    """Lower-case strings one of which every match of `pattern` contains,
    or None when the pattern has none we can name (then it always runs).
    Only ASCII literals: under re.IGNORECASE some non-ASCII letters match
    ASCII ones (U+212A KELVIN SIGN matches k), which lower() does not map."""
    found = _necessary(sre_parse.parse(pattern.pattern, pattern.flags).data)
    if found is None or not all(s.isascii() for s in found):
        return None
    return tuple(sorted({s.lower() for s in found}))


def _necessary(items) -> list[str] | None:
    """For a parsed sequence: the most selective set of literals (longest
    shortest member) of which any match contains one."""
    best: list[str] | None = None

    def consider(candidates: list[str] | None) -> None:
        nonlocal best
        if candidates and (best is None or min(map(len, candidates)) > min(map(len, best))):
            best = candidates

    run: list[str] = []
    for op, arg in items:
        if op is sre.LITERAL:
            run.append(chr(arg))
            continue
        if run:
            consider(["".join(run)])
            run = []
        if op is sre.SUBPATTERN:
            consider(_necessary(arg[-1]))
        elif op is sre.ATOMIC_GROUP:
            consider(_necessary(arg))
        elif op is sre.ASSERT:           # a positive lookaround must match too
            consider(_necessary(arg[1]))
        elif op in _REPEATS and arg[0] >= 1:
            consider(_necessary(arg[2]))
        elif op is sre.BRANCH:
            alternatives = [_necessary(branch) for branch in arg[1]]
            if all(alternatives):
                consider([s for alt in alternatives for s in alt])
        # anything else (classes, anchors, negative lookaround) names no literal
    if run:
        consider(["".join(run)])
    return best


def _minimal(literals) -> tuple[str, ...]:
    """Drop every literal that contains a shorter one: a text holding the
    longer holds the shorter, so the test stays a necessary condition."""
    out: list[str] = []
    for s in sorted(set(literals), key=len):
        if not any(short in s for short in out):
            out.append(s)
    return tuple(out)


def _censor(m: re.Match) -> str:
    """The match with each capture group's text replaced (Tetragon's rule:
    a group that starts inside one already replaced is skipped)."""
    text, base = m.group(0), m.start()
    out: list[str] = []
    last = 0
    for g in range(1, m.re.groups + 1):
        start, end = m.span(g)
        if start < 0 or start - base < last:
            continue
        out.append(text[last:start - base])
        out.append(REDACTED)
        last = end - base
    out.append(text[last:])
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Rule:
    """One redact pattern and its prefilter literals (None: always runs)."""

    pattern: re.Pattern
    literals: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class RedactionFilter:
    rules: tuple[Rule, ...]
    binaries: tuple[re.Pattern, ...] = ()

    @classmethod
    def parse(cls, raw, where: str) -> "RedactionFilter":
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError as err:
                raise RedactionError(f"{where}: not a JSON object: {err}") from None
        if not isinstance(raw, dict):
            raise RedactionError(f"{where}: a filter is a table with `redact` "
                                 "(and optionally `binary_regex`)")
        unknown = sorted(set(raw) - {"redact", "binary_regex"})
        if "match" in unknown:
            raise RedactionError(f"{where}: `match` is deprecated in Tetragon and not supported; "
                                 "use `binary_regex`")
        if unknown:
            raise RedactionError(f"{where}: unknown keys {unknown} (known: binary_regex, redact)")
        redact = _patterns(raw.get("redact"), f"{where}.redact")
        if not redact:
            raise RedactionError(f"{where}.redact: give at least one regular expression")
        for i, pattern in enumerate(redact):
            if not pattern.groups:
                raise RedactionError(f"{where}.redact[{i}]: no capture group, so it would redact "
                                     "nothing; put what to hide in (...) and context in (?:...)")
        binaries = _patterns(raw.get("binary_regex", []), f"{where}.binary_regex")
        return cls(tuple(Rule(p, required_literals(p)) for p in redact), tuple(binaries))

    def applies_to(self, binary: str) -> bool:
        return not self.binaries or any(p.search(binary) for p in self.binaries)


def _patterns(values, where: str) -> list[re.Pattern]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise RedactionError(f"{where}: must be a list of regular expressions (strings)")
    out = []
    for i, text in enumerate(values):
        try:
            out.append(re.compile(text))
        except re.error as err:
            # The position, not the text: config errors never quote file content.
            raise RedactionError(f"{where}[{i}]: not a valid regular expression: {err.msg}"
                                 f"{f' at position {err.pos}' if err.pos is not None else ''}") from None
    return out


@dataclass(frozen=True, slots=True)
class _RuleSet:
    """The rules for one binary, in filter order, with their prefilter."""

    rules: tuple[Rule, ...]
    literals: tuple[str, ...] | None     # None: some rule always runs

    @classmethod
    def of(cls, rules: tuple[Rule, ...]) -> "_RuleSet":
        if any(r.literals is None for r in rules):
            return cls(rules, None)
        return cls(rules, _minimal(s for r in rules for s in r.literals))

    def apply(self, text: str) -> str:
        lowered = text.lower() if text.isascii() else None
        if lowered is not None and self.literals is not None:
            for s in self.literals:
                if s in lowered:
                    break
            else:
                return text
        for rule in self.rules:
            if lowered is not None and rule.literals is not None and \
                    not any(s in lowered for s in rule.literals):
                continue
            text, n = rule.pattern.subn(_censor, text)
            if n and lowered is not None:
                lowered = text.lower()
        return text


class Redaction:
    """An ordered list of redaction filters, compiled; `apply` is the only
    thing the process cache calls. Equal filters compare equal (config)."""

    def __init__(self, filters: tuple[RedactionFilter, ...] = ()):
        self.filters = tuple(filters)
        self._unscoped = _RuleSet.of(tuple(r for f in self.filters for r in f.rules)) \
            if not any(f.binaries for f in self.filters) else None
        self._by_binary: dict[str, _RuleSet] = {}

    @classmethod
    def parse(cls, value) -> "Redaction":
        """From the config value: a list of filters (tables or JSON strings)."""
        if not isinstance(value, list):
            raise RedactionError(": must be a list of filters ([[redaction_filters]] tables)")
        return cls(tuple(RedactionFilter.parse(raw, f"[{i}]") for i, raw in enumerate(value)))

    def __eq__(self, other) -> bool:
        return isinstance(other, Redaction) and self.filters == other.filters

    def __hash__(self) -> int:
        return hash(self.filters)

    def __repr__(self) -> str:
        return f"Redaction({len(self.filters)} filters)"

    def apply(self, binary: str, arguments: str) -> str:
        """`arguments` with what the filters select replaced by *****."""
        if not arguments or not self.filters:
            return arguments
        rules = self._unscoped if self._unscoped is not None else self._by_binary.get(binary)
        if rules is None:
            rules = _RuleSet.of(tuple(r for f in self.filters if f.applies_to(binary) for r in f.rules))
            if len(self._by_binary) >= BINARY_CACHE:
                self._by_binary.clear()
            self._by_binary[binary] = rules
        return rules.apply(arguments) if rules.rules else arguments
