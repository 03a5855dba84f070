"""Op codes and flag bits of kernel records; mirrors bpf/tetrad_events.h."""

import enum
import functools


class Op(enum.IntEnum):
    """First byte of every ring buffer record."""

    EXEC = 1
    EXIT = 2
    CLONE = 3
    CGROUP_MKDIR = 4
    CGROUP_RMDIR = 5
    STATE = 6


class ExitHow(enum.IntEnum):
    """How a process ended, as the process sensor could tell."""

    UNKNOWN = 0
    CODE = 1
    SIGNAL = 2


class ProcFlag(enum.IntFlag):
    """Process flags; `TETRAGON_NAMES` gives Tetragon's spelling and order."""

    EXECVE = 0x0001
    PROCFS = 0x0002
    TRUNC_FILENAME = 0x0004
    TRUNC_ARGS = 0x0008
    MISS = 0x0020
    ERROR_FILENAME = 0x0040
    ERROR_ARGS = 0x0080
    NO_CWD_SUPPORT = 0x0100
    ROOT_CWD = 0x0200
    ERROR_CWD = 0x0400
    CLONE = 0x0800
    TRUNC_CWD = 0x1000


TETRAGON_NAMES: tuple[tuple[ProcFlag, str], ...] = (
    (ProcFlag.EXECVE, "execve"),
    (ProcFlag.PROCFS, "procFS"),
    (ProcFlag.TRUNC_FILENAME, "truncFilename"),
    (ProcFlag.TRUNC_ARGS, "truncArgs"),
    (ProcFlag.MISS, "miss"),
    (ProcFlag.ERROR_FILENAME, "errorFilename"),
    (ProcFlag.ERROR_ARGS, "errorArgs"),
    (ProcFlag.NO_CWD_SUPPORT, "noCWDSupport"),
    (ProcFlag.ROOT_CWD, "rootcwd"),
    (ProcFlag.ERROR_CWD, "errorCWD"),
    (ProcFlag.CLONE, "clone"),
    (ProcFlag.TRUNC_CWD, "truncCWD"),
)


@functools.lru_cache(maxsize=512)
def flag_names(flags: int) -> str:
    """Space-separated flag words in Tetragon's order, e.g. "execve rootcwd clone".
    Memoized: a handful of combinations occur, once per event each."""
    return " ".join(name for bit, name in TETRAGON_NAMES if flags & bit)
