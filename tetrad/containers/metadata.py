"""Container name, image and labels from the runtime's own records.

First the state files each runtime keeps on disk (cheap, no daemon needed):
  Docker      /var/lib/docker/containers/<id>/config.v2.json
  Podman      <graphroot>/overlay-containers/containers.json (+ its metadata),
              rootless: ~/.local/share/containers/storage/...
  containerd  /run/containerd/io.containerd.runtime.v2.task/<ns>/<id>/config.json
              (OCI annotations io.kubernetes.cri.*)
  CRI-O       /run/containers/storage/overlay-containers/<id>/userdata/config.json
then, when a file gives no name, the runtime's API socket, with a short
timeout: Docker Engine API, Podman's libpod API, and the CRI gRPC API of
containerd (/run/containerd/containerd.sock) and CRI-O (/run/crio/crio.sock)
through cri.py. All readers return what they found as a dict with any of:
name, image, image_id, labels, pod_name, pod_namespace, pod_uid; never raise.
"""

from __future__ import annotations

import http.client
import json
import os
import pwd
import socket
from pathlib import Path

from tetrad.containers import cri

ROOT = Path("/")
API_TIMEOUT_S = 3.0            # asked off the event path (resolver's worker thread)
MAX_STATE_BYTES = 8 << 20


def _read_json(path: Path):
    try:
        if path.stat().st_size > MAX_STATE_BYTES:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _k8s(annotations: dict) -> dict:
    out = {}
    for key, field in (("io.kubernetes.cri.container-name", "name"),
                       ("io.kubernetes.container.name", "name"),
                       ("io.kubernetes.cri.image-name", "image"),
                       ("io.kubernetes.cri-o.ImageName", "image"),
                       ("io.kubernetes.cri.sandbox-name", "pod_name"),
                       ("io.kubernetes.pod.name", "pod_name"),
                       ("io.kubernetes.cri.sandbox-namespace", "pod_namespace"),
                       ("io.kubernetes.pod.namespace", "pod_namespace"),
                       ("io.kubernetes.cri.sandbox-uid", "pod_uid"),
                       ("io.kubernetes.pod.uid", "pod_uid")):
        if annotations.get(key) and field not in out:
            out[field] = annotations[key]
    return out


def docker_state(cid: str, root: Path = ROOT) -> dict:
    doc = _read_json(root / "var/lib/docker/containers" / cid / "config.v2.json")
    if not isinstance(doc, dict):
        return {}
    config = doc.get("Config") or {}
    out = {"name": (doc.get("Name") or "").lstrip("/"), "image": config.get("Image", ""),
           "image_id": doc.get("Image", ""), "labels": config.get("Labels") or {}}
    return {k: v for k, v in out.items() if v}


def _podman_graphroots(root: Path, rootless_uid: int) -> list[Path]:
    if rootless_uid < 0:
        return [root / "var/lib/containers/storage"]
    try:
        home = Path(pwd.getpwuid(rootless_uid).pw_dir.lstrip("/"))
    except KeyError:
        return []
    return [root / home / ".local/share/containers/storage"]


def podman_state(cid: str, rootless_uid: int = -1, root: Path = ROOT) -> dict:
    for graph in _podman_graphroots(root, rootless_uid):
        listing = _read_json(graph / "overlay-containers/containers.json")
        for entry in listing or []:
            if not isinstance(entry, dict) or entry.get("id") != cid:
                continue
            out = {"image_id": entry.get("image", "")}
            names = entry.get("names") or []
            if names:
                out["name"] = names[0]
            try:
                meta = json.loads(entry.get("metadata") or "{}")
            except ValueError:
                meta = {}
            if meta.get("image-name"):
                out["image"] = meta["image-name"]
            if meta.get("name") and "name" not in out:
                out["name"] = meta["name"]
            config = _read_json(graph / "overlay-containers" / cid / "userdata/config.json") or {}
            out.update({k: v for k, v in _k8s(config.get("annotations") or {}).items()
                        if k.startswith("pod_")})
            return {k: v for k, v in out.items() if v}
    return {}


def containerd_state(cid: str, root: Path = ROOT) -> dict:
    base = root / "run/containerd/io.containerd.runtime.v2.task"
    try:
        namespaces = [p for p in base.iterdir() if p.is_dir()]
    except OSError:
        return {}
    for ns in namespaces:
        config = _read_json(ns / cid / "config.json")
        if isinstance(config, dict):
            out = _k8s(config.get("annotations") or {})
            out["namespace"] = ns.name
            return out
    return {}


def crio_state(cid: str, root: Path = ROOT) -> dict:
    config = _read_json(root / "run/containers/storage/overlay-containers" / cid / "userdata/config.json")
    if not isinstance(config, dict):
        return {}
    return _k8s(config.get("annotations") or {})


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def _api_get(sock_path: str, url: str) -> dict:
    if not os.path.exists(sock_path):
        return {}
    conn = _UnixHTTPConnection(sock_path, API_TIMEOUT_S)
    try:
        conn.request("GET", url)
        resp = conn.getresponse()
        if resp.status != 200:
            return {}
        doc = json.loads(resp.read(MAX_STATE_BYTES))
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError, http.client.HTTPException):
        return {}
    finally:
        conn.close()


def docker_api(cid: str, root: Path = ROOT) -> dict:
    doc = _api_get(str(root / "run/docker.sock"), f"/containers/{cid}/json")
    config = doc.get("Config") or {}
    out = {"name": (doc.get("Name") or "").lstrip("/"), "image": config.get("Image", ""),
           "image_id": doc.get("Image", ""), "labels": config.get("Labels") or {}}
    return {k: v for k, v in out.items() if v}


def podman_api(cid: str, rootless_uid: int = -1, root: Path = ROOT) -> dict:
    sock = (root / "run/podman/podman.sock" if rootless_uid < 0
            else root / f"run/user/{rootless_uid}/podman/podman.sock")
    doc = _api_get(str(sock), f"/v4.0.0/libpod/containers/{cid}/json")
    config = doc.get("Config") or {}
    out = {"name": doc.get("Name", ""), "image": doc.get("ImageName", "") or config.get("Image", ""),
           "image_id": doc.get("Image", ""), "labels": config.get("Labels") or {}}
    return {k: v for k, v in out.items() if v}


# Runtime (as cgroup_path.py names it) -> CRI sockets to ask, in order. "cri"
# is the kubepods cgroupfs layout, whose path does not say which runtime.
CRI_SOCKETS = {
    "containerd": ("run/containerd/containerd.sock",),
    "cri-o": ("run/crio/crio.sock",),
    "cri": ("run/containerd/containerd.sock", "run/crio/crio.sock"),
}
API_RUNTIMES = ("docker", "podman", *CRI_SOCKETS)


def cri_api(runtime: str, cid: str, client, root: Path = ROOT) -> dict:
    """Ask the runtime's CRI socket(s) through `client` (cri.make_client())."""
    for rel in CRI_SOCKETS.get(runtime, ()):
        status = cri.status_fields(client.container_status(str(root / rel), cid))
        if status:
            return _from_cri_status(status)
    return {}


def _from_cri_status(status: dict) -> dict:
    labels = status.get("labels") or {}
    out = _k8s({**(status.get("annotations") or {}), **labels})
    # The CRI's own fields first; the Kubernetes labels say the same under kubelet.
    for field, value in (("name", status.get("name")), ("image", status.get("image")),
                         ("image_id", status.get("image_ref") or status.get("image_id")),
                         ("labels", labels)):
        if value:
            out[field] = value
    return {k: v for k, v in out.items() if v}


def from_state_files(runtime: str, cid: str, rootless_uid: int = -1, root: Path = ROOT) -> dict:
    if runtime == "docker":
        return docker_state(cid, root)
    if runtime == "podman":
        return podman_state(cid, rootless_uid, root)
    if runtime in ("containerd", "cri"):
        return containerd_state(cid, root) or crio_state(cid, root)
    if runtime == "cri-o":
        return crio_state(cid, root)
    return {}


def from_api(runtime: str, cid: str, rootless_uid: int = -1, root: Path = ROOT,
             cri_client=None) -> dict:
    """Blocking (up to the API timeouts): call from a worker thread only."""
    if runtime == "docker":
        return docker_api(cid, root)
    if runtime == "podman":
        return podman_api(cid, rootless_uid, root)
    if runtime in CRI_SOCKETS and cri_client is not None:
        return cri_api(runtime, cid, cri_client, root)
    return {}
