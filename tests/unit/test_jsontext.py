"""jsontext.dumps writes what json.JSONEncoder(ensure_ascii=False, compact) writes."""

import json

import pytest

from tetrad import jsontext

REFERENCE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@pytest.mark.parametrize("value", [
    {"a": 1, "b": [1, 2.5, -3, 1 << 70, True, False, None], "c": {"d": "é ☃ \U0001F680"}},
    {"ctl": "\x00\x1f\t\n\r\"\\/\x7f\u2028", "bad": "\udcff"},
    {1: "int key", 2.5: "float key", True: "bool key", None: "null key"},
    [float("inf"), float("-inf"), float("nan"), 1e300, 0.1],
    "plain string", 7, None, [], {}, ("tuple", "as", "list"),
])
def test_same_text_as_json_encoder(value):
    assert jsontext.dumps(value) == REFERENCE(value)


def test_unknown_types_are_refused_as_json_does():
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsontext.dumps({"x": object()})
