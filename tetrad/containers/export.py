"""A container record -> what Tetragon's export says of it: `process.pod`
and `process.docker`. The one place that builds them.

The resolver's record (tetrad/containers/resolver.py) keeps everything tetrad
knows: id, runtime, name, image, image_id, labels, pod {name, namespace, uid}.
Tetragon's schema (api/v1/tetragon/tetragon.proto) has a place for some of
it: `Process.pod` (a `Pod`: namespace, name, uid, container, labels,
workload...) whose `container` is a `Container` (id, name, image {id, name},
start_time, pid), and `Process.docker`, the id's first 31 characters. Outside
Kubernetes a container has no pod name or namespace, so `pod` holds only
`container`; what the schema has no field for (the runtime's name, the
container's labels) stays in the record, for journald fields and policy
scopes.

In a Kubernetes pod known to the pod source (the Kubernetes plugin,
tetrad/containers/pods.py), the record's `pod` map has the pod's name,
namespace, uid, labels, annotations (only when the plugin is told to
export them), workload and workload_kind, and the record has the
container's id as Kubernetes writes it (`cri_id`, "containerd://<id>",
which Tetragon's container.id is in a pod), its start time and whether it
is privileged: they become Tetragon's Pod fields, in the message's field
order. `container.pid` (the process's pid in the container's pid
namespace) is per process and not in the kernel's exec record: left out.
"""

from __future__ import annotations

from tetrad.timefmt import rfc3339

# (record["pod"] key, Pod field) in the Pod message's field order; the
# container comes between uid and the labels.
_POD_KEYS = (("namespace", "namespace"), ("name", "name"), ("uid", "uid"))
_POD_MAPS = (("labels", "pod_labels"), ("workload", "workload"), ("workload_kind", "workload_kind"),
             ("annotations", "pod_annotations"))
# Runtimes whose ids are not Docker-style (Tetragon's `docker` is for those).
_NOT_DOCKER = ("systemd-nspawn", "lxc")


def container_field(record: dict) -> dict:
    """Tetragon's Container of a record."""
    container = {"id": record.get("cri_id") or record["id"]}
    if record.get("name"):
        container["name"] = record["name"]
    image = {k: record[src] for k, src in (("id", "image_id"), ("name", "image")) if record.get(src)}
    if image:
        container["image"] = image
    if record.get("start_time"):
        container["start_time"] = rfc3339(record["start_time"])
    if "privileged" in record:
        # Tetragon sets the message for every pod container: {} when not privileged.
        container["security_context"] = {"privileged": True} if record["privileged"] else {}
    return container


def pod_field(record: dict) -> dict:
    """Tetragon's process.pod of a record."""
    known = record.get("pod") or {}
    pod = {field: known[key] for key, field in _POD_KEYS if known.get(key)}
    pod["container"] = container_field(record)
    pod.update((field, known[key]) for key, field in _POD_MAPS if known.get(key))
    return pod


def docker_field(record: dict) -> str:
    """Tetragon's process.docker: the container id, 31 characters ("" for
    machines: systemd-nspawn, LXC)."""
    return record["id"][:31] if record.get("runtime") not in _NOT_DOCKER else ""
