"""Policy hook programs: compiled once per program type, attached per
point, driven by tables (bcc side).

Owns the arrow "compile -> load/attach" for policy hooks. bpf/generic_hook.c
is compiled at most once per BPF program type (`HookObject`: tracepoint for
syscalls and tracepoints, kprobe for kprobes and uprobes, LSM, raw
tracepoint), in a child process or from the cache (sensors/bpfobject.py); it
knows no policy. The syscall-and-tracepoint type, which nearly every policy
set needs, starts compiling with the daemon (`begin`), alongside the process
sensor. Each attach point (a syscall, a function, a hook, a tracepoint) is
an `AttachPoint` with tables built by tetrad/policy/points.py; a hook added
or removed rewrites its point's tables in an order that never shows a call
a half-written state:
  1. the new hook's struct (nothing refers to it yet)
  2. trie and pid entries that are new or gain bits (bits are allocated
     stably, so every other hook reads the same bits before and after)
  3. the point's table, into the copy not in use, then point_ref switches
     to it (one u32 write)
  4. entries no longer needed, and the removed hook's struct
Syscall points are found by syscall number; every other point gets its own
copy of the entry program with its number patched in, which costs a
verifier pass, not a compile.

Only this module writes policy maps. Programs share the process sensor's
ring buffer, execve_map and shed map (bpf/shared_maps.h): `shared` gives
their descriptors. The objects of every program type share one socktrack
map, which this module makes: a policy's TrackSock on a kprobe is seen by
its tracepoint. Each policy that tracks socks has a scope of its own in it
(`track_scope`), as Tetragon keeps a map per policy; its entries go when
the policy unloads.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Callable

from bcc import BPF
from bcc.libbcc import lib

from tetrad.abi import generic as enc
from tetrad.bpf import syscall as bpf_syscall
from tetrad.policy.compile import ANY_SYSCALL, CompiledHook, Target
from tetrad.policy.errors import PolicyError
from tetrad.policy.points import PointTables
from tetrad.sensors import bpfobject
from tetrad.bpf import offsets as struct_offsets
from tetrad.sensors.targets import INDEX_SIZE, TargetMissing, digest_mismatch, syscall_key

log = logging.getLogger(__name__)

MAX_POINTS = 128                # physical tables per object (G_MAX_POINTS): 63 points
MAX_HOOKS = 256                 # per object (G_MAX_HOOKS)
CGROUP_ENTRIES = 16384          # per object: (cgroup, hook) pairs of scoped hooks
TRIE_ENTRIES = 16384            # per trie (G_TRIE_ENTRIES)
PID_ENTRIES = 4096              # pid_sel (G_PID_ENTRIES)
SOCKTRACK_ENTRIES = 32000       # socktrack (G_SOCKTRACK_ENTRIES), Tetragon's: ~3 MB of kernel memory
SOCKTRACK_SCOPES = 65535        # g_hook.track is a u16; 0 is none
BPF_MAP_TYPE_PROG_ARRAY = 3
BPF_MAP_TYPE_LRU_HASH = 9

# Program types (G_PROG_TYPE) and the hook kinds each serves.
TYPE_TP, TYPE_KPROBE, TYPE_LSM, TYPE_RAWTP = 1, 2, 3, 4
TYPE_OF_KIND = {"syscall": TYPE_TP, "tracepoint": TYPE_TP, "kprobe": TYPE_KPROBE,
                "uprobe": TYPE_KPROBE, "usdt": TYPE_KPROBE, "lsm": TYPE_LSM, "rawtp": TYPE_RAWTP}
BCC_TYPE = {TYPE_TP: BPF.TRACEPOINT, TYPE_KPROBE: BPF.KPROBE, TYPE_LSM: BPF.LSM,
            TYPE_RAWTP: BPF.RAW_TRACEPOINT}
TYPE_NAMES = {TYPE_TP: "syscall and tracepoint", TYPE_KPROBE: "kprobe and uprobe", TYPE_LSM: "LSM",
              TYPE_RAWTP: "raw tracepoint"}
STAGES = ("g_read", "g_eval", "g_select", "g_act", "g_caller", "g_steps", "g_iovec")  # S_READ .. S_IOVEC
ENTRY = {"tracepoint": "g_tp", "kprobe": "g_kprobe", "uprobe": "g_kprobe", "usdt": "g_usdt",
         "lsm": "g_lsm", "rawtp": "g_rawtp"}
EXIT = {"kprobe": "g_kretprobe", "uprobe": "g_kretprobe"}
# The process sensor's maps the policy programs use (bpf/shared_maps.h).
SHARED_MAPS = ("events", "execve_map", "shed", "enforce_notes")
# libbcc's bpf_attach_uprobe takes a semaphore offset (ref_ctr_offset) last,
# which the ctypes prototype bcc's Python declares leaves out: this copy of
# the function has the whole prototype, so the kernel never gets a stray
# value there.
_attach_uprobe = lib["bpf_attach_uprobe"]
_attach_uprobe.restype = ctypes.c_int
_attach_uprobe.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p,
                           ctypes.c_uint64, ctypes.c_int, ctypes.c_uint32]


class AttachError(Exception):
    """A hook could not be attached; the message says which and why."""


class HookObject:
    """bpf/generic_hook.c compiled for one program type: its maps made, its
    stages loaded into its prog array, its shared entry programs loaded."""

    def __init__(self, prog_type: int, compilation: bpfobject.Compilation, shared: dict[str, int]):
        self.prog_type = prog_type
        self.obj_id = prog_type         # records carry it (OBJ_ID): stable across restarts
        self.bcc_type = BCC_TYPE[prog_type]
        try:
            compiled = compilation.result()
            self.bpf = bpfobject.Loaded(compiled, self.bcc_type, shared)
        except bpfobject.CompileError as err:
            raise AttachError(f"the policy programs for {TYPE_NAMES[prog_type]} hooks: {err}") from None
        self.progs: dict[str, int] = {}         # shared programs: stages, syscall entries
        try:
            if prog_type != TYPE_LSM:           # LSM points have stages of their own
                for i, name in enumerate(STAGES):
                    self.progs[name] = self.bpf.load(name)
                    self.bpf.update("stages", struct.pack("<i", i), struct.pack("<i", self.progs[name]))
        except (bpfobject.CompileError, OSError) as err:
            self.close()
            raise AttachError(f"the kernel refused the policy programs for {TYPE_NAMES[prog_type]} "
                              f"hooks: {err}") from None
        self.free_points = list(range(1, MAX_POINTS // 2))
        self.free_hooks = list(range(MAX_HOOKS))
        log.info("policy programs for %s hooks %s and loaded (%.2fs)", TYPE_NAMES[prog_type],
                 "taken from the cache" if compilation.from_cache else "compiled",
                 time.monotonic() - compilation.started)

    def shared_prog(self, name: str) -> int:
        """A program all points of this object use (loaded once)."""
        if name not in self.progs:
            try:
                self.progs[name] = self.bpf.load(name)
            except bpfobject.CompileError as err:
                raise AttachError(str(err)) from None
        return self.progs[name]

    def close(self) -> None:
        for fd in self.progs.values():
            os.close(fd)
        self.progs.clear()
        self.bpf.close()


@dataclass
class Link:
    """One attachment: a perf event (tracepoint, kprobe, uprobe; for the
    last two also the probe event named `event`) or a BPF link (LSM)."""

    kind: str                   # perf, kprobe, uprobe, link
    fd: int
    event: bytes = b""

    def close(self) -> None:
        if self.kind == "link":
            os.close(self.fd)
            return
        lib.bpf_close_perf_event_fd(self.fd)
        if self.kind == "kprobe":
            lib.bpf_detach_kprobe(self.event)
        elif self.kind == "uprobe":
            lib.bpf_detach_uprobe(self.event)


@dataclass
class AttachPoint:
    """One attach point of an object and what the kernel holds for it."""

    obj: HookObject
    lpoint: int
    target: Target
    tables: PointTables
    phys: int = 0                                   # table in use; 0: none yet
    entries: dict[str, dict[bytes, bytes]] = field(default_factory=dict)
    hooks: set[int] = field(default_factory=set)    # hook structs written
    attached: bool = False
    exit_attached: bool = False
    links: list[Link] = field(default_factory=list)
    progs: list[int] = field(default_factory=list)  # program copies of this point
    syscall_nr: int | None = None
    stage_array: int = -1                           # LSM: a prog array of its own


@dataclass
class Attachment:
    """One hook in the kernel: which object, which point, which hook id."""

    obj: HookObject
    point: AttachPoint
    hook_id: int
    cgroups: set[int] = field(default_factory=set)  # cgroup_sel entries written (scoped hooks)


class GenericPrograms:
    """Every policy hook in the kernel. `shared` gives the process sensor's
    map descriptors (SHARED_MAPS), once it is loaded; `cache_dir` keeps
    compiled programs across restarts ("" for none)."""

    def __init__(self, shared: Callable[[], dict[str, int]], cache_dir: str = ""):
        self._shared = shared
        self._cache = bpfobject.Cache(cache_dir)
        self._objects: dict[int, HookObject] = {}
        self._compiling: dict[int, bpfobject.Compilation] = {}
        self._points: dict[tuple, AttachPoint] = {}
        self._socktrack: bpf_syscall.Fd | None = None
        self._free_scopes = list(range(1, SOCKTRACK_SCOPES + 1))
        offsets = struct_offsets.policy_offsets()
        self._cflags = [f"-I{bpfobject.source().parent}", f"-DG_MAX_POINTS={MAX_POINTS}",
                        f"-DG_MAX_HOOKS={MAX_HOOKS}", f"-DG_INDEX_SIZE={INDEX_SIZE}",
                        f"-DG_CGROUP_ENTRIES={CGROUP_ENTRIES}", f"-DG_TRIE_ENTRIES={TRIE_ENTRIES}",
                        f"-DG_PID_ENTRIES={PID_ENTRIES}", f"-DG_SOCKTRACK_ENTRIES={SOCKTRACK_ENTRIES}"]
        self._cflags += struct_offsets.cflags(offsets or None)
        self._cflags += [f"-D{k}={v}" for k, v in sorted(offsets.items()) if k.startswith("SIZEOF_")]

    def begin(self, kind: str) -> None:
        """Start compiling (or reading from the cache) the programs of a hook
        kind, so that they are ready when a policy needs them."""
        prog_type = TYPE_OF_KIND[kind]
        if prog_type not in self._objects and prog_type not in self._compiling:
            flags = self._cflags + [f"-DG_PROG_TYPE={prog_type}", f"-DOBJ_ID={prog_type}"]
            self._compiling[prog_type] = bpfobject.Compilation(bpfobject.source(), flags, self._cache)

    def compiled(self, kind: str) -> bool:
        """Whether the programs for this hook kind are loaded already."""
        return TYPE_OF_KIND[kind] in self._objects

    # ---- hooks ----------------------------------------------------------------

    def add(self, ch: CompiledHook, track: int = 0) -> Attachment:
        """Add a hook at its point: tables written, point attached. A
        workload-scoped hook then runs for no cgroup until they are listed
        (scope_cgroup). `track`: its policy's socktrack scope (track_scope)
        when the policy tracks socks. On failure nothing of this hook stays
        in the kernel."""
        obj = self._object(TYPE_OF_KIND[ch.target.kind])
        point = self._point(obj, ch.target)
        if not obj.free_hooks:
            raise AttachError(f"{MAX_HOOKS} policy hooks of this kind are loaded, the most tetrad holds")
        hook_id = obj.free_hooks.pop(0)
        try:
            point.tables.add(hook_id, ch, track)
        except PolicyError as err:
            obj.free_hooks.insert(0, hook_id)
            self._drop_if_empty(point)
            raise AttachError("; ".join(r for _, r in err.problems)) from None
        att = Attachment(obj, point, hook_id)
        try:
            self._reset_stats(obj, hook_id)
            self._write(point)
            self._attach(point, ch)
        except Exception as err:
            self.remove(att)
            if isinstance(err, AttachError):
                raise
            raise AttachError(f"cannot attach {ch.target.function_name}: {err}") from None
        return att

    def remove(self, att: Attachment) -> None:
        point = att.point
        for cgroup_id in list(att.cgroups):
            self.scope_cgroup(att, cgroup_id, False)
        point.tables.remove(att.hook_id)
        try:
            if len(point.tables):
                self._write(point)
            else:
                self._drop(point)
        finally:
            if att.hook_id not in att.obj.free_hooks:
                att.obj.free_hooks.append(att.hook_id)

    # ---- socket tracking ---------------------------------------------------------

    def track_scope(self) -> int:
        """A socktrack scope for one loaded policy that tracks socks."""
        if not self._free_scopes:
            raise AttachError(f"{SOCKTRACK_SCOPES} policies track sockets, the most tetrad holds")
        return self._free_scopes.pop(0)

    def release_scope(self, scope: int) -> None:
        """The policy of `scope` is gone: its entries go (a sock it tracked
        and never untracked would otherwise name its owner to the next
        policy given the scope)."""
        if self._socktrack is not None:
            fd, size = self._socktrack.fd, ctypes.sizeof(enc.SockKey)
            key, after = ctypes.create_string_buffer(size), ctypes.create_string_buffer(size)
            gone, first = [], True
            while lib.bpf_get_next_key(fd, None if first else key, after) == 0:
                if enc.SockKey.from_buffer_copy(after.raw).scope == scope:
                    gone.append(after.raw)
                ctypes.memmove(key, after, size)
                first = False
            for raw in gone:
                lib.bpf_delete_elem(fd, ctypes.create_string_buffer(raw, size))
        if scope not in self._free_scopes:
            self._free_scopes.append(scope)

    def _shared_maps(self) -> dict[str, int]:
        if self._socktrack is None:
            try:
                self._socktrack = bpf_syscall.map_create(
                    BPF_MAP_TYPE_LRU_HASH, ctypes.sizeof(enc.SockKey), ctypes.sizeof(enc.SockOwner),
                    SOCKTRACK_ENTRIES, 0, "socktrack")
            except OSError as err:
                raise AttachError(f"cannot create the socket tracking map: {err.strerror}") from None
        return {**self._shared(), "socktrack": self._socktrack.fd}

    # ---- points ---------------------------------------------------------------

    def _object(self, prog_type: int) -> HookObject:
        obj = self._objects.get(prog_type)
        if obj is None:
            self.begin(next(k for k, t in TYPE_OF_KIND.items() if t == prog_type))
            compilation = self._compiling.pop(prog_type)
            obj = HookObject(prog_type, compilation, self._shared_maps())
            self._objects[prog_type] = obj
        return obj

    def _point(self, obj: HookObject, target: Target) -> AttachPoint:
        key = (obj.prog_type, *target.key)
        point = self._points.get(key)
        if point is None:
            if not obj.free_points:
                raise AttachError(f"{MAX_POINTS // 2 - 1} attach points of this kind are in use, "
                                  "the most tetrad holds")
            lpoint = obj.free_points.pop(0)
            point = AttachPoint(obj, lpoint, target, PointTables(lpoint))
            self._points[key] = point
        return point

    def _drop_if_empty(self, point: AttachPoint) -> None:
        if not len(point.tables):
            self._drop(point)

    def _drop(self, point: AttachPoint) -> None:
        """Detach an empty point and clear everything it wrote."""
        obj = point.obj
        self._release(point)
        if point.syscall_nr is not None:
            obj.bpf.update("sys_point", _u32(point.syscall_nr), _u32(0))
        if point.phys:
            obj.bpf.update("point_ref", _u32(point.lpoint), _u32(0))
            obj.bpf.update("points", _u32(point.phys), bytes(ctypes.sizeof(enc.Point)))
        if point.target.kind == "usdt":
            obj.bpf.update("usdt_specs", _u32(point.lpoint), bytes(ctypes.sizeof(enc.Usdt)))
        self._apply_entries(point, {})
        self._clear_hooks(point, set())
        self._points = {k: p for k, p in self._points.items() if p is not point}
        obj.free_points.append(point.lpoint)

    @staticmethod
    def _release(point: AttachPoint) -> None:
        """Close the point's attachments and programs."""
        for link in reversed(point.links):
            link.close()
        point.links.clear()
        for fd in point.progs:
            os.close(fd)
        point.progs.clear()
        if point.stage_array >= 0:
            os.close(point.stage_array)
            point.stage_array = -1

    # ---- tables ---------------------------------------------------------------

    def _write(self, point: AttachPoint) -> None:
        obj = point.obj
        tables = point.tables.tables()
        for hook_id, raw in tables.hooks.items():           # 1. new hooks
            if hook_id not in point.hooks:
                obj.bpf.update("hooks", _u32(hook_id), raw)
                point.hooks.add(hook_id)
        self._apply_entries(point, tables.entries, removals=False)   # 2. new and grown entries
        phys = 2 * point.lpoint + (1 if point.phys == 2 * point.lpoint else 0)
        obj.bpf.update("points", _u32(phys), tables.point)   # 3. the table, then the switch
        obj.bpf.update("point_ref", _u32(point.lpoint), _u32(phys))
        point.phys = phys
        self._apply_entries(point, tables.entries)           # 4. entries and hooks no longer used
        self._clear_hooks(point, set(tables.hooks))

    def _apply_entries(self, point: AttachPoint, wanted: dict[str, dict[bytes, bytes]],
                       removals: bool = True) -> None:
        obj = point.obj
        for name in ("str_fwd", "str_rev", "cidr", "pid_sel"):
            have = point.entries.setdefault(name, {})
            want = wanted.get(name, {})
            for key, value in want.items():
                if have.get(key) != value:
                    try:
                        obj.bpf.update(name, key, value)
                    except OSError as err:
                        if err.errno in (errno.E2BIG, errno.ENOMEM, errno.ENOSPC):
                            raise AttachError(f"the kernel map {name} is full: too many values in the "
                                              f"loaded policies ({err.strerror})") from None
                        raise AttachError(f"cannot write {name}: {err.strerror}") from None
                    have[key] = value
            if removals:
                for key in [k for k in have if k not in want]:
                    obj.bpf.delete(name, key)
                    del have[key]

    def _clear_hooks(self, point: AttachPoint, keep: set[int]) -> None:
        for hook_id in [h for h in point.hooks if h not in keep]:
            point.obj.bpf.update("hooks", _u32(hook_id), bytes(ctypes.sizeof(enc.Hook)))   # inactive
            point.hooks.discard(hook_id)

    @staticmethod
    def _reset_stats(obj: HookObject, hook_id: int) -> None:
        size = (ctypes.sizeof(enc.HookStats) + 7) // 8 * 8
        obj.bpf.update("hook_stats", _u32(hook_id), bytes(size * obj.bpf.ncpus))

    # ---- attaching ------------------------------------------------------------

    def _attach(self, point: AttachPoint, ch: CompiledHook) -> None:
        """Attach the point's entry the first time, its exit the first time a
        hook there needs one (return probe, second read at sys_exit)."""
        obj, t = point.obj, point.target
        needs_exit = ch.has_return or ch.retry
        if t.kind == "syscall" and t.name == ANY_SYSCALL:
            if not point.attached:
                self._tracepoint(point, self._copy(point, "g_sys_any"), "raw_syscalls", "sys_enter")
                point.attached = True
            if needs_exit and not point.exit_attached:
                self._tracepoint(point, self._copy(point, "g_sys_any_exit"), "raw_syscalls", "sys_exit")
                point.exit_attached = True
            return
        if t.kind == "syscall":
            if point.syscall_nr is None:
                try:
                    point.syscall_nr = syscall_key(t.name)
                except TargetMissing as err:
                    raise AttachError(str(err)) from None
                obj.bpf.update("sys_point", _u32(point.syscall_nr), _u32(point.lpoint))
            if not point.attached:
                self._tracepoint(point, obj.shared_prog("g_sys_enter"), "syscalls", f"sys_enter_{t.name}")
                point.attached = True
            if needs_exit and not point.exit_attached:
                self._tracepoint(point, obj.shared_prog("g_sys_exit"), "syscalls", f"sys_exit_{t.name}")
                point.exit_attached = True
            return
        if not point.attached:
            fd = self._copy(point, ENTRY[t.kind])
            if t.kind == "tracepoint":
                self._tracepoint(point, fd, *t.name.split("/", 1))
            elif t.kind == "kprobe":
                self._kprobe(point, fd, t.name, ret=False)
            elif t.kind in ("uprobe", "usdt"):
                if t.kind == "usdt":
                    obj.bpf.update("usdt_specs", _u32(point.lpoint), usdt_specs(t))
                self._uprobe(point, fd, t, ch.hook.digests, ret=False)
            elif t.kind == "rawtp":
                link = lib.bpf_attach_raw_tracepoint(fd, t.name.split("/", 1)[1].encode())
                if link < 0:
                    raise AttachError(f"cannot attach to raw tracepoint {t.name.split('/', 1)[1]}: "
                                      f"{os.strerror(ctypes.get_errno())}")
                point.links.append(Link("link", link))
            elif t.kind == "lsm":
                link = lib.bpf_attach_lsm(fd)
                if link < 0:
                    raise AttachError(f"cannot attach LSM hook {t.name}: {os.strerror(ctypes.get_errno())}")
                point.links.append(Link("link", link))
            point.attached = True
        if needs_exit and not point.exit_attached:
            if t.kind not in EXIT:
                raise AttachError(f"{t.kind} hooks have no return probe")
            fd = self._copy(point, EXIT[t.kind])
            if t.kind == "kprobe":
                self._kprobe(point, fd, t.name, ret=True)
            else:
                self._uprobe(point, fd, t, ch.hook.digests, ret=True)
            point.exit_attached = True

    @staticmethod
    def _tracepoint(point: AttachPoint, prog: int, category: str, event: str) -> None:
        fd = lib.bpf_attach_tracepoint(prog, category.encode(), event.encode())
        if fd < 0:
            raise AttachError(f"cannot attach to tracepoint {category}:{event}: "
                              f"{os.strerror(ctypes.get_errno())}")
        point.links.append(Link("perf", fd))

    @staticmethod
    def _kprobe(point: AttachPoint, prog: int, function: str, ret: bool) -> None:
        ev = f"tetrad_{os.getpid()}_{'r' if ret else 'p'}_{function.replace('.', '_')}".encode()
        fd = lib.bpf_attach_kprobe(prog, int(ret), ev, function.encode(), 0, 0)
        if fd < 0:
            raise AttachError(f"cannot attach a {'kretprobe' if ret else 'kprobe'} to {function}: "
                              f"{os.strerror(ctypes.get_errno())} (not traceable: inlined, "
                              "notrace or not in this kernel)")
        point.links.append(Link("kprobe", fd, ev))

    @staticmethod
    def _uprobe(point: AttachPoint, prog: int, t: Target, digests: tuple[str, ...], ret: bool) -> None:
        """A uprobe at the target's symbol (plus its offset) or file offset,
        with its semaphore. The binary is opened once: its digests are
        checked on that file and the probe attached to it (through
        /proc/self/fd), so a binary replaced in between is never probed."""
        what = f"{t.binary}:{t.function_name}"
        if t.ref_ctr_offset >= 1 << 32:
            raise AttachError(f"{what}: semaphore offset {t.ref_ctr_offset:#x} beyond what the kernel takes")
        try:
            with open(t.binary, "rb") as f:
                mismatch = digest_mismatch(f, digests, t.binary)
                if mismatch:
                    raise AttachError(mismatch)
                opened = f"/proc/self/fd/{f.fileno()}".encode()
                addr = t.offset
                if t.kind == "uprobe" and t.name:
                    try:
                        _, addr = BPF._check_path_symbol(opened, t.name.encode(), None, -1)
                    except Exception as err:  # bcc raises plain Exception for a symbol it cannot find
                        raise AttachError(f"uprobe {what}: {err}") from None
                    addr += t.offset
                # Unique per point: two binaries may have a probe at one offset.
                ev = b"tetrad_%d_%s_%d_0x%x" % (os.getpid(), b"r" if ret else b"p", point.lpoint, addr)
                fd = _attach_uprobe(prog, int(ret), ev, opened, addr, -1, t.ref_ctr_offset)
        except OSError as err:
            raise AttachError(f"cannot open uprobe binary {t.binary}: {err.strerror}") from None
        if fd < 0:
            raise AttachError(f"cannot attach a {'uretprobe' if ret else 'uprobe'} to {what}: "
                              f"{os.strerror(ctypes.get_errno())}")
        point.links.append(Link("uprobe", fd, ev))

    def _copy(self, point: AttachPoint, entry: str) -> int:
        """The entry program bound to this point (and, for LSM, the stages
        with a prog array of the point's own: newer kernels refuse tail
        calls between LSM programs of different hooks)."""
        obj = point.obj
        maps = None
        name = None
        try:
            if obj.prog_type == TYPE_LSM:
                name = f"lsm__{point.target.name}"
                if point.stage_array < 0:
                    point.stage_array = bpf_syscall.map_create(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, len(STAGES),
                                                               name="stages").fd
                    maps = {"stages": point.stage_array}
                    for i, stage in enumerate(STAGES):
                        fd = obj.bpf.load(stage, maps=maps, name=name)
                        point.progs.append(fd)
                        key, value = ctypes.c_int(i), ctypes.c_int(fd)
                        if lib.bpf_update_elem(point.stage_array, ctypes.byref(key), ctypes.byref(value), 0) < 0:
                            raise AttachError("cannot fill the LSM stage table: "
                                              f"{os.strerror(ctypes.get_errno())}")
                maps = {"stages": point.stage_array}
            fd = obj.bpf.load(entry, point=point.lpoint, maps=maps, name=name)
        except bpfobject.CompileError as err:
            raise AttachError(f"{point.target.function_name}: {err}") from None
        point.progs.append(fd)
        return fd

    # ---- workload scopes --------------------------------------------------------

    def scope_cgroup(self, att: Attachment, cgroup_id: int, selected: bool) -> bool:
        """Let a workload-scoped hook run (or no longer run) for tasks in
        one cgroup. False when the kernel map is full."""
        key = bytes(enc.CgroupKey(cgroup_id, att.hook_id))
        if selected:
            try:
                att.obj.bpf.update("cgroup_sel", key, b"\1")
            except OSError as err:
                if err.errno == errno.E2BIG:     # a hash map that is full
                    return False
                raise
            att.cgroups.add(cgroup_id)
        elif cgroup_id in att.cgroups:
            att.cgroups.discard(cgroup_id)
            att.obj.bpf.delete("cgroup_sel", key)
        return True

    # ---- reading ------------------------------------------------------------------

    def stats(self, att: Attachment) -> enc.HookStats:
        total = enc.HookStats()
        for raw in att.obj.bpf.lookup_percpu("hook_stats", _u32(att.hook_id)):
            cpu_value = enc.HookStats.from_buffer_copy(raw)
            for name, _ in enc.HookStats._fields_:
                setattr(total, name, getattr(total, name) + getattr(cpu_value, name))
        return total

    def stack_map(self, obj_id: int) -> int | None:
        """The `stacks` map of a program object (kprobe and syscall hooks
        have one), for tetrad/sensors/stacks.py."""
        obj = self._objects.get(obj_id)
        return obj.bpf.fds.get("stacks") if obj is not None else None

    def tracepoint_fds(self) -> list[int]:
        """Every tracepoint attachment's perf event, handed over for closing
        all at once at stop (sensors/teardown.py)."""
        fds = []
        for point in self._points.values():
            fds += [link.fd for link in point.links if link.kind == "perf"]
            point.links = [link for link in point.links if link.kind != "perf"]
        return fds

    def close(self) -> None:
        """At stop: everything closed; the maps go with their descriptors."""
        for point in self._points.values():
            self._release(point)
        self._points.clear()
        for obj in self._objects.values():
            obj.close()
        self._objects.clear()
        for compilation in self._compiling.values():
            compilation.cancel()
        self._compiling.clear()
        if self._socktrack is not None:
            self._socktrack.close()
            self._socktrack = None


def usdt_specs(t: Target) -> bytes:
    """A USDT probe's argument specs as the kernel reads them (struct
    g_usdt), registers at their offsets in this kernel's struct pt_regs."""
    regs = struct_offsets.pt_regs_offsets()
    u = enc.Usdt()
    for i, arg in enumerate(t.usdt_args[:enc.MAX_ARGV]):
        a = u.arg[i]
        a.kind, a.size, a.is_signed, a.scale = enc.USDT_KINDS[arg.kind], arg.size, arg.signed, arg.scale
        a.val = arg.value
        try:
            a.reg = regs[arg.reg] if arg.reg else 0
            a.idx = regs[arg.index] if arg.index else 0
        except KeyError as err:
            raise AttachError(f"{t.binary}:{t.name}: this kernel's struct pt_regs has no {err}") from None
    return bytes(u)


def _u32(value: int) -> bytes:
    return struct.pack("=I", value)
