"""Offsets of credentials and namespaces from BTF (tetrad.bpf.offsets.py,
resolve_state): the macros bpf/proc_state.h reads, the blocks it reads at
once, the optional namespace types, and clear refusals, on kernel-like
shapes built type by type (no kernel)."""

from __future__ import annotations

import pytest

from tests.unit.btfgen import BtfBuilder
from tetrad.bpf.btf import Btf
from tetrad.bpf.offsets import OffsetsUnavailable, resolve_state


def kernel(time_ns=True, cgroup_ns=True, cap_size=8, user_ns_at=144, drop=()) -> Btf:
    """task_struct, cred, user_namespace, nsproxy, pid/upid and the
    namespace structs, laid out as on a 6.x kernel (offsets in bytes)."""
    b = BtfBuilder()
    u32, u64, s32 = b.int("unsigned int", 4), b.int("long long unsigned int", 8), b.int("int", 4)
    ptr = b.ptr(0)
    cap = b.struct("", cap_size, [("val", u64 if cap_size == 8 else u32, 0)])
    ns_common = b.struct("ns_common", 80, [("stashed", ptr, 0), ("inum", u32, 24 * 8)])

    def struct(name, size, members):
        b.struct(name, size, [m for m in members if f"{name}.{m[0]}" not in drop])

    def ns_struct(name, at):
        struct(name, at + 80, [("ns", ns_common, at * 8)])

    struct("task_struct", 4096, [("pid", s32, 1000 * 8), ("thread_pid", ptr, 1368 * 8),
                                 ("cred", ptr, 1736 * 8), ("nsproxy", ptr, 1840 * 8)])
    upid = b.struct("upid", 16, [("nr", s32, 0), ("ns", ptr, 64)])
    struct("pid", 160, [("level", u32, 4 * 8), ("numbers", b.array(upid, u32, 0), 144 * 8)])
    cred_fields = [(n, u32, (8 + 4 * i) * 8) for i, n in enumerate(
        ("uid", "gid", "suid", "sgid", "euid", "egid", "fsuid", "fsgid", "securebits"))]
    cred_fields += [("cap_inheritable", cap, 48 * 8), ("cap_permitted", cap, 56 * 8),
                    ("cap_effective", cap, 64 * 8), ("user_ns", ptr, user_ns_at * 8)]
    struct("cred", 256, cred_fields)
    struct("user_namespace", 400, [("level", s32, 200 * 8), ("owner", u32, 204 * 8),
                                   ("group", u32, 208 * 8), ("ns", ns_common, 216 * 8)])
    nsproxy = [("uts_ns", ptr, 8), ("ipc_ns", ptr, 16), ("mnt_ns", ptr, 24),
               ("pid_ns_for_children", ptr, 32), ("net_ns", ptr, 40)]
    if time_ns:
        nsproxy += [("time_ns", ptr, 48), ("time_ns_for_children", ptr, 56)]
    if cgroup_ns:
        nsproxy += [("cgroup_ns", ptr, 64)]
    struct("nsproxy", 72, [(n, t, off * 8) for n, t, off in nsproxy])
    for name, at in (("uts_namespace", 408), ("ipc_namespace", 1120), ("mnt_namespace", 0),
                     ("pid_namespace", 112), ("net", 160)):
        ns_struct(name, at)
    if time_ns:
        ns_struct("time_namespace", 16)
    if cgroup_ns:
        ns_struct("cgroup_namespace", 0)
    return Btf.from_bytes(b.build())


def test_every_field_with_blocks_and_have_state():
    got = resolve_state(kernel())
    assert got["TETRAD_HAVE_STATE"] == 1
    assert (got["OFF_TASK_CRED"], got["OFF_TASK_NSPROXY"], got["OFF_TASK_PID"]) == (1736, 1840, 1000)
    assert (got["OFF_CRED_UID"], got["OFF_CRED_FSGID"], got["OFF_CRED_SECUREBITS"]) == (8, 36, 40)
    assert got["OFF_CRED_CAP_EFFECTIVE"] == 64 and got["OFF_CRED_USER_NS"] == 144
    assert (got["CRED_BLOCK_START"], got["CRED_BLOCK_LEN"]) == (8, 144)
    assert (got["NSPROXY_BLOCK_START"], got["NSPROXY_BLOCK_LEN"]) == (8, 64)
    assert (got["USERNS_BLOCK_START"], got["USERNS_BLOCK_LEN"]) == (200, 44)
    assert got["OFF_USERNS_INUM"] == 216 + 24 and got["OFF_UTS_NS_INUM"] == 408 + 24
    assert got["OFF_TIME_NS_INUM"] == 16 + 24 and got["OFF_CGROUP_NS_INUM"] == 24
    assert (got["OFF_UPID_NS"], got["SIZEOF_UPID"], got["OFF_PID_NUMBERS"]) == (8, 16, 144)


def test_a_kernel_without_time_or_cgroup_namespaces_still_tracks_the_rest():
    got = resolve_state(kernel(time_ns=False, cgroup_ns=False))
    assert got["TETRAD_HAVE_STATE"] == 1
    assert not {"OFF_NSPROXY_TIME", "OFF_NSPROXY_TIME_FOR_CHILDREN", "OFF_TIME_NS_INUM",
                "OFF_NSPROXY_CGROUP", "OFF_CGROUP_NS_INUM"} & got.keys()
    assert got["NSPROXY_BLOCK_LEN"] == 40


@pytest.mark.parametrize("missing", ["cred.user_ns", "task_struct.nsproxy", "nsproxy.net_ns",
                                     "user_namespace.level"])
def test_a_missing_required_field_is_named(missing):
    struct, member = missing.split(".")
    with pytest.raises(OffsetsUnavailable, match=rf"{struct}\.{member}"):
        resolve_state(kernel(drop=(missing,)))


def test_capability_sets_not_of_64_bits_are_refused():
    with pytest.raises(OffsetsUnavailable, match="cap_inheritable is 4 bytes, not 8"):
        resolve_state(kernel(cap_size=4))


def test_fields_too_far_apart_to_read_at_once_are_refused():
    with pytest.raises(OffsetsUnavailable, match="cred fields span"):
        resolve_state(kernel(user_ns_at=400))
