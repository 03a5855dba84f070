"""matchNamespaces, matchCapabilities and their *Changes on the real kernel,
with real processes in real namespaces and with real credentials: each
policy reports (or kills) the process it describes and leaves the others
alone.

Every policy hooks lseek(-1, OFFSET, 0) with an offset of its own (the call
fails with EBADF, its entry is traced), so a report names the policy that
matched and nothing else on the machine triggers it. The actors are
python3 processes started under unshare(1) and setpriv(1), or changing
their own namespaces or credentials after exec (the *Changes cases).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from tests.kernel.daemon_harness import DaemonProcess

pytestmark = pytest.mark.kernel

RUN = uuid.uuid4().hex[:8]
BASE = 11_000_000 + (int(RUN, 16) % 1_000_000) * 16
OFF = {name: BASE + i for i, name in enumerate(
    ("mnt-not-host", "net-host", "sysadmin", "no-sysadmin", "ns-sysadmin", "mnt-change",
     "cap-change", "kill-not-host"))}
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

# What each actor runs: lseeks at the offsets given, after optional changes
# of its own namespaces or credentials (after exec: the *Changes cases).
ACTOR = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for step in sys.argv[1:]:
    if step == "unshare-mnt":
        assert libc.unshare(0x00020000) == 0, os.strerror(ctypes.get_errno())   # CLONE_NEWNS
    elif step == "drop-root":
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
    else:
        try:
            os.lseek(-1, int(step), 0)
        except OSError:
            pass
print("done", flush=True)
"""


def selectors_policy(name: str, offset: int, selectors: str, action: str = "") -> str:
    return f"""apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: "{name}"
spec:
  kprobes:
  - call: "sys_lseek"
    syscall: true
    args:
    - index: 1
      type: long
    selectors:
    - matchArgs:
      - index: 1
        operator: Equal
        values: ["{offset}"]
{selectors}{action}"""


POLICIES = {
    "mnt-not-host": """      matchNamespaces:
      - namespace: Mnt
        operator: NotIn
        values: ["host_ns"]
""",
    "net-host": """      matchNamespaces:
      - namespace: Net
        operator: In
        values: ["host_ns"]
""",
    "sysadmin": """      matchCapabilities:
      - type: Effective
        operator: In
        values: ["CAP_SYS_ADMIN"]
""",
    "no-sysadmin": """      matchCapabilities:
      - type: Effective
        operator: NotIn
        values: ["CAP_SYS_ADMIN"]
""",
    "ns-sysadmin": """      matchCapabilities:
      - type: Effective
        operator: In
        isNamespaceCapability: true
        values: ["CAP_SYS_ADMIN"]
""",
    "mnt-change": """      matchNamespaceChanges:
      - operator: In
        values: ["Mnt"]
""",
    "cap-change": """      matchCapabilityChanges:
      - type: Effective
        operator: In
        values: ["CAP_SYS_ADMIN"]
""",
    "kill-not-host": """      matchNamespaces:
      - namespace: Mnt
        operator: NotIn
        values: ["host_ns"]
""",
}
KILL = """      matchActions:
      - action: Sigkill
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    work = tmp_path_factory.mktemp("state")
    os.chmod(work, 0o755)
    args = []
    for key, selectors in POLICIES.items():
        path = work / f"{key}.yaml"
        path.write_text(selectors_policy(f"st-{key}-{RUN}", OFF[key], selectors,
                                         KILL if key.startswith("kill") else ""))
        args += ["--policy", str(path)]
    d = DaemonProcess(work, *args)
    yield d
    if d.proc.poll() is None:
        d.stop()


def act(*steps, under: list[str] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*under, sys.executable, "-c", ACTOR, *map(str, steps)],
                          capture_output=True, text=True, timeout=60)


def reported(daemon: DaemonProcess, key: str) -> list[dict]:
    name = f"st-{key}-{RUN}"
    return [e["process_kprobe"] for e in daemon.sync() if "process_kprobe" in e
            and e["process_kprobe"]["policy_name"] == name]


def pids(hits) -> set[int]:
    return {h["process"]["pid"] for h in hits}


def ok(run: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert run.returncode == 0 and "done" in run.stdout, (run.returncode, run.stderr)
    return run


def test_namespace_not_the_hosts_is_reported_and_the_host_is_not(daemon):
    ok(act(OFF["mnt-not-host"]))
    ok(act(OFF["mnt-not-host"], under=["unshare", "--mount"]))
    [hit] = reported(daemon, "mnt-not-host")
    assert hit["process"]["binary"] == os.path.realpath(sys.executable)


def test_namespace_in_host_ns_leaves_a_new_network_namespace_alone(daemon):
    ok(act(OFF["net-host"], under=["unshare", "--net"]))
    assert reported(daemon, "net-host") == []
    ok(act(OFF["net-host"]))
    assert len(reported(daemon, "net-host")) == 1


def test_capability_in_and_notin_tell_root_from_nobody(daemon):
    ok(act(OFF["sysadmin"], OFF["no-sysadmin"]))
    ok(act(OFF["sysadmin"], OFF["no-sysadmin"], under=NOBODY))
    root_hits, nobody_hits = reported(daemon, "sysadmin"), reported(daemon, "no-sysadmin")
    assert len(root_hits) == 1 and len(nobody_hits) == 1
    assert root_hits[0]["process"]["uid"] == 0
    assert nobody_hits[0]["process"]["uid"] == 65534


def test_namespace_capability_holds_only_outside_the_hosts_user_namespace(daemon):
    ok(act(OFF["ns-sysadmin"]))                                    # host root: not reported
    assert reported(daemon, "ns-sysadmin") == []
    ok(act(OFF["ns-sysadmin"], under=["unshare", "--user", "--map-root-user"]))
    assert len(reported(daemon, "ns-sysadmin")) == 1


def test_a_namespace_change_after_exec_is_reported_once(daemon):
    ok(act(OFF["mnt-change"], OFF["mnt-change"]))                  # no change: nothing
    assert reported(daemon, "mnt-change") == []
    run = ok(act(OFF["mnt-change"], "unshare-mnt", OFF["mnt-change"], OFF["mnt-change"]))
    hits = reported(daemon, "mnt-change")
    # the first call after the change, not the one before, and not again
    assert len(hits) == 1, hits
    assert run.returncode == 0


def test_a_capability_change_after_exec_is_reported(daemon):
    ok(act(OFF["cap-change"]))                                     # root all along: nothing
    assert reported(daemon, "cap-change") == []
    ok(act("drop-root", OFF["cap-change"]))
    [hit] = reported(daemon, "cap-change")
    assert hit["process"]["uid"] == 0          # the process as it started (exec credentials)


def test_sigkill_by_namespace_kills_the_process_in_a_new_namespace_only(daemon):
    host = act(OFF["kill-not-host"])
    assert host.returncode == 0 and "done" in host.stdout
    inside = act(OFF["kill-not-host"], under=["unshare", "--mount"])
    # unshare execs python3 in place: the kill is its exit status
    assert inside.returncode == -9 and "done" not in inside.stdout, (inside.returncode, inside.stderr)
    [hit] = reported(daemon, "kill-not-host")
    assert hit["action"] == "KPROBE_ACTION_SIGKILL"
