"""Secrets in command lines never reach the export file: the real `tetrad
run` with the shipped redaction filters, processes that put a password and
a token in their argv, and a policy hit by one of them.

The whole export file is searched for the secrets, not only the events
expected: exec, exit, a child naming the process as parent, and a policy
event all come from the process cache, where the arguments are redacted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from tests.kernel.daemon_harness import TRUE, DaemonProcess, execs, exits

pytestmark = pytest.mark.kernel

RUN = uuid.uuid4().hex[:8]
WHENCE = 30_000 + int(RUN, 16) % 10_000       # the policy's unique trigger
SH = os.path.realpath("/bin/sh")
PASSWORD = f"hunter2-{RUN}"
TOKEN = f"t0k3n-{RUN}"
BEARER = f"b34r3r-{RUN}"
X = "*****"

POLICY = f"""apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: "t-redaction"
spec:
  kprobes:
  - call: "sys_lseek"
    syscall: true
    args:
    - index: 2
      type: int
    selectors:
    - matchArgs:
      - index: 2
        operator: Equal
        values: ["{WHENCE}"]
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    work = tmp_path_factory.mktemp("redaction")
    policy = work / "lseek.yaml"
    policy.write_text(POLICY)
    d = DaemonProcess(work, "--policy", str(policy))
    yield d
    if d.proc.poll() is None:
        d.stop()


def secret_argv(mark: str) -> list[str]:
    return [f"--password={PASSWORD}", "--token", TOKEN, "-H", f"Authorization: Bearer {BEARER}",
            f"keep-{mark}"]


def assert_no_secret_in(path) -> None:
    text = path.read_text()
    for secret in (PASSWORD, TOKEN, BEARER):
        assert secret not in text, f"{secret} is in the export file"


def test_exec_exit_and_parent_carry_redacted_arguments(daemon):
    mark = uuid.uuid4().hex[:8]
    subprocess.run([TRUE, *secret_argv(mark)], check=True)
    # sh with the secrets in its own argv ($0, $1, ...), and a child that names it as parent
    subprocess.run([SH, "-c", f"{TRUE} child-{mark}", "sh", f"--password={PASSWORD}"], check=True)
    events = daemon.sync()
    want = f'--password={X} --token {X} -H "Authorization: Bearer {X}" keep-{mark}'
    [ex] = execs(events, arguments=want)
    assert ex["process"]["binary"] == TRUE
    assert exits(events, exec_id=ex["process"]["exec_id"], arguments=want)
    [child] = execs(events, arguments=f"child-{mark}")
    assert child["parent"]["arguments"] == f'-c "{TRUE} child-{mark}" sh --password={X}'
    assert_no_secret_in(daemon.export)


def test_a_policy_event_names_its_process_with_redacted_arguments(daemon):
    mark = uuid.uuid4().hex[:8]
    script = f"import os\ntry:\n    os.lseek(-1, 0, {WHENCE})\nexcept OSError:\n    pass"
    subprocess.run([sys.executable, "-c", script, *secret_argv(mark)], check=True)
    events = daemon.sync()
    hits = [e["process_kprobe"] for e in events if "process_kprobe" in e
            and e["process_kprobe"]["policy_name"] == "t-redaction"]
    assert len(hits) == 1
    arguments = hits[0]["process"]["arguments"]
    assert arguments.endswith(f'--password={X} --token {X} -H "Authorization: Bearer {X}" keep-{mark}')
    assert_no_secret_in(daemon.export)
