"""The process lifecycle sensor: loads bpf/process.c and seeds its map.

Owns the arrow "kernel hooks -> ring buffer" for exec, clone, exit and
changes of credentials and namespaces. One of the two modules allowed to
import bcc (with tetrad.observer). The BPF side and its guarantees are
described in bpf/process.c. Compiled like the policy programs (in a child,
cached across restarts by source, flags and kernel: bpfobject), so a
restart on the same kernel starts without clang.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import struct
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
from tetrad.sensors import bpfobject

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
    """bpf/process.c compiled in a child process (or taken from the BPF
    cache: tetrad/sensors/bpfobject.py), its maps made here, its programs
    loaded and attached by descriptor. `begin()` starts the compile so that
    the daemon can do other start-up work meanwhile; `load()` waits for it."""

    def __init__(self, config: ProcessSensorConfig = ProcessSensorConfig(), cache_dir: str = ""):
        if config.ringbuf_pages & (config.ringbuf_pages - 1):
            raise ValueError(f"ringbuf_pages must be a power of two, not {config.ringbuf_pages}")
        self._config = config
        self._cache = bpfobject.Cache(cache_dir)
        self._compilation: bpfobject.Compilation | None = None
        self.maps: bpfobject.Loaded | None = None
        self._progs: dict[str, int] = {}
        self._perf_fds: list[int] = []             # tracepoint attachments
        self._links: list[int] = []                # raw tracepoint attachments
        self._state_fds: dict[str, int] = {}       # syscall -> follow_state's attachment
        self.walks_kernel_paths = False
        self.tracks_state = False          # credentials and namespaces
        self.follows_state = False         # ... and their changes after exec
        self.can_follow_state = False

    @property
    def loaded(self) -> bool:
        return self.maps is not None

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

    def begin(self) -> None:
        """Start compiling (or take the cached result); returns at once."""
        if self._compilation is None:
            self._compilation = bpfobject.Compilation(self.source(), self.cflags(), self._cache)

    def load(self) -> None:
        """Wait for the compile, make the maps, load and attach every
        program. bpfobject.CompileError says why when the kernel refuses."""
        self.begin()
        try:
            self._load(self._compilation)
        except bpfobject.CompileError as err:
            if not self._compilation.from_cache:
                raise
            log.warning("the process sensor from the BPF cache did not load (%s): compiling it", err)
            self._compilation = bpfobject.Compilation(self.source(), self._compilation.cflags,
                                                      self._cache, use_cached=False)
            self._load(self._compilation)

    def _load(self, compilation: bpfobject.Compilation) -> None:
        compiled = compilation.result()
        self.maps = bpfobject.Loaded(compiled, BPF.TRACEPOINT, shared={})
        try:
            for name in sorted(compiled.functions):
                kind, _, point = name.partition("__")
                if kind == "tracepoint":
                    category, _, event = point.partition("__")
                    fd = self._program(name)
                    self._perf_fds.append(_attach_tracepoint(fd, category, event))
                elif kind == "raw_tracepoint":
                    fd = self._program(name, BPF.RAW_TRACEPOINT)
                    link = lib.bpf_attach_raw_tracepoint(fd, point.encode())
                    if link < 0:
                        raise bpfobject.CompileError(f"cannot attach to raw tracepoint {point}: "
                                                     f"{os.strerror(ctypes.get_errno())}")
                    self._links.append(link)
        except bpfobject.CompileError:
            self._unload()
            raise
        log.info("process sensor %s and attached in %.2fs",
                 "taken from the cache" if compilation.from_cache else "compiled",
                 time.monotonic() - compilation.started)

    def _program(self, name: str, prog_type: int | None = None) -> int:
        if name not in self._progs:
            self._progs[name] = self.maps.load(name, prog_type=prog_type)
        return self._progs[name]

    def map_fd(self, name: str) -> int:
        return self.maps.fds[name]

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
            if on:
                self._state_fds[name] = _attach_tracepoint(self._program("follow_state"),
                                                           "syscalls", f"sys_exit_{name}")
            else:
                lib.bpf_close_perf_event_fd(self._state_fds.pop(name))
        self.follows_state = on
        log.info("credential and namespace changes after exec are %s",
                 "followed" if on else "not followed")

    def exec_entry(self, pid: int) -> ExecEntry | None:
        """The kernel's execve_map entry of `pid`, if it has one."""
        raw = self.maps.lookup("execve_map", _u32(pid))
        return None if raw is None else ExecEntry.from_buffer_copy(raw)

    def seed(self, scan: ScanResult) -> int:
        """Tell the kernel about processes that predate it; returns how many
        entries were written. Entries the sensor made meanwhile are newer
        and are kept (BPF_NOEXIST)."""
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
            if self._insert_new(entry.pid, value):
                written += 1
        return written

    def _insert_new(self, pid: int, value: ExecEntry) -> bool:
        """Insert unless present; False when the kernel already has the pid
        (or the map is full, which map_errors will not show, so log it)."""
        try:
            self.maps.update("execve_map", _u32(pid), bytes(value), BPF_NOEXIST)
        except OSError as err:
            if err.errno != errno.EEXIST:
                log.warning("cannot seed execve_map for pid %d: %s", pid, err.strerror)
            return False
        return True

    def _percpu_sum(self, map_name: str, index: int) -> int:
        return sum(int.from_bytes(v[:8], "little")
                   for v in self.maps.lookup_percpu(map_name, _u32(index)))

    def drops(self) -> dict[str, int]:
        """Records the ring buffer refused, per op, summed over CPUs."""
        out = {}
        for op in Op:
            total = self._percpu_sum("ringbuf_drops", op)
            if total:
                out[op.name.lower()] = total
        return out

    def set_shedding(self, on: bool) -> None:
        """Tell policy programs to count their records as shed (True) or
        to write them again (bpf/shared_maps.h)."""
        self.maps.update("shed", _u32(0), _u32(int(on)))

    def map_errors(self) -> int:
        return self._percpu_sum("map_errors", 0)

    def detach_fds(self) -> list[int]:
        """The perf event descriptors of every tracepoint attachment, handed
        over to be closed (concurrently: tetrad/sensors/teardown.py); the
        sensor forgets them."""
        fds = self._perf_fds + list(self._state_fds.values())
        self._perf_fds, self._state_fds = [], {}
        return fds

    def _unload(self) -> None:
        for fd in self.detach_fds():
            lib.bpf_close_perf_event_fd(fd)
        for fd in self._links + list(self._progs.values()):
            os.close(fd)
        self._links, self._progs = [], {}
        if self.maps is not None:
            self.maps.close()
            self.maps = None

    def close(self) -> None:
        self._unload()
        if self._compilation is not None:
            self._compilation.cancel()
            self._compilation = None


def _u32(value: int) -> bytes:
    return struct.pack("<I", value)


def _attach_tracepoint(prog: int, category: str, event: str) -> int:
    fd = lib.bpf_attach_tracepoint(prog, category.encode(), event.encode())
    if fd < 0:
        raise bpfobject.CompileError(f"cannot attach to tracepoint {category}:{event}: "
                                     f"{os.strerror(ctypes.get_errno())}")
    return fd
