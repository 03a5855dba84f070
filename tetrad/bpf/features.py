"""What this kernel can do, found out by trying — never by version number.

Each probe loads or attaches something tiny (a two-instruction program, a
perf event) and reports what the kernel said. Kernels are patched, back-
ported and configured in every way, and our own CI kernel (6.18 without
kprobes, with mismatched headers) would fool any version check. Results are
cached per process; `tetrad probe` prints them, the daemon logs
`summary_line()`, and policies that need a missing feature are refused with
`require()`'s message.
"""

from __future__ import annotations

import errno
import functools
import os
from dataclasses import dataclass
from pathlib import Path

from tetrad.bpf import syscall as sc
from tetrad.bpf.btf import Btf, vmlinux
from tetrad.bpf.offsets import OffsetsUnavailable, state_offsets

TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
KPROBE_TARGET = b"do_sys_openat2"
LSM_HOOK = "file_open"
# The syscall functions' prefix (their BTF names), by machine.
SYSCALL_PREFIX = {"x86_64": "__x64_", "aarch64": "__arm64_"}.get(os.uname().machine, "")


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    available: bool
    detail: str


class MissingFeature(Exception):
    def __init__(self, feature: Feature, need: str = ""):
        self.feature = feature
        what = DESCRIPTIONS.get(feature.name, feature.name)
        super().__init__(f"{need + ' needs ' if need else ''}{what}, which this kernel lacks "
                         f"({feature.detail})")


def _errname(err: OSError) -> str:
    return errno.errorcode.get(err.errno, str(err.errno))


def _tracepoint_id(category: str, event: str) -> int:
    for root in TRACEFS:
        path = Path(root, "events", category, event, "id")
        if path.exists():
            return int(path.read_text())
    raise OSError(errno.ENOENT, f"no tracefs entry for {category}:{event} (is tracefs mounted?)")


def _attach_tracepoint(category: str, event: str) -> Feature:
    name = f"{category}:{event}"
    try:
        tp_id = _tracepoint_id(category, event)
        with sc.perf_event_open(sc.PERF_TYPE_TRACEPOINT, tp_id) as ev, \
                sc.prog_load(sc.PROG_TRACEPOINT, sc.RETURN_ZERO) as prog:
            sc.attach_perf_event(ev, prog)
        return Feature("", True, f"attached a program to {name}")
    except OSError as err:
        return Feature("", False, f"{name}: {_errname(err)} {err.strerror}")


def _named(name: str, result: Feature) -> Feature:
    return Feature(name, result.available, result.detail)


@functools.cache
def _btf() -> Btf | None:
    try:
        return vmlinux()
    except (OSError, ValueError):
        return None


@functools.cache
def has_btf() -> Feature:
    if _btf() is None:
        return Feature("btf", False, "/sys/kernel/btf/vmlinux missing or unreadable")
    return Feature("btf", True, "/sys/kernel/btf/vmlinux parsed")


@functools.cache
def has_tracepoints() -> Feature:
    return _named("tracepoints", _attach_tracepoint("sched", "sched_process_exec"))


@functools.cache
def has_syscall_tracepoints() -> Feature:
    return _named("syscall_tracepoints", _attach_tracepoint("syscalls", "sys_enter_openat"))


@functools.cache
def has_raw_syscalls() -> Feature:
    return _named("raw_syscalls", _attach_tracepoint("raw_syscalls", "sys_enter"))


@functools.cache
def has_raw_tracepoints() -> Feature:
    try:
        with sc.prog_load(sc.PROG_RAW_TRACEPOINT, sc.RETURN_ZERO) as prog, \
                sc.raw_tracepoint_open(prog, b"sched_process_exec"):
            pass
        return Feature("raw_tracepoints", True, "attached a program to raw tracepoint sched_process_exec")
    except OSError as err:
        return Feature("raw_tracepoints", False, f"raw tracepoint sched_process_exec: {_errname(err)} "
                                                 f"{err.strerror}")


@functools.cache
def has_ftrace_functions() -> Feature:
    for root in TRACEFS:
        path = Path(root, "available_filter_functions")
        try:
            with open(path) as f:
                f.readline()
            return Feature("ftrace_functions", True, f"{path} readable")
        except FileNotFoundError:
            continue
        except OSError as err:
            return Feature("ftrace_functions", False, f"{path}: {_errname(err)} {err.strerror}")
    return Feature("ftrace_functions", False, "no available_filter_functions in tracefs")


def _pmu_probe(name: str, pmu: str, target: bytes, offset: int, retprobe: bool) -> Feature:
    try:
        with sc.probe_pmu_event(pmu, target, offset, retprobe):
            pass
        return Feature(name, True, f"perf_event_open({pmu} PMU, {target.decode()}) worked")
    except OSError as err:
        return Feature(name, False, f"perf_event_open({pmu} PMU, {target.decode()}): "
                                    f"{_errname(err)} {err.strerror}")


@functools.cache
def has_kprobes() -> Feature:
    return _pmu_probe("kprobes", "kprobe", KPROBE_TARGET, 0, retprobe=False)


@functools.cache
def has_kretprobes() -> Feature:
    return _pmu_probe("kretprobes", "kprobe", KPROBE_TARGET, 0, retprobe=True)


def elf_entry_offset(path: str) -> int:
    """File offset of an ELF64 executable's entry point: a valid place for a
    uprobe in any binary."""
    data = Path(path).read_bytes()[:4096]
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise OSError(errno.ENOEXEC, f"{path} is not an ELF64 file")
    import struct
    entry, phoff = struct.unpack_from("<QQ", data, 24)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 1 and p_vaddr <= entry < p_vaddr + p_filesz:   # PT_LOAD
            return entry - p_vaddr + p_offset
    raise OSError(errno.ENOEXEC, f"{path}: entry point not in a loaded segment")


@functools.cache
def has_uprobes() -> Feature:
    binary = os.path.realpath("/bin/true")
    try:
        offset = elf_entry_offset(binary)
    except OSError as err:
        return Feature("uprobes", False, str(err))
    return _pmu_probe("uprobes", "uprobe", binary.encode(), offset, retprobe=False)


@functools.cache
def has_ringbuf() -> Feature:
    try:
        with sc.map_create(sc.MAP_RINGBUF, 0, 0, 4096):
            return Feature("ringbuf", True, "created a BPF ring buffer")
    except OSError as err:
        return Feature("ringbuf", False, f"BPF_MAP_CREATE ringbuf: {_errname(err)}")


def _helper_loads(name: str, prog_type: int, insns: bytes, what: str) -> Feature:
    try:
        with sc.prog_load(prog_type, insns, log_size=4096):
            return Feature(name, True, f"verifier accepted {what}")
    except OSError as err:
        return Feature(name, False, f"verifier refused {what}: {_errname(err)} {err.strerror}")


@functools.cache
def has_send_signal() -> Feature:
    insns = sc.mov_imm(1, 9) + sc.call(sc.HELPER_SEND_SIGNAL) + sc.RETURN_ZERO
    return _helper_loads("send_signal", sc.PROG_TRACEPOINT, insns, "bpf_send_signal")


@functools.cache
def has_syscall_kernel_stacks() -> Feature:
    """Whether bpf_get_stackid() gives a kernel stack at a syscall's entry
    tracepoint (where syscall hooks run): some kernels (Debian 12's 6.1)
    hand such programs the caller's user registers, and the kernel stack
    is refused with EFAULT. A program on syscalls:sys_enter_getppid, for
    this process only, records what it got."""
    name = "syscall_kernel_stacks"
    try:
        tp_id = _tracepoint_id("syscalls", "sys_enter_getppid")
        with sc.map_create(sc.MAP_STACK_TRACE, 4, 8 * 127, 16) as stacks, \
                sc.map_create(sc.MAP_ARRAY, 4, 8, 1) as result:
            insns = (sc.mov_reg(6, 1)
                     + sc.load_map_fd(2, stacks.fd) + sc.mov_reg(1, 6) + sc.mov_imm(3, 0)
                     + sc.call(sc.HELPER_GET_STACKID)
                     + sc.store_reg64(10, -8, 0) + sc.store_imm32(10, -12, 0)
                     + sc.load_map_fd(1, result.fd)
                     + sc.mov_reg(2, 10) + sc.add_imm(2, -12)
                     + sc.mov_reg(3, 10) + sc.add_imm(3, -8)
                     + sc.mov_imm(4, 0) + sc.call(sc.HELPER_MAP_UPDATE_ELEM)
                     + sc.RETURN_ZERO)
            with sc.perf_event_open(sc.PERF_TYPE_TRACEPOINT, tp_id, this_process=True) as ev, \
                    sc.prog_load(sc.PROG_TRACEPOINT, insns, log_size=4096) as prog:
                sc.attach_perf_event(ev, prog)
                os.getppid()
            got = int.from_bytes(sc.map_lookup(result, bytes(4), 8), "little", signed=True)
    except OSError as err:
        return Feature(name, False, f"syscalls:sys_enter_getppid: {_errname(err)} {err.strerror}")
    if got == 0:
        return Feature(name, False, "the probe program did not run")
    if got < 0:
        what = errno.errorcode.get(-got, str(-got))
        return Feature(name, False, f"bpf_get_stackid() at syscalls:sys_enter_getppid: {what}")
    return Feature(name, True, "bpf_get_stackid() gave a kernel stack at syscalls:sys_enter_getppid")


@functools.cache
def has_override_return() -> Feature:
    insns = sc.mov_imm(2, 0) + sc.call(sc.HELPER_OVERRIDE_RETURN) + sc.RETURN_ZERO
    return _helper_loads("override_return", sc.PROG_KPROBE, insns, "bpf_override_return")


@functools.cache
def lsm_active() -> Feature:
    try:
        lsms = Path("/sys/kernel/security/lsm").read_text().strip()
    except OSError as err:
        return Feature("lsm_active", False, f"/sys/kernel/security/lsm: {err.strerror} "
                                            "(is securityfs mounted?)")
    if "bpf" in lsms.split(","):
        return Feature("lsm_active", True, f"bpf in {lsms}")
    return Feature("lsm_active", False, f"bpf not in /sys/kernel/security/lsm ({lsms}); "
                                        "boot with lsm=...,bpf")


def _btf_prog(name: str, prog_type: int, attach_type: int, func: str, attach: bool) -> Feature:
    btf = _btf()
    if btf is None:
        return Feature(name, False, "needs BTF, which this kernel lacks")
    try:
        btf_id = btf.find(func, "func")
    except KeyError:
        return Feature(name, False, f"BTF has no {func}")
    try:
        with sc.prog_load(prog_type, sc.RETURN_ZERO, expected_attach_type=attach_type,
                          attach_btf_id=btf_id) as prog:
            if attach:
                with sc.raw_tracepoint_open(prog):
                    pass
        return Feature(name, True, f"loaded{' and attached' if attach else ''} a program on {func}")
    except OSError as err:
        return Feature(name, False, f"BPF_PROG_LOAD on {func}: {_errname(err)} {err.strerror}")


@functools.cache
def lsm_loadable() -> Feature:
    # Returning 0 from file_open allows everything; it is attached only
    # for the instant the probe takes.
    return _btf_prog("lsm_loadable", sc.PROG_LSM, sc.ATTACH_LSM_MAC, f"bpf_lsm_{LSM_HOOK}", True)


@functools.cache
def has_fentry() -> Feature:
    return _btf_prog("fentry", sc.PROG_TRACING, sc.ATTACH_TRACE_FENTRY,
                     KPROBE_TARGET.decode(), False)


@functools.cache
def has_proc_state() -> Feature:
    """Whether a task's credentials and namespaces can be read at a hook:
    every struct member bpf/proc_state.h follows is in this kernel's BTF."""
    try:
        found = state_offsets()
    except OffsetsUnavailable as err:
        return Feature("proc_state", False, str(err))
    return Feature("proc_state", True, f"{len(found)} offsets of cred, nsproxy and user_namespace from BTF")


@functools.cache
def has_fmod_ret() -> Feature:
    # A fmod_ret program may only attach where the kernel allows errors to
    # be injected: the verifier checks it at load.
    return _btf_prog("fmod_ret", sc.PROG_TRACING, sc.ATTACH_MODIFY_RETURN,
                     f"{SYSCALL_PREFIX}sys_dup", False)


@functools.cache
def has_syscall_override() -> Feature:
    """Either way of making a syscall fail (Override on a syscall hook,
    NotifyEnforcer): a fmod_ret program on the syscall's function, else a
    kprobe with bpf_override_return."""
    fmod, override, kprobes = has_fmod_ret(), has_override_return(), has_kprobes()
    if fmod.available:
        return Feature("syscall_override", True, f"fmod_ret: {fmod.detail}")
    if override.available and kprobes.available:
        return Feature("syscall_override", True, f"kprobe override: {override.detail}")
    return Feature("syscall_override", False, f"no fmod_ret ({fmod.detail}) and no kprobe "
                                              f"override ({override.detail}; {kprobes.detail})")


def uts_release(header_text: str) -> str | None:
    """The UTS_RELEASE string of include/generated/utsrelease.h."""
    for line in header_text.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[:2] == ["#define", "UTS_RELEASE"]:
            return parts[2].strip().strip('"')
    return None


@functools.cache
def matching_headers() -> Feature:
    running = os.uname().release
    path = Path(f"/lib/modules/{running}/build/include/generated/utsrelease.h")
    try:
        release = uts_release(path.read_text())
    except OSError:
        return Feature("matching_headers", False, f"no headers at /lib/modules/{running}/build")
    if release == running:
        return Feature("matching_headers", True, f"headers are for {running}")
    return Feature("matching_headers", False, f"headers are for {release}, kernel is {running}; "
                                              "struct offsets come from BTF")


PROBES = (has_btf, has_tracepoints, has_syscall_tracepoints, has_raw_syscalls, has_raw_tracepoints,
          has_ftrace_functions, has_kprobes, has_kretprobes, has_uprobes, lsm_active, lsm_loadable,
          has_fentry, has_fmod_ret, has_override_return, has_syscall_override, has_ringbuf,
          has_send_signal, has_syscall_kernel_stacks, has_proc_state, matching_headers)

DESCRIPTIONS = {
    "btf": "kernel BTF (/sys/kernel/btf/vmlinux)",
    "tracepoints": "tracepoints",
    "syscall_tracepoints": "syscall tracepoints (syscalls:*)",
    "raw_syscalls": "raw syscall tracepoints",
    "raw_tracepoints": "raw tracepoints",
    "ftrace_functions": "the list of kernel functions ftrace can attach to",
    "kprobes": "kprobes",
    "kretprobes": "kretprobes",
    "uprobes": "uprobes",
    "lsm_active": "the BPF LSM (bpf in /sys/kernel/security/lsm)",
    "lsm_loadable": "loadable BPF LSM programs",
    "fentry": "fentry programs",
    "fmod_ret": "fmod_ret programs on syscall functions (error injection)",
    "override_return": "bpf_override_return (error injection)",
    "syscall_override": "making a syscall fail (fmod_ret, or a kprobe with bpf_override_return)",
    "ringbuf": "BPF ring buffers",
    "send_signal": "bpf_send_signal",
    "syscall_kernel_stacks": "kernel stacks at syscall tracepoints",
    "proc_state": "task credentials and namespaces readable from BTF offsets",
    "matching_headers": "kernel headers matching the running kernel",
}
_BY_NAME = {p.__name__.removeprefix("has_"): p for p in PROBES}


def probe_all() -> list[Feature]:
    """Every probe, one after the other. Run concurrently they took 0.2 s
    instead of 0.6 s here, but a daemon's start in the Debian guest then
    locked up both CPUs in the kernel once (soft lockups in python3, no
    trace on the console), with the concurrent attachments (kprobe, fentry,
    uprobe, tracepoint: code patching) the likeliest cause; one after the
    other is what always ran clean there."""
    return [probe() for probe in PROBES]


def get(name: str) -> Feature:
    return _BY_NAME[name]()


def require(*names: str, need: str = "") -> None:
    """Raise MissingFeature for the first feature this kernel lacks."""
    for name in names:
        feature = get(name)
        if not feature.available:
            raise MissingFeature(feature, need)


def summary_line() -> str:
    results = probe_all()
    have = [f.name for f in results if f.available]
    lack = [f.name for f in results if not f.available]
    return f"have {', '.join(have) or 'nothing'}; lack {', '.join(lack) or 'nothing'}"
