"""Text from events made safe for one line on a terminal or in journald's
MESSAGE, as Tetragon's `tetra` does it.

Arguments, paths and names come from whoever runs the process: an argument
holding a newline would start a forged line, an ESC sequence would move the
cursor or recolour the screen. `maybe_quote()` leaves a value alone when
every character is printable and none is a space, and otherwise writes it
the way Go's strconv.Quote does (what `tetra -o compact` prints): in double
quotes, `\\n \\t \\" \\\\` and friends, `\\x1b` for other ASCII controls,
`\\u202e`/`\\U000e0001` for other characters that are not printable (format
characters such as bidi overrides, line and paragraph separators,
unassigned code points). Printable means what Go's unicode.IsPrint and
Python's str.isprintable() agree on: letters, marks, numbers, punctuation,
symbols and the ASCII space.
"""

from __future__ import annotations

_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
            "\v": "\\v", '"': '\\"', "\\": "\\\\"}


def _escaped(ch: str) -> str:
    code = ord(ch)
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:          # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if 0xD800 <= code <= 0xDFFF:          # not a character: Go writes U+FFFD
        return "\\ufffd"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def quote(text: str) -> str:
    if text.isprintable():              # the usual case: a command line with spaces
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    out = ['"']
    for ch in text:
        escape = _ESCAPES.get(ch)
        if escape is not None:
            out.append(escape)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(_escaped(ch))
    out.append('"')
    return "".join(out)


def maybe_quote(text: str) -> str:
    if text.isprintable() and " " not in text:
        return text
    return quote(text)
