"""Which workload a pod belongs to, from the labels its controller gave it
(what the CRI keeps) and from its owner references (the kubelet's list)."""

import pytest

from tetrad_kubernetes import workload


@pytest.mark.parametrize("name,labels,expected", [
    ("web-7d9f8b6c5d-x2x4q", {"app": "web", "pod-template-hash": "7d9f8b6c5d"}, ("web", "Deployment")),
    ("web-7d9f8b6c5d-x2x4q", {"pod-template-hash": "other"}, ("web-7d9f8b6c5d", "ReplicaSet")),
    ("agent-k8l2p", {"controller-revision-hash": "6c7b9", "pod-template-generation": "3"},
     ("agent", "DaemonSet")),
    ("db-2", {"controller-revision-hash": "db-5c8d", "statefulset.kubernetes.io/pod-name": "db-2"},
     ("db", "StatefulSet")),
    ("backup-28391760-lq7xk", {"batch.kubernetes.io/job-name": "backup-28391760", "job-name": "backup-28391760"},
     ("backup", "CronJob")),
    ("migrate-abcde", {"job-name": "migrate"}, ("migrate", "Job")),
    ("solo", {"app": "solo"}, ("solo", "Pod")),
    ("db-2", {"statefulset.kubernetes.io/pod-name": "db-2"}, ("db-2", "Pod")),   # no revision hash
])
def test_from_labels(name, labels, expected):
    assert workload.from_labels(name, labels) == expected


def owner(kind, name, controller=True):
    return {"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u", "controller": controller}


@pytest.mark.parametrize("name,generate,labels,owners,expected", [
    ("web-7d9f8b6c5d-x2x4q", "web-7d9f8b6c5d-", {"pod-template-hash": "7d9f8b6c5d"},
     [owner("ReplicaSet", "web-7d9f8b6c5d")], ("web", "Deployment")),
    ("agent-k8l2p", "agent-", {}, [owner("DaemonSet", "agent")], ("agent", "DaemonSet")),
    ("db-2", "db-", {}, [owner("StatefulSet", "db")], ("db", "StatefulSet")),
    ("backup-28391760-lq7xk", "backup-28391760-", {}, [owner("Job", "backup-28391760")], ("backup", "CronJob")),
    ("migrate-abcde", "migrate-", {}, [owner("Job", "migrate")], ("migrate", "Job")),
    ("solo", "", {}, [], ("solo", "Pod")),
    ("x-abcde", "x-", {}, [owner("ReplicaSet", "x", controller=False)], ("x-abcde", "Pod")),
])
def test_from_owner(name, generate, labels, owners, expected):
    assert workload.from_owner(name, generate, labels, owners) == expected
