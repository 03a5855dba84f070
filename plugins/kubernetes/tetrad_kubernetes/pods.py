"""Pods and their containers as the kubelet made them, from the CRI: the pod
source of tetrad's container resolver (tetrad/containers/pods.py).

The kubelet tells the runtime everything tetrad needs and the runtime keeps
it: on the pod sandbox (RunPodSandbox) the pod's name, namespace and uid
(metadata, and labels io.kubernetes.pod.*), every label of the pod, and its
annotations; on each container (CreateContainer) the label
io.kubernetes.container.name. So, for a container whose cgroup path names
pod uid U:
  ListPodSandbox, label filter io.kubernetes.pod.uid=U  the pod's sandboxes
                                     (a restarted sandbox is a new one: the
                                     ready one of the highest attempt wins)
  PodSandboxStatus                   its labels and annotations
  ContainerStatus, verbose           the container's name, image, start
                                     time; the runtime's JSON info says
                                     whether it is privileged
  Version                            the runtime's name, the scheme of
                                     Kubernetes' container ids
Each CRI socket of the config is asked in order; the first that knows the
pod answers for it. A pod is cached by uid (bounded) and read again when a
new container of it appears (the resolver fetches each new container: the
cgroup mkdir records the daemon reads), at most once a second. While the
kubelet is still making a pod, its sandbox's own cgroup appears before the
runtime lists the sandbox: fetch() asks again for up to NOT_LISTED_WAIT_S.
A pod no runtime knows is remembered as unknown for UNKNOWN_TTL_S. Likewise
a container's cgroup is made as it starts: while the runtime still says
"created", it is asked again for up to NOT_STARTED_WAIT_S, for its start
time.

With the kubelet source (kubelet.py), its pod list overrides labels and
annotations (they can change after the sandbox was made), the workload
(from owner references instead of labels), and per container whether it is
privileged and when it started.

Threads: known() is called by the reader and control threads, fetch() by the
resolver's worker only; one lock guards the caches, never held for a call.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from tetrad.containers.cgroup_path import CgroupIdentity
from tetrad_kubernetes import workload

log = logging.getLogger(__name__)

POD_UID_LABEL = "io.kubernetes.pod.uid"
CONTAINER_NAME_LABEL = "io.kubernetes.container.name"
KUBELET_PREFIX = "io.kubernetes."           # the kubelet's own labels, not the pod's
MAX_PODS = 4096
MAX_CONTAINERS = 16384
REFRESH_MIN_S = 1.0
NOT_LISTED_WAIT_S = 2.0
NOT_LISTED_POLL_S = 0.05
NOT_STARTED_WAIT_S = 1.0
UNKNOWN_TTL_S = 30.0
MAX_INFO_BYTES = 4 << 20                    # the verbose JSON parsed for `privileged`


@dataclass
class Pod:
    fields: dict                             # Tetragon's Pod fields (pods.py of tetrad)
    socket: str
    sandboxes: frozenset = frozenset()
    fetched: float = 0.0
    containers: dict = field(default_factory=dict)   # kubelet: container id -> fields


class KubernetesPods:
    enabled = True

    def __init__(self, client, sockets: tuple[str, ...], annotations: bool = False,
                 kubelet=None, clock=time.monotonic, sleep=time.sleep):
        self._cri = client                   # tetrad.containers.cri.CriClient
        self._sockets = sockets
        self._annotations = annotations
        self._kubelet = kubelet              # kubelet.KubeletPods, or None
        self._clock, self._sleep = clock, sleep
        self._pods: OrderedDict[str, Pod] = OrderedDict()
        self._unknown: dict[str, float] = {}  # pod uid -> when no runtime knew it
        self._containers: OrderedDict[str, dict] = OrderedDict()
        self._schemes: dict[str, str] = {}   # socket -> runtime name
        self._lock = threading.Lock()
        self.lookups = 0
        self.not_found = 0

    # ---- tetrad's PodSource ---------------------------------------------------------

    def known(self, ident: CgroupIdentity) -> dict | None:
        with self._lock:
            pod = self._pods.get(ident.pod_uid)
            container = self._containers.get(ident.id)
        if pod is None:
            return None
        return self._answer(pod, ident, container)

    def fetch(self, ident: CgroupIdentity) -> dict | None:
        pod = self._pod(ident.pod_uid, ident.id)
        if pod is None:
            return None
        container = None
        if ident.id not in pod.sandboxes:
            container = self._container(pod, ident.id)
        return self._answer(pod, ident, container)

    def stats(self) -> dict:
        with self._lock:
            pods, containers = len(self._pods), len(self._containers)
        out = {"pods_cached": pods, "containers_cached": containers, "lookups": self.lookups,
               "pods_not_found": self.not_found, "cri_errors": self._cri.errors}
        if self._kubelet is not None:
            out["kubelet"] = self._kubelet.stats()
        return out

    def close(self) -> None:
        self._cri.close()

    # ---- pods ---------------------------------------------------------------------

    def _answer(self, pod: Pod, ident: CgroupIdentity, container: dict | None) -> dict:
        out = {"pod": pod.fields}
        if ident.id in pod.sandboxes:
            out["sandbox"] = True
        if container:
            out.update(container)
            out.update(pod.containers.get(ident.id, {}))    # the kubelet's word, when it has one
        return out

    def _pod(self, uid: str, container_id: str) -> Pod | None:
        now = self._clock()
        with self._lock:
            pod = self._pods.get(uid)
            gone = self._unknown.get(uid, -UNKNOWN_TTL_S)
        if pod is not None and (now - pod.fetched < REFRESH_MIN_S or container_id in pod.sandboxes):
            return pod
        if pod is None and now - gone < UNKNOWN_TTL_S:
            return None
        self.lookups += 1
        found = self._read_pod(uid)
        deadline = now + NOT_LISTED_WAIT_S
        while found is None and self._clock() < deadline:
            # The kubelet is making the pod: its sandbox's cgroup exists,
            # the runtime lists it once RunPodSandbox is done.
            self._sleep(NOT_LISTED_POLL_S)
            found = self._read_pod(uid)
        with self._lock:
            if found is None:
                self.not_found += 1
                self._unknown[uid] = self._clock()
                if len(self._unknown) > MAX_PODS:
                    self._unknown.pop(next(iter(self._unknown)))
                return pod                    # what was known before, if anything
            self._unknown.pop(uid, None)
            self._pods[uid] = found
            self._pods.move_to_end(uid)
            if len(self._pods) > MAX_PODS:
                self._pods.popitem(last=False)
        return found

    def _read_pod(self, uid: str) -> Pod | None:
        for socket in self._sockets:
            sandboxes = self._cri.list_pod_sandboxes(socket, {POD_UID_LABEL: uid})
            if sandboxes:
                return self._from_sandboxes(socket, uid, sandboxes)
        return None

    def _from_sandboxes(self, socket: str, uid: str, sandboxes: list) -> Pod:
        pb = self._cri.pb
        newest = max(sandboxes, key=lambda s: (s.state == pb.SANDBOX_READY, s.metadata.attempt,
                                               s.created_at))
        labels, annotations = dict(newest.labels), dict(newest.annotations)
        status = self._cri.pod_sandbox_status(socket, newest.id)
        if status is not None and status.HasField("status"):
            labels, annotations = dict(status.status.labels), dict(status.status.annotations)
        meta = newest.metadata
        fields = {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid or uid,
                  "labels": {k: v for k, v in labels.items() if not k.startswith(KUBELET_PREFIX)}}
        fields["workload"], fields["workload_kind"] = workload.from_labels(meta.name, fields["labels"])
        if self._annotations and annotations:
            fields["annotations"] = annotations
        pod = Pod(fields, socket, frozenset(s.id for s in sandboxes), self._clock())
        if self._kubelet is not None:
            listed = self._kubelet.pod(fields["uid"])
            if listed is not None:
                pod.fields = {**fields, **listed["pod"]}
                pod.containers = listed["containers"]
        pod.fields = {k: v for k, v in pod.fields.items() if v}
        return pod

    # ---- containers ---------------------------------------------------------------

    def _container(self, pod: Pod, container_id: str) -> dict | None:
        with self._lock:
            cached = self._containers.get(container_id)
        if cached is not None:
            return cached
        reply = self._cri.container_status(pod.socket, container_id, verbose=True)
        deadline = self._clock() + NOT_STARTED_WAIT_S
        while (reply is not None and reply.status.state == self._cri.pb.CONTAINER_CREATED
               and self._clock() < deadline):
            # Its cgroup is made as it starts (StartContainer): the start
            # time follows within milliseconds.
            self._sleep(NOT_LISTED_POLL_S)
            reply = self._cri.container_status(pod.socket, container_id, verbose=True)
        if reply is None or not reply.HasField("status"):
            return None
        st = reply.status
        found = {"name": st.labels.get(CONTAINER_NAME_LABEL) or st.metadata.name,
                 "image": st.image.image, "image_id": st.image_ref or st.image_id,
                 "cri_id": f"{self._scheme(pod.socket)}://{st.id or container_id}",
                 "privileged": _privileged(reply.info.get("info", ""))}
        if st.started_at > 0:
            found["start_time"] = st.started_at
        found = {k: v for k, v in found.items() if v or k == "privileged"}
        with self._lock:
            self._containers[container_id] = found
            if len(self._containers) > MAX_CONTAINERS:
                self._containers.popitem(last=False)
        return found

    def _scheme(self, socket: str) -> str:
        if socket not in self._schemes:
            reply = self._cri.version(socket)
            if reply is None or not reply.runtime_name:
                return "containerd" if "containerd" in socket else "cri-o"
            self._schemes[socket] = reply.runtime_name
        return self._schemes[socket]


def _privileged(info: str) -> bool:
    """From a verbose ContainerStatus's info JSON: containerd puts the
    container's CRI config there (config.linux.security_context.privileged),
    CRI-O a top-level `privileged`. Anything else: not privileged."""
    if not info or len(info) > MAX_INFO_BYTES:
        return False
    try:
        doc = json.loads(info)
    except ValueError:
        return False
    if not isinstance(doc, dict):
        return False
    if doc.get("privileged") is True:
        return True
    context = doc.get("config")
    for key in ("linux", "security_context", "privileged"):
        context = context.get(key) if isinstance(context, dict) else None
    return context is True
