"""Policies that need a distro kernel: kprobes on kernel functions, kernel
struct arguments (sock, file), return probes, and BPF LSM Override.

Run inside the Debian guest (tests/guest/run.sh), where kprobes and BPF LSM
work and the headers match; the struct offsets still come from BTF.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.kernel.daemon_harness import DaemonProcess, exits

pytestmark = pytest.mark.guest

SEEDS = Path(__file__).resolve().parents[1] / "policies" / "seeds"
RUN = uuid.uuid4().hex[:8]
DENY_DIR = Path(f"/tmp/tetrad-deny-{RUN}")
ETC_FILE = Path(f"/etc/tetrad-guest-{RUN}")

LSM_POLICY = f"""apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: "deny-open"
spec:
  lsmhooks:
  - hook: "file_open"
    args:
    - index: 0
      type: "file"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Prefix"
        values:
        - "{DENY_DIR}/"
      matchActions:
      - action: Override
        argError: -1
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    work = tmp_path_factory.mktemp("guest-policies")
    DENY_DIR.mkdir()
    (DENY_DIR / "secret").write_text("s3cret")
    lsm = work / "deny-open.yaml"
    lsm.write_text(LSM_POLICY)
    policies = [SEEDS / "monitor-network-activity-outside-cluster.yaml",
                SEEDS / "file-monitoring-filtered.yaml", lsm]
    d = DaemonProcess(work, *[a for p in policies for a in ("--policy", str(p))])
    yield d
    if d.proc.poll() is None:
        d.stop()
    shutil.rmtree(DENY_DIR, ignore_errors=True)
    ETC_FILE.unlink(missing_ok=True)


def hits(events, kind: str, policy: str) -> list[dict]:
    return [e[kind] for e in events if kind in e and e[kind]["policy_name"] == policy]


def test_all_three_policies_loaded(daemon):
    log = daemon.stderr_path.read_text()
    for name in ("monitor-network-activity-outside-cluster", "file-monitoring-filtered", "deny-open"):
        assert f"policy {name} loaded" in log, log


def connect_from_child(addr: str, port: int) -> subprocess.CompletedProcess:
    code = f"import socket; socket.create_connection(({addr!r}, {port}), timeout=5).close()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True)


def test_tcp_connect_notdaddr_reports_and_kills_outside_connections(daemon):
    with socket.create_server(("0.0.0.0", 0)) as server:
        port = server.getsockname()[1]
        inside = connect_from_child("127.0.0.1", port)      # in the NotDAddr list
        outside = connect_from_child("127.0.0.2", port)     # not in it: Sigkill
    assert inside.returncode == 0
    assert outside.returncode == -9
    events = daemon.sync()
    got = hits(events, "process_kprobe", "monitor-network-activity-outside-cluster")
    dests = [h["args"][0]["sock_arg"]["daddr"] for h in got]
    assert "127.0.0.2" in dests and "127.0.0.1" not in dests
    [hit] = [h for h in got if h["args"][0]["sock_arg"]["dport"] == port]
    assert hit["function_name"] == "tcp_connect"
    assert hit["args"][0]["sock_arg"]["protocol"] == "IPPROTO_TCP"
    assert hit["action"] == "KPROBE_ACTION_SIGKILL"
    assert exits(events, pid=hit["process"]["pid"])[-1]["signal"] == "SIGKILL"


def test_security_file_permission_prefix_etc_and_may_write(daemon):
    with open(ETC_FILE, "w") as f:
        f.write("written by a test\n")
    Path("/etc/hostname").read_text()                     # a read: not MAY_WRITE
    got = hits(daemon.sync(), "process_kprobe", "file-monitoring-filtered")
    writes = [h for h in got if h["args"][0]["file_arg"]["path"] == str(ETC_FILE)]
    assert writes, got
    assert all(h["args"][1]["int_arg"] == 2 for h in got)
    assert not [h for h in got if h["args"][0]["file_arg"]["path"] == "/etc/hostname"]
    assert writes[0]["function_name"] == "security_file_permission"
    assert "return" in writes[0]


def test_lsm_file_open_override_returns_eperm(daemon):
    denied = subprocess.run(["cat", str(DENY_DIR / "secret")], capture_output=True, text=True)
    assert denied.returncode != 0
    assert "Operation not permitted" in denied.stderr
    allowed = subprocess.run(["cat", "/etc/hostname"], capture_output=True, text=True)
    assert allowed.returncode == 0
    got = hits(daemon.sync(), "process_lsm", "deny-open")
    assert [h["args"][0]["file_arg"]["path"] for h in got] == [str(DENY_DIR / "secret")]
    assert got[0]["action"] == "KPROBE_ACTION_OVERRIDE"


def test_unloading_detaches_the_lsm_program(daemon):
    daemon.stop()
    assert subprocess.run(["cat", str(DENY_DIR / "secret")], capture_output=True).returncode == 0
