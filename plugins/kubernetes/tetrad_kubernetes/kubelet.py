"""The kubelet's pod list (GET /pods on its authenticated API) as a second
source of pod identity: what the CRI does not keep, or keeps as it was when
the sandbox was made.

  owner references   the exact workload (workload.from_owner)
  labels, annotations   as they are now (`kubectl label` changes them live)
  per container      privileged (spec.containers[].securityContext), start
                     time (status.containerStatuses[].state.running.startedAt)

Only the authenticated port, over TLS, with the server's certificate
verified (kubelet_ca, else the system's CAs) and a client certificate or a
bearer token (read from its file at each request: projected tokens
rotate); never the read-only port (spec.check refuses it). The list is read
at most every `refresh_s`, and again when asked for a pod it does not hold
(at most once a second); a reply is at most MAX_BYTES. Failures are counted
and the first one logged; the CRI alone then answers. Called from the
resolver's worker thread only.
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import time
from datetime import datetime
from urllib.parse import urlsplit

from tetrad_kubernetes import workload

log = logging.getLogger(__name__)

TIMEOUT_S = 3.0
MAX_BYTES = 64 << 20
MISS_REFRESH_S = 1.0


def _ns(stamp) -> int:
    """RFC 3339 (as Kubernetes writes times) -> ns since the epoch; 0 if not one."""
    if not isinstance(stamp, str):
        return 0
    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()) * 1_000_000_000
    except ValueError:
        return 0


def _strings(value) -> dict:
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)} \
        if isinstance(value, dict) else {}


def pod_entry(item: dict, annotations: bool) -> tuple[str, dict] | None:
    """(uid, {"pod": fields, "containers": {id: fields}}) of one PodList item;
    None for an item without a uid."""
    meta = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
    spec = item.get("spec") if isinstance(item.get("spec"), dict) else {}
    status = item.get("status") if isinstance(item.get("status"), dict) else {}
    uid, name = meta.get("uid"), meta.get("name")
    if not isinstance(uid, str) or not isinstance(name, str):
        return None
    labels = _strings(meta.get("labels"))
    owners = meta.get("ownerReferences") if isinstance(meta.get("ownerReferences"), list) else []
    fields = {"name": name, "namespace": str(meta.get("namespace", "")), "uid": uid, "labels": labels}
    fields["workload"], fields["workload_kind"] = workload.from_owner(
        name, str(meta.get("generateName", "")), labels, owners)
    if annotations:
        fields["annotations"] = _strings(meta.get("annotations"))
    privileged = {}
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict) and isinstance(c.get("name"), str):
                context = c.get("securityContext") if isinstance(c.get("securityContext"), dict) else {}
                privileged[c["name"]] = context.get("privileged") is True
    containers = {}
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for c in status.get(key) or []:
            if not isinstance(c, dict) or not isinstance(c.get("containerID"), str) \
                    or "://" not in c["containerID"]:
                continue
            found = {"cri_id": c["containerID"], "privileged": privileged.get(c.get("name"), False)}
            state = c.get("state") if isinstance(c.get("state"), dict) else {}
            running = state.get("running") if isinstance(state.get("running"), dict) else {}
            if _ns(running.get("startedAt")):
                found["start_time"] = _ns(running.get("startedAt"))
            containers[c["containerID"].split("://", 1)[1]] = found
    return uid, {"pod": {k: v for k, v in fields.items() if v}, "containers": containers}


class KubeletPods:
    def __init__(self, url: str, ca: str = "", cert: str = "", key: str = "", token_file: str = "",
                 refresh_s: float = 10.0, annotations: bool = False, clock=time.monotonic):
        parts = urlsplit(url)
        self._host, self._port = parts.hostname, parts.port or 443
        self._path = (parts.path.rstrip("/") or "") + "/pods"
        self._context = ssl.create_default_context(cafile=ca or None)
        if cert:
            self._context.load_cert_chain(cert, key)
        self._token_file = token_file
        self._refresh_s = refresh_s
        self._annotations = annotations
        self._clock = clock
        self._pods: dict[str, dict] = {}
        self._read_at = -1e9
        self.fetches = 0
        self.errors = 0

    def pod(self, uid: str) -> dict | None:
        """{"pod": ..., "containers": ...} of the pod with this uid, or None."""
        age = self._clock() - self._read_at
        if age >= self._refresh_s or (uid not in self._pods and age >= MISS_REFRESH_S):
            self._read()
        return self._pods.get(uid)

    def stats(self) -> dict:
        return {"fetches": self.fetches, "errors": self.errors, "pods": len(self._pods)}

    def _read(self) -> None:
        self._read_at = self._clock()
        self.fetches += 1
        try:
            doc = self._get()
        except (OSError, ValueError, http.client.HTTPException) as err:
            self.errors += 1
            (log.warning if self.errors == 1 else log.debug)(
                "kubelet pods at https://%s:%d%s: %s (pods are named from the CRI only)",
                self._host, self._port, self._path, err)
            return
        pods = {}
        for item in doc.get("items") or []:
            entry = pod_entry(item, self._annotations) if isinstance(item, dict) else None
            if entry is not None:
                pods[entry[0]] = entry[1]
        self._pods = pods

    def _get(self) -> dict:
        headers = {"Accept": "application/json"}
        if self._token_file:
            with open(self._token_file, encoding="utf-8") as f:
                headers["Authorization"] = "Bearer " + f.read().strip()
        conn = http.client.HTTPSConnection(self._host, self._port, timeout=TIMEOUT_S,
                                           context=self._context)
        try:
            conn.request("GET", self._path, headers=headers)
            resp = conn.getresponse()
            if resp.status != 200:
                raise ValueError(f"HTTP {resp.status} {resp.reason}")
            body = resp.read(MAX_BYTES + 1)
        finally:
            conn.close()
        if len(body) > MAX_BYTES:
            raise ValueError(f"pod list larger than {MAX_BYTES >> 20} MiB")
        doc = json.loads(body)
        if not isinstance(doc, dict) or doc.get("kind") != "PodList":
            raise ValueError("not a PodList")
        return doc
