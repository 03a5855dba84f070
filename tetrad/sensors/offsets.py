"""Kernel struct offsets for BPF programs, read from the running kernel's BTF.

Installed kernel headers can describe a different kernel than the one running
(on our CI machine: 6.1 headers under a 6.18 kernel), and then every
`task->fs` compiled from them reads the wrong bytes. The kernel's own BTF
always describes the running layout, so the few struct fields our BPF code
follows are looked up there and handed to the compiler as `-DOFF_*=<bytes>`.
BPF sources read those fields with bpf_probe_read_kernel() at these offsets.

Without BTF, `struct_offsets()` raises `OffsetsUnavailable`; callers then
compile with `-DTETRAD_NO_BTF` and leave the struct-derived fields empty.
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

# Fields policy programs follow for file, fd, sock, linux_binprm arguments
# and isNamespacePID (bpf/generic_hook.c). Missing ones make only the
# argument types that need them unavailable.
POLICY_FIELDS: dict[str, tuple[str, str]] = {
    "OFF_TASK_FILES": ("task_struct", "files"),
    "OFF_FILES_FDT": ("files_struct", "fdt"),
    "OFF_FDT_FD": ("fdtable", "fd"),
    "OFF_FDT_MAX_FDS": ("fdtable", "max_fds"),
    "OFF_BINPRM_FILE": ("linux_binprm", "file"),
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
    "OFF_TASK_THREAD_PID": ("task_struct", "thread_pid"),
    "OFF_PID_LEVEL": ("pid", "level"),
    "OFF_PID_NUMBERS": ("pid", "numbers"),
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


@functools.cache
def struct_offsets(btf_path: str = "/sys/kernel/btf/vmlinux") -> dict[str, int]:
    """Offsets for the running kernel, parsed once per process."""
    try:
        btf = vmlinux(btf_path)
    except OSError as err:
        raise OffsetsUnavailable(f"cannot read {btf_path}: {err.strerror}") from err
    return resolve(btf)


@functools.cache
def policy_offsets(btf_path: str = "/sys/kernel/btf/vmlinux") -> dict[str, int]:
    """POLICY_FIELDS that this kernel's BTF has (plus SIZEOF_UPID), with the
    process sensor's offsets; empty without BTF."""
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
