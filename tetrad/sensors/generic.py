"""Policy hook programs: compile once per program type, attach per point,
write the tables (bcc side).

Owns the arrow "compile -> load/attach" for policy hooks. bpf/generic_hook.c
is compiled at most once per BPF program type (`HookObject`: tracepoint for
syscalls and tracepoints, kprobe for kprobes and uprobes, LSM, raw
tracepoint), the first time a hook of that type is added; it knows no
policy. Each attach point (a syscall, a function, a hook, a tracepoint) is
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
copy of the entry program with its number patched in (sensors/relocate.py),
which costs a verifier pass, not a compile.

Only this module writes policy maps. It must run in the process that loaded
the process sensor: programs join that sensor's ring buffer and execve_map
through bcc's exported tables (bpf/shared_maps.h).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import time
from dataclasses import dataclass, field

from bcc import BPF
from bcc.libbcc import lib

from tetrad.abi import generic as enc
from tetrad.bpf import syscall as bpf_syscall
from tetrad.paths import bpf_dir
from tetrad.policy.compile import CompiledHook, Target
from tetrad.policy.points import PointTables
from tetrad.policy.errors import PolicyError
from tetrad.sensors import offsets as struct_offsets
from tetrad.sensors import relocate
from tetrad.sensors.targets import INDEX_SIZE, TargetMissing, syscall_key

log = logging.getLogger(__name__)

MAX_POINTS = 128                # physical tables per object (G_MAX_POINTS): 63 points
MAX_HOOKS = 256                 # per object (G_MAX_HOOKS)
CGROUP_ENTRIES = 16384          # per object: (cgroup, hook) pairs of scoped hooks
TRIE_ENTRIES = 16384            # per trie (G_TRIE_ENTRIES)
PID_ENTRIES = 4096              # pid_sel (G_PID_ENTRIES)
BPF_MAP_TYPE_PROG_ARRAY = 3

# Program types (G_PROG_TYPE) and the hook kinds each serves.
TYPE_TP, TYPE_KPROBE, TYPE_LSM, TYPE_RAWTP = 1, 2, 3, 4
TYPE_OF_KIND = {"syscall": TYPE_TP, "tracepoint": TYPE_TP, "kprobe": TYPE_KPROBE,
                "uprobe": TYPE_KPROBE, "lsm": TYPE_LSM, "rawtp": TYPE_RAWTP}
BCC_TYPE = {TYPE_TP: BPF.TRACEPOINT, TYPE_KPROBE: BPF.KPROBE, TYPE_LSM: BPF.LSM,
            TYPE_RAWTP: BPF.RAW_TRACEPOINT}
STAGES = (b"g_read", b"g_eval", b"g_select", b"g_act")     # S_READ .. S_ACT
ENTRY = {"tracepoint": b"g_tp", "kprobe": b"g_kprobe", "uprobe": b"g_kprobe", "lsm": b"g_lsm",
         "rawtp": b"g_rawtp"}
EXIT = {"kprobe": b"g_kretprobe", "uprobe": b"g_kretprobe"}


class AttachError(Exception):
    """A hook could not be attached; the message says which and why."""


class HookObject:
    """One compiled bpf/generic_hook.c for one program type, with its maps."""

    def __init__(self, prog_type: int, obj_id: int, cflags: list[str]):
        self.prog_type = prog_type
        self.obj_id = obj_id
        self.bcc_type = BCC_TYPE[prog_type]
        started = time.monotonic()
        try:
            self.bpf = BPF(src_file=str(bpf_dir() / "generic_hook.c").encode(),
                           cflags=cflags + [f"-DG_PROG_TYPE={prog_type}", f"-DOBJ_ID={obj_id}"])
        except Exception as err:  # bcc raises plain Exception for compile errors
            raise AttachError(f"the policy programs did not compile: {err}") from None
        try:
            if prog_type != TYPE_LSM:       # LSM points have stages of their own
                stages = self.bpf[b"stages"]
                for i, name in enumerate(STAGES):
                    fn = self.bpf.load_func(name, self.bcc_type)
                    stages[ctypes.c_int(i)] = ctypes.c_int(fn.fd)
        except Exception as err:
            self.bpf.cleanup()
            raise AttachError(f"the kernel refused the policy programs: {err}") from None
        self.free_points = list(range(1, MAX_POINTS // 2))
        self.free_hooks = list(range(MAX_HOOKS))
        log.info("policy programs for %s hooks compiled and loaded (%.2fs)",
                 {TYPE_TP: "syscall and tracepoint", TYPE_KPROBE: "kprobe and uprobe",
                  TYPE_LSM: "LSM", TYPE_RAWTP: "raw tracepoint"}[prog_type],
                 time.monotonic() - started)

    def table(self, name: str):
        return self.bpf[name.encode()]

    def close(self) -> None:
        self.bpf.cleanup()


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
    detach: list = field(default_factory=list)      # callables undoing attachments
    copies: list = field(default_factory=list)      # program copies to unload
    syscall_nr: int | None = None
    stage_array: object = None                      # LSM: its own prog array (bpf_syscall.Fd)


@dataclass
class Attachment:
    """One hook in the kernel: which object, which point, which hook id."""

    obj: HookObject
    point: AttachPoint
    hook_id: int
    cgroups: set[int] = field(default_factory=set)  # cgroup_sel entries written (scoped hooks)


class GenericPrograms:
    def __init__(self):
        self._objects: dict[int, HookObject] = {}
        self._points: dict[tuple, AttachPoint] = {}
        self._next_obj = 1
        offsets = struct_offsets.policy_offsets()
        self._cflags = [f"-I{bpf_dir()}", f"-DG_MAX_POINTS={MAX_POINTS}", f"-DG_MAX_HOOKS={MAX_HOOKS}",
                        f"-DG_INDEX_SIZE={INDEX_SIZE}", f"-DG_CGROUP_ENTRIES={CGROUP_ENTRIES}",
                        f"-DG_TRIE_ENTRIES={TRIE_ENTRIES}", f"-DG_PID_ENTRIES={PID_ENTRIES}"]
        self._cflags += struct_offsets.cflags(offsets or None)
        self._cflags += [f"-D{k}={v}" for k, v in sorted(offsets.items()) if k.startswith("SIZEOF_")]

    def compiled(self, kind: str) -> bool:
        """Whether the programs for this hook kind are compiled already."""
        return TYPE_OF_KIND[kind] in self._objects

    # ---- hooks ----------------------------------------------------------------

    def add(self, ch: CompiledHook) -> Attachment:
        """Add a hook at its point: tables written, point attached. A
        workload-scoped hook then runs for no cgroup until they are listed
        (scope_cgroup). On failure nothing of this hook stays in the kernel."""
        obj = self._object(TYPE_OF_KIND[ch.target.kind])
        point = self._point(obj, ch.target)
        if not obj.free_hooks:
            raise AttachError(f"{MAX_HOOKS} policy hooks of this kind are loaded, the most tetrad holds")
        hook_id = obj.free_hooks.pop(0)
        try:
            point.tables.add(hook_id, ch)
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

    # ---- points ---------------------------------------------------------------

    def _object(self, prog_type: int) -> HookObject:
        obj = self._objects.get(prog_type)
        if obj is None:
            obj = HookObject(prog_type, self._next_obj, self._cflags)
            self._next_obj += 1
            self._objects[prog_type] = obj
        return obj

    def _point(self, obj: HookObject, target: Target) -> AttachPoint:
        key = (obj.prog_type, target.kind, target.name, target.binary)
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
        for undo in reversed(point.detach):
            try:
                undo()
            except Exception as err:
                log.warning("detaching %s: %s", point.target.function_name, err)
        point.detach.clear()
        for fn in point.copies:
            relocate.unload(obj.bpf, fn)
        point.copies.clear()
        if point.stage_array is not None:
            point.stage_array.close()
            point.stage_array = None
        if point.syscall_nr is not None:
            obj.table("sys_point")[ctypes.c_uint32(point.syscall_nr)] = ctypes.c_uint32(0)
        if point.phys:
            obj.table("point_ref")[ctypes.c_uint32(point.lpoint)] = ctypes.c_uint32(0)
            obj.table("points")[ctypes.c_uint32(point.phys)] = obj.table("points").Leaf()
        self._apply_entries(point, {"str_fwd": {}, "str_rev": {}, "cidr": {}, "pid_sel": {}})
        self._clear_hooks(point, set())
        self._points = {k: p for k, p in self._points.items() if p is not point}
        obj.free_points.append(point.lpoint)

    # ---- tables ---------------------------------------------------------------

    def _write(self, point: AttachPoint) -> None:
        obj = point.obj
        tables = point.tables.tables()
        hooks = obj.table("hooks")
        for hook_id, raw in tables.hooks.items():           # 1. new hooks
            if hook_id not in point.hooks:
                hooks[hooks.Key(hook_id)] = hooks.Leaf.from_buffer_copy(raw)
                point.hooks.add(hook_id)
        self._apply_entries(point, tables.entries, removals=False)   # 2. new and grown entries
        phys = 2 * point.lpoint + (1 if point.phys == 2 * point.lpoint else 0)
        points = obj.table("points")                         # 3. the table, then the switch
        points[points.Key(phys)] = points.Leaf.from_buffer_copy(tables.point)
        obj.table("point_ref")[ctypes.c_uint32(point.lpoint)] = ctypes.c_uint32(phys)
        point.phys = phys
        self._apply_entries(point, tables.entries)           # 4. entries and hooks no longer used
        self._clear_hooks(point, set(tables.hooks))

    def _apply_entries(self, point: AttachPoint, wanted: dict[str, dict[bytes, bytes]],
                       removals: bool = True) -> None:
        obj = point.obj
        for name in ("str_fwd", "str_rev", "cidr", "pid_sel"):
            table = obj.table(name)
            have = point.entries.setdefault(name, {})
            want = wanted.get(name, {})
            for key, value in want.items():
                if have.get(key) != value:
                    self._update(table, key, value, name)
                    have[key] = value
            if removals:
                for key in [k for k in have if k not in want]:
                    try:
                        del table[table.Key.from_buffer_copy(key)]
                    except KeyError:
                        pass
                    del have[key]

    @staticmethod
    def _update(table, key: bytes, value: bytes, name: str) -> None:
        k = table.Key.from_buffer_copy(key)
        v = table.Leaf.from_buffer_copy(value)
        if lib.bpf_update_elem(table.map_fd, ctypes.byref(k), ctypes.byref(v), 0) < 0:
            err = ctypes.get_errno()
            if err in (errno.E2BIG, errno.ENOMEM, errno.ENOSPC):
                raise AttachError(f"the kernel map {name} is full: too many values in the loaded "
                                  f"policies ({os.strerror(err)})")
            raise AttachError(f"cannot write {name}: {os.strerror(err)}")

    def _clear_hooks(self, point: AttachPoint, keep: set[int]) -> None:
        hooks = point.obj.table("hooks")
        for hook_id in [h for h in point.hooks if h not in keep]:
            hooks[hooks.Key(hook_id)] = hooks.Leaf()        # inactive
            point.hooks.discard(hook_id)

    @staticmethod
    def _reset_stats(obj: HookObject, hook_id: int) -> None:
        table = obj.table("hook_stats")
        table[table.Key(hook_id)] = table.Leaf()    # zero on every CPU

    # ---- attaching ------------------------------------------------------------

    def _attach(self, point: AttachPoint, ch: CompiledHook) -> None:
        """Attach the point's entry the first time, its exit the first time a
        hook there needs one (return probe, second read at sys_exit)."""
        obj, t = point.obj, point.target
        b = obj.bpf
        needs_exit = ch.has_return or ch.retry
        if t.kind == "syscall":
            if point.syscall_nr is None:
                try:
                    point.syscall_nr = syscall_key(t.name)
                except TargetMissing as err:
                    raise AttachError(str(err)) from None
                obj.table("sys_point")[ctypes.c_uint32(point.syscall_nr)] = ctypes.c_uint32(point.lpoint)
            if not point.attached:
                tp = f"syscalls:sys_enter_{t.name}".encode()
                b.attach_tracepoint(tp=tp, fn_name=b"g_sys_enter")
                point.detach.append(lambda: b.detach_tracepoint(tp=tp))
                point.attached = True
            if needs_exit and not point.exit_attached:
                tpx = f"syscalls:sys_exit_{t.name}".encode()
                b.attach_tracepoint(tp=tpx, fn_name=b"g_sys_exit")
                point.detach.append(lambda: b.detach_tracepoint(tp=tpx))
                point.exit_attached = True
            return
        if not point.attached:
            fn = self._copy(point, ENTRY[t.kind])
            if t.kind == "tracepoint":
                tp = t.name.replace("/", ":").encode()
                b.attach_tracepoint(tp=tp, fn_name=fn.name)
                point.detach.append(lambda: b.detach_tracepoint(tp=tp))
            elif t.kind == "kprobe":
                b.attach_kprobe(event=t.name.encode(), fn_name=fn.name)
                point.detach.append(lambda: b.detach_kprobe(event=t.name.encode(), fn_name=fn.name))
            elif t.kind == "uprobe":
                b.attach_uprobe(name=t.binary.encode(), sym=t.name.encode(), fn_name=fn.name)
                point.detach.append(lambda: b.detach_uprobe(name=t.binary.encode(), sym=t.name.encode()))
            elif t.kind == "lsm":
                link = lib.bpf_attach_lsm(fn.fd)
                if link < 0:
                    raise AttachError(f"cannot attach LSM hook {t.name}: {os.strerror(ctypes.get_errno())}")
                point.detach.append(lambda: os.close(link))
            point.attached = True
        if needs_exit and not point.exit_attached:
            if t.kind not in EXIT:
                raise AttachError(f"{t.kind} hooks have no return probe")
            fn = self._copy(point, EXIT[t.kind])
            if t.kind == "kprobe":
                b.attach_kretprobe(event=t.name.encode(), fn_name=fn.name)
                point.detach.append(lambda: b.detach_kretprobe(event=t.name.encode(), fn_name=fn.name))
            else:
                b.attach_uretprobe(name=t.binary.encode(), sym=t.name.encode(), fn_name=fn.name)
                point.detach.append(lambda: b.detach_uretprobe(name=t.binary.encode(), sym=t.name.encode()))
            point.exit_attached = True

    def _copy(self, point: AttachPoint, entry: bytes) -> BPF.Function:
        """The entry program bound to this point (and, for LSM, the stages
        with a prog array of the point's own)."""
        obj = point.obj
        maps = None
        lsm_name = None
        if obj.prog_type == TYPE_LSM:
            # Stages bound to this hook, in a prog array of its own.
            lsm_name = b"lsm__" + point.target.name.encode()
            if point.stage_array is None:
                point.stage_array = bpf_syscall.map_create(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, len(STAGES))
            maps = {obj.table("stages").map_fd: point.stage_array.fd}
            for i, stage in enumerate(STAGES):
                fn = self._load_copy(point, b"%s#%d" % (stage, point.lpoint),
                                     relocate.patch(relocate.instructions(obj.bpf, stage), maps=maps),
                                     lsm_name)
                key, value = ctypes.c_int(i), ctypes.c_int(fn.fd)
                if lib.bpf_update_elem(point.stage_array.fd, ctypes.byref(key), ctypes.byref(value), 0) < 0:
                    raise AttachError(f"cannot fill the LSM stage table: {os.strerror(ctypes.get_errno())}")
        return self._load_copy(point, b"%s#%d" % (entry, point.lpoint),
                               relocate.patch(relocate.instructions(obj.bpf, entry), point.lpoint, maps),
                               lsm_name)

    def _load_copy(self, point: AttachPoint, key: bytes, insns: bytes,
                   name: bytes | None = None) -> BPF.Function:
        try:
            fn = relocate.load(point.obj.bpf, key, point.obj.bcc_type, insns, name)
        except relocate.LoadError as err:
            raise AttachError(f"{point.target.function_name}: {err}") from None
        point.copies.append(fn)
        return fn

    # ---- workload scopes --------------------------------------------------------

    def scope_cgroup(self, att: Attachment, cgroup_id: int, selected: bool) -> bool:
        """Let a workload-scoped hook run (or no longer run) for tasks in
        one cgroup. False when the kernel map is full."""
        table = att.obj.table("cgroup_sel")
        key = enc.CgroupKey(cgroup_id, att.hook_id)
        if selected:
            one = ctypes.c_uint8(1)
            if lib.bpf_update_elem(table.map_fd, ctypes.byref(key), ctypes.byref(one), 0) < 0:
                err = ctypes.get_errno()
                if err == errno.E2BIG:     # a hash map that is full
                    return False
                raise OSError(err, f"cgroup_sel update: {os.strerror(err)}")
            att.cgroups.add(cgroup_id)
        elif cgroup_id in att.cgroups:
            att.cgroups.discard(cgroup_id)
            try:
                del table[key]
            except KeyError:
                pass
        return True

    # ---- reading ------------------------------------------------------------------

    def stats(self, att: Attachment) -> enc.HookStats:
        table = att.obj.table("hook_stats")
        total = enc.HookStats()
        for cpu_value in table[table.Key(att.hook_id)]:
            for name, _ in enc.HookStats._fields_:
                setattr(total, name, getattr(total, name) + getattr(cpu_value, name))
        return total

    def bpfs(self) -> list[BPF]:
        return [obj.bpf for obj in self._objects.values()]

    def close(self) -> None:
        for point in list(self._points.values()):
            if point.stage_array is not None:
                point.stage_array.close()
        self._points.clear()
        for obj in self._objects.values():
            obj.close()
        self._objects.clear()
