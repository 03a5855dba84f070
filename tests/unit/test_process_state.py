"""Credentials and namespaces: decoding the kernel's state, Tetragon's JSON
shape of `cap`, `ns` and `process_credentials`, the config switches, the
process cache's handling of changes after exec, and what /proc gives for
processes older than the daemon."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from tests import tetragon_schema
from tests.unit.records import clone_bytes, exec_bytes, exit_bytes, state_bytes
from tetrad import config as cfg
from tetrad.cli.main import _parser
from tetrad.cli.run import daemon_config, overrides
from tetrad.decode.process import (STATE_CREDS, STATE_NS, STATE_SECUREBITS, STATE_USER_NS,
                                   ProcState, decode, decode_state)
from tetrad.abi.records import PROC_STATE
from tetrad.events.model import exec_event, exit_event
from tetrad.process.annotate import (Annotator, capability_names, host_namespaces,
                                     parse_ns_link, securebits_names)
from tetrad.process.cache import ProcessCache
from tetrad.process.procfs import state_from_status
from tetrad.timefmt import KtimeClock

NODE = "node1"
HOST = (4026531838, 4026531839, 4026531832, 4026531836, 4026531836, 4026531833, 4026531834,
        4026531834, 4026531835, 4026531837)
ALL = STATE_CREDS | STATE_NS | STATE_SECUREBITS | STATE_USER_NS
FULL_CAPS = (1 << 41) - 1


def state(**changes) -> ProcState:
    base = ProcState(known=ALL, securebits=0, uid=0, gid=0, suid=0, sgid=0, euid=0, egid=0,
                     fsuid=0, fsgid=0, permitted=FULL_CAPS, effective=FULL_CAPS, inheritable=0,
                     user_ns_level=0, user_ns_owner=0, user_ns_group=0, ns=HOST)
    return dataclasses.replace(base, **changes)


def clock():
    return KtimeClock(wall_ns=lambda: 1_700_000_000_000_000_000, mono_ns=lambda: 0)


def line(event) -> str:
    text = event.to_json(NODE)
    # the same fields in the same order (to_json splices the annotation in)
    assert json.dumps(json.loads(text)) == json.dumps(event.to_dict(NODE))
    tetragon_schema.assert_conforms(text)
    return text


# ---- decoding ----------------------------------------------------------------------------

def test_state_of_zeros_is_unknown():
    assert decode_state(bytes(PROC_STATE.size)) is None


def test_state_decodes_every_field_in_order():
    raw = PROC_STATE.pack(ALL, 0x11, 1, 2, 3, 4, 5, 6, 7, 8, 0xA, 0xB, 0xC, -1, 9, 10, *range(20, 30))
    assert decode_state(raw) == ProcState(
        known=ALL, securebits=0x11, uid=1, gid=2, suid=3, sgid=4, euid=5, egid=6, fsuid=7, fsgid=8,
        permitted=0xA, effective=0xB, inheritable=0xC, user_ns_level=-1, user_ns_owner=9,
        user_ns_group=10, ns=tuple(range(20, 30)))


def test_exec_clone_and_state_records_carry_the_state():
    s = state(uid=1000, euid=0)
    assert decode(exec_bytes(pid=5, ktime=10, state=s)).state == s
    assert decode(clone_bytes(pid=5, ktime=10, state=s)).state == s
    rec = decode(state_bytes(pid=5, ktime=20, proc_ktime=10, state=s, tid=6, syscall=105))
    assert (rec.proc.pid, rec.proc.ktime, rec.tid, rec.syscall, rec.state) == (5, 10, 6, 105, s)
    assert decode(exec_bytes(pid=5, ktime=10)).state is None


# ---- JSON shape --------------------------------------------------------------------------

def test_capability_names_follow_tetragons_enum():
    assert capability_names(0b111) == ["CAP_CHOWN", "DAC_OVERRIDE", "CAP_DAC_READ_SEARCH"]
    assert capability_names(1 << 21 | 1 << 40) == ["CAP_SYS_ADMIN", "CAP_CHECKPOINT_RESTORE"]
    # a capability newer than the enum is its number, as protojson writes it
    assert capability_names(1 << 45) == [45]
    assert capability_names(0) == []


def test_securebits_names_and_unknown_bits_left_out():
    assert securebits_names(0x3) == ["SecBitNoRoot", "SecBitNoRootLocked"]
    assert securebits_names(0x10 | 0x100) == ["SecBitKeepCaps"]


def test_both_switches_give_cap_ns_and_process_credentials():
    ann = Annotator(cred=True, ns=True, host=HOST)
    s = state(uid=1000, gid=1000, suid=1000, sgid=1000, permitted=1 << 12 | 1 << 13,
              effective=1 << 13, inheritable=0, securebits=0x10, user_ns_level=0)
    cache = ProcessCache(NODE, clock(), annotator=ann)
    proc, _ = cache.on_exec(decode(exec_bytes(pid=7, ktime=10, argv=("ping", "x"),
                                              exe="/usr/bin/ping", state=s, uid=1000)))
    d = proc.to_dict()
    assert d["cap"] == {"permitted": ["CAP_NET_ADMIN", "CAP_NET_RAW"], "effective": ["CAP_NET_RAW"]}
    assert d["ns"]["uts"] == {"inum": HOST[0], "is_host": True}
    assert list(d["ns"]) == ["uts", "ipc", "mnt", "pid", "pid_for_children", "net", "time",
                             "time_for_children", "cgroup", "user"]
    assert d["process_credentials"] == {
        "uid": 1000, "gid": 1000, "euid": 0, "egid": 0, "suid": 1000, "sgid": 1000, "fsuid": 0,
        "fsgid": 0, "securebits": ["SecBitKeepCaps"],
        "user_ns": {"level": 0, "uid": 0, "gid": 0, "ns": {"inum": HOST[9], "is_host": True}}}
    line(exec_event(1, proc, None))


def test_keys_come_in_proto_order():
    proc = ProcessCache(NODE, clock(), annotator=Annotator(True, True, HOST)).on_exec(
        decode(exec_bytes(pid=7, ktime=10, exe="/x", parent=(1, 5), state=state())))[0]
    keys = list(proc.to_dict())
    assert keys[keys.index("parent_exec_id") + 1:] == ["cap", "ns", "tid", "process_credentials"]


def test_zero_values_are_written_where_tetragon_writes_them():
    """Wrapped ids are written as 0; empty capability sets are left out, an
    empty cap is {}; a namespace not the host's has no is_host; one whose
    inode number is unknown (a kernel without time namespaces) is left out."""
    ns = (111,) + HOST[1:6] + (0, 0) + HOST[8:]
    ann = Annotator(cred=True, ns=True, host=HOST)(
        state(permitted=0, effective=0, inheritable=0, ns=ns, user_ns_level=2,
              user_ns_owner=1000, user_ns_group=1000))
    assert ann.cap == {}
    assert ann.process_credentials["uid"] == 0 and ann.process_credentials["fsgid"] == 0
    assert ann.ns["uts"] == {"inum": 111}
    assert "time" not in ann.ns and "time_for_children" not in ann.ns
    assert ann.process_credentials["user_ns"]["level"] == 2


def test_host_namespace_unknown_is_never_host():
    ann = Annotator(ns=True, host=(0,) * 10)(state())
    assert all(v == {"inum": i} for v, i in zip(ann.ns.values(), HOST))


def test_each_switch_alone():
    s = state()
    cred = Annotator(cred=True, host=HOST)(s)
    assert cred.cap is not None and cred.process_credentials is not None and cred.ns is None
    ns = Annotator(ns=True, host=HOST)(s)
    assert ns.cap is None and ns.process_credentials is None and ns.ns is not None
    assert Annotator(host=HOST)(s) is None
    assert Annotator(True, True, HOST)(None) is None


def test_parts_the_kernel_did_not_know_are_left_out():
    """A process from /proc: no securebits, no user_ns; without BTF nothing."""
    ann = Annotator(True, True, HOST)(state(known=STATE_CREDS | STATE_NS, securebits=0x1))
    assert "securebits" not in ann.process_credentials
    assert "user_ns" not in ann.process_credentials
    assert Annotator(True, True, HOST)(state(known=STATE_NS)).cap is None
    assert Annotator(True, False, HOST)(state(known=STATE_NS)) is None


def test_annotations_are_rendered_once_per_distinct_state():
    ann = Annotator(True, True, HOST)
    assert ann(state()) is ann(state())
    assert ann(state(uid=5)) is not ann(state())


# ---- changes after exec ------------------------------------------------------------------

def test_state_change_replaces_the_process_and_earlier_events_keep_theirs():
    cache = ProcessCache(NODE, clock(), annotator=Annotator(True, True, HOST))
    proc, _ = cache.on_exec(decode(exec_bytes(pid=9, ktime=10, exe="/bin/sh", state=state())))
    exec_line = line(exec_event(1, proc, None))
    changed = state(uid=65534, euid=65534, suid=65534, fsuid=65534, permitted=0, effective=0,
                    ns=(222,) + HOST[1:])
    new = cache.on_state(decode(state_bytes(pid=9, ktime=20, proc_ktime=10, state=changed)))
    assert new is not proc and new.key == proc.key and new.exec_id == proc.exec_id
    assert cache.by_pid(9) is new and new.state == changed
    assert line(exec_event(1, proc, None)) == exec_line        # the old event is unchanged
    done, _ = cache.on_exit(decode(exit_bytes(pid=9, ktime=30, proc_ktime=10)))
    assert done is new
    d = json.loads(line(exit_event(2, done, None, 0, None)))["process_exit"]["process"]
    assert d["process_credentials"]["euid"] == 65534 and d["cap"] == {}
    assert d["ns"]["uts"] == {"inum": 222}
    assert d["uid"] == 0                                        # uid is as at exec


def test_state_of_an_unknown_or_replaced_process_is_counted_not_applied():
    cache = ProcessCache(NODE, clock(), annotator=Annotator(True, True, HOST))
    cache.on_exec(decode(exec_bytes(pid=9, ktime=10, state=state())))
    assert cache.on_state(decode(state_bytes(pid=9, ktime=20, proc_ktime=5, state=state(uid=1)))) \
        is None
    assert cache.on_state(decode(state_bytes(pid=8, ktime=20, proc_ktime=5, state=state()))) is None
    assert cache.stats().state_misses == 2
    assert cache.by_pid(9).state == state()


def test_same_state_again_keeps_the_process():
    cache = ProcessCache(NODE, clock(), annotator=Annotator(True, True, HOST))
    proc, _ = cache.on_exec(decode(exec_bytes(pid=9, ktime=10, state=state())))
    assert cache.on_state(decode(state_bytes(pid=9, ktime=20, proc_ktime=10, state=state()))) \
        is proc


def test_clone_has_its_own_state_or_else_its_parents():
    cache = ProcessCache(NODE, clock(), annotator=Annotator(True, True, HOST))
    cache.on_exec(decode(exec_bytes(pid=9, ktime=10, state=state())))
    netns = state(ns=HOST[:5] + (333,) + HOST[6:])
    child = cache.on_clone(decode(clone_bytes(pid=10, ktime=20, parent=(9, 10), state=netns)))
    assert child.state == netns and child.to_dict()["ns"]["net"] == {"inum": 333}
    orphan = cache.on_clone(decode(clone_bytes(pid=11, ktime=21, parent=(9, 10))))
    assert orphan.state == state()


# ---- /proc -------------------------------------------------------------------------------

STATUS = """Name:\tsleep
Uid:\t1000\t0\t1001\t0
Gid:\t100\t101\t102\t103
CapInh:\t0000000000000000
CapPrm:\t0000000000003000
CapEff:\t0000000000002000
CapBnd:\t000001ffffffffff
"""


def test_status_gives_ids_and_capabilities():
    s = state_from_status(STATUS, HOST)
    assert (s.uid, s.euid, s.suid, s.fsuid, s.gid, s.egid, s.sgid, s.fsgid) == \
        (1000, 0, 1001, 0, 100, 101, 102, 103)
    assert (s.permitted, s.effective, s.inheritable) == (0x3000, 0x2000, 0)
    assert s.known == STATE_CREDS | STATE_NS and s.ns == HOST
    assert state_from_status(STATUS, (0,) * 10).known == STATE_CREDS
    with pytest.raises(KeyError):
        state_from_status("Name:\tx\n", HOST)


def test_ns_links():
    assert parse_ns_link("net:[4026531840]") == 4026531840
    for bad in ("net:4026531840", "net:[]", "net:[12a]", ""):
        with pytest.raises(ValueError):
            parse_ns_link(bad)


def _fake_proc(root, pid, links, comm=None):
    d = root / str(pid) / "ns"
    d.mkdir(parents=True)
    for name, inum in links.items():
        os.symlink(f"{name}:[{inum}]", d / name)
    if comm is not None:
        (root / str(pid) / "comm").write_text(comm + "\n")


NAMES = ("uts", "ipc", "mnt", "pid", "pid_for_children", "net", "time", "time_for_children",
         "cgroup", "user")


def test_host_namespaces_are_pid_1s(tmp_path):
    _fake_proc(tmp_path, 1, dict(zip(NAMES, HOST)))
    _fake_proc(tmp_path, 2, {n: 1 for n in NAMES}, comm="kthreadd")
    assert host_namespaces(str(tmp_path)) == HOST


def test_host_namespaces_pid_1_hides_are_kthreadds(tmp_path):
    _fake_proc(tmp_path, 1, {"uts": 5})
    _fake_proc(tmp_path, 2, dict(zip(NAMES, HOST)), comm="kthreadd")
    assert host_namespaces(str(tmp_path)) == (5,) + HOST[1:]


def test_host_namespaces_never_from_a_pid_2_that_is_not_kthreadd(tmp_path):
    _fake_proc(tmp_path, 1, {})
    _fake_proc(tmp_path, 2, dict(zip(NAMES, HOST)), comm="sh")
    assert host_namespaces(str(tmp_path)) == (0,) * 10


# ---- config ------------------------------------------------------------------------------

def test_switches_are_off_by_default_and_set_by_toml_or_flags(tmp_path):
    shipped = cfg.load(cfg.layer_files(tmp_path))
    assert not shipped.process.enable_process_cred and not shipped.process.enable_process_ns
    (tmp_path / "tetrad.toml").write_text("[process]\nenable_process_ns = true\n")
    layered = cfg.load(cfg.layer_files(tmp_path))
    assert layered.process.enable_process_ns and not layered.process.enable_process_cred
    args = _parser().parse_args(["run", "--enable-process-cred"])
    flagged = cfg.load(cfg.layer_files(tmp_path), overrides(args))
    dc = daemon_config(flagged, [])
    assert dc.enable_process_cred and dc.enable_process_ns


def test_a_switch_that_is_not_a_boolean_is_an_error(tmp_path):
    (tmp_path / "tetrad.toml").write_text('[process]\nenable_process_cred = "yes"\n')
    with pytest.raises(cfg.ConfigError, match="enable_process_cred"):
        cfg.load(cfg.layer_files(tmp_path))
