"""Credentials and namespaces in events, on the real kernel, through the real
`tetrad run` with enable_process_cred and enable_process_ns (tetrad.toml).

Each test runs real processes in real namespaces and with real privilege
changes (unshare, setpriv, capsh, a Python program calling setresuid and
unshare after its exec) and compares what the events say with what the
kernel shows in /proc/PID from outside (the daemon's view: the initial user
namespace's ids). Processes hold still on a pipe while they are looked at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import uuid

import pytest

from tests.kernel.daemon_harness import TRUE, DaemonProcess, execs, exits, wait_for
from tests.kernel.proc_view import NAMESPACES, proc_state
from tetrad.process.annotate import capability_names, host_namespaces

pytestmark = pytest.mark.kernel
SH = os.path.realpath("/bin/sh")
PY = sys.executable
HOST = dict(zip(NAMESPACES, host_namespaces()))
CAP_SYS_ADMIN = 21


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    work = tmp_path_factory.mktemp("daemon")
    (work / "tetrad.toml").write_text("[process]\nenable_process_cred = true\n"
                                      "enable_process_ns = true\n")
    d = DaemonProcess(work)
    yield d
    if d.proc.poll() is None:
        d.stop()


def mark() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"


def proc_view(pid: int) -> dict:
    """What the kernel shows of `pid` from here, shaped as the event's fields."""
    seen = proc_state(pid)
    ns = {}
    for name, inum in zip(NAMESPACES, seen["ns"]):
        if inum:
            ns[name] = {"inum": inum, "is_host": True} if inum == HOST[name] else {"inum": inum}
    cap = {name: capability_names(mask) for name, mask in seen["caps"].items() if mask}
    return {"cap": cap, "ns": ns, "creds": seen["ids"]}


class Held:
    """`prefix... sh -c 'read x' MARKER`: a shell that waits on its stdin
    until released, so /proc can be read while it lives."""

    def __init__(self, daemon: DaemonProcess, *prefix: str, shell: tuple[str, ...] = (SH,),
                 binary: str = SH):
        self.marker = mark()
        self.binary = binary
        self.popen = subprocess.Popen([*prefix, *shell, "-c", "read x", self.marker],
                                      stdin=subprocess.PIPE)
        self.exec = wait_for(lambda: self._find(daemon), 30, f"exec event of {self.marker}")
        self.pid = self.exec["process"]["pid"]
        self.view = proc_view(self.pid)

    def _find(self, daemon):
        found = [e for e in execs(daemon.events(), binary=self.binary)
                 if e["process"].get("arguments", "").endswith(self.marker)]
        return found[0] if found else None

    def release(self) -> int:
        self.popen.communicate(b"\n", timeout=30)
        return self.popen.returncode


def assert_matches_kernel(process: dict, view: dict, at_exec: bool = True) -> None:
    """`uid` is the real uid at exec (Tetragon's), kept when it changes later."""
    assert process["cap"] == view["cap"]
    assert process["ns"] == view["ns"]
    creds = process["process_credentials"]
    assert {k: creds[k] for k in view["creds"]} == view["creds"]
    if at_exec:
        assert process["uid"] == view["creds"]["uid"]


def test_plain_process_has_host_namespaces_and_the_callers_credentials(daemon):
    """The negative case: nothing changed, everything is the host's."""
    held = Held(daemon)
    process = held.exec["process"]
    assert_matches_kernel(process, held.view)
    assert all(ns.get("is_host") for ns in process["ns"].values())
    assert set(process["ns"]) >= set(NAMESPACES) - {"time", "time_for_children"}
    assert process["process_credentials"]["user_ns"] == {
        "level": 0, "uid": 0, "gid": 0, "ns": {"inum": HOST["user"], "is_host": True}}
    assert "securebits" not in process["process_credentials"]
    mine = proc_view(os.getpid())
    assert process["process_credentials"]["uid"] == mine["creds"]["uid"]
    # the parent (this test, from the /proc scan) is described as well
    assert held.exec["parent"]["pid"] == os.getpid()
    assert held.exec["parent"]["ns"] == mine["ns"]
    assert held.exec["parent"]["process_credentials"]["euid"] == mine["creds"]["euid"]
    assert held.release() == 0


def test_unshare_new_namespaces_are_named_and_not_host(daemon):
    held = Held(daemon, "unshare", "--user", "--map-root-user", "--mount", "--net", "--uts",
                "--ipc", "--pid", "--fork", "--mount-proc")
    process = held.exec["process"]
    assert_matches_kernel(process, held.view)
    fresh = {"uts", "ipc", "mnt", "pid", "pid_for_children", "net", "user"}
    for name, ns in process["ns"].items():
        assert ns["inum"] != HOST[name] if name in fresh else ns == {"inum": HOST[name],
                                                                    "is_host": True}, name
        assert ("is_host" in ns) == (name not in fresh)
    user_ns = process["process_credentials"]["user_ns"]
    assert user_ns == {"level": 1, "uid": 0, "gid": 0, "ns": {"inum": process["ns"]["user"]["inum"]}}
    # root of its own user namespace: every capability, there
    assert CAP_SYS_ADMIN < len(process["cap"]["effective"])
    assert "CAP_SYS_ADMIN" in process["cap"]["effective"]
    assert held.release() == 0


def test_setpriv_reuid_drops_capabilities_and_bounding_set_limits_them(daemon):
    nobody = Held(daemon, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    process = nobody.exec["process"]
    assert_matches_kernel(process, nobody.view)
    creds = process["process_credentials"]
    assert {creds[k] for k in ("uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid")} \
        == {65534}
    assert process["cap"] == {}                 # the message, with no capability in it
    assert nobody.release() == 0

    raw = Held(daemon, "setpriv", "--bounding-set=-all,+net_raw", "--inh-caps=+net_raw")
    process = raw.exec["process"]
    assert_matches_kernel(process, raw.view)
    assert process["cap"] == {"permitted": ["CAP_NET_RAW"], "effective": ["CAP_NET_RAW"],
                              "inheritable": ["CAP_NET_RAW"]}
    assert process["process_credentials"]["uid"] == 0
    assert raw.release() == 0


def test_setpriv_ambient_capability_survives_the_change_of_user(daemon):
    held = Held(daemon, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                "--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service")
    process = held.exec["process"]
    assert_matches_kernel(process, held.view)
    assert process["cap"] == {"permitted": ["CAP_NET_BIND_SERVICE"],
                              "effective": ["CAP_NET_BIND_SERVICE"],
                              "inheritable": ["CAP_NET_BIND_SERVICE"]}
    assert process["process_credentials"]["euid"] == 65534
    assert held.release() == 0


def test_securebits_are_named(daemon):
    """SECBIT_NOROOT | its lock: root's exec grants nothing (no capability)."""
    held = Held(daemon, "setpriv", "--securebits=+noroot,+noroot_locked")
    process = held.exec["process"]
    assert_matches_kernel(process, held.view)
    assert process["process_credentials"]["securebits"] == ["SecBitNoRoot", "SecBitNoRootLocked"]
    assert process["process_credentials"]["euid"] == 0
    assert process["cap"] == {}
    assert held.release() == 0


@pytest.mark.skipif(shutil.which("capsh") is None, reason="capsh (libcap2-bin) not installed")
def test_capsh_user_with_kept_capabilities(daemon):
    held = Held(daemon, "capsh", "--caps=cap_net_admin,cap_setuid,cap_setgid,cap_setpcap+eip",
                "--keep=1", "--user=nobody", "--addamb=cap_net_admin", "--",
                shell=(), binary=os.path.realpath("/bin/bash"))   # capsh runs bash -c ...
    process = held.exec["process"]
    assert_matches_kernel(process, held.view)
    assert process["cap"]["effective"] == ["CAP_NET_ADMIN"]
    assert process["process_credentials"]["uid"] == 65534
    assert held.release() == 0


CHANGER = textwrap.dedent("""\
    import ctypes, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    CLONE_NEWUTS, CLONE_NEWNET = 0x04000000, 0x40000000
    sys.stdin.readline()
    if libc.unshare(CLONE_NEWUTS | CLONE_NEWNET) != 0:
        sys.exit(f"unshare: {os.strerror(ctypes.get_errno())}")
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)
    print("changed", flush=True)
    sys.stdin.readline()
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
    os.spawnv(os.P_WAIT, sys.argv[1], [sys.argv[1], sys.argv[2]])
""")


def test_changes_after_exec_show_in_later_events(daemon):
    """A process that changes user and namespaces after its exec: its exec
    event shows the old values, its exit, its forked child and the parent
    of its next exec the new ones (the kernel's state record)."""
    m, child_marker = mark(), mark()
    p = subprocess.Popen([PY, "-c", CHANGER, TRUE, child_marker, m], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    [ex] = wait_for(lambda: [e for e in execs(daemon.events()) if e["process"].get("arguments", "")
                             .endswith(m)], 30, "exec event")
    before = proc_view(p.pid)
    assert_matches_kernel(ex["process"], before)
    p.stdin.write("\n")
    p.stdin.flush()
    assert p.stdout.readline() == "changed\n"
    after = proc_view(p.pid)
    p.stdin.write("\n")
    p.stdin.flush()
    assert p.wait(timeout=30) == 0
    events = daemon.sync()

    assert after["ns"]["uts"] != before["ns"]["uts"] and after["ns"]["net"] != before["ns"]["net"]
    assert after["creds"]["uid"] == 65534 and after["cap"] == {}
    [done] = exits(events, exec_id=ex["process"]["exec_id"])
    assert_matches_kernel(done["process"], after, at_exec=False)
    assert done["process"]["uid"] == 0
    # the child forked after the change, and the exec of a grandchild
    [clone] = [e for e in exits(events, parent_exec_id=ex["process"]["exec_id"])
               if "clone" in e["process"]["flags"] and "execve" not in e["process"]["flags"]]
    assert_matches_kernel(clone["process"], after, at_exec=False)
    [spawned] = execs(events, arguments=child_marker)
    assert spawned["parent"]["exec_id"] == ex["process"]["exec_id"]
    assert_matches_kernel(spawned["parent"], after, at_exec=False)
    assert_matches_kernel(spawned["process"], after)


def test_setuid_binary_exec_has_its_owner_as_effective_user(daemon, tmp_path):
    """A set-user-ID root binary run by nobody: euid, suid and fsuid 0,
    uid 65534, and root's capabilities (as the kernel grants them)."""
    os.chmod(tmp_path, 0o755)
    binary = tmp_path / f"sleep-{uuid.uuid4().hex[:8]}"
    shutil.copy("/usr/bin/sleep", binary)
    os.chmod(binary, 0o4755)
    m = "30"
    p = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          str(binary), m])
    try:
        [ex] = wait_for(lambda: execs(daemon.events(), binary=str(binary)), 30, "exec event")
        process = ex["process"]
        assert_matches_kernel(process, proc_view(process["pid"]))
        creds = process["process_credentials"]
        assert (creds["uid"], creds["euid"], creds["suid"], creds["fsuid"]) == (65534, 0, 0, 0)
        assert "CAP_SYS_ADMIN" in process["cap"]["effective"]
    finally:
        p.kill()
        p.wait()
        binary.unlink()                      # no set-user-ID root file left behind


def test_clone_into_new_namespaces_has_the_childs_own(daemon):
    """A child made by clone(CLONE_NEWNET) carries its new network namespace
    from the fork on (read from the child's task), its parent keeps the
    host's."""
    m = mark()
    code = textwrap.dedent(f"""\
        import ctypes, os, signal
        libc = ctypes.CDLL(None, use_errno=True)
        stack = ctypes.create_string_buffer(65536)
        CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
        fn = CB(lambda _: os.readlink("/proc/self/ns/net") and 0)
        top = ctypes.c_void_p(ctypes.addressof(stack) + len(stack))
        pid = libc.clone(fn, top, 0x40000000 | signal.SIGCHLD, None)
        assert pid > 0, os.strerror(ctypes.get_errno())
        os.waitpid(pid, 0)  # {m}
        """)
    subprocess.run([PY, "-c", code], check=True)
    events = daemon.sync()
    [ex] = [e for e in execs(events) if m in e["process"].get("arguments", "")]
    [child] = [e for e in exits(events, parent_exec_id=ex["process"]["exec_id"])
               if "execve" not in e["process"]["flags"]]
    assert "is_host" not in child["process"]["ns"]["net"]
    assert child["process"]["ns"]["uts"]["is_host"]
    assert ex["process"]["ns"]["net"]["is_host"]


def test_without_the_switches_events_have_no_credentials(tmp_path):
    """Off by default, as in Tetragon: no cap, ns or process_credentials."""
    d = DaemonProcess(tmp_path)
    try:
        m = mark()
        subprocess.run([TRUE, m], check=True)
        [ex] = execs(d.sync(), arguments=m)
        assert not {"cap", "ns", "process_credentials"} & set(ex["process"])
        assert not {"cap", "ns", "process_credentials"} & set(ex["parent"])
    finally:
        d.stop()


def test_daemon_stops_cleanly_and_lost_nothing(daemon):
    counters = daemon.stop()
    assert daemon.proc.returncode == 0
    assert counters["ringbuf_drops"] == 0 and counters["queue_drops"] == 0
