"""Making syscalls fail: NotifyEnforcer with spec.enforcers (Tetragon's
killer.yaml pattern) and Override on a syscall hook, on the guest's distro
kernel, where the enforcer runs as a fmod_ret program on the syscall's
function (or a kprobe with override where that is what the kernel has).

Both need the kernel built with function error injection
(CONFIG_FUNCTION_ERROR_INJECTION, for fmod_ret on syscall functions) or
CONFIG_BPF_KPROBE_OVERRIDE. Debian 12's kernels, the guest's included
(cloud and generic, measured from their configs), have neither: there these
tests are skipped with that reason, and tests/kernel/test_policies.py checks
that such policies are refused naming the missing feature. They run on a
kernel that has one.

The callers are copies of the python3 binary under names of this run, so
matchBinaries selects them and nothing else on the machine; the same calls
by /usr/bin/python3 are the negative cases.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.kernel.daemon_harness import DaemonProcess

from tetrad.bpf import features

OVERRIDE_FEATURE = features.has_syscall_override()
pytestmark = [pytest.mark.guest,
              pytest.mark.skipif(not OVERRIDE_FEATURE.available,
                                 reason="this kernel cannot make a syscall fail (no function error "
                                        "injection, no kprobe override): "
                                        f"{OVERRIDE_FEATURE.detail}")]

RUN = uuid.uuid4().hex[:8]
WORK = Path(f"/tmp/tetrad-enforce-{RUN}")
ERR_BIN = WORK / "py-enf-err"
KILL_BIN = WORK / "py-enf-kill"
DENIED = WORK / "denied"

NOTIFY = """apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: "{name}"
spec:
  lists:
  - name: "dups"
    type: "syscalls"
    values: ["sys_dup", "sys_dup2"]
  enforcers:
  - calls: ["list:dups"]
  tracepoints:
  - subsystem: "raw_syscalls"
    event: "sys_enter"
    args:
    - index: 4
      type: "syscall64"
    selectors:
    - matchArgs:
      - index: 0
        operator: "InMap"
        values: ["list:dups"]
      matchBinaries:
      - operator: "In"
        values: ["{binary}"]
      matchActions:
      - action: "NotifyEnforcer"
{action}"""

OVERRIDE = f"""apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: "deny-create"
spec:
  kprobes:
  - call: "sys_openat"
    syscall: true
    args:
    - index: 0
      type: int
    - index: 1
      type: string
    selectors:
    - matchArgs:
      - index: 1
        operator: "Prefix"
        values: ["{DENIED}/"]
      matchActions:
      - action: Override
        argError: -13
"""

DUP = "import os\ntry:\n    os.dup(0)\n    print('ok')\nexcept OSError as e:\n    print('errno', e.errno)\n"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    work = tmp_path_factory.mktemp("enforcers")
    WORK.mkdir(mode=0o755)
    DENIED.mkdir()
    python = os.path.realpath(sys.executable)
    shutil.copy(python, ERR_BIN)
    shutil.copy(python, KILL_BIN)
    files = {"notify-err.yaml": NOTIFY.format(name="dup-err", binary=ERR_BIN,
                                               action="        argError: -1\n"),
             "notify-kill.yaml": NOTIFY.format(name="dup-kill", binary=KILL_BIN,
                                                action="        argError: -1\n        argSig: 9\n"),
             "override.yaml": OVERRIDE}
    args = []
    for name, text in files.items():
        (work / name).write_text(text)
        args += ["--policy", str(work / name)]
    d = DaemonProcess(work, *args)
    log = d.stderr_path.read_text()
    for name in ("dup-err", "dup-kill", "deny-create"):
        assert f"policy {name} loaded" in log, log
    yield d
    if d.proc.poll() is None:
        d.stop()
    shutil.rmtree(WORK, ignore_errors=True)


def run(binary, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), "-c", code], capture_output=True, text=True, timeout=120)


def hits(daemon: DaemonProcess, policy: str) -> list[dict]:
    return [e for e in daemon.sync() for k in ("process_kprobe", "process_tracepoint")
            if k in e and e[k]["policy_name"] == policy]


def test_notify_enforcer_makes_the_listed_syscall_fail_for_the_selected_binary(daemon):
    assert run(ERR_BIN, DUP).stdout.split() == ["errno", str(errno.EPERM)]
    assert run(sys.executable, DUP).stdout.split() == ["ok"]       # another binary: untouched
    # the same binary, a syscall not listed: untouched
    assert run(ERR_BIN, "import os; os.close(os.open('/dev/null', 0)); print('ok')").stdout.split() == ["ok"]
    [hit] = hits(daemon, "dup-err")
    assert hit["process_tracepoint"]["action"] == "KPROBE_ACTION_NOTIFYENFORCER"


def test_notify_enforcer_with_a_signal_kills_before_the_syscall_returns(daemon):
    out = run(KILL_BIN, DUP)
    assert out.returncode == -9 and "ok" not in out.stdout and "errno" not in out.stdout


def test_override_on_a_syscall_hook_returns_the_error_and_the_call_never_runs(daemon):
    target = DENIED / "created"
    code = (f"import os\ntry:\n    os.open({str(target)!r}, os.O_CREAT | os.O_WRONLY, 0o600)\n"
            "    print('ok')\nexcept OSError as e:\n    print('errno', e.errno)\n")
    assert run(sys.executable, code).stdout.split() == ["errno", str(errno.EACCES)]
    # unlike Sigkill at a syscall's entry, the syscall did not run: no file
    assert not target.exists()
    allowed = WORK / "allowed"
    assert run(sys.executable, code.replace(str(target), str(allowed))).stdout.split() == ["ok"]
    assert allowed.exists()
    [hit] = hits(daemon, "deny-create")
    assert hit["process_kprobe"]["action"] == "KPROBE_ACTION_OVERRIDE"
