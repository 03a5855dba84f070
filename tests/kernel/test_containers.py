"""Container identity with a real container: podman (runc, from a local
busybox image) on this host, through the real daemon. On this CI host
(cgroup v1 hybrid) podman puts containers in /libpod_parent/libpod-<id>;
the guest repeats this under systemd and cgroup v2."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid

import pytest

from tests.kernel.daemon_harness import DaemonProcess, container_of, execs, exits
from tests.kernel.podman_harness import IMAGE, PODMAN_RUN, build_image, podman, remove

pytestmark = pytest.mark.kernel

RUN = uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return build_image(tmp_path_factory.mktemp("image"))


@pytest.fixture(scope="module")
def setup(image, tmp_path_factory):
    before = f"tetrad-before-{RUN}"
    before_id = podman(*PODMAN_RUN[1:], "--name", before, image)
    work = tmp_path_factory.mktemp("containers")
    daemon = DaemonProcess(work)
    name = f"tetrad-ct-{RUN}"
    cid = podman(*PODMAN_RUN[1:], "--name", name, image)
    yield {"daemon": daemon, "name": name, "id": cid, "before": before, "before_id": before_id}
    remove(name, before)
    if daemon.proc.poll() is None:
        daemon.stop()


def test_exec_in_a_container_names_id_name_image_and_runtime(setup):
    marker = f"in-ct-{RUN}"
    podman("exec", setup["name"], "/bin/true", marker)
    events = setup["daemon"].sync()
    (ev,) = execs(events, arguments=marker)
    proc = ev["process"]
    # Tetragon's shape outside Kubernetes: a pod with only its container (the
    # runtime's name is in journald's fields, not in Tetragon's schema)
    assert proc["pod"] == {"container": {"id": setup["id"], "name": setup["name"],
                                         "image": {"id": proc["pod"]["container"]["image"]["id"],
                                                   "name": IMAGE}}}
    assert len(setup["id"]) == 64 and proc["pod"]["container"]["image"]["id"]
    assert proc["docker"] == setup["id"][:31]


def test_host_process_has_no_container(setup):
    marker = f"on-host-{RUN}"
    subprocess.run(["/bin/true", marker], check=True)
    (ev,) = execs(setup["daemon"].sync(), arguments=marker)
    assert "pod" not in ev["process"] and "docker" not in ev["process"]


def test_container_started_before_the_daemon_is_known_from_proc(setup):
    podman("rm", "-f", "-t", "0", setup["before"])
    events = setup["daemon"].sync()
    ended = [e for e in exits(events) if container_of(e["process"]).get("id") == setup["before_id"]]
    assert ended and container_of(ended[0]["process"])["name"] == setup["before"]
    assert "procFS" in ended[0]["process"]["flags"]


def test_container_gone_before_the_daemon_reads_its_exec_is_still_identified(setup):
    """The daemon is stopped while a container runs one command and is
    removed; when it reads the records afterwards the cgroup no longer
    exists, but its mkdir record (read first) said what it was."""
    d, name, marker = setup["daemon"], f"tetrad-brief-{RUN}", f"brief-{RUN}"
    os.kill(d.proc.pid, signal.SIGSTOP)
    try:
        cid = podman(*PODMAN_RUN[1:], "--name", name, IMAGE, "/bin/true", marker)
        podman("wait", name)
        remove(name)
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
    (ev,) = execs(d.sync(), arguments=marker)
    assert container_of(ev["process"]).get("id") == cid and ev["process"]["docker"] == cid[:31], \
        ev["process"]
