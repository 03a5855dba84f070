"""The Kubernetes plugin's pod source against a fake CRI runtime: a real gRPC
server on a Unix socket, serving the generated RuntimeService with pods
as the kubelet makes them. (The real thing, containerd, is
tests/kernel/test_kubernetes.py.)"""

from __future__ import annotations

import json
import threading
import time
from concurrent import futures

import pytest

from tetrad.containers import cri
from tetrad.containers.cgroup_path import CgroupIdentity
from tetrad.containers.resolver import ContainerResolver
from tetrad_kubernetes.pods import KubernetesPods, _privileged

grpc = pytest.importorskip("grpc")
from tetrad.containers.criapi import api_pb2 as pb, api_pb2_grpc  # noqa: E402

UID = "5e0b3c1d-2a4f-4b6c-8d9e-0f1a2b3c4d5e"
SANDBOX, APP, SIDECAR = "a" * 64, "b" * 64, "c" * 64
LABELS = {"app": "web", "pod-template-hash": "7d9f8b6c5d", "io.kubernetes.pod.name": "web-7d9f8b6c5d-x2x4q",
          "io.kubernetes.pod.namespace": "prod", "io.kubernetes.pod.uid": UID}
ANNOTATIONS = {"kubernetes.io/config.source": "api", "team": "blue"}
CONTAINERD_INFO = json.dumps({"sandboxID": SANDBOX, "pid": 4242,
                              "config": {"metadata": {"name": "app"},
                                         "linux": {"security_context": {"privileged": True}}}})


class FakeRuntime(api_pb2_grpc.RuntimeServiceServicer):
    def __init__(self):
        self.sandboxes: list = []
        self.containers: dict = {}
        self.calls: list[str] = []

    def Version(self, request, context):
        self.calls.append("Version")
        return pb.VersionResponse(version="0.1.0", runtime_name="containerd", runtime_api_version="v1")

    def ListPodSandbox(self, request, context):
        self.calls.append("ListPodSandbox")
        want = dict(request.filter.label_selector)
        return pb.ListPodSandboxResponse(items=[s for s in self.sandboxes
                                                if all(s.labels.get(k) == v for k, v in want.items())])

    def PodSandboxStatus(self, request, context):
        self.calls.append("PodSandboxStatus")
        for s in self.sandboxes:
            if s.id == request.pod_sandbox_id:
                return pb.PodSandboxStatusResponse(status=pb.PodSandboxStatus(
                    id=s.id, metadata=s.metadata, labels=s.labels, annotations=s.annotations))
        context.abort(grpc.StatusCode.NOT_FOUND, "no sandbox")

    def ContainerStatus(self, request, context):
        self.calls.append("ContainerStatus")
        if request.container_id not in self.containers:
            context.abort(grpc.StatusCode.NOT_FOUND, "no container")
        status, info = self.containers[request.container_id]
        return pb.ContainerStatusResponse(status=status, info={"info": info} if request.verbose else {})


def sandbox(sid=SANDBOX, attempt=0, ready=True, labels=LABELS):
    return pb.PodSandbox(id=sid, metadata=pb.PodSandboxMetadata(name="web-7d9f8b6c5d-x2x4q", uid=UID,
                                                                namespace="prod", attempt=attempt),
                         state=pb.SANDBOX_READY if ready else pb.SANDBOX_NOTREADY,
                         created_at=attempt + 1, labels=labels, annotations=ANNOTATIONS)


def container(cid, name, info=""):
    return (pb.ContainerStatus(id=cid, metadata=pb.ContainerMetadata(name=name), state=pb.CONTAINER_RUNNING,
                               started_at=1_700_000_000_123_000_000,
                               image=pb.ImageSpec(image="registry.local/web:2"), image_ref="sha256:" + "e" * 64,
                               labels={"io.kubernetes.container.name": name, "io.kubernetes.pod.uid": UID}),
            info)


@pytest.fixture
def runtime(tmp_path):
    fake = FakeRuntime()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    api_pb2_grpc.add_RuntimeServiceServicer_to_server(fake, server)
    fake.path = str(tmp_path / "containerd.sock")
    server.add_insecure_port("unix:" + fake.path)
    server.start()
    yield fake
    server.stop(0).wait()


def source(runtime, tmp_path, **kw) -> KubernetesPods:
    client = cri.make_client()
    return KubernetesPods(client, (str(tmp_path / "crio.sock"), runtime.path), **kw)


def ident(cid):
    return CgroupIdentity("containerd", cid, UID)


POD = {"name": "web-7d9f8b6c5d-x2x4q", "namespace": "prod", "uid": UID,
       "labels": {"app": "web", "pod-template-hash": "7d9f8b6c5d"},
       "workload": "web", "workload_kind": "Deployment"}


def test_a_pod_and_its_containers_as_the_kubelet_made_them(runtime, tmp_path):
    runtime.sandboxes = [sandbox()]
    runtime.containers = {APP: container(APP, "app", CONTAINERD_INFO), SIDECAR: container(SIDECAR, "proxy")}
    pods = source(runtime, tmp_path)
    assert pods.known(ident(APP)) is None                          # nothing asked yet
    assert pods.fetch(ident(APP)) == {
        "pod": POD, "name": "app", "image": "registry.local/web:2", "image_id": "sha256:" + "e" * 64,
        "cri_id": "containerd://" + APP, "privileged": True, "start_time": 1_700_000_000_123_000_000}
    assert pods.fetch(ident(SIDECAR))["privileged"] is False
    assert pods.fetch(ident(SANDBOX)) == {"pod": POD, "sandbox": True}
    # now known without asking, for the reader's thread
    calls = len(runtime.calls)
    assert pods.known(ident(APP))["name"] == "app" and pods.known(ident(SANDBOX))["sandbox"]
    assert pods.known(CgroupIdentity("containerd", "d" * 64, UID)) == {"pod": POD}
    assert len(runtime.calls) == calls
    assert pods.stats()["pods_cached"] == 1


def test_annotations_only_when_asked_for(runtime, tmp_path):
    runtime.sandboxes = [sandbox()]
    assert "annotations" not in pods_of(source(runtime, tmp_path))
    assert pods_of(source(runtime, tmp_path, annotations=True))["annotations"] == ANNOTATIONS


def pods_of(pods: KubernetesPods) -> dict:
    return pods.fetch(ident(SANDBOX))["pod"]


def test_the_newest_ready_sandbox_speaks_for_the_pod(runtime, tmp_path):
    runtime.sandboxes = [sandbox("1" * 64, attempt=0, ready=False),
                         sandbox("2" * 64, attempt=1, labels={**LABELS, "app": "web2"}),
                         sandbox("3" * 64, attempt=2, ready=False)]
    found = source(runtime, tmp_path).fetch(ident("2" * 64))
    assert found["pod"]["labels"]["app"] == "web2" and found["sandbox"]
    assert source(runtime, tmp_path).fetch(ident("1" * 64))["sandbox"]     # every sandbox of the pod


def test_a_sandbox_still_being_made_is_waited_for(runtime, tmp_path):
    pods = source(runtime, tmp_path)
    threading.Timer(0.3, lambda: runtime.sandboxes.append(sandbox())).start()
    started = time.monotonic()
    assert pods.fetch(ident(SANDBOX)) == {"pod": POD, "sandbox": True}
    assert 0.25 < time.monotonic() - started < 1.5


def test_a_pod_no_runtime_knows_is_remembered_as_unknown(runtime, tmp_path):
    now = [0.0]
    pods = KubernetesPods(cri.make_client(), (runtime.path,), clock=lambda: now[0],
                          sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert pods.fetch(ident(APP)) is None and pods.not_found == 1
    asked = runtime.calls.count("ListPodSandbox")
    assert asked > 1                                                  # polled while it might appear
    now[0] += 5
    assert pods.fetch(ident(APP)) is None and runtime.calls.count("ListPodSandbox") == asked
    runtime.sandboxes = [sandbox()]
    now[0] += 30
    assert pods.fetch(ident(SANDBOX))["sandbox"]


def test_the_pod_is_read_again_when_a_new_container_appears(runtime, tmp_path):
    now = [100.0]
    runtime.sandboxes = [sandbox()]
    runtime.containers = {APP: container(APP, "app"), SIDECAR: container(SIDECAR, "proxy")}
    pods = KubernetesPods(cri.make_client(), (runtime.path,), clock=lambda: now[0])
    assert pods.fetch(ident(SANDBOX))["pod"]["labels"]["app"] == "web"
    runtime.sandboxes = [sandbox(labels={**LABELS, "app": "changed"})]
    assert pods.fetch(ident(APP))["pod"]["labels"]["app"] == "web"      # within a second: cached
    now[0] += 2
    assert pods.fetch(ident(SIDECAR))["pod"]["labels"]["app"] == "changed"


@pytest.mark.parametrize("info,privileged", [
    (CONTAINERD_INFO, True),
    (json.dumps({"config": {"linux": {"security_context": {}}}}), False),
    (json.dumps({"sandboxID": "x", "privileged": True}), True),        # CRI-O
    ("not json", False), ("[]", False), ("", False),
    (json.dumps({"config": {"linux": {"security_context": {"privileged": "true"}}}}), False),
])
def test_privileged_from_the_runtimes_info(info, privileged):
    assert _privileged(info) is privileged


class Paths:
    def __init__(self, paths):
        self.paths = paths

    def path_of(self, cgroup_id):
        return self.paths.get(cgroup_id)


def test_the_resolver_completes_pod_containers_through_it(runtime, tmp_path):
    runtime.sandboxes = [sandbox()]
    runtime.containers = {APP: container(APP, "app", CONTAINERD_INFO)}
    pods = source(runtime, tmp_path)
    parent = f"/kubepods/besteffort/pod{UID}"
    r = ContainerResolver(Paths({1: f"{parent}/{SANDBOX}", 2: f"{parent}/{APP}"}), root=tmp_path, pods=pods)
    assert r.for_cgroup_id(1) == {"id": SANDBOX, "runtime": "cri", "partial": True, "pod": {"uid": UID}}
    r._api_queue.join()
    assert r.for_cgroup_id(1) == {"id": SANDBOX, "runtime": "cri", "pod": POD, "sandbox": True}
    # the pod is known when the app container appears: its record has it at once
    first = r.for_cgroup_id(2)
    assert first["pod"] == POD and first["partial"] is True
    r._api_queue.join()
    rec = r.for_cgroup_id(2)
    assert "partial" not in rec and rec["name"] == "app" and rec["cri_id"] == "containerd://" + APP
    assert rec["privileged"] is True and rec["pod"] == POD
