import pytest

from tetrad.timefmt import KtimeClock, rfc3339, rfc3339_nano
from tetrad.process.model import binary_path, join_arguments


@pytest.mark.parametrize("args,text", [
    (("-c", "curl -I https://x"), '-c "curl -I https://x"'),
    (("a", "", "b"), 'a "" b'),
    (('say "hi" now',), '"say \\"hi\\" now"'),
    (("tab\there",), '"tab\there"'),
    ((), ""),
])
def test_join_arguments_quotes_like_tetragon(args, text):
    assert join_arguments(args) == text


def test_binary_prefers_kernel_path_then_makes_filename_absolute():
    assert binary_path("/usr/bin/true", "/bin/true", "/") == "/usr/bin/true"
    assert binary_path("", "./x", "/tmp/d") == "/tmp/d/x"
    assert binary_path("", "/bin/x", "/tmp") == "/bin/x"


@pytest.mark.parametrize("ns,text", [
    (1_700_000_000_123_456_789, "2023-11-14T22:13:20.123456789Z"),
    (1_700_000_001_000_000_001, "2023-11-14T22:13:21.000000001Z"),
    (1_700_000_001_120_000_000, "2023-11-14T22:13:21.120Z"),
    (1_700_000_001_000_001_000, "2023-11-14T22:13:21.000001Z"),
    (1_700_000_001_000_000_000, "2023-11-14T22:13:21Z"),
    (0, "1970-01-01T00:00:00Z"),
])
def test_rfc3339_with_as_many_digits_as_protojson_writes(ns, text):
    assert rfc3339(ns) == text


def test_rfc3339_nano_has_nine_digits_always():
    assert rfc3339_nano(1_700_000_001_000_000_000) == "2023-11-14T22:13:21.000000000Z"


def test_ktime_clock_offset():
    clock = KtimeClock(wall_ns=lambda: 1_000_000, mono_ns=lambda: 400)
    assert clock.wall_ns(500) == 1_000_100
