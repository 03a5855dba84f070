"""Kernel-struct policy arguments in Tetragon's JSON shape: a slot's data ->
the argument's dict. Pure.

Part of the arrow "decode -> event" for policy records (tetrad/events/
policy.py picks the renderer per argument once per hook). A struct-typed
argument's slot holds the fields tetrad/abi/argstructs.py lays out; each
renderer unpacks them and names what Tetragon names (its KprobeArgument
members and their messages in api/v1/tetragon/tetragon.proto):

  cred            process_credentials_arg  ids, securebits, caps, user_ns
  user_namespace  user_ns_arg              level, owner uid/gid, ns inum
  bpf_attr        bpf_attr_arg             ProgType, InsnCnt, ProgName
  bpf_prog        bpf_prog_arg             the same, of a loaded program
  bpf_map         bpf_map_arg              MapType, sizes, MaxEntries, MapName
  perf_event      perf_event_arg           KprobeFunc, Type, Config, ProbeOffset
  module          module_arg               name, tainted
  load_info       module_arg               name, signature_ok, tainted
  capability      capability_arg           value and CAP_* name
  kernel_cap_t... kernel_cap_t_arg ...     the set as 16 hex digits

Zero values inside messages are left out as protojson leaves them out;
wrapper fields (UInt32Value...) are written whenever set, zero included.
Names of enum values are the kernel's (uapi) and Tetragon's proto enums.
"""

from __future__ import annotations

from typing import Callable

from tetrad.abi.argstructs import LAYOUTS

# Tetragon's CapabilitiesType (capabilities.proto): value n is bit n. Its
# name for 1 is DAC_OVERRIDE, not CAP_DAC_OVERRIDE.
CAPABILITIES = (
    "CAP_CHOWN DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID CAP_KILL CAP_SETGID "
    "CAP_SETUID CAP_SETPCAP CAP_LINUX_IMMUTABLE CAP_NET_BIND_SERVICE CAP_NET_BROADCAST "
    "CAP_NET_ADMIN CAP_NET_RAW CAP_IPC_LOCK CAP_IPC_OWNER CAP_SYS_MODULE CAP_SYS_RAWIO "
    "CAP_SYS_CHROOT CAP_SYS_PTRACE CAP_SYS_PACCT CAP_SYS_ADMIN CAP_SYS_BOOT CAP_SYS_NICE "
    "CAP_SYS_RESOURCE CAP_SYS_TIME CAP_SYS_TTY_CONFIG CAP_MKNOD CAP_LEASE CAP_AUDIT_WRITE "
    "CAP_AUDIT_CONTROL CAP_SETFCAP CAP_MAC_OVERRIDE CAP_MAC_ADMIN CAP_SYSLOG CAP_WAKE_ALARM "
    "CAP_BLOCK_SUSPEND CAP_AUDIT_READ CAP_PERFMON CAP_BPF CAP_CHECKPOINT_RESTORE").split()
# SecureBitsType: the value is the bit.
SECUREBITS = ((1, "SecBitNoRoot"), (2, "SecBitNoRootLocked"), (4, "SecBitNoSetUidFixup"),
              (8, "SecBitNoSetUidFixupLocked"), (16, "SecBitKeepCaps"), (32, "SecBitKeepCapsLocked"),
              (64, "SecBitNoCapAmbientRaise"), (128, "SecBitNoCapAmbientRaiseLocked"))
# TaintedBitsType: the taints a module brings (value: the bit's value).
TAINTS = ((1, "TAINT_PROPRIETARY_MODULE"), (2, "TAINT_FORCED_MODULE"),
          (4, "TAINT_FORCED_UNLOAD_MODULE"), (1024, "TAINT_STAGED_MODULE"),
          (4096, "TAINT_OUT_OF_TREE_MODULE"), (8192, "TAINT_UNSIGNED_MODULE"),
          (32768, "TAINT_KERNEL_LIVE_PATCH_MODULE"), (1 << 18, "TAINT_TEST_MODULE"))
# uapi/linux/bpf.h and perf_event.h enums.
PROG_TYPES = tuple("BPF_PROG_TYPE_" + n for n in (
    "UNSPEC SOCKET_FILTER KPROBE SCHED_CLS SCHED_ACT TRACEPOINT XDP PERF_EVENT CGROUP_SKB "
    "CGROUP_SOCK LWT_IN LWT_OUT LWT_XMIT SOCK_OPS SK_SKB CGROUP_DEVICE SK_MSG RAW_TRACEPOINT "
    "CGROUP_SOCK_ADDR LWT_SEG6LOCAL LIRC_MODE2 SK_REUSEPORT FLOW_DISSECTOR CGROUP_SYSCTL "
    "RAW_TRACEPOINT_WRITABLE CGROUP_SOCKOPT TRACING STRUCT_OPS EXT LSM SK_LOOKUP SYSCALL "
    "NETFILTER").split())
MAP_TYPES = tuple("BPF_MAP_TYPE_" + n for n in (
    "UNSPEC HASH ARRAY PROG_ARRAY PERF_EVENT_ARRAY PERCPU_HASH PERCPU_ARRAY STACK_TRACE "
    "CGROUP_ARRAY LRU_HASH LRU_PERCPU_HASH LPM_TRIE ARRAY_OF_MAPS HASH_OF_MAPS DEVMAP SOCKMAP "
    "CPUMAP XSKMAP SOCKHASH CGROUP_STORAGE REUSEPORT_SOCKARRAY PERCPU_CGROUP_STORAGE QUEUE STACK "
    "SK_STORAGE DEVMAP_HASH STRUCT_OPS RINGBUF INODE_STORAGE TASK_STORAGE BLOOM_FILTER "
    "USER_RINGBUF CGRP_STORAGE ARENA").split())
# Tetragon names 6 PERF_TYPE_MAX (the first dynamic PMU, often kprobe's).
PERF_TYPES = ("PERF_TYPE_HARDWARE", "PERF_TYPE_SOFTWARE", "PERF_TYPE_TRACEPOINT",
              "PERF_TYPE_HW_CACHE", "PERF_TYPE_RAW", "PERF_TYPE_BREAKPOINT", "PERF_TYPE_MAX")

Render = Callable[[bytes], dict]


def _name(names: tuple[str, ...], value: int) -> str:
    """A value's name, or its number (Tetragon's fallback)."""
    return names[value] if value < len(names) else str(value)


def _present(fields: dict) -> dict:
    return {k: v for k, v in fields.items() if v}


def cap_names(mask: int) -> list[str]:
    return [name for bit, name in enumerate(CAPABILITIES) if mask >> bit & 1]


def _bits(pairs, value: int) -> list[str]:
    return [name for bit, name in pairs if value & bit]


def _user_ns(level: int, uid: int, gid: int, inum: int) -> dict:
    ns: dict = {"inum": inum} if inum else {}
    if level == 0:
        ns["is_host"] = True
    return {"level": level, "uid": uid, "gid": gid, "ns": ns}


def _cred(data: bytes) -> dict:
    f = LAYOUTS["cred"].unpack(data)
    out: dict = {k: f[k] for k in ("uid", "gid", "euid", "egid", "suid", "sgid", "fsuid", "fsgid")}
    securebits = _bits(SECUREBITS, f["securebits"])
    if securebits:
        out["securebits"] = securebits
    out["caps"] = _present({"permitted": cap_names(f["cap_permitted"]),
                            "effective": cap_names(f["cap_effective"]),
                            "inheritable": cap_names(f["cap_inheritable"])})
    out["user_ns"] = _user_ns(f["ns_level"], f["ns_uid"], f["ns_gid"], f["ns_inum"])
    return {"process_credentials_arg": out}


def _user_namespace(data: bytes) -> dict:
    f = LAYOUTS["user_namespace"].unpack(data)
    return {"user_ns_arg": _user_ns(f["level"], f["uid"], f["gid"], f["inum"])}


def _bpf_attr(key: str, layout: str) -> Render:
    def render(data: bytes) -> dict:
        f = LAYOUTS[layout].unpack(data)
        return {key: _present({"ProgType": _name(PROG_TYPES, f["prog_type"]),
                               "InsnCnt": f["insn_cnt"], "ProgName": f["prog_name"]})}
    return render


def _bpf_map(data: bytes) -> dict:
    f = LAYOUTS["bpf_map"].unpack(data)
    return {"bpf_map_arg": _present({"MapType": _name(MAP_TYPES, f["map_type"]),
                                     "KeySize": f["key_size"], "ValueSize": f["value_size"],
                                     "MaxEntries": f["max_entries"], "MapName": f["name"]})}


def _perf_event(data: bytes) -> dict:
    f = LAYOUTS["perf_event"].unpack(data)
    return {"perf_event_arg": _present({"KprobeFunc": f["kprobe_func"],
                                        "Type": _name(PERF_TYPES, f["type"]),
                                        "Config": str(f["config"]) if f["config"] else "",
                                        "ProbeOffset": str(f["probe_offset"]) if f["probe_offset"] else ""})}


def _module(layout: str) -> Render:
    def render(data: bytes) -> dict:
        f = LAYOUTS[layout].unpack(data)
        out: dict = {}
        if f["name"]:                   # Tetragon: nothing of a module it could not name
            out["name"] = f["name"]
            if "sig_ok" in f:
                out["signature_ok"] = bool(f["sig_ok"])
            tainted = _bits(TAINTS, f["taints"])
            if tainted:
                out["tainted"] = tainted
        return {"module_arg": out}
    return render


def capability(value: int) -> dict:
    value = value - (1 << 32) if value & 0x80000000 else value & 0xFFFFFFFF
    out: dict = {"value": value}
    if 0 <= value < len(CAPABILITIES):
        out["name"] = CAPABILITIES[value]
    return {"capability_arg": out}


def cap_set(key: str) -> Callable[[int], dict]:
    return lambda value: {key: f"{value & 0xFFFFFFFFFFFFFFFF:016x}"}


# Renderers of gathered structs (slot data -> argument), by argument type.
STRUCTS: dict[str, Render] = {
    "cred": _cred,
    "user_namespace": _user_namespace,
    "bpf_attr": _bpf_attr("bpf_attr_arg", "bpf_attr"),
    "bpf_prog": _bpf_attr("bpf_prog_arg", "bpf_prog"),
    "bpf_map": _bpf_map,
    "perf_event": _perf_event,
    "module": _module("module"),
    "load_info": _module("load_info"),
}
# Renderers of capability integers (slot value -> argument).
CAPS: dict[str, Callable[[int], dict]] = {
    "capability": capability,
    **{t: cap_set(f"{t}_arg") for t in ("kernel_cap_t", "cap_inheritable", "cap_permitted",
                                         "cap_effective")},
}
