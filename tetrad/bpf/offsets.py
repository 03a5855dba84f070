"""Kernel struct offsets for BPF programs, read from the running kernel's BTF.

Installed kernel headers can describe a different kernel than the one running
(on our CI machine: 6.1 headers under a 6.18 kernel), and then every
`task->fs` compiled from them reads the wrong bytes. The kernel's own BTF
always describes the running layout, so the few struct fields our BPF code
follows are looked up there and handed to the compiler as `-DOFF_*=<bytes>`.
BPF sources read those fields with bpf_probe_read_kernel() at these offsets.

Without BTF, `struct_offsets()` raises `OffsetsUnavailable`; callers then
compile with `-DTETRAD_NO_BTF` and leave the struct-derived fields empty.

Credentials and namespaces (bpf/proc_state.h) are a group of their own
(`state_offsets()`): all of it or none (then they are not tracked), except
the time and cgroup namespaces a kernel can be built without. Fields that
sit close together are read as one block; the group adds each block's
start and length (`*_BLOCK_START`, `*_BLOCK_LEN`) and `TETRAD_HAVE_STATE`.
"""

from __future__ import annotations

import functools

from tetrad.bpf.btf import Btf, vmlinux

# macro name -> (struct, member path). Every entry is required unless listed
# in _OPTIONAL (kernels built without CONFIG_AUDIT have no loginuid).
_FIELDS: dict[str, tuple[str, str]] = {
    "OFF_TASK_FS": ("task_struct", "fs"),
    "OFF_TASK_MM": ("task_struct", "mm"),
    "OFF_TASK_LOGINUID": ("task_struct", "loginuid"),
    "OFF_FS_ROOT": ("fs_struct", "root"),
    "OFF_FS_PWD": ("fs_struct", "pwd"),
    "OFF_PATH_MNT": ("path", "mnt"),
    "OFF_PATH_DENTRY": ("path", "dentry"),
    "OFF_MM_EXE_FILE": ("mm_struct", "exe_file"),
    "OFF_MM_ARG_START": ("mm_struct", "arg_start"),
    "OFF_MM_ARG_END": ("mm_struct", "arg_end"),
    "OFF_FILE_F_PATH": ("file", "f_path"),
    "OFF_VFSMOUNT_MNT_ROOT": ("vfsmount", "mnt_root"),
    "OFF_DENTRY_D_PARENT": ("dentry", "d_parent"),
    "OFF_DENTRY_D_NAME": ("dentry", "d_name"),
    "OFF_QSTR_NAME": ("qstr", "name"),
    "OFF_MOUNT_MNT": ("mount", "mnt"),
    "OFF_MOUNT_MNT_PARENT": ("mount", "mnt_parent"),
    "OFF_MOUNT_MNT_MOUNTPOINT": ("mount", "mnt_mountpoint"),
}
_OPTIONAL = frozenset({"OFF_TASK_LOGINUID"})

# Fields policy programs follow for file, fd, path, sock, socket, skb and
# net_device arguments and isNamespacePID (bpf/generic_hook.c). Missing
# ones make only the argument types that need them unavailable
# (TYPE_FIELDS, checked by tetrad.policy.kernel).
POLICY_FIELDS: dict[str, tuple[str, str]] = {
    "OFF_TASK_FILES": ("task_struct", "files"),
    "OFF_FILES_FDT": ("files_struct", "fdt"),
    "OFF_FDT_FD": ("fdtable", "fd"),
    "OFF_FDT_MAX_FDS": ("fdtable", "max_fds"),
    "OFF_SOCK_FAMILY": ("sock", "__sk_common.skc_family"),
    "OFF_SOCK_STATE": ("sock", "__sk_common.skc_state"),
    "OFF_SOCK_DADDR": ("sock", "__sk_common.skc_daddr"),
    "OFF_SOCK_SADDR": ("sock", "__sk_common.skc_rcv_saddr"),
    "OFF_SOCK_DPORT": ("sock", "__sk_common.skc_dport"),
    "OFF_SOCK_NUM": ("sock", "__sk_common.skc_num"),
    "OFF_SOCK_V6_DADDR": ("sock", "__sk_common.skc_v6_daddr"),
    "OFF_SOCK_V6_SADDR": ("sock", "__sk_common.skc_v6_rcv_saddr"),
    "OFF_SOCK_PROTOCOL": ("sock", "sk_protocol"),
    "OFF_SOCK_TYPE": ("sock", "sk_type"),
    "OFF_SOCK_MARK": ("sock", "sk_mark"),
    "OFF_SOCK_PRIORITY": ("sock", "sk_priority"),
    "OFF_SOCKET_SK": ("socket", "sk"),
    "OFF_SKB_HEAD": ("sk_buff", "head"),
    "OFF_SKB_NETWORK_HEADER": ("sk_buff", "network_header"),
    "OFF_SKB_LEN": ("sk_buff", "len"),
    "OFF_SKB_HASH": ("sk_buff", "hash"),
    "OFF_SKB_MARK": ("sk_buff", "mark"),
    "OFF_SKB_PRIORITY": ("sk_buff", "priority"),
    "OFF_NETDEV_NAME": ("net_device", "name"),
    "OFF_TASK_THREAD_PID": ("task_struct", "thread_pid"),
    "OFF_PID_LEVEL": ("pid", "level"),
    "OFF_PID_NUMBERS": ("pid", "numbers"),
}


# Credentials and namespaces (bpf/proc_state.h): macro -> (struct, member,
# size in bytes, as the BPF code reads it).
STATE_FIELDS: dict[str, tuple[str, str, int]] = {
    "OFF_TASK_PID": ("task_struct", "pid", 4),
    "OFF_TASK_CRED": ("task_struct", "cred", 8),
    "OFF_TASK_NSPROXY": ("task_struct", "nsproxy", 8),
    "OFF_TASK_THREAD_PID": ("task_struct", "thread_pid", 8),
    "OFF_PID_LEVEL": ("pid", "level", 4),
    "OFF_PID_NUMBERS": ("pid", "numbers", 0),
    "OFF_UPID_NS": ("upid", "ns", 8),
    "OFF_CRED_UID": ("cred", "uid", 4),
    "OFF_CRED_GID": ("cred", "gid", 4),
    "OFF_CRED_SUID": ("cred", "suid", 4),
    "OFF_CRED_SGID": ("cred", "sgid", 4),
    "OFF_CRED_EUID": ("cred", "euid", 4),
    "OFF_CRED_EGID": ("cred", "egid", 4),
    "OFF_CRED_FSUID": ("cred", "fsuid", 4),
    "OFF_CRED_FSGID": ("cred", "fsgid", 4),
    "OFF_CRED_SECUREBITS": ("cred", "securebits", 4),
    "OFF_CRED_CAP_INHERITABLE": ("cred", "cap_inheritable", 8),
    "OFF_CRED_CAP_PERMITTED": ("cred", "cap_permitted", 8),
    "OFF_CRED_CAP_EFFECTIVE": ("cred", "cap_effective", 8),
    "OFF_CRED_USER_NS": ("cred", "user_ns", 8),
    "OFF_USERNS_LEVEL": ("user_namespace", "level", 4),
    "OFF_USERNS_OWNER": ("user_namespace", "owner", 4),
    "OFF_USERNS_GROUP": ("user_namespace", "group", 4),
    "OFF_USERNS_INUM": ("user_namespace", "ns.inum", 4),
    "OFF_NSPROXY_UTS": ("nsproxy", "uts_ns", 8),
    "OFF_NSPROXY_IPC": ("nsproxy", "ipc_ns", 8),
    "OFF_NSPROXY_MNT": ("nsproxy", "mnt_ns", 8),
    "OFF_NSPROXY_PID_FOR_CHILDREN": ("nsproxy", "pid_ns_for_children", 8),
    "OFF_NSPROXY_NET": ("nsproxy", "net_ns", 8),
    "OFF_NSPROXY_TIME": ("nsproxy", "time_ns", 8),
    "OFF_NSPROXY_TIME_FOR_CHILDREN": ("nsproxy", "time_ns_for_children", 8),
    "OFF_NSPROXY_CGROUP": ("nsproxy", "cgroup_ns", 8),
    "OFF_UTS_NS_INUM": ("uts_namespace", "ns.inum", 4),
    "OFF_IPC_NS_INUM": ("ipc_namespace", "ns.inum", 4),
    "OFF_MNT_NS_INUM": ("mnt_namespace", "ns.inum", 4),
    "OFF_PID_NS_INUM": ("pid_namespace", "ns.inum", 4),
    "OFF_NET_NS_INUM": ("net", "ns.inum", 4),
    "OFF_TIME_NS_INUM": ("time_namespace", "ns.inum", 4),
    "OFF_CGROUP_NS_INUM": ("cgroup_namespace", "ns.inum", 4),
}
# Namespace types a kernel may lack (CONFIG_TIME_NS, CONFIG_CGROUPS): each
# set is used whole or not at all; their inode numbers then stay 0.
_STATE_OPTIONAL = (
    frozenset({"OFF_NSPROXY_TIME", "OFF_NSPROXY_TIME_FOR_CHILDREN", "OFF_TIME_NS_INUM"}),
    frozenset({"OFF_NSPROXY_CGROUP", "OFF_CGROUP_NS_INUM"}),
)
# Blocks read with one call each: name -> macro prefix of their fields.
_STATE_BLOCKS = {"CRED": "OFF_CRED_", "NSPROXY": "OFF_NSPROXY_", "USERNS": "OFF_USERNS_"}
STATE_BLOCK_MAX = 256             # bytes of BPF stack one block may take
# The fields each struct argument type needs (beyond the sock's, which every
# policy program needs to compile).
TYPE_FIELDS: dict[str, tuple[str, ...]] = {
    "socket": ("OFF_SOCKET_SK",),
    "skb": ("OFF_SKB_HEAD", "OFF_SKB_NETWORK_HEADER", "OFF_SKB_LEN", "OFF_SKB_HASH",
            "OFF_SKB_MARK", "OFF_SKB_PRIORITY"),
    "net_device": ("OFF_NETDEV_NAME",),
}


class OffsetsUnavailable(Exception):
    """The running kernel's struct layout cannot be learned (no usable BTF)."""


def resolve(btf: Btf) -> dict[str, int]:
    """Map each OFF_* macro to its byte offset in `btf`; optional ones may be absent."""
    offsets = {}
    for macro, (struct_name, member) in _FIELDS.items():
        if macro in _OPTIONAL and not btf.has_member(struct_name, member):
            continue
        try:
            offsets[macro] = btf.member_offset(struct_name, member)
        except (KeyError, ValueError) as err:
            raise OffsetsUnavailable(f"BTF has no {struct_name}.{member}: {err}") from err
    return offsets


def resolve_state(btf: Btf) -> dict[str, int]:
    """STATE_FIELDS for `btf`, with the blocks and TETRAD_HAVE_STATE; raises
    OffsetsUnavailable naming what is missing or not as the BPF code reads it."""
    found: dict[str, int] = {}
    sizes: dict[str, int] = {}
    missing: dict[str, str] = {}
    for macro, (struct_name, member, size) in STATE_FIELDS.items():
        try:
            found[macro] = btf.member_offset(struct_name, member)
            sizes[macro] = btf.member_size(struct_name, member)
        except (KeyError, ValueError) as err:
            missing[macro] = f"BTF has no {struct_name}.{member}: {err}"
            continue
        if size and sizes[macro] != size:
            raise OffsetsUnavailable(f"{struct_name}.{member} is {sizes[macro]} bytes, not {size}")
    for optional in _STATE_OPTIONAL:
        if optional & missing.keys():
            for macro in optional:
                missing.pop(macro, None)
                found.pop(macro, None)
    if missing:
        raise OffsetsUnavailable(next(iter(missing.values())))
    try:
        found["SIZEOF_UPID"] = btf.type(btf.find("upid", "struct")).size_or_type
    except KeyError as err:
        raise OffsetsUnavailable(f"BTF has no struct upid: {err}") from err
    for block, prefix in _STATE_BLOCKS.items():
        members = [m for m in found if m.startswith(prefix)]
        start = min(found[m] for m in members) & ~7
        length = max(found[m] + sizes[m] for m in members) - start
        if length > STATE_BLOCK_MAX:
            raise OffsetsUnavailable(f"the {block.lower()} fields span {length} bytes "
                                     f"(at most {STATE_BLOCK_MAX} are read at once)")
        found[f"{block}_BLOCK_START"] = start
        found[f"{block}_BLOCK_LEN"] = length
    found["TETRAD_HAVE_STATE"] = 1
    return found


def _running(btf_path: str) -> Btf:
    try:
        return vmlinux(btf_path)
    except OSError as err:
        raise OffsetsUnavailable(f"cannot read {btf_path}: {err.strerror}") from err


@functools.cache
def state_offsets(btf_path: str = "/sys/kernel/btf/vmlinux") -> dict[str, int]:
    """resolve_state() for the running kernel, parsed once per process."""
    return resolve_state(_running(btf_path))


@functools.cache
def struct_offsets(btf_path: str = "/sys/kernel/btf/vmlinux") -> dict[str, int]:
    """Offsets for the running kernel, parsed once per process."""
    return resolve(_running(btf_path))


@functools.cache
def policy_offsets(btf_path: str = "/sys/kernel/btf/vmlinux") -> dict[str, int]:
    """POLICY_FIELDS that this kernel's BTF has (plus SIZEOF_UPID), with the
    process sensor's offsets and, where this kernel has them all, those of
    credentials and namespaces (resolve_state); empty without BTF."""
    try:
        btf = vmlinux(btf_path)
        base = resolve(btf)
    except (OSError, OffsetsUnavailable):
        return {}
    for macro, (struct_name, member) in POLICY_FIELDS.items():
        try:
            base[macro] = btf.member_offset(struct_name, member)
        except (KeyError, ValueError):
            continue
    try:
        base["SIZEOF_UPID"] = btf.type(btf.find("upid", "struct")).size_or_type
    except KeyError:
        pass
    try:
        base.update(resolve_state(btf))
    except OffsetsUnavailable:
        pass
    return base


def cflags(offsets: dict[str, int] | None) -> list[str]:
    """Compiler flags for BPF sources: the offsets, or TETRAD_NO_BTF without them."""
    if offsets is None:
        return ["-DTETRAD_NO_BTF"]
    return [f"-D{macro}={value}" for macro, value in sorted(offsets.items())]


@functools.cache
def pt_regs_offsets(btf_path: str = "/sys/kernel/btf/vmlinux") -> dict[str, int]:
    """Byte offset of each register in this kernel's struct pt_regs, by
    member name (ax, di, r8, ...): where a USDT probe's arguments are read
    (tetrad/elf.py names registers so). Empty without BTF."""
    try:
        btf = vmlinux(btf_path)
        regs = btf.type(btf.find("pt_regs", "struct"))
    except (OSError, KeyError, ValueError):
        return {}
    return {m.name: m.bit_offset // 8 for m in regs.members if m.name and not m.bit_offset % 8}
