"""cgroup id -> container, cached, never blocking the event path for long.

The kernel gives each exec the task's cgroup v2 id (bpf_get_current_cgroup_id).
That id is the inode of the cgroup's directory, and the kernel can open the
directory from it: open_by_handle_at() with a kernfs file handle on the
cgroup2 mount, then /proc/self/fd/N names the path. That is one syscall, and
race-free for as long as the cgroup exists, which for a process in a
long-lived container is long after the process itself has gone. (Needs
CAP_DAC_READ_SEARCH; without it, a walk of the cgroup tree is the fallback.)

The path says runtime and id (cgroup_path.py); the runtime's state files say
name and image (metadata.py, a local file read, done inline). When they do
not, the runtime's API (Docker, Podman, CRI for containerd and CRI-O) is
asked on a worker thread and the event goes out
at once with what is known and `"partial": true`; later events of the
container carry the full record. Results are cached per cgroup id and per
container id, both bounded.

A container in a Kubernetes pod (the pod uid is in its cgroup path) gets its
pod from the pod source (pods.py; the Kubernetes plugin, else nobody): what
the source knows at once goes into the record as it is made; the rest is
fetched on the worker, and the record stays "partial" until then.
"""

from __future__ import annotations

import ctypes
import logging
import os
import queue
import threading
from collections import OrderedDict
from pathlib import Path

from tetrad.containers import cri, metadata
from tetrad.containers.cgroup_path import CgroupIdentity, parse
from tetrad.containers.pods import NO_PODS, PodSource
from tetrad.libc import libc

log = logging.getLogger(__name__)

FILEID_KERNFS = 0xFE
CACHE_SIZE = 8192
HOST = None


class _FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_uint64)]


def cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> str:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or
    /sys/fs/cgroup/unified on v1 hybrid hosts); "" if nowhere."""
    try:
        with open(mountinfo) as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    return left.split()[4]
    except OSError:
        pass
    return ""


class CgroupPaths:
    """cgroup id -> path relative to the cgroup2 mount. Holds the mount's
    directory fd for the life of the process (open_by_handle_at needs it)."""

    def __init__(self, mount: str | None = None):
        self.mount = cgroup2_mount() if mount is None else mount
        self._mount_fd = -1
        if self.mount:
            try:
                self._mount_fd = os.open(self.mount, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as err:
                log.warning("cgroup2 at %s not readable (%s): no container identity", self.mount, err)
        self._walked: dict[int, str] = {}

    def path_of(self, cgroup_id: int) -> str | None:
        if self._mount_fd < 0 or not cgroup_id:
            return None
        handle = _FileHandle(8, FILEID_KERNFS, cgroup_id)
        fd = libc.open_by_handle_at(self._mount_fd, ctypes.byref(handle),
                                          os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        if fd >= 0:
            try:
                full = os.readlink(f"/proc/self/fd/{fd}")
            finally:
                os.close(fd)
            rel = full[len(self.mount):] if full.startswith(self.mount) else full
            return rel or "/"
        if ctypes.get_errno() in (1, 22, 95):        # EPERM, EINVAL, EOPNOTSUPP: walk instead
            if cgroup_id not in self._walked:
                self._walk()
            return self._walked.get(cgroup_id)
        return None                                  # ESTALE/ENOENT: the cgroup is gone

    def _walk(self) -> None:
        self._walked = cgroup_tree(self.mount, 100_001)


def cgroup_tree(mount: str, limit: int) -> dict[int, str]:
    """Every cgroup directory below a cgroup2 mount, as id (its inode) ->
    path relative to the mount; at most `limit` of them."""
    found: dict[int, str] = {}
    for top, _, _ in os.walk(mount):
        if len(found) >= limit:
            break
        try:
            found[os.stat(top).st_ino] = top[len(mount):] or "/"
        except OSError:
            continue                         # removed while walked
    return found


class ContainerResolver:
    def __init__(self, paths: CgroupPaths | None = None, root: Path = metadata.ROOT,
                 use_api: bool = True, pods: PodSource = NO_PODS):
        self._paths = paths or CgroupPaths()
        self._root = root
        self._use_api = use_api
        self._pods = pods
        # cgroup id -> container id ("" for the host); records live in _by_id
        # and are replaced, never changed, so a sink serializing one is safe.
        self._by_cgroup: OrderedDict[int, str] = OrderedDict()
        self._by_id: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()
        self._api_queue: queue.Queue = queue.Queue(maxsize=256)
        self._api_thread: threading.Thread | None = None
        self._cri = None                     # cri.make_client(), on the worker thread
        self.lookups = 0
        self.unresolved = 0
        self.api_errors = 0

    @property
    def cgroup2_mount(self) -> str:
        """Where cgroup v2 is mounted ("" if nowhere)."""
        return self._paths.mount

    def for_cgroup_id(self, cgroup_id: int) -> dict | None:
        """The container record (shared, may be completed later), or None
        for the host and for cgroups that are gone."""
        cid = self._by_cgroup.get(cgroup_id)
        if cid is not None:
            self._by_cgroup.move_to_end(cgroup_id)
            if not cid:
                return HOST
            with self._lock:
                record = self._by_id.get(cid)
            if record is not None:
                return record
        self.lookups += 1
        path = self._paths.path_of(cgroup_id)
        if path is None:
            self.unresolved += 1
            return None                      # not cached: the next event may see it
        return self.learn(cgroup_id, path)

    def learn(self, cgroup_id: int, path: str) -> dict | None:
        """What the cgroup at `path` is (as for_path), remembered under its
        id. Also called for each cgroup just made (the process sensor's
        mkdir record, which comes before any record of a process in it), so
        its processes resolve even once it is gone (a container whose
        command exits at once is removed before a busy daemon reads the
        exec record)."""
        record = self.for_path(path)
        self._by_cgroup[cgroup_id] = record["id"] if record else ""
        if len(self._by_cgroup) > CACHE_SIZE:
            self._by_cgroup.popitem(last=False)
        return record

    def for_path(self, path: str) -> dict | None:
        ident = parse(path)
        if ident is None:
            return HOST
        with self._lock:
            record = self._by_id.get(ident.id)
        if record is not None:
            return record
        record = self._build(ident)
        with self._lock:
            self._by_id[ident.id] = record
            if len(self._by_id) > CACHE_SIZE:
                self._by_id.popitem(last=False)
        return record

    def _build(self, ident: CgroupIdentity) -> dict:
        record = {"id": ident.id, "runtime": ident.runtime}
        if ident.is_machine:
            record["name"] = ident.id
        meta = metadata.from_state_files(ident.runtime, ident.id, ident.rootless_uid, self._root)
        _apply(record, meta, ident)
        in_pod = bool(ident.pod_uid) and self._pods.enabled
        if in_pod:
            _apply_pod(record, self._pods.known(ident))
        named = "name" in record or not (self._use_api and ident.runtime in metadata.API_RUNTIMES)
        if not named or in_pod:
            record["partial"] = True
            self._ask_api(ident, dict(record))
        return record

    def _ask_api(self, ident: CgroupIdentity, record: dict) -> None:
        # The reader (events) and the control thread (policy scopes) both
        # get here: one worker, started once.
        with self._lock:
            if self._api_thread is None:
                self._api_thread = threading.Thread(target=self._api_worker,
                                                    name="tetrad-containers", daemon=True)
                self._api_thread.start()
        try:
            self._api_queue.put_nowait((ident, record))
        except queue.Full:
            pass                              # stays partial; a later container retries

    def _api_worker(self) -> None:
        while True:
            ident, record = self._api_queue.get()
            try:
                self._complete(ident, record)
            except Exception:                # keep the worker: the record stays partial
                self.api_errors += 1
                log.debug("container metadata for %s failed", ident.id, exc_info=True)
            finally:
                self._api_queue.task_done()

    def _complete(self, ident: CgroupIdentity, record: dict) -> None:
        meta = {}
        if "name" not in record and self._use_api and ident.runtime in metadata.API_RUNTIMES:
            if ident.runtime in metadata.CRI_SOCKETS and self._cri is None:
                self._cri = cri.make_client()
            meta = metadata.from_api(ident.runtime, ident.id, ident.rootless_uid, self._root,
                                     cri_client=self._cri)
        in_pod = bool(ident.pod_uid) and self._pods.enabled
        pod = self._pods.fetch(ident) if in_pod else None
        if not meta and not pod:
            return
        complete = dict(record)
        _apply(complete, meta, ident)
        _apply_pod(complete, pod)
        # Complete once named and, in a pod with a pod source, once the pod is known.
        if ("name" in complete or complete.get("sandbox")) and (not in_pod or pod):
            complete.pop("partial", None)
        with self._lock:
            self._by_id[ident.id] = complete


def _apply_pod(record: dict, found: dict | None) -> None:
    """What the pod source said (pods.py) into a record: its fields win over
    the runtime's own for the container (the kubelet named them)."""
    if not found:
        return
    for key, value in found.items():
        if key == "pod":
            record["pod"] = {**record.get("pod", {}), **value}
        elif value or key == "privileged":
            record[key] = value


def _apply(record: dict, meta: dict, ident: CgroupIdentity) -> None:
    for key in ("name", "image", "image_id", "labels"):
        if meta.get(key):
            record[key] = meta[key]
    pod = {k: v for k, v in (("name", meta.get("pod_name")), ("namespace", meta.get("pod_namespace")),
                             ("uid", ident.pod_uid or meta.get("pod_uid"))) if v}
    if pod:
        record["pod"] = {**record.get("pod", {}), **pod}

