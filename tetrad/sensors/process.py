"""The process lifecycle sensor: loads bpf/process.c and seeds its map.

Owns the arrow "kernel hooks -> ring buffer" for exec, clone, exit and
changes of credentials and namespaces. One of the two modules allowed to
import bcc (with tetrad.observer). The BPF side and its guarantees are
described in bpf/process.c.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from bcc import BPF
from bcc.libbcc import lib

from tetrad.abi.ops import Op, ProcFlag
from tetrad.abi.records import ExecEntry
from tetrad.paths import bpf_dir
from tetrad.process.procfs import ScanResult
from tetrad.bpf import offsets as struct_offsets

log = logging.getLogger(__name__)

BPF_NOEXIST = 1
TRACEFS_ROOTS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
# Syscalls after which credentials and namespaces are read again while
# following changes (bpf/process.c, "state").
STATE_SYSCALLS = ("setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid",
                  "setfsuid", "setfsgid", "capset", "prctl", "unshare", "setns")


@dataclass(frozen=True)
class ProcessSensorConfig:
    ringbuf_pages: int = 2048          # 8 MiB; a power of two
    execve_map_entries: int = 32768


def tracepoint_field_offset(category: str, event: str, field: str) -> int | None:
    """Where a tracepoint's record (tracefs format) has `field`; None when it
    has none: kernels differ."""
    for root in TRACEFS_ROOTS:
        try:
            text = Path(root, "events", category, event, "format").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            parts = [p.strip() for p in line.split(";")]
            if parts[0].startswith("field:") and parts[0].split()[-1:] == [field]:
                return int(parts[1].removeprefix("offset:"))
        return None
    return None


def tracepoint_has_field(category: str, event: str, field: str) -> bool:
    """Whether a tracepoint's format (tracefs) has `field`; kernels differ."""
    return tracepoint_field_offset(category, event, field) is not None


class ProcessSensor:
    def __init__(self, config: ProcessSensorConfig = ProcessSensorConfig()):
        if config.ringbuf_pages & (config.ringbuf_pages - 1):
            raise ValueError(f"ringbuf_pages must be a power of two, not {config.ringbuf_pages}")
        self._config = config
        self.bpf: BPF | None = None
        self.walks_kernel_paths = False
        self.tracks_state = False          # credentials and namespaces
        self.follows_state = False         # ... and their changes after exec
        self.can_follow_state = False
        self.load_seconds = 0.0

    def cflags(self) -> list[str]:
        flags = [
            f"-I{bpf_dir()}",
            f"-DRINGBUF_PAGES={self._config.ringbuf_pages}",
            f"-DEXECVE_MAP_ENTRIES={self._config.execve_map_entries}",
        ]
        try:
            offsets = struct_offsets.struct_offsets()
        except struct_offsets.OffsetsUnavailable as err:
            log.warning("binary paths and cwd come from /proc, racy for short-lived "
                        "processes: %s", err)
            offsets = None
        self.walks_kernel_paths = offsets is not None
        flags += struct_offsets.cflags(offsets)
        if offsets is not None:
            try:
                state = struct_offsets.state_offsets()
            except struct_offsets.OffsetsUnavailable as err:
                log.warning("credentials and namespaces are not tracked: %s", err)
            else:
                flags += struct_offsets.cflags(state)
                self.tracks_state = True
                nr = tracepoint_field_offset("syscalls", "sys_exit_setuid", "__syscall_nr")
                if nr is None:
                    log.warning("changes of credentials and namespaces after exec cannot be "
                                "followed: no syscalls:sys_exit_setuid tracepoint")
                else:
                    flags.append(f"-DSYS_EXIT_NR={nr}")
                self.can_follow_state = nr is not None
        if tracepoint_has_field("sched", "sched_process_exit", "group_dead"):
            flags.append("-DTETRAD_HAVE_GROUP_DEAD")
        return flags

    def source(self) -> Path:
        return bpf_dir() / "process.c"

    def load(self) -> None:
        """Compile, load and attach every hook (bcc attaches TRACEPOINT_PROBEs)."""
        started = time.monotonic()
        self.bpf = BPF(src_file=str(self.source()).encode(), cflags=self.cflags())
        self.load_seconds = time.monotonic() - started
        log.info("process sensor attached in %.2fs", self.load_seconds)

    def follow_state_changes(self, on: bool) -> None:
        """Attach (or detach) the programs that read credentials and
        namespaces again after the syscalls that change them, so execve_map's
        `state` and events follow them after exec. Off, `state` is as at the
        last exec or fork. Costs every syscall of the system a few ns while
        attached (a syscall exit tracepoint in use; shared with policies that
        hook syscall exits)."""
        if not self.can_follow_state or on == self.follows_state:
            return
        for name in STATE_SYSCALLS:
            tp = f"syscalls:sys_exit_{name}".encode()
            if on:
                self.bpf.attach_tracepoint(tp=tp, fn_name=b"follow_state")
            else:
                self.bpf.detach_tracepoint(tp=tp)
        self.follows_state = on
        log.info("credential and namespace changes after exec are %s",
                 "followed" if on else "not followed")

    def seed(self, scan: ScanResult) -> int:
        """Tell the kernel about processes that predate it; returns how many
        entries were written. Entries the sensor made meanwhile are newer
        and are kept (BPF_NOEXIST)."""
        table = self.bpf["execve_map"]
        written = 0
        for entry in scan.entries:
            value = ExecEntry()
            value.key.pid = entry.pid
            value.key.ktime = entry.ktime
            value.parent.pid = entry.ppid
            value.parent.ktime = entry.parent_ktime
            value.flags = ProcFlag.PROCFS | ProcFlag.EXECVE
            value.threads = max(1, scan.threads.get(entry.pid, 1))
            raw = os.fsencode(entry.binary)[: len(value.binary) - 1]
            value.binary = raw
            value.bin_len = len(raw)
            if entry.state is not None and self.tracks_state:
                value.exec_state.fill(entry.state)
                value.state.fill(entry.state)
            if _update_noexist(table, entry.pid, value):
                written += 1
        return written

    def drops(self) -> dict[str, int]:
        """Records the ring buffer refused, per op, summed over CPUs."""
        table = self.bpf["ringbuf_drops"]
        out = {}
        for op in Op:
            total = sum(table[table.Key(op)])
            if total:
                out[op.name.lower()] = total
        return out

    def set_shedding(self, on: bool) -> None:
        """Tell policy programs to count their records as shed (True) or
        to write them again (bpf/shared_maps.h)."""
        table = self.bpf["shed"]
        table[table.Key(0)] = table.Leaf(int(on))

    def map_errors(self) -> int:
        table = self.bpf["map_errors"]
        return sum(table[table.Key(0)])

    def close(self) -> None:
        if self.bpf is not None:
            self.bpf.cleanup()
            self.bpf = None


def _update_noexist(table, pid: int, value: ExecEntry) -> bool:
    """Insert unless present; False when the kernel already has the pid (or
    the map is full, which map_errors will not show, so log it)."""
    key = table.Key(pid)
    if lib.bpf_update_elem(table.map_fd, ctypes.byref(key), ctypes.byref(value), BPF_NOEXIST) == 0:
        return True
    err = ctypes.get_errno()
    if err != errno.EEXIST:
        log.warning("cannot seed execve_map for pid %d: %s", pid, os.strerror(err))
    return False
