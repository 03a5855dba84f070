"""Helpers for tests of compiled policies: the tables one compiled hook
gets at an attach point of its own (tetrad/policy/points.py)."""

from tetrad.abi import generic as enc
from tetrad.policy.points import PointTables, Tables


def alone(ch, hook_id: int = 0, lpoint: int = 1) -> Tables:
    pt = PointTables(lpoint)
    pt.add(hook_id, ch)
    return pt.tables()


def hook_struct(ch) -> enc.Hook:
    return enc.Hook.from_buffer_copy(alone(ch).hooks[0])


def int_tests(ch) -> list[enc.IPred]:
    """The point's integer predicates, in bit order."""
    p = enc.Point.from_buffer_copy(alone(ch).point)
    return sorted((p.pred[i] for i in range(p.npreds)), key=lambda q: q.bit)


def pid_entries(ch) -> dict[int, enc.PidBits]:
    return {enc.PidKey.from_buffer_copy(k).pid: enc.PidBits.from_buffer_copy(v)
            for k, v in alone(ch).entries["pid_sel"].items()}


def bits(words) -> int:
    return sum(words[i] << (64 * i) for i in range(enc.WORDS))
