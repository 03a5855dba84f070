"""Which workload a pod belongs to: Tetragon's `workload` and `workload_kind`.

Tetragon derives them from the pod's controller (its owner reference) with
two heuristics: a ReplicaSet whose name ends in the pod's
`pod-template-hash` is a Deployment's, a Job whose name ends in a
timestamp of 8 to 10 digits is a CronJob's; a pod without a generated name
is its own workload ("Pod"). tetrad does the same from the kubelet's pod
list (from_owner), and without it from what the CRI keeps of a pod, its
labels and name (from_labels), which the controllers set:

  Deployment   pod-template-hash=H, pod name <deployment>-H-<5 chars>
  DaemonSet    controller-revision-hash and pod-template-generation,
               pod name <daemonset>-<5 chars>
  StatefulSet  statefulset.kubernetes.io/pod-name = the pod's name,
               pod name <statefulset>-<ordinal>
  Job          batch.kubernetes.io/job-name (or job-name) = J; a CronJob's
               when J is <cronjob>-<8 to 10 digits>
  Pod          none of these: the pod's own name

Best effort: labels can be set by anyone who writes the pod spec (a bare pod
labelled like a Deployment's is reported as one), and a ReplicaSet made by
hand reads as a Deployment when its pods carry the hash. Pure.
"""

from __future__ import annotations

import re

_CRONJOB_JOB = re.compile(r"(.+)-\d{8,10}$")
_SUFFIX = re.compile(r"-[a-z0-9]{5}$")            # the 5 characters of a generated name
_ORDINAL = re.compile(r"-\d+$")


def from_labels(name: str, labels: dict[str, str]) -> tuple[str, str]:
    """(workload, workload_kind) from a pod's name and labels."""
    template = labels.get("pod-template-hash", "")
    if template:
        prefix = _SUFFIX.sub("", name)
        if prefix.endswith("-" + template):
            return prefix[:-len(template) - 1], "Deployment"
        return prefix, "ReplicaSet"
    job = labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")
    if job:
        cron = _CRONJOB_JOB.match(job)
        return (cron.group(1), "CronJob") if cron else (job, "Job")
    if "controller-revision-hash" in labels:
        if labels.get("statefulset.kubernetes.io/pod-name") == name and _ORDINAL.search(name):
            return _ORDINAL.sub("", name), "StatefulSet"
        if "pod-template-generation" in labels and _SUFFIX.search(name):
            return _SUFFIX.sub("", name), "DaemonSet"
    return name, "Pod"


def from_owner(name: str, generate_name: str, labels: dict[str, str],
               owners: list) -> tuple[str, str]:
    """(workload, workload_kind) from a pod's metadata as the kubelet lists
    it (Tetragon's rules)."""
    controller = next((o for o in owners if isinstance(o, dict) and o.get("controller") is True), None)
    if not generate_name or controller is None:
        return name, "Pod"
    kind, owner = str(controller.get("kind", "")), str(controller.get("name", ""))
    template = labels.get("pod-template-hash", "")
    if kind == "ReplicaSet" and template and owner.endswith("-" + template):
        return owner[:-len(template) - 1], "Deployment"
    if kind == "Job":
        cron = _CRONJOB_JOB.match(owner)
        if cron:
            return cron.group(1), "CronJob"
    return owner or name, kind or "Pod"
