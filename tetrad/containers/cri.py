"""The Kubernetes CRI API of container runtimes (containerd, CRI-O): the client.

Owns every call tetrad makes to runtime.v1.RuntimeService over a runtime's
Unix socket (gRPC):
  ContainerStatus    a container's name, image, labels (the resolver asks it
                     for any CRI container; verbose: the runtime's JSON info,
                     which says whether it is privileged)
  Version            the runtime's name ("containerd", "cri-o"), the scheme
                     of Kubernetes container ids ("containerd://...")
  ListPodSandbox, PodSandboxStatus
                     pods as the kubelet made them (the Kubernetes plugin)
The messages and stubs are generated from criapi/api.proto (a subset of the
CRI API's api.proto with its field numbers) by protoc and grpc_tools; see
criapi/generate.sh. Calls run only on worker threads, never on the event
path; each has a deadline of CRI_TIMEOUT_S. A missing socket, an error
status, a deadline passed or a reply that does not parse is None (or no
pods) and counted in `errors` (but for the missing socket).

grpc (python3-grpcio) and protobuf (python3-protobuf, 3.20 or later: the
generated code's runtime) are optional and imported by make_client(): without
them it logs one line and returns a client that knows nothing, so containers
of these runtimes are named from state files only.
"""

from __future__ import annotations

import logging
import os
import stat

log = logging.getLogger(__name__)

CRI_TIMEOUT_S = 1.0
MAX_MESSAGE_BYTES = 8 << 20


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def status_fields(reply) -> dict:
    """A ContainerStatusResponse as a dict with any of: id, name, image,
    image_ref, image_id (str), labels, annotations (dict); {} without a
    status."""
    if reply is None or not reply.HasField("status"):
        return {}
    st = reply.status
    out = {"id": st.id, "name": st.metadata.name, "image": st.image.image,
           "image_ref": st.image_ref, "image_id": st.image_id,
           "labels": dict(st.labels), "annotations": dict(st.annotations)}
    return {k: v for k, v in out.items() if v}


class CriClient:
    """The CRI calls, one channel per runtime socket, kept open (grpc
    reconnects by itself when the runtime restarts). Not thread-safe for the
    first use of a socket: call from one thread (a worker)."""

    def __init__(self, grpc_module, messages, stubs, timeout: float = CRI_TIMEOUT_S):
        self._grpc = grpc_module
        self.pb = messages                    # criapi.api_pb2
        self._stubs = stubs                   # criapi.api_pb2_grpc
        self._timeout = timeout
        self._channels: dict[str, tuple] = {}
        self.errors = 0

    def container_status(self, socket_path: str, container_id: str, verbose: bool = False):
        """ContainerStatusResponse, or None."""
        return self._call(socket_path, "ContainerStatus",
                          self.pb.ContainerStatusRequest(container_id=container_id, verbose=verbose))

    def version(self, socket_path: str):
        """VersionResponse, or None."""
        return self._call(socket_path, "Version", self.pb.VersionRequest(version="v1"))

    def list_pod_sandboxes(self, socket_path: str, labels: dict[str, str]) -> list:
        """The PodSandboxes whose labels include all of `labels`."""
        request = self.pb.ListPodSandboxRequest(filter=self.pb.PodSandboxFilter(label_selector=labels))
        reply = self._call(socket_path, "ListPodSandbox", request)
        return list(reply.items) if reply is not None else []

    def pod_sandbox_status(self, socket_path: str, sandbox_id: str):
        """PodSandboxStatusResponse, or None."""
        return self._call(socket_path, "PodSandboxStatus",
                          self.pb.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id))

    def _call(self, socket_path: str, method: str, request):
        if not _is_socket(socket_path):
            return None
        try:
            return getattr(self._stub(socket_path), method)(request, timeout=self._timeout)
        except self._grpc.RpcError as err:
            # Includes replies that do not parse (grpc reports the
            # deserializer's failure as an error status).
            self.errors += 1
            log.debug("CRI %s at %s: %s", method, socket_path,
                      err.code() if hasattr(err, "code") else err)
            return None

    def _stub(self, socket_path: str):
        entry = self._channels.get(socket_path)
        if entry is None:
            channel = self._grpc.insecure_channel(
                "unix:" + socket_path,
                options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                         ("grpc.enable_http_proxy", 0),
                         # A runtime that was down is asked again within 2 s, not
                         # after grpc's default backoff of up to 120 s.
                         ("grpc.initial_reconnect_backoff_ms", 200),
                         ("grpc.max_reconnect_backoff_ms", 2000)])
            entry = (channel, self._stubs.RuntimeServiceStub(channel))
            self._channels[socket_path] = entry
        return entry[1]

    def close(self) -> None:
        for channel, _ in self._channels.values():
            channel.close()
        self._channels.clear()


class NoCriClient:
    """Stands in for CriClient when python3-grpcio or python3-protobuf is
    missing: it knows nothing."""

    errors = 0

    def container_status(self, socket_path: str, container_id: str, verbose: bool = False):
        return None

    def version(self, socket_path: str):
        return None

    def list_pod_sandboxes(self, socket_path: str, labels: dict[str, str]) -> list:
        return []

    def pod_sandbox_status(self, socket_path: str, sandbox_id: str):
        return None

    def close(self) -> None:
        pass


def make_client(timeout: float = CRI_TIMEOUT_S) -> CriClient | NoCriClient:
    try:
        import grpc                          # python3-grpcio, needed only here
    except ImportError:
        log.warning("CRI metadata disabled: missing python3-grpcio; containerd and CRI-O "
                    "containers are named from their state files only")
        return NoCriClient()
    try:
        # Generated code: needs python3-protobuf, 3.20 or later (older
        # runtimes lack what it calls: ImportError or TypeError).
        from tetrad.containers.criapi import api_pb2, api_pb2_grpc
    except (ImportError, TypeError) as err:
        log.warning("CRI metadata disabled: python3-protobuf 3.20 or later is needed (%s); "
                    "containerd and CRI-O containers are named from their state files only", err)
        return NoCriClient()
    return CriClient(grpc, api_pb2, api_pb2_grpc, timeout)
