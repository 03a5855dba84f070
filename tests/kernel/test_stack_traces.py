"""kernelStackTrace and userStackTrace on Post, on the real kernel: a syscall
hook's event carries the kernel path into the syscall and the caller's
user frames, symbolized, in Tetragon's shape (the harness checks every line
against its schema); a Post without them carries none.

The caller is a small C program of this test (built with -O0 and frame
pointers): its user stack must show libc's lseek first, then its main, by
name, in the program's file. User
frames are named from the process's mappings when the record is read: the
caller stays alive a moment for that; one that has exited by then has
addresses only (tetrad/sensors/stacks.py). Where the kernel gives no kernel
stack at a syscall's entry tracepoint, a policy asking for one is refused,
naming the feature, and user stacks still work.
"""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from tests.kernel.daemon_harness import TIME_FACTOR, DaemonProcess, wait_for
from tetrad.bpf import features

pytestmark = pytest.mark.kernel
# Whether this kernel gives kernel stacks at syscall tracepoints (6.18 does,
# Debian 12's 6.1 does not): kernelStackTrace on a syscall hook needs it.
KERNEL_STACKS = features.has_syscall_kernel_stacks()

RUN = uuid.uuid4().hex[:8]
OFFSET = 13_000_000 + (int(RUN, 16) % 1_000_000) * 2

CALLER = r"""
#include <stdlib.h>
#include <unistd.h>
__attribute__((noinline)) void tetrad_stack_caller(long offset)
{
	lseek(-1, offset, SEEK_SET);
}
int main(int argc, char **argv)
{
	tetrad_stack_caller(atol(argv[1]));
	sleep(atoi(argv[2]));
	return 0;
}
"""

POLICY = """apiVersion: cilium.io/v1alpha1
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
      matchActions:
      - action: Post
{stacks}"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    work = tmp_path_factory.mktemp("stacks")
    os.chmod(work, 0o755)
    (work / "caller.c").write_text(CALLER)
    caller = work / f"stack-caller-{RUN}"
    subprocess.run(["gcc", "-O0", "-fno-omit-frame-pointer", "-o", str(caller), str(work / "caller.c")],
                   check=True)
    (work / "with.yaml").write_text(POLICY.format(
        name=f"stacks-{RUN}", offset=OFFSET, stacks="        userStackTrace: true\n"))
    (work / "kernel.yaml").write_text(POLICY.format(
        name=f"kstacks-{RUN}", offset=OFFSET + 2, stacks="        kernelStackTrace: true\n"))
    (work / "without.yaml").write_text(POLICY.format(name=f"plain-{RUN}", offset=OFFSET + 1, stacks=""))
    daemon = DaemonProcess(work, *(arg for name in ("with", "kernel", "without")
                                   for arg in ("--policy", str(work / f"{name}.yaml"))))
    yield daemon, caller
    if daemon.proc.poll() is None:
        daemon.stop()


def hits(daemon, name: str) -> list[dict]:
    return [e["process_kprobe"] for e in daemon.sync()
            if "process_kprobe" in e and e["process_kprobe"]["policy_name"] == name]


def hit(daemon, name: str, before: int = 0) -> dict:
    """The one event of the policy since `before` of them."""
    [event] = hits(daemon, name)[before:]
    return event


def test_user_stack_is_symbolized(setup):
    daemon, caller = setup
    proc = subprocess.Popen([str(caller), str(OFFSET), "30"])
    try:
        # The caller runs on its own: its lseek may come after a sync.
        wait_for(lambda: hits(daemon, f"stacks-{RUN}"), 60 * TIME_FACTOR, "the caller's event")
        event = hit(daemon, f"stacks-{RUN}")
    finally:
        proc.kill()
        proc.wait()
    assert "kernel_stack_trace" not in event
    user = event["user_stack_trace"]
    assert "lseek" in user[0].get("symbol", ""), user
    assert "libc" in user[0].get("module", ""), user
    # libc's lseek keeps no frame pointer: unwinding by frame pointers goes
    # from it to the frame of its caller's caller (main), as perf does
    frame = next(f for f in user if f.get("symbol") == "main")
    assert frame["module"] == str(caller) and int(frame.get("offset", "0")) > 0


@pytest.mark.skipif(not KERNEL_STACKS.available, reason=f"no kernel stacks at syscall tracepoints "
                                                         f"here: {KERNEL_STACKS.detail}")
def test_kernel_stack_is_symbolized(setup):
    daemon, caller = setup
    subprocess.run([str(caller), str(OFFSET + 2), "0"], check=True)
    event = hit(daemon, f"kstacks-{RUN}")
    assert "user_stack_trace" not in event
    kernel = event["kernel_stack_trace"]
    assert all(int(f["address"]) >= 1 << 63 for f in kernel)          # kernel half
    symbols = [f.get("symbol", "") for f in kernel]
    assert "do_syscall_64" in symbols, symbols


@pytest.mark.skipif(KERNEL_STACKS.available, reason="this kernel gives kernel stacks at syscall "
                                                    "tracepoints (test_kernel_stack_is_symbolized)")
def test_kernel_stack_on_a_syscall_hook_is_refused_where_the_kernel_gives_none(setup):
    daemon, caller = setup
    log = daemon.stderr_path.read_text()
    assert f"policy kstacks-{RUN} loaded" not in log
    assert ("kernelStackTrace needs kernel stacks at syscall tracepoints, which this kernel lacks"
            in log), log
    assert f"policy stacks-{RUN} loaded" in log                        # user stacks: loaded


def test_a_post_without_stack_flags_carries_none(setup):
    daemon, caller = setup
    subprocess.run([str(caller), str(OFFSET + 1), "0"], check=True)
    event = hit(daemon, f"plain-{RUN}")
    assert "kernel_stack_trace" not in event and "user_stack_trace" not in event


def test_a_caller_gone_when_its_record_is_read_keeps_its_frames_addresses(setup):
    daemon, caller = setup
    before = len(hits(daemon, f"stacks-{RUN}"))
    subprocess.run([str(caller), str(OFFSET), "0"], check=True)
    event = hit(daemon, f"stacks-{RUN}", before)
    assert event["user_stack_trace"] and all("address" in f for f in event["user_stack_trace"])
