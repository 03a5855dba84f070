"""Timestamps: kernel monotonic ktime -> wall clock -> RFC 3339 text.

BPF stamps records with bpf_ktime_get_ns() (CLOCK_MONOTONIC). `KtimeClock`
measures the offset to the wall clock once, so every conversion is one
addition. `rfc3339()` writes a timestamp as protojson does (Tetragon's JSON
export): UTC with a `Z` and 0, 3, 6 or 9 fractional digits, as few as hold
the value; `rfc3339_nano()` always writes 9, as `tetra --timestamps` prints.
"""

from __future__ import annotations

import time


class KtimeClock:
    """Converts kernel ktime (CLOCK_MONOTONIC ns) to wall-clock ns."""

    def __init__(self, wall_ns=time.time_ns, mono_ns=time.monotonic_ns):
        self._offset = wall_ns() - mono_ns()

    def wall_ns(self, ktime: int) -> int:
        return ktime + self._offset


# (second, its formatted date part); replaced as one tuple so threads never
# see a second paired with another second's text.
_last = (-1, "")


def _date(seconds: int) -> str:
    global _last
    last_second, prefix = _last
    if seconds != last_second:
        # Formatting the date part is the slow bit; events come in bursts
        # within the same second, so remember the last one.
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _last = (seconds, prefix)
    return prefix


def rfc3339(wall_ns: int) -> str:
    """e.g. 2023-11-15T21:09:01.365214693Z, 2023-11-15T21:09:01.365Z,
    2023-11-15T21:09:01Z"""
    seconds, nanos = divmod(wall_ns, 1_000_000_000)
    if not nanos:
        return f"{_date(seconds)}Z"
    if not nanos % 1_000_000:
        return f"{_date(seconds)}.{nanos // 1_000_000:03d}Z"
    if not nanos % 1_000:
        return f"{_date(seconds)}.{nanos // 1_000:06d}Z"
    return f"{_date(seconds)}.{nanos:09d}Z"


def rfc3339_nano(wall_ns: int) -> str:
    """Always nine fractional digits: 2023-11-15T21:09:01.000000000Z"""
    seconds, nanos = divmod(wall_ns, 1_000_000_000)
    return f"{_date(seconds)}.{nanos:09d}Z"
