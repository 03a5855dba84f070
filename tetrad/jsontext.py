"""JSON text of events: compact separators, UTF-8 kept as is (not \\u escapes).

`dumps(obj)` writes what `json.JSONEncoder(ensure_ascii=False,
separators=(",", ":")).encode(obj)` writes. That method builds json's C
encoder again on every call and keeps a table of the containers it has
entered to detect cycles; here the C encoder is built once and events,
which are trees, are not checked for cycles (the C encoder still stops at
Python's recursion limit). Falls back to JSONEncoder where the C
accelerator is missing.
"""

from __future__ import annotations

import json
import json.encoder
from typing import Any, Callable

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _make_dumps() -> Callable[[Any], str]:
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _ENCODER.encode
    # (markers, default, encoder, indent, key separator, item separator,
    #  sort_keys, skipkeys, allow_nan): the settings of _ENCODER, no markers.
    encode = make(None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",",
                  False, False, True)
    join = "".join
    return lambda obj: join(encode(obj, 0))


dumps = _make_dumps()
