"""Pod identity for container records: what a pod source (the Kubernetes
plugin) must offer the resolver, and the null source used without one.

The resolver (resolver.py) knows from a cgroup path that a container is in a
Kubernetes pod (its uid is in the path) and asks the pod source two things:
  known(ident)   what is known now, without waiting (on the event path and
                 the control thread): the fields below, or None
  fetch(ident)   the same, asking the pod's runtime and the kubelet as
                 needed (blocking: only the resolver's worker thread calls
                 it); None when no source knows the pod (yet)
Both answer a dict with any of
  pod          {"name", "namespace", "uid", "labels", "annotations",
                "workload", "workload_kind"}: Tetragon's Pod fields, labels
               without the kubelet's io.kubernetes.* keys
  sandbox      True for the pod's sandbox ("pause") container
  name, image, image_id          the container's, as the pod knows it
  cri_id       the container's id as Kubernetes writes it ("containerd://...")
  start_time   when the container started, ns since the epoch
  privileged   bool
which the resolver merges into the container's record (export.py makes
Tetragon's process.pod of them). Pure interface: no I/O here.
"""

from __future__ import annotations

from typing import Protocol

from tetrad.containers.cgroup_path import CgroupIdentity


class PodSource(Protocol):
    enabled: bool

    def known(self, ident: CgroupIdentity) -> dict | None: ...
    def fetch(self, ident: CgroupIdentity) -> dict | None: ...


class NoPods:
    """Without the Kubernetes plugin: no pod is ever known."""

    enabled = False

    def known(self, ident: CgroupIdentity) -> dict | None:
        return None

    def fetch(self, ident: CgroupIdentity) -> dict | None:
        return None


NO_PODS = NoPods()
