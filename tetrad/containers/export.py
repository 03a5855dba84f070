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
scopes. Pod fields that a Kubernetes source adds to the record's `pod` map
are copied by `_POD_KEYS`.
"""

from __future__ import annotations

# (record["pod"] key, Pod field) in the Pod message's field order.
_POD_KEYS = (("namespace", "namespace"), ("name", "name"), ("uid", "uid"))
# Runtimes whose ids are not Docker-style (Tetragon's `docker` is for those).
_NOT_DOCKER = ("systemd-nspawn", "lxc")


def container_field(record: dict) -> dict:
    """Tetragon's Container of a record."""
    container = {"id": record["id"]}
    if record.get("name"):
        container["name"] = record["name"]
    image = {k: record[src] for k, src in (("id", "image_id"), ("name", "image")) if record.get(src)}
    if image:
        container["image"] = image
    return container


def pod_field(record: dict) -> dict:
    """Tetragon's process.pod of a record."""
    known = record.get("pod") or {}
    pod = {field: known[key] for key, field in _POD_KEYS if known.get(key)}
    pod["container"] = container_field(record)
    return pod


def docker_field(record: dict) -> str:
    """Tetragon's process.docker: the container id, 31 characters ("" for
    machines: systemd-nspawn, LXC)."""
    return record["id"][:31] if record.get("runtime") not in _NOT_DOCKER else ""
