"""Policies scoped to containers (containerSelector/hostSelector), filtered
in the kernel by cgroup id, with real podman containers on this host.

Every policy hooks openat and posts opens of one path unique to this run;
the same `cat PATH` runs on the host and in each container, and the events
say which policies fired where. (Each policy on openat is its own program:
five compiles, about 100 s in the emulated guest.) Containers started before the daemon are
found by the cgroup walk at load; those started later through the process
sensor's cgroup mkdir records.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from tests.kernel.daemon_harness import REPO, DaemonProcess, container_of
from tests.kernel.podman_harness import IMAGE, PODMAN_RUN, build_image, podman, remove

pytestmark = pytest.mark.kernel

RUN = uuid.uuid4().hex[:8]
PATH = f"/scope-{RUN}"
NAME_A, NAME_B, NAME_LATE, NAME_INIT = (f"tetrad-scope-{x}-{RUN}" for x in ("a", "b", "late", "init"))


def policy(name: str, scope: str, kill: bool = False) -> str:
    # With kill, opens of PATH-kill are answered with Sigkill (first selector).
    kill_selector = f"""    - matchArgs:
      - index: 1
        operator: Prefix
        values: ["{PATH}-kill"]
      matchActions:
      - action: Sigkill
""" if kill else ""
    return f"""apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: "{name}"
spec:
{scope}
  kprobes:
  - call: "sys_openat"
    syscall: true
    args:
    - index: 1
      type: string
    selectors:
{kill_selector}    - matchArgs:
      - index: 1
        operator: Prefix
        values: ["{PATH}"]
"""


POLICIES = {
    "only-a": "  containerSelector:\n    matchLabels:\n      name: " + NAME_A,
    "host": "  hostSelector: {}",
    "repo": ("  containerSelector:\n    matchExpressions:\n    - key: repo\n      operator: In\n"
             "      values: [localhost/tetrad-test]"),
    "new": ("  containerSelector:\n    matchExpressions:\n    - key: name\n      operator: In\n"
            f"      values: [{NAME_LATE}, {NAME_INIT}]"),
    "not-a-or-host": ("  hostSelector: {}\n  containerSelector:\n    matchExpressions:\n"
                      f"    - key: name\n      operator: NotIn\n      values: [{NAME_A}]"),
}


@pytest.fixture(scope="module")
def scoped(tmp_path_factory):
    work = tmp_path_factory.mktemp("scope")
    image = build_image(work)
    names = []
    try:
        for name in (NAME_A, NAME_B):
            podman(*PODMAN_RUN[1:], "--name", name, image)
            names.append(name)
        args = []
        for key, scope in POLICIES.items():
            f = work / f"{key}.yaml"
            f.write_text(policy(f"scope-{key}-{RUN}", scope, kill=key == "only-a"))
            args += ["--policy", str(f)]
        daemon = DaemonProcess(work, *args)
        yield {"daemon": daemon, "names": names, "socket": work / "api.sock"}
    finally:
        remove(*names, NAME_LATE, NAME_INIT)
        if "daemon" in locals() and daemon.proc.poll() is None:
            daemon.stop()


def cat_in(container: str | None, suffix: str) -> str:
    """`cat PATH-suffix` on the host (None) or in a container; returns the path."""
    path = f"{PATH}-{suffix}"
    run_cat(container, path)
    return path


def run_cat(container: str | None, path: str) -> int:
    """Exit status of `cat path` (the file does not exist: 1); -9 or 137
    (podman's way of saying so) when killed."""
    cmd = ["podman", "exec", container, "/bin/cat", path] if container else ["/bin/cat", path]
    return subprocess.run(cmd, capture_output=True, timeout=120).returncode


def fired(events, path: str) -> dict[str, set]:
    """policy key -> container names (None: host) whose open of `path` it posted."""
    out: dict[str, set] = {}
    for ev in events:
        kp = ev.get("process_kprobe")
        if not kp or kp["args"][0].get("string_arg") != path:
            continue
        key = kp["policy_name"].removeprefix("scope-").removesuffix(f"-{RUN}")
        out.setdefault(key, set()).add(container_of(kp["process"]).get("name"))
    return out


def test_each_policy_fires_only_for_its_workloads(scoped):
    d = scoped["daemon"]
    on_host, in_a, in_b = cat_in(None, "host"), cat_in(NAME_A, "a"), cat_in(NAME_B, "b")
    events = d.sync()
    host, a, b = fired(events, on_host), fired(events, in_a), fired(events, in_b)
    assert host == {"host": {None}, "not-a-or-host": {None}}, host
    assert a == {"only-a": {NAME_A}, "repo": {NAME_A}}, a
    assert b == {"repo": {NAME_B}, "not-a-or-host": {NAME_B}}, b


def test_sigkill_applies_only_in_the_selected_container(scoped):
    path = f"{PATH}-kill"
    assert run_cat(NAME_A, path) == 137
    assert run_cat(NAME_B, path) == 1
    assert run_cat(None, path) == 1


def test_container_started_after_the_policy_is_selected(scoped):
    podman(*PODMAN_RUN[1:], "--name", NAME_LATE, IMAGE)
    scoped["names"].append(NAME_LATE)
    path = cat_in(NAME_LATE, "late")
    got = fired(scoped["daemon"].sync(), path)
    assert got == {"new": {NAME_LATE}, "repo": {NAME_LATE}, "not-a-or-host": {NAME_LATE}}, got


def test_first_process_of_a_new_container_is_covered(scoped):
    """`podman init` makes the cgroup (runc create) and stops before the
    command; once the daemon has handled that mkdir, the container's very
    first process is in scope."""
    path = f"{PATH}-first"
    podman("create", *PODMAN_RUN[3:], "--name", NAME_INIT, IMAGE, "/bin/cat", path)
    podman("init", NAME_INIT)
    scoped["daemon"].sync()
    subprocess.run(["podman", "start", "--attach", NAME_INIT], capture_output=True, timeout=120)
    got = fired(scoped["daemon"].sync(), path)
    assert got == {"new": {NAME_INIT}, "repo": {NAME_INIT}, "not-a-or-host": {NAME_INIT}}, got


def test_policy_list_says_whom_a_policy_covers(scoped):
    out = subprocess.run([sys.executable, "-m", "tetrad.cli.tetra", "--socket", str(scoped["socket"]),
                          "policy", "list"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith(f"scope-not-a-or-host-{RUN}"))
    assert lines[row + 1].strip() == f"only for: host or containers with name not in [{NAME_A}]"
