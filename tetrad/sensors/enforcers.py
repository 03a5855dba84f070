"""The enforcer programs (bpf/enforcer.c): what makes a syscall fail.

A hook that decides a syscall must fail (Override on a syscall hook,
NotifyEnforcer) leaves a note for the thread; the enforcer on the syscall's
function takes it and returns the error. One enforcer is attached per
syscall function, shared by every hook that needs it and detached when the
last one goes. Where the kernel has fmod_ret programs, the enforcer is one
(it returns the error in place of the function); else, where it has kprobe
override, a kprobe that overrides the return value. tetrad.bpf.features'
`syscall_override` says whether either exists; a policy that needs one is
refused with that feature named before it gets here.
"""

from __future__ import annotations

import ctypes
import logging
import os
from dataclasses import dataclass
from typing import Callable

from bcc.libbcc import lib

from tetrad.bpf import features
from tetrad.paths import bpf_dir
from tetrad.sensors import bpfobject
from tetrad.sensors.generic import AttachError, Link

log = logging.getLogger(__name__)

BPF_PROG_TYPE_KPROBE, BPF_PROG_TYPE_TRACING = 2, 26
ANY_SYSCALL = 0xFFFFFFFF            # shared_maps.h TETRAD_ANY_SYSCALL


@dataclass
class _Enforcer:
    prog: int
    link: Link
    users: int = 0


class Enforcers:
    """`shared` gives the process sensor's map descriptors (enforce_notes
    among them); `cache` the compiled programs' cache."""

    def __init__(self, shared: Callable[[], dict[str, int]], cache: bpfobject.Cache):
        self._shared = shared
        self._cache = cache
        self._loaded: bpfobject.Loaded | None = None
        self._fmod_ret = False
        self._by_function: dict[str, _Enforcer] = {}

    def _object(self) -> bpfobject.Loaded:
        if self._loaded is None:
            self._fmod_ret = features.has_fmod_ret().available
            source = bpf_dir() / "enforcer.c"
            compilation = bpfobject.Compilation(source, [f"-I{bpf_dir()}"], self._cache)
            try:
                compiled = compilation.result()
                prog_type = BPF_PROG_TYPE_TRACING if self._fmod_ret else BPF_PROG_TYPE_KPROBE
                self._loaded = bpfobject.Loaded(compiled, prog_type, self._shared())
            except bpfobject.CompileError as err:
                raise AttachError(f"the enforcer programs: {err}") from None
        return self._loaded

    def acquire(self, function: str, nr: int | None) -> None:
        """An enforcer on `function` (a syscall's kernel function), taking
        notes for syscall number `nr` (None: any, for a function of another
        ABI such as __ia32_sys_*)."""
        enforcer = self._by_function.get(function)
        if enforcer is None:
            enforcer = self._attach(function, ANY_SYSCALL if nr is None else nr)
            self._by_function[function] = enforcer
        enforcer.users += 1

    def release(self, function: str) -> None:
        enforcer = self._by_function.get(function)
        if enforcer is None:
            return
        enforcer.users -= 1
        if enforcer.users <= 0:
            del self._by_function[function]
            enforcer.link.close()
            os.close(enforcer.prog)

    def _attach(self, function: str, nr: int) -> _Enforcer:
        obj = self._object()
        try:
            if self._fmod_ret:
                # libbcc finds the function's BTF id from the name's suffix.
                prog = obj.load("e_fmodret", point=nr, name=f"kmod_ret__{function}")
            else:
                prog = obj.load("e_kprobe", point=nr, name="e_kprobe")
        except bpfobject.CompileError as err:
            raise AttachError(f"the enforcer for {function}: {err}") from None
        if self._fmod_ret:
            fd = lib.bpf_attach_kfunc(prog)
            link = Link("link", fd)
        else:
            event = f"tetrad_{os.getpid()}_e_{function}".encode()
            fd = lib.bpf_attach_kprobe(prog, 0, event, function.encode(), 0, 0)
            link = Link("kprobe", fd, event)
        if fd < 0:
            err = os.strerror(ctypes.get_errno())
            os.close(prog)
            raise AttachError(f"cannot attach the enforcer to {function}: {err}")
        log.info("enforcer attached to %s (%s)", function, "fmod_ret" if self._fmod_ret else "kprobe override")
        return _Enforcer(prog, link)

    def close(self) -> None:
        for enforcer in self._by_function.values():
            enforcer.link.close()
            os.close(enforcer.prog)
        self._by_function.clear()
        if self._loaded is not None:
            self._loaded.close()
            self._loaded = None
