"""Policy hook programs: build, share, attach, configure, detach (bcc side).

Owns the arrow "compile -> load/attach" for policy hooks. A `Program` is
one compiled bpf/generic_hook.c for one argument `Layout`. Syscall hooks
with equal layouts share a program: it finds each syscall's hook by the
syscall number the tracepoint hands it (the demux key), so a second policy
on another syscall costs no compile. Other hooks get a program each.

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
from tetrad.paths import bpf_dir
from tetrad.policy.compile import CompiledHook, Layout
from tetrad.sensors import offsets as struct_offsets
from tetrad.sensors.targets import INDEX_SIZE, TargetMissing, syscall_key

log = logging.getLogger(__name__)

MAX_HOOKS = 64                  # per program (G_MAX_HOOKS)
CGROUP_ENTRIES = 16384          # per program: (cgroup, hook) pairs of scoped hooks


class AttachError(Exception):
    """A hook could not be attached; the message says which and why."""


@dataclass
class Program:
    obj_id: int
    layout: Layout
    bpf: BPF
    hooks: dict[int, CompiledHook] = field(default_factory=dict)   # hook id -> hook
    keys: dict[int, int] = field(default_factory=dict)             # demux key -> hook id

    def free_hook_id(self) -> int:
        for i in range(MAX_HOOKS):
            if i not in self.hooks:
                return i
        raise AttachError("too many hooks in one program")


@dataclass
class Attachment:
    """One hook in the kernel: which program, which slot, which keys."""

    program: Program
    hook_id: int
    keys: tuple[int, ...]
    detach: list = field(default_factory=list)      # callables undoing attach
    cgroups: set[int] = field(default_factory=set)  # cgroup_sel entries written (scoped hooks)


class GenericPrograms:
    def __init__(self):
        self._programs: list[Program] = []
        self._by_obj: dict[int, Program] = {}      # per record: a dict lookup, not a scan
        self._next_obj = 1
        self._offsets = struct_offsets.policy_offsets()

    def by_obj(self, obj_id: int) -> Program | None:
        return self._by_obj.get(obj_id)

    def _cflags(self, layout: Layout, obj_id: int) -> list[str]:
        flags = [f"-I{bpf_dir()}", f"-DOBJ_ID={obj_id}", f"-DG_MAX_HOOKS={MAX_HOOKS}",
                 f"-DG_INDEX_SIZE={INDEX_SIZE}", f"-DG_CGROUP_ENTRIES={CGROUP_ENTRIES}"]
        flags += struct_offsets.cflags(self._offsets or None)
        flags += [f"-D{k}={v}" for k, v in sorted(self._offsets.items()) if k.startswith("SIZEOF_")]
        return flags + layout.cflags()

    def _program_for(self, ch: CompiledHook, keys: tuple[int, ...]) -> Program:
        if ch.layout.kind == "syscall":
            for p in self._programs:
                if p.layout == ch.layout and not set(keys) & set(p.keys) and len(p.hooks) < MAX_HOOKS:
                    return p
        obj_id = self._next_obj
        self._next_obj += 1
        started = time.monotonic()
        try:
            bpf = BPF(src_file=str(bpf_dir() / "generic_hook.c").encode(),
                      cflags=self._cflags(ch.layout, obj_id))
        except Exception as err:  # bcc raises plain Exception for compile/verify errors
            raise AttachError(f"the kernel refused the program for {ch.target.function_name}: {err}") from None
        program = Program(obj_id, ch.layout, bpf)
        self._programs.append(program)
        self._by_obj[obj_id] = program
        log.debug("built program %d for %s in %.2fs", obj_id, ch.target.function_name,
                  time.monotonic() - started)
        return program

    def _keys(self, ch: CompiledHook) -> tuple[int, ...]:
        if ch.layout.kind != "syscall":
            return (0,)
        try:
            return (syscall_key(ch.target.name),)
        except TargetMissing as err:
            raise AttachError(str(err)) from None

    def add(self, ch: CompiledHook) -> Attachment:
        """Build or reuse a program, write the hook's maps, attach it. A
        workload-scoped hook then runs for no cgroup until they are listed
        (scope_cgroup). On failure nothing of this hook stays in the kernel."""
        keys = self._keys(ch)
        program = self._program_for(ch, keys)
        hook_id = program.free_hook_id()
        att = Attachment(program, hook_id, keys)
        try:
            self._write(program, ch, hook_id, keys)
            program.hooks[hook_id] = ch
            for key in keys:
                program.keys[key] = hook_id
            self._attach(program, ch, att)
        except Exception as err:
            self.remove(att)
            if isinstance(err, AttachError):
                raise
            raise AttachError(f"cannot attach {ch.target.function_name}: {err}") from None
        return att

    def _write(self, program: Program, ch: CompiledHook, hook_id: int, keys) -> None:
        b = program.bpf
        config, entries = ch.encode(hook_id)
        for name, key in entries:
            table = b[name.encode()]
            table[table.Key.from_buffer_copy(key)] = table.Leaf(1)
        hooks = b[b"hooks"]
        hooks[hooks.Key(hook_id)] = hooks.Leaf.from_buffer_copy(config)
        index = b[b"hook_index"]
        for key in keys:
            value = enc.HookList()
            value.n = 1
            value.ids[0] = hook_id
            index[index.Key(key)] = index.Leaf.from_buffer_copy(bytes(value))

    def _attach(self, program: Program, ch: CompiledHook, att: Attachment) -> None:
        b, t, ret = program.bpf, ch.target, ch.layout.has_return
        if t.kind == "syscall":
            tp = f"syscalls:sys_enter_{t.name}".encode()
            b.attach_tracepoint(tp=tp, fn_name=b"g_enter")
            att.detach.append(lambda: b.detach_tracepoint(tp=tp))
            if ret or ch.layout.retry:      # return values; arguments read again
                tpx = f"syscalls:sys_exit_{t.name}".encode()
                b.attach_tracepoint(tp=tpx, fn_name=b"g_exit")
                att.detach.append(lambda: b.detach_tracepoint(tp=tpx))
        elif t.kind == "tracepoint":
            tp = t.name.replace("/", ":").encode()
            b.attach_tracepoint(tp=tp, fn_name=b"g_enter")
            att.detach.append(lambda: b.detach_tracepoint(tp=tp))
        elif t.kind == "kprobe":
            b.attach_kprobe(event=t.name.encode(), fn_name=b"g_enter")
            att.detach.append(lambda: b.detach_kprobe(event=t.name.encode()))
            if ret:
                b.attach_kretprobe(event=t.name.encode(), fn_name=b"g_exit")
                att.detach.append(lambda: b.detach_kretprobe(event=t.name.encode()))
        elif t.kind == "uprobe":
            b.attach_uprobe(name=t.binary.encode(), sym=t.name.encode(), fn_name=b"g_enter")
            att.detach.append(lambda: b.detach_uprobe(name=t.binary.encode(), sym=t.name.encode()))
            if ret:
                b.attach_uretprobe(name=t.binary.encode(), sym=t.name.encode(), fn_name=b"g_exit")
                att.detach.append(lambda: b.detach_uretprobe(name=t.binary.encode(), sym=t.name.encode()))
        # LSM programs attach when bcc loads the object (lsm__<hook>).

    def scope_cgroup(self, att: Attachment, cgroup_id: int, selected: bool) -> bool:
        """Let a workload-scoped hook run (or no longer run) for tasks in
        one cgroup. False when the kernel map is full."""
        table = att.program.bpf[b"cgroup_sel"]
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

    def remove(self, att: Attachment) -> None:
        program = att.program
        for undo in reversed(att.detach):
            try:
                undo()
            except Exception as err:
                log.warning("detaching %s: %s", program.hooks.get(att.hook_id), err)
        att.detach.clear()
        for cgroup_id in list(att.cgroups):
            self.scope_cgroup(att, cgroup_id, False)
        index = program.bpf[b"hook_index"]
        for key in att.keys:
            if program.keys.get(key) == att.hook_id:
                del program.keys[key]
                index[index.Key(key)] = index.Leaf()      # n = 0: no hook
        ch = program.hooks.pop(att.hook_id, None)
        if ch is not None:
            self._clear_values(program, ch, att.hook_id)
        if not program.hooks:
            program.bpf.cleanup()
            self._programs.remove(program)
            del self._by_obj[program.obj_id]

    def _clear_values(self, program: Program, ch: CompiledHook, hook_id: int) -> None:
        b = program.bpf
        hooks = b[b"hooks"]
        hooks[hooks.Key(hook_id)] = hooks.Leaf()       # inactive
        _, entries = ch.encode(hook_id)
        for name, key in entries:
            table = b[name.encode()]
            try:
                del table[table.Key.from_buffer_copy(key)]
            except KeyError:
                pass

    def stats(self, att: Attachment) -> enc.HookStats:
        table = att.program.bpf[b"hook_stats"]
        total = enc.HookStats()
        for cpu_value in table[table.Key(att.hook_id)]:
            for name, _ in enc.HookStats._fields_:
                setattr(total, name, getattr(total, name) + getattr(cpu_value, name))
        return total

    def bpfs(self) -> list[BPF]:
        return [p.bpf for p in self._programs]

    def close(self) -> None:
        for program in list(self._programs):
            program.bpf.cleanup()
        self._programs.clear()
        self._by_obj.clear()

