"""One attach point takes at most 16 policy hooks (bpf/generic.h,
G_POINT_HOOKS): on the real kernel, a 17th policy on the same syscall is
refused with a message naming the limit, and the 16 in force keep
reporting, every one of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from tests.kernel.daemon_harness import TIME_FACTOR, REPO, DaemonProcess, wait_for
from tests.policy_files import lseek_equal, put

pytestmark = pytest.mark.kernel

RUN = uuid.uuid4().hex[:8]
BASE = 9_000_000 + (int(RUN, 16) % 1_000_000) * 32
POLICIES = 17


def lseek(offset: int) -> None:
    try:
        os.lseek(-1, offset, 0)
    except OSError:
        pass


def test_a_seventeenth_hook_on_one_syscall_is_refused_and_sixteen_keep_working(tmp_path):
    os.chmod(tmp_path, 0o755)
    policies = tmp_path / "policies.d"
    policies.mkdir(mode=0o755)
    for i in range(POLICIES):
        put(policies, f"p{i:02}.yaml", lseek_equal(f"limit-{RUN}-{i}", BASE + i))
    daemon = DaemonProcess(tmp_path, "--policy-dir", str(policies))
    try:
        out = subprocess.run([sys.executable, "-m", "tetrad.cli.tetra", "--socket", str(daemon.socket),
                              "status", "-o", "json"], cwd=REPO, capture_output=True, text=True,
                             timeout=60 * TIME_FACTOR, check=True)
        rows = {p["name"]: p for p in json.loads(out.stdout)["policies"]}
        refused = [name for name, p in rows.items() if p.get("error")]
        assert len(refused) == 1, rows
        assert "16 policy hooks are attached at" in rows[refused[0]]["error"]
        assert "the most one attach point takes" in rows[refused[0]]["error"]
        in_force = sorted(int(n.rsplit("-", 1)[1]) for n in rows if n not in refused)
        assert len(in_force) == POLICIES - 1
        for i in range(POLICIES):
            lseek(BASE + i)

        def reported():
            got = {e["process_kprobe"]["policy_name"] for e in daemon.events() if "process_kprobe" in e}
            return got >= {f"limit-{RUN}-{i}" for i in in_force} and got
        got = wait_for(reported, 20 * TIME_FACTOR, "an event from each of the 16 policies in force")
        assert refused[0] not in got
        assert daemon.proc.poll() is None
    finally:
        daemon.stop()
