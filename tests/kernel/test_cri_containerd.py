"""CRI metadata from a real containerd (Debian's 1.6): the test starts its own
containerd (tests/kernel/containerd_harness.py), creates a pod and a
container through CRI as the kubelet would (RunPodSandbox, CreateContainer,
StartContainer, with the kubelet's io.kubernetes.* labels), then resolves
the container's real cgroup id through ContainerResolver. The socket sits at
<root>/run/containerd/containerd.sock and the task state elsewhere, so the
state files give nothing and the name can only come from CRI (without the
Kubernetes plugin: tetrad's own container naming).

Needs root (containerd, runc, cgroups), hence the kernel marker; no BPF.
Without systemd as PID 1 containerd uses the cgroupfs driver, so the path is
the kubepods cgroupfs layout (runtime "cri"), not cri-containerd-<id>.scope.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel
grpc = pytest.importorskip("grpc")

from tetrad.containers import cri  # noqa: E402
from tetrad.containers.resolver import CgroupPaths, ContainerResolver  # noqa: E402
from tests.kernel.containerd_harness import IMAGE, Kubelet, PodSpec, start_containerd  # noqa: E402

RUN = uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def containerd(tmp_path_factory):
    running = start_containerd(tmp_path_factory.mktemp(f"containerd-{RUN}"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def pod(containerd):
    kubelet = Kubelet(containerd)
    try:
        yield kubelet.run(PodSpec(f"web-{RUN}", "prod", {}))
    finally:
        kubelet.close()


def container_pid(containerd, cid: str) -> int:
    out = subprocess.run(["ctr", "--address", str(containerd.sock), "-n", "k8s.io", "tasks", "ls"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    (line,) = [ln for ln in out.splitlines() if ln.startswith(cid)]
    return int(line.split()[1])


def test_client_reads_name_image_and_labels_from_containerd(containerd, pod):
    status = cri.status_fields(cri.make_client().container_status(str(containerd.sock), pod.container))
    assert status["id"] == pod.container
    assert status["name"] == "app"
    assert status["image"] == IMAGE
    assert status["image_ref"].startswith("sha256:")
    assert status["labels"] == {"io.kubernetes.container.name": "app", "io.kubernetes.pod.name": f"web-{RUN}",
                                "io.kubernetes.pod.namespace": "prod", "io.kubernetes.pod.uid": pod.spec.uid}


def test_resolver_names_the_container_from_its_real_cgroup(containerd, pod):
    paths = CgroupPaths()
    assert paths.mount, "no cgroup2 mount"
    pid = container_pid(containerd, pod.container)
    (unified,) = [ln.split(":", 2)[2] for ln in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                  if ln.startswith("0::")]
    assert unified == f"{pod.parent}/{pod.container}"
    cgroup_id = os.stat(paths.mount + unified).st_ino
    assert not (containerd.host / "run/containerd/io.containerd.runtime.v2.task").exists()

    resolver = ContainerResolver(paths, root=containerd.host)
    uid = pod.spec.uid
    first = resolver.for_cgroup_id(cgroup_id)
    assert first == {"id": pod.container, "runtime": "cri", "partial": True, "pod": {"uid": uid}}
    deadline = time.monotonic() + 10
    while "partial" in resolver.for_cgroup_id(cgroup_id) and time.monotonic() < deadline:
        time.sleep(0.02)
    rec = resolver.for_cgroup_id(cgroup_id)
    assert rec["name"] == "app" and rec["image"] == IMAGE and "partial" not in rec
    assert rec["pod"] == {"name": f"web-{RUN}", "namespace": "prod", "uid": uid}
    assert rec["image_id"].startswith("sha256:")
