"""The kernel side of credentials and namespaces: what execve_map holds for
policy programs (matchNamespaces, matchCapabilities and their *Changes).

The process sensor is loaded here, in the test process, and its map read
directly while a helper process, started after the load, steps through
changes on command: `exec_state` stays as at exec, `state` follows
setresuid/unshare while the sensor follows changes (and stays as at exec
while it does not), both start over at the next exec, and a child made with
clone(CLONE_NEWNET) has its own `state` but its parent's `exec_state`.
Each value is compared with /proc/PID from outside.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.kernel.proc_view import proc_state
from tetrad.decode.process import (NAMESPACES, STATE_CREDS, STATE_NS, STATE_SECUREBITS,
                                   STATE_USER_NS)

pytestmark = pytest.mark.kernel
NET = NAMESPACES.index("net")
UTS = NAMESPACES.index("uts")

HELPER = textwrap.dedent("""\
    import ctypes, os, signal, sys, time
    libc = ctypes.CDLL(None, use_errno=True)
    def say(*words): print(*words, flush=True)
    say("ready", sys.argv[1])
    for cmd in sys.stdin:
        cmd = cmd.strip()
        if cmd == "drop":
            assert libc.unshare(0x04000000) == 0        # CLONE_NEWUTS
            os.setgroups([]); os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            say("dropped")
        elif cmd == "clone":
            stack = ctypes.create_string_buffer(1 << 16)
            fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)(lambda _: time.sleep(60) or 0)
            top = ctypes.c_void_p(ctypes.addressof(stack) + len(stack))
            say("child", libc.clone(fn, top, 0x40000000 | signal.SIGCHLD, None))  # CLONE_NEWNET
        elif cmd == "exec":
            os.execv(sys.executable, [sys.executable, "-c", sys.argv[2], "again", sys.argv[2]])
""")


@pytest.fixture(scope="module")
def sensor():
    from tetrad.sensors.process import ProcessSensor
    s = ProcessSensor()
    s.load()
    if not s.tracks_state:
        pytest.fail("this kernel's BTF should allow tracking credentials and namespaces")
    s.follow_state_changes(True)
    yield s
    s.close()


def entry(sensor, pid):
    found = sensor.exec_entry(pid)
    if found is None:
        raise KeyError(pid)
    return found


def kernel_view(pid: int) -> dict:
    """/proc/PID as the struct's fields."""
    seen = proc_state(pid)
    caps = seen["caps"]
    return {**seen["ids"], "caps": [caps["permitted"], caps["effective"], caps["inheritable"]],
            "ns": seen["ns"]}


def as_view(st) -> dict:
    return {"uid": st.uid, "euid": st.euid, "suid": st.suid, "fsuid": st.fsuid, "gid": st.gid,
            "egid": st.egid, "sgid": st.sgid, "fsgid": st.fsgid, "caps": list(st.caps),
            "ns": list(st.ns)}


class Helper:
    """The helper program, driven line by line."""

    def __init__(self):
        self.p = subprocess.Popen([sys.executable, "-c", HELPER, "first", HELPER],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.p.stdout.readline() == "ready first\n"

    def ask(self, cmd: str) -> str:
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def close(self) -> None:
        self.p.stdin.close()
        self.p.wait(timeout=30)


ALL_KNOWN = STATE_CREDS | STATE_NS | STATE_SECUREBITS | STATE_USER_NS


def test_exec_state_stays_and_state_follows_changes_until_the_next_exec(sensor):
    h = Helper()
    try:
        start = kernel_view(h.p.pid)
        e = entry(sensor, h.p.pid)
        assert e.exec_state.known == e.state.known == ALL_KNOWN
        assert as_view(e.exec_state) == as_view(e.state) == start
        assert (e.state.user_ns_level, e.state.securebits) == (0, 0)

        assert h.ask("drop") == "dropped"
        dropped = kernel_view(h.p.pid)
        e = entry(sensor, h.p.pid)
        assert as_view(e.state) == dropped
        assert as_view(e.exec_state) == start
        assert e.state.uid == 65534 and e.state.caps[1] == 0
        assert e.state.ns[UTS] != e.exec_state.ns[UTS]

        assert h.ask("exec") == "ready again"       # the same pid, a new image
        e = entry(sensor, h.p.pid)
        assert as_view(e.exec_state) == as_view(e.state) == kernel_view(h.p.pid) == dropped
    finally:
        h.close()


def test_without_following_state_stays_as_at_exec(sensor):
    h = Helper()
    sensor.follow_state_changes(False)
    try:
        start = kernel_view(h.p.pid)
        assert h.ask("drop") == "dropped"
        assert kernel_view(h.p.pid) != start
        e = entry(sensor, h.p.pid)
        assert as_view(e.state) == as_view(e.exec_state) == start
    finally:
        sensor.follow_state_changes(True)
        h.close()


def test_a_child_cloned_into_a_new_namespace_has_its_own_state_and_its_parents_exec_state(sensor):
    h = Helper()
    try:
        answer = h.ask("clone").split()
        assert answer[0] == "child" and int(answer[1]) > 0
        child = int(answer[1])
        try:
            parent, e = entry(sensor, h.p.pid), entry(sensor, child)
            assert as_view(e.state) == kernel_view(child)
            assert e.state.ns[NET] != parent.state.ns[NET]
            assert e.state.ns[UTS] == parent.state.ns[UTS]
            assert as_view(e.exec_state) == as_view(parent.exec_state)
            assert (e.parent.pid, e.parent.ktime) == (parent.key.pid, parent.key.ktime)
        finally:
            os.kill(child, 9)
    finally:
        h.close()


def test_entry_layout_policy_programs_read_is_unchanged(sensor):
    """key, parent, bin_len and binary where they were; the states after."""
    h = Helper()
    try:
        e = entry(sensor, h.p.pid)
        assert e.key.pid == h.p.pid
        assert e.binary.decode() == os.path.realpath(sys.executable)
        assert e.bin_len == len(e.binary)
    finally:
        h.close()


def test_processes_older_than_the_sensor_get_what_proc_shows(sensor):
    """The /proc scan seeds both states with ids, capabilities and
    namespaces; /proc has no securebits or user namespace owner."""
    from tetrad.process.procfs import ProcfsScanner
    sensor.seed(ProcfsScanner().scan())
    e = entry(sensor, os.getpid())
    assert e.state.known == e.exec_state.known == STATE_CREDS | STATE_NS
    assert as_view(e.state) == as_view(e.exec_state) == kernel_view(os.getpid())


def test_the_sensor_loads_with_a_cred_layout_from_before_6_3(monkeypatch):
    """Before 6.3 kernel_cap_t is u32[2]: the capability sets sit at 4-byte
    aligned offsets (Debian 12's 6.1: 44, 52, 60). The verifier refuses a
    misaligned 8-byte load from the stack; the sensor must copy the fields.
    The values read here are wrong (this kernel's layout differs); only
    the program's acceptance is tested."""
    from tetrad.bpf import offsets
    from tetrad.sensors.process import ProcessSensor
    real = offsets.state_offsets

    def before_6_3():
        layout = dict(real())
        layout.update(OFF_CRED_CAP_INHERITABLE=44, OFF_CRED_CAP_PERMITTED=52,
                      OFF_CRED_CAP_EFFECTIVE=60)
        return layout

    monkeypatch.setattr(offsets, "state_offsets", before_6_3)
    s = ProcessSensor()
    try:
        s.load()
        assert s.tracks_state
    finally:
        s.close()
