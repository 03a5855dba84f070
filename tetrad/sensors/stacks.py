"""Stack traces of policy records (kernelStackTrace, userStackTrace on Post).

A kprobe or syscall hook's record carries the ids of its stacks in its
program object's `stacks` map (bpf/generic_hook.c); here an id becomes the
frames Tetragon's events show: each address with its symbol, the offset
into it and, in user space, the file it is mapped from. Symbols come from
libbcc's symbol caches: the kernel's (/proc/kallsyms), and one per process
for user stacks, the newest USER_CACHES kept (each holds the symbol tables
of a process's mappings).

An entry is removed from the map once read, so the map never fills with
stacks nobody will read again; the frames of the last ids read are kept,
for the records that share an id (the kernel gives equal stacks one id).
A record whose stack the kernel could not keep (the map was full, or
another stack held its slot) shows none, counted in `lost`. User stacks
of a process that has exited by the time its record is read show
addresses without symbols.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from typing import Callable

from bcc.libbcc import bcc_symbol, lib

MAX_FRAMES = 127                # PERF_MAX_STACK_DEPTH, the map's value size in u64s
RECENT = 256
USER_CACHES = 32
KERNEL_PID = -1


class Stacks:
    """`maps(obj_id)` gives a program object's stacks map descriptor (None
    when it has none)."""

    def __init__(self, maps: Callable[[int], int | None]):
        self._maps = maps
        self._recent: OrderedDict[tuple[int, int], tuple[int, ...]] = OrderedDict()
        self._caches: OrderedDict[int, int] = OrderedDict()         # pid -> bcc symcache
        self.lost = 0

    def kernel(self, obj_id: int, stack_id: int) -> list[dict]:
        return self._frames(obj_id, stack_id, KERNEL_PID)

    def user(self, obj_id: int, stack_id: int, pid: int) -> list[dict]:
        return self._frames(obj_id, stack_id, pid)

    def _frames(self, obj_id: int, stack_id: int, pid: int) -> list[dict]:
        addresses = self._addresses(obj_id, stack_id)
        if not addresses:
            self.lost += 1
            return []
        cache = self._cache(pid)
        out = []
        sym = bcc_symbol()
        for addr in addresses:
            # protojson writes uint64 fields as strings
            entry = {"address": str(addr)}
            if cache and lib.bcc_symcache_resolve_no_demangle(cache, addr, ctypes.byref(sym)) == 0:
                if sym.offset:
                    entry["offset"] = str(sym.offset)
                if sym.name:
                    entry["symbol"] = sym.name.decode(errors="replace")
                if pid != KERNEL_PID and sym.module:
                    entry["module"] = ctypes.string_at(sym.module).decode(errors="replace")
            out.append(entry)
        return out

    def _addresses(self, obj_id: int, stack_id: int) -> tuple[int, ...]:
        if stack_id < 0:
            return ()
        key = (obj_id, stack_id)
        fd = self._maps(obj_id)
        frames = None
        if fd is not None:
            k = ctypes.c_uint32(stack_id)
            v = (ctypes.c_uint64 * MAX_FRAMES)()
            if lib.bpf_lookup_elem(fd, ctypes.byref(k), ctypes.byref(v)) == 0:
                lib.bpf_delete_elem(fd, ctypes.byref(k))
                frames = tuple(a for a in v if a)
        if frames is None:
            return self._recent.get(key, ())
        self._recent[key] = frames
        self._recent.move_to_end(key)
        while len(self._recent) > RECENT:
            self._recent.popitem(last=False)
        return frames

    def _cache(self, pid: int) -> int:
        cache = self._caches.get(pid)
        if cache is None:
            cache = lib.bcc_symcache_new(pid, None) or 0
            self._caches[pid] = cache
            while len(self._caches) > USER_CACHES + 1:          # + the kernel's
                old_pid, old = next((p, c) for p, c in self._caches.items() if p != KERNEL_PID)
                del self._caches[old_pid]
                if old:
                    lib.bcc_free_symcache(old, old_pid)
        self._caches.move_to_end(pid)
        return cache

    def close(self) -> None:
        for pid, cache in self._caches.items():
            if cache:
                lib.bcc_free_symcache(cache, pid)
        self._caches.clear()
