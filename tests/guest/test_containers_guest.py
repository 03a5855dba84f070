"""Podman under systemd and cgroup v2 (the users' setup), in the guest: the
libpod-<id>.scope layout, and names from podman's API socket."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from tetrad.containers import metadata
from tetrad.containers.resolver import ContainerResolver
from tests.kernel.daemon_harness import wait_for
from tests.kernel.podman_harness import IMAGE, PODMAN_RUN, podman
from tests.kernel.test_containers import image  # noqa: F401  (fixture)

pytestmark = pytest.mark.guest

RUN = uuid.uuid4().hex[:8]


def test_podman_api_socket_names_the_container(image):  # noqa: F811
    subprocess.run(["systemctl", "start", "podman.socket"], check=True, timeout=120)
    name = f"tetrad-api-{RUN}"
    cid = podman(*PODMAN_RUN[1:], "--name", name, image)
    try:
        pid = podman("inspect", "-f", "{{.State.Pid}}", name)
        with open(f"/proc/{pid}/cgroup") as f:
            path = f.read().split("0::", 1)[1].strip()
        assert f"libpod-{cid}.scope" in path          # systemd cgroup driver, v2
        # podman.socket starts the API service on the first request, which
        # takes seconds under emulation: ask until it answers.
        api = wait_for(lambda: metadata.podman_api(cid), 120, "an answer from podman's API",
                       interval=1.0)
        assert (api["name"], api["image"], len(api["image_id"])) == (name, IMAGE, 64)
        record = ContainerResolver().for_path(path)
        assert (record["id"], record["name"], record["image"]) == (cid, name, IMAGE)
    finally:
        podman("rm", "-f", "-t", "0", name)
