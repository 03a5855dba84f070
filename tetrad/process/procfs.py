"""Processes that were running before tetrad started, read from /proc.

The scan runs once, after the sensor is attached (so nothing falls between
the two): each process becomes a cache entry with the `procFS` flag and an
execve_map entry, so its later events and exit name it and its parent.

Identity: Tetragon's exec_id for such a process uses its start time from
/proc/<pid>/stat (clock ticks since boot) in nanoseconds, which is also what
the kernel side is told, so the exit record finds the same key.

Credentials come from /proc/<pid>/status (ids as the daemon's user
namespace sees them: the kernel's own ids when the daemon runs in the
initial one) and namespaces from /proc/<pid>/ns, as Tetragon reads them;
/proc shows neither the securebits nor the owner and depth of the user
namespace, which these processes therefore lack (also in the kernel's
execve_map). Their values "at exec" are those of the scan.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import psutil

from tetrad.decode.process import STATE_CREDS, STATE_NS, ProcState
from tetrad.process.annotate import read_namespaces
from tetrad.process.cache import ProcfsEntry

log = logging.getLogger(__name__)

KTHREADD_PID = 2
UNSET_AUID = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class ScanResult:
    entries: list[ProcfsEntry]
    threads: dict[int, int]       # pid -> live threads, for the kernel's counter
    skipped: int                  # vanished while scanned, or unreadable


def cgroup_v2_path(cgroup_file: str) -> str:
    """The unified-hierarchy path from /proc/PID/cgroup ("" if none)."""
    for line in cgroup_file.splitlines():
        if line.startswith("0::"):
            return line[3:].strip()
    return ""


def start_ticks(stat_line: str) -> int:
    """Field 22 (starttime) of /proc/<pid>/stat; comm may contain spaces and ')'."""
    fields = stat_line.rpartition(")")[2].split()
    return int(fields[19])


def state_from_status(status: str, ns: tuple[int, ...]) -> ProcState:
    """Credentials from the text of /proc/PID/status (Uid:/Gid: real,
    effective, saved, filesystem; CapInh/CapPrm/CapEff in hex) and the
    namespaces' inode numbers."""
    fields = {}
    for line in status.splitlines():
        key, sep, value = line.partition(":")
        if sep and key in ("Uid", "Gid", "CapInh", "CapPrm", "CapEff"):
            fields[key] = value.split()
    uid, euid, suid, fsuid = (int(v) for v in fields["Uid"][:4])
    gid, egid, sgid, fsgid = (int(v) for v in fields["Gid"][:4])
    caps = {k: int(fields[k][0], 16) for k in ("CapInh", "CapPrm", "CapEff")}
    return ProcState(known=STATE_CREDS | (STATE_NS if any(ns) else 0), securebits=0,
                     uid=uid, gid=gid, suid=suid, sgid=sgid, euid=euid, egid=egid,
                     fsuid=fsuid, fsgid=fsgid, permitted=caps["CapPrm"],
                     effective=caps["CapEff"], inheritable=caps["CapInh"],
                     user_ns_level=0, user_ns_owner=0, user_ns_group=0, ns=ns)


class ProcfsScanner:
    """Reads /proc; `proc_root` and clocks are injectable for tests."""

    def __init__(self, proc_root: str = "/proc", clk_tck: int | None = None,
                 boot_wall_ns: int | None = None):
        self._root = proc_root
        self._tick_ns = 1_000_000_000 // (clk_tck or os.sysconf("SC_CLK_TCK"))
        if boot_wall_ns is None:
            boot_wall_ns = time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        self._boot_wall_ns = boot_wall_ns

    def _read(self, pid: int, name: str) -> str:
        with open(f"{self._root}/{pid}/{name}", encoding="utf-8", errors="backslashreplace") as f:
            return f.read()

    def ktime_of(self, pid: int) -> int:
        return start_ticks(self._read(pid, "stat")) * self._tick_ns

    def scan(self) -> ScanResult:
        entries, threads, skipped = [], {}, 0
        ktimes: dict[int, int] = {}
        for pid in psutil.pids():
            try:
                entry, nthreads = self._entry(pid, ktimes)
            except (psutil.Error, OSError, ValueError, IndexError, KeyError) as err:
                log.debug("skipping pid %d in /proc scan: %s", pid, err)
                skipped += 1
                continue
            if entry is not None:
                entries.append(entry)
                threads[pid] = nthreads
        return ScanResult(entries, threads, skipped)

    def _entry(self, pid: int, ktimes: dict[int, int]) -> tuple[ProcfsEntry | None, int]:
        proc = psutil.Process(pid)
        with proc.oneshot():
            ppid = proc.ppid()
            if pid == KTHREADD_PID or ppid == KTHREADD_PID:
                return None, 0   # kernel threads never exec
            stat = self._read(pid, "stat")
            ktime = start_ticks(stat) * self._tick_ns
            ktimes[pid] = ktime
            if ppid and ppid not in ktimes:
                try:
                    ktimes[ppid] = self.ktime_of(ppid)
                except (OSError, ValueError, IndexError):
                    ktimes[ppid] = 0
            try:
                auid = int(self._read(pid, "loginuid"))
            except (OSError, ValueError):
                auid = UNSET_AUID
            try:
                cwd = proc.cwd()
            except psutil.AccessDenied:
                cwd = ""
            try:
                cgroup = cgroup_v2_path(self._read(pid, "cgroup"))
            except OSError:
                cgroup = ""
            state = state_from_status(self._read(pid, "status"), read_namespaces(pid, self._root))
            entry = ProcfsEntry(
                pid=pid,
                ktime=ktime,
                start_time_ns=self._boot_wall_ns + ktime,
                ppid=ppid,
                parent_ktime=ktimes.get(ppid, 0),
                uid=state.uid,
                gid=state.gid,
                auid=auid,
                cwd=cwd,
                binary=proc.exe(),
                argv=tuple(proc.cmdline()),
                cgroup=cgroup,
                state=state,
            )
            return entry, proc.num_threads()
