"""CRI: the generated messages against bytes written by hand from the CRI
API's field numbers (so a wrong number in criapi/api.proto fails here), the
gRPC client against an in-process fake runtime on a Unix socket (raw replies,
so malformed ones can be served), and the resolver's partial -> complete
path."""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from concurrent import futures

import pytest

from tetrad.containers import cri, metadata
from tetrad.containers.resolver import ContainerResolver

grpc = pytest.importorskip("grpc")
from tetrad.containers import criapi                  # noqa: E402 (after grpc: python3-grpcio)
from tetrad.containers.criapi import api_pb2 as pb   # noqa: E402

ID = "4f2c0d8e9a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d"
ID2 = "9" * 64
POD = "5e0b3c1d-2a4f-4b6c-8d9e-0f1a2b3c4d5e"

# ContainerStatus, by hand. Each line: key byte(s), length, payload.
STATUS = (
    b"\x0a\x06" b"c0ffee"                                   # 1 id
    b"\x12\x07" b"\x0a\x03web" b"\x10\x03"                   # 2 metadata {1 name, 2 attempt=3}
    b"\x18\x01"                                             # 3 state RUNNING (enum)
    b"\x38" b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"     # 7 exit_code -1 (10-byte varint)
    b"\x42\x0c" b"\x0a\x0anginx:1.27"                        # 8 image {1 image}
    b"\x4a\x09" b"sha256:ab"                                # 9 image_ref
    b"\x62\x0a" b"\x0a\x03app" b"\x12\x03web"                 # 12 labels entry
    b"\x62\x1f" b"\x0a\x16io.kubernetes.pod.name" b"\x12\x05web-0"
    b"\x6a\x23" b"\x0a\x1bio.kubernetes.pod.namespace" b"\x12\x04prod"   # 13 annotations
    b"\x98\x01\x0f"                                         # 19 stop_signal SIGTERM (2-byte key)
)
RESPONSE = (b"\x0a\x8c\x01" + STATUS                        # 1 status, length 140
            + b"\x12\x09" b"\x0a\x03pid" b"\x12\x0242")     # 2 info entry


def test_hand_written_status_is_as_long_as_its_header_says():
    assert len(STATUS) == 140


# ---- the generated messages against bytes written from the CRI API's numbers -------

def test_request_bytes():
    assert pb.ContainerStatusRequest(container_id="abc").SerializeToString() == b"\x0a\x03abc"
    assert pb.ContainerStatusRequest(container_id="abc", verbose=True).SerializeToString() \
        == b"\x0a\x03abc\x10\x01"
    # ListPodSandbox's filter: 1 filter {3 label_selector entry {1 key, 2 value}}
    req = pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(label_selector={"k": "v"}))
    assert req.SerializeToString() == b"\x0a\x08" b"\x1a\x06" b"\x0a\x01k\x12\x01v"
    assert pb.PodSandboxStatusRequest(pod_sandbox_id="s", verbose=True).SerializeToString() \
        == b"\x0a\x01s\x10\x01"


def test_hand_written_response_field_by_field():
    reply = pb.ContainerStatusResponse.FromString(RESPONSE)
    assert cri.status_fields(reply) == {
        "id": "c0ffee", "name": "web", "image": "nginx:1.27", "image_ref": "sha256:ab",
        "labels": {"app": "web", "io.kubernetes.pod.name": "web-0"},
        "annotations": {"io.kubernetes.pod.namespace": "prod"}}
    assert (reply.status.state, reply.status.exit_code) == (pb.CONTAINER_RUNNING, -1)
    assert dict(reply.info) == {"pid": "42"}


def test_hand_written_pod_sandbox_field_by_field():
    meta = b"\x0a\x03web" b"\x12\x03uid" b"\x1a\x04prod" b"\x20\x01"     # name uid namespace attempt
    sandbox = (b"\x0a\x02sb" + b"\x12" + bytes([len(meta)]) + meta + b"\x18\x01"  # 1 id 2 metadata 3 state
               + b"\x20\x05"                                             # 4 created_at
               + b"\x2a\x08\x0a\x03app\x12\x01w"                           # 5 labels
               + b"\x32\x08\x0a\x01a\x12\x03b c"                           # 6 annotations
               + b"\x3a\x04runc")                                        # 7 runtime_handler
    (item,) = pb.ListPodSandboxResponse.FromString(b"\x0a" + bytes([len(sandbox)]) + sandbox).items
    assert (item.id, item.metadata.name, item.metadata.uid, item.metadata.namespace,
            item.metadata.attempt) == ("sb", "web", "uid", "prod", 1)
    assert (item.state, item.created_at, item.runtime_handler) == (pb.SANDBOX_NOTREADY, 5, "runc")
    assert (dict(item.labels), dict(item.annotations)) == ({"app": "w"}, {"a": "b c"})
    status = (b"\x0a\x02sb" + b"\x12" + bytes([len(meta)]) + meta
              + b"\x3a\x08\x0a\x03app\x12\x01w" + b"\x42\x08\x0a\x01a\x12\x03b c")  # 7 labels 8 annotations
    reply = pb.PodSandboxStatusResponse.FromString(b"\x0a" + bytes([len(status)]) + status)
    assert (dict(reply.status.labels), dict(reply.status.annotations)) == ({"app": "w"}, {"a": "b c"})
    assert pb.VersionResponse.FromString(b"\x12\x0acontainerd").runtime_name == "containerd"


def test_fields_tetrad_does_not_read_are_skipped():
    # 14 mounts, 15 log_path, 19 stop_signal, an unknown 30 of each fixed width
    status = (b"\x72\x02\x0a\x00" b"\x7a\x01x" b"\x98\x01\x0f" b"\xf5\x01\x01\x02\x03\x04"
              b"\xf1\x01" + bytes(8) + b"\x0a\x01x")
    reply = pb.ContainerStatusResponse.FromString(b"\x0a" + bytes([len(status)]) + status)
    assert cri.status_fields(reply) == {"id": "x"}


def test_empty_response_is_empty():
    assert cri.status_fields(pb.ContainerStatusResponse()) == {}
    assert cri.status_fields(None) == {}


def pb_response(cid: str, name: str, image: str, labels=None, annotations=None, **extra) -> bytes:
    resp = pb.ContainerStatusResponse()
    st = resp.status
    st.id = cid
    st.metadata.name = name
    st.metadata.attempt = 2
    st.state = pb.CONTAINER_RUNNING
    st.created_at = 1_764_200_000_000_000_000
    st.exit_code = -9
    st.image.image = image
    st.image.annotations["arch"] = "amd64"
    st.message = "é ünïcode"
    for key, value in (labels or {}).items():
        st.labels[key] = value
    for key, value in (annotations or {}).items():
        st.annotations[key] = value
    for key, value in extra.items():
        setattr(st, key, value)
    resp.info["pid"] = "4242"
    return resp.SerializeToString()


# ---- a fake runtime over gRPC on a Unix socket ------------------------------------

class FakeRuntime:
    """runtime.v1.RuntimeService/ContainerStatus with canned raw replies."""

    def __init__(self, path, replies: dict, delay: float = 0.0):
        self.path, self.replies, self.delay = str(path), replies, delay
        self.requests: list[bytes] = []
        self.served = threading.Event()

        def status(request: bytes, context):
            self.requests.append(request)
            time.sleep(self.delay)
            # The id is the request's field 1; parsed here by hand, not by cri.py.
            assert request[0] == 0x0a and request[1] == 64
            cid = request[2:66].decode()
            self.served.set()
            if cid not in self.replies:
                context.abort(grpc.StatusCode.NOT_FOUND, f"container {cid} not found")
            return self.replies[cid]

        handler = grpc.method_handlers_generic_handler(
            "runtime.v1.RuntimeService",
            {"ContainerStatus": grpc.unary_unary_rpc_method_handler(status)})
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((handler,))
        self.server.add_insecure_port("unix:" + self.path)
        self.server.start()

    def stop(self):
        self.server.stop(0).wait()


@pytest.fixture
def runtime(tmp_path):
    started = []

    def start(rel="run/containerd/containerd.sock", replies=None, delay=0.0):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        fake = FakeRuntime(path, replies or {}, delay)
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


@pytest.fixture
def client():
    c = cri.make_client()
    assert isinstance(c, cri.CriClient)
    yield c
    c.close()


def test_client_sends_the_id_and_decodes_the_reply(runtime, client):
    fake = runtime(replies={ID: RESPONSE})
    assert cri.status_fields(client.container_status(fake.path, ID)) == \
        cri.status_fields(pb.ContainerStatusResponse.FromString(RESPONSE))
    assert fake.requests == [b"\x0a\x40" + ID.encode()]      # verbose false: not sent
    assert client.errors == 0


def test_unknown_container_is_empty(runtime, client):
    fake = runtime(replies={ID: RESPONSE})
    assert client.container_status(fake.path, ID2) is None
    assert client.errors == 1 and len(fake.requests) == 1


def test_missing_socket_is_empty_without_a_call(tmp_path, client):
    assert client.container_status(str(tmp_path / "nope.sock"), ID) is None
    (tmp_path / "file.sock").write_text("")
    assert client.container_status(str(tmp_path / "file.sock"), ID) is None
    assert client._channels == {} and client.errors == 0


def test_slow_runtime_hits_the_deadline(runtime, client):
    fake = runtime(replies={ID: RESPONSE}, delay=3.0)
    started = time.monotonic()
    assert client.container_status(fake.path, ID) is None
    took = time.monotonic() - started
    assert fake.requests and client.errors == 1
    assert cri.CRI_TIMEOUT_S <= took < cri.CRI_TIMEOUT_S + 1.0, took


def test_silent_listener_hits_the_deadline(tmp_path, client):
    """A socket that accepts and never speaks HTTP/2 (a hung runtime)."""
    path = str(tmp_path / "silent.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    try:
        started = time.monotonic()
        assert client.container_status(path, ID) is None
        assert time.monotonic() - started < cri.CRI_TIMEOUT_S + 1.0
        assert client.errors == 1
    finally:
        listener.close()


@pytest.mark.parametrize("reply", [RESPONSE[:-1], b"\x0b", b"\x0a\x05ab", b"\x08" + b"\xff" * 11])
def test_malformed_reply_is_empty(runtime, client, reply):
    fake = runtime(replies={ID: reply})
    assert client.container_status(fake.path, ID) is None
    assert client.errors == 1 and fake.requests


def test_without_grpc_one_line_and_a_client_that_knows_nothing(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "grpc", None)          # import grpc -> ImportError
    with caplog.at_level(logging.WARNING, logger="tetrad.containers.cri"):
        c = cri.make_client()
    assert isinstance(c, cri.NoCriClient)
    assert c.container_status("/run/containerd/containerd.sock", ID) is None
    (line,) = [r for r in caplog.records if r.name == "tetrad.containers.cri"]
    assert "python3-grpcio" in line.getMessage() and line.levelno == logging.WARNING


# ---- metadata mapping and the resolver ---------------------------------------------

K8S_LABELS = {"io.kubernetes.container.name": "app", "io.kubernetes.pod.name": "app-7d9f",
              "io.kubernetes.pod.namespace": "prod", "io.kubernetes.pod.uid": POD}


def test_cri_status_to_metadata():
    status = {"id": ID, "name": "app", "image": "registry.local/app:2", "image_ref": "sha256:r",
              "image_id": "sha256:i", "labels": K8S_LABELS, "annotations": {"x": "y"}}
    assert metadata._from_cri_status(status) == {
        "name": "app", "image": "registry.local/app:2", "image_id": "sha256:r",
        "labels": K8S_LABELS, "pod_name": "app-7d9f", "pod_namespace": "prod", "pod_uid": POD}
    # crictl-made containers: no Kubernetes labels, names from the CRI fields
    assert metadata._from_cri_status({"name": "solo", "image": "busybox", "image_id": "sha256:i"}) == {
        "name": "solo", "image": "busybox", "image_id": "sha256:i"}


class FakePaths:
    def __init__(self, paths):
        self.paths = paths

    def path_of(self, cgroup_id):
        return self.paths.get(cgroup_id)


def wait_named(resolver, cgroup_id, deadline_s=5.0):
    deadline = time.monotonic() + deadline_s
    while "name" not in (resolver.for_cgroup_id(cgroup_id) or {}) and time.monotonic() < deadline:
        time.sleep(0.01)
    return resolver.for_cgroup_id(cgroup_id)


SYSTEMD_POD = f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD.replace('-', '_')}.slice"


def test_containerd_partial_then_complete_from_cri(tmp_path, runtime):
    runtime(replies={ID: pb_response(ID, "app", "registry.local/app:2", labels=K8S_LABELS,
                                     image_ref="sha256:" + "e" * 64)})
    r = ContainerResolver(FakePaths({5: f"{SYSTEMD_POD}/cri-containerd-{ID}.scope"}), root=tmp_path)
    first = r.for_cgroup_id(5)
    assert first == {"id": ID, "runtime": "containerd", "partial": True, "pod": {"uid": POD}}
    assert wait_named(r, 5) == {
        "id": ID, "runtime": "containerd", "name": "app", "image": "registry.local/app:2",
        "image_id": "sha256:" + "e" * 64, "labels": K8S_LABELS,
        "pod": {"name": "app-7d9f", "namespace": "prod", "uid": POD}}
    assert first == {"id": ID, "runtime": "containerd", "partial": True, "pod": {"uid": POD}}


def test_crio_partial_then_complete_from_cri(tmp_path, runtime):
    runtime("run/crio/crio.sock", replies={ID: RESPONSE.replace(b"c0ffee", ID[:6].encode())})
    r = ContainerResolver(FakePaths({6: f"{SYSTEMD_POD}/crio-{ID}.scope"}), root=tmp_path)
    assert r.for_cgroup_id(6)["partial"] is True
    assert wait_named(r, 6) == {
        "id": ID, "runtime": "cri-o", "name": "web", "image": "nginx:1.27", "image_id": "sha256:ab",
        "labels": {"app": "web", "io.kubernetes.pod.name": "web-0"},
        "pod": {"name": "web-0", "namespace": "prod", "uid": POD}}


def test_kubepods_cgroupfs_asks_containerd_then_crio(tmp_path, runtime):
    containerd = runtime(replies={})                              # knows nothing
    crio = runtime("run/crio/crio.sock", replies={ID: pb_response(ID, "db", "postgres:16")})
    r = ContainerResolver(FakePaths({7: f"/kubepods/besteffort/pod{POD}/{ID}"}), root=tmp_path)
    assert r.for_cgroup_id(7)["partial"] is True
    rec = wait_named(r, 7)
    assert (rec["runtime"], rec["name"], rec["image"]) == ("cri", "db", "postgres:16")
    assert "partial" not in rec and len(containerd.requests) == 1 and len(crio.requests) == 1


def test_state_file_name_needs_no_cri_call(tmp_path, runtime):
    import json
    fake = runtime(replies={ID: RESPONSE})
    task = tmp_path / f"run/containerd/io.containerd.runtime.v2.task/k8s.io/{ID}"
    task.mkdir(parents=True)
    (task / "config.json").write_text(json.dumps(
        {"annotations": {"io.kubernetes.cri.container-name": "from-file"}}))
    r = ContainerResolver(FakePaths({8: f"/system.slice/cri-containerd-{ID}.scope"}), root=tmp_path)
    assert r.for_cgroup_id(8) == {"id": ID, "runtime": "containerd", "name": "from-file"}
    assert fake.requests == []


def test_runtime_that_does_not_know_the_container_leaves_it_partial(tmp_path, runtime):
    fake = runtime(replies={})
    r = ContainerResolver(FakePaths({9: f"/system.slice/cri-containerd-{ID}.scope"}), root=tmp_path)
    assert r.for_cgroup_id(9) == {"id": ID, "runtime": "containerd", "partial": True}
    assert fake.served.wait(5)
    r._api_queue.join()
    assert r.for_cgroup_id(9) == {"id": ID, "runtime": "containerd", "partial": True}


def test_resolver_without_grpc_stays_partial_and_logs_once(tmp_path, runtime, monkeypatch, caplog):
    fake = runtime(replies={ID: RESPONSE, ID2: RESPONSE})
    monkeypatch.setitem(sys.modules, "grpc", None)
    r = ContainerResolver(FakePaths({1: f"/system.slice/cri-containerd-{ID}.scope",
                                     2: f"/system.slice/crio-{ID2}.scope"}), root=tmp_path)
    with caplog.at_level(logging.WARNING, logger="tetrad.containers.cri"):
        assert r.for_cgroup_id(1)["partial"] and r.for_cgroup_id(2)["partial"]
        r._api_queue.join()
    assert r.for_cgroup_id(1)["partial"] and r.for_cgroup_id(2)["partial"]
    assert len([x for x in caplog.records if "python3-grpcio" in x.getMessage()]) == 1
    assert fake.requests == [] and r.api_errors == 0


def test_without_a_new_enough_protobuf_one_line_and_a_client_that_knows_nothing(monkeypatch, caplog):
    monkeypatch.delattr(criapi, "api_pb2", raising=False)
    monkeypatch.setitem(sys.modules, "tetrad.containers.criapi.api_pb2", None)   # -> ImportError
    with caplog.at_level(logging.WARNING, logger="tetrad.containers.cri"):
        c = cri.make_client()
    assert isinstance(c, cri.NoCriClient)
    assert c.list_pod_sandboxes("/run/containerd/containerd.sock", {"a": "b"}) == []
    (line,) = [r for r in caplog.records if r.name == "tetrad.containers.cri"]
    assert "python3-protobuf 3.20 or later" in line.getMessage()
