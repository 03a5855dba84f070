"""What the running kernel offers a policy: tracepoint formats, the facts
compiling needs, and the kernel features each compiled hook requires.

One place decides whether this kernel has what a policy needs, for both
`tetrad policy check` and the daemon's loader (tetrad/sensors/policies.py):
  kernel_facts()         what compiling needs to know (tracepoint formats,
                         the kernel's and its modules' BTF)
  missing_features(hs)   every feature the compiled hooks need that this
                         kernel lacks, with the hook that needs it (and
                         what its BTF cannot serve: a struct or member its
                         argument types or walks read that it lacks,
                         missing_members and CompiledHook.unmet)
(Whether each hook's target exists is tetrad/sensors/targets.py.)
Pure but for reading tracefs, /sys/kernel/btf and the feature probe
(tetrad.bpf.features).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from tetrad import elf
from tetrad.bpf import features
from tetrad.bpf.btf import Btf, BtfError, ValueType, vmlinux
from tetrad.process.annotate import host_namespaces
from tetrad.policy.compile import ANY_SYSCALL, CompiledHook, KernelFacts, parse_tracepoint_format
from tetrad.bpf import offsets

TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
BTF_DIR = Path("/sys/kernel/btf")
# Read at -DOFF_* offsets (the programs' own), not by walk steps.
STRUCT_TYPES = {"fd", "file", "path", "sock", "dentry", "socket", "skb", "net_device"}


def tracepoint_fields(subsys: str, event: str):
    for root in TRACEFS:
        path = Path(root, "events", subsys, event, "format")
        if path.exists():
            return parse_tracepoint_format(path.read_text())
    raise FileNotFoundError(2, f"no tracefs format for {subsys}:{event}")


@functools.lru_cache(maxsize=16)
def kernel_btf(module: str = "") -> Btf:
    """The running kernel's BTF ("") or a module's (split BTF on vmlinux);
    OSError when there is none. Parsed once per process."""
    if not module:
        return vmlinux(str(BTF_DIR / "vmlinux"))
    if "/" in module or module.startswith("."):
        raise OSError(2, "not a module name")
    data = (BTF_DIR / module).read_bytes()
    return Btf.from_bytes(data, base=kernel_btf())


@functools.cache
def _host_namespaces() -> tuple[int, ...]:
    """The host's namespaces do not change while the daemon runs: read once."""
    return host_namespaces()


def raw_tracepoint_args(event: str) -> list[ValueType]:
    """The TP_PROTO parameters of a raw tracepoint, from the kernel's BTF
    (`btf_trace_<event>`: a pointer to a prototype whose first parameter is
    the tracepoint's private data, not an argument). KeyError when there is
    no such raw tracepoint."""
    btf = kernel_btf()
    try:
        params = btf.params(btf.find(f"btf_trace_{event}", "typedef"))
    except BtfError as err:
        raise KeyError(str(err)) from None
    return [btf.value_type(p.type_id) for p in params[1:]]


def usdt_probes(binary: str) -> list[elf.UsdtProbe]:
    with elf.Binary(binary) as b:
        return b.usdt_probes()


def file_offset(binary: str, address: int) -> int:
    with elf.Binary(binary) as b:
        return b.file_offset(address)


def ftrace_functions() -> list[str]:
    """Kernel functions ftrace (and so kprobes) can attach to; OSError when
    tracefs does not let us list them (lockdown, no ftrace)."""
    for root in TRACEFS:
        path = Path(root, "available_filter_functions")
        if path.exists():
            # "name [module]" per line; some kernels add an address first.
            return [line.split()[-2] if line.rstrip().endswith("]") else line.split()[-1]
                    for line in path.read_text().splitlines() if line.strip()]
    raise FileNotFoundError(2, "no tracefs available_filter_functions")


def kernel_facts() -> KernelFacts:
    arch = {"x86_64": "__x64_", "aarch64": "__arm64_"}.get(os.uname().machine, "")
    raw = raw_tracepoint_args if features.get("btf").available else None
    return KernelFacts(arch_prefix=arch, tracepoint_fields=tracepoint_fields, raw_tracepoint_args=raw,
                       usdt_probes=usdt_probes, file_offset=file_offset,
                       ftrace_functions=ftrace_functions, host_ns=_host_namespaces(), btf=kernel_btf)


def required_features(ch: CompiledHook) -> list[tuple[str, str]]:
    """(feature, why) pairs this hook needs from the kernel."""
    what = f"{ch.hook.path} ({ch.target.kind} {ch.target.function_name})"
    kind, ret = ch.target.kind, ch.has_return
    if ch.target.kind == "syscall" and ch.target.name == ANY_SYSCALL:
        need = [("raw_syscalls", f"{what} (every syscall)")]
    elif ch.target.kind == "kprobe" and ch.hook.generated == "ftrace":
        # A generated_ftrace list this machine could not expand.
        need = [("ftrace_functions", f"{what} (pattern {ch.hook.pattern!r})"), ("kprobes", what)]
    else:
        need = {
            "syscall": [("syscall_tracepoints", what)],
            "tracepoint": [("tracepoints", what)],
            "rawtp": [("raw_tracepoints", what)],
            "kprobe": [("kprobes", what)] + ([("kretprobes", f"{what} return")] if ret else []),
            "lsm": [("lsm_active", what), ("lsm_loadable", what)],
            "uprobe": [("uprobes", what)],
            # Registers are read at their offsets in struct pt_regs, from BTF.
            "usdt": [("uprobes", what)] + ([("btf", f"{what} arguments in registers")]
                                            if any(a.reg for a in ch.target.usdt_args) else []),
        }[kind]
    actions = {a.action for s in ch.hook.selectors for a in s.actions + s.return_actions}
    if ch.override_return:
        need.append(("override_return", f"{what} Override"))
    if ch.enforced:
        need.append(("syscall_override", f"{what} {'/'.join(sorted(actions & {'Override', 'NotifyEnforcer'}))}"))
    if any(a.arg_sig for s in ch.hook.selectors for a in s.actions if a.action == "NotifyEnforcer"):
        need.append(("send_signal", f"{what} NotifyEnforcer argSig"))
    if actions & {"Sigkill", "Signal"} and not ch.monitor:
        need.append(("send_signal", f"{what} {'/'.join(sorted(actions & {'Sigkill', 'Signal'}))}"))
    types = {a.type for a in ch.hook.args} | ({"sock"} if ch.ret_read is not None else set())
    ns_pid = any(p.is_namespace_pid for s in ch.hook.selectors for p in s.match_pids)
    if types & STRUCT_TYPES or ns_pid or ch.needs_btf:
        uses = sorted(types & STRUCT_TYPES) + (["isNamespacePID"] if ns_pid else []) + \
            (["struct walks"] if ch.needs_btf else [])
        need.append(("btf", f"{what} {'/'.join(uses)}"))
    if kind == "syscall" and any(a.kernel_stack for s in ch.hook.selectors for a in s.actions):
        # Syscall hooks run at the syscall's entry tracepoint.
        need.append(("syscall_kernel_stacks", f"{what} kernelStackTrace"))
    if any(s.reads_state for s in ch.hook.selectors):
        # The caller's credentials and namespaces are read at struct offsets.
        need.append(("proc_state", f"{what} namespace/capability selectors"))
    return need


def missing_features(compiled: list[CompiledHook]) -> list[tuple[str, str]]:
    """(hook path, reason) for every feature a hook needs that this kernel
    lacks, and everything its BTF cannot serve; empty when the policy can
    load here."""
    missing = []
    for ch in compiled:
        unmet = list(ch.unmet)
        for name, why in required_features(ch):
            feature = features.get(name)
            if not feature.available:
                missing.append((ch.hook.path, str(features.MissingFeature(feature, why))))
                if name == "btf":
                    unmet = []          # said once: without BTF nothing is walked
        missing += unmet
        missing += missing_members(ch)
    return missing


def missing_members(ch: CompiledHook) -> list[tuple[str, str]]:
    """Struct members a hook's argument types read that this kernel's BTF
    lacks (with BTF missing altogether, the feature check above says so)."""
    known = offsets.policy_offsets()
    if not known:
        return []
    out = []
    for type_ in sorted({a.type for a in ch.hook.args} & set(offsets.TYPE_FIELDS)):
        absent = [offsets.POLICY_FIELDS[m] for m in offsets.TYPE_FIELDS[type_] if m not in known]
        if absent:
            names = ", ".join(f"{struct}.{member}" for struct, member in absent)
            out.append((ch.hook.path, f"type {type_} needs {names}, which this kernel's BTF does not have"))
    return out
