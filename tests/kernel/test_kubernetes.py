"""The Kubernetes plugin end to end: a real containerd's CRI driven as the
kubelet drives it, the real daemon with the plugin installed, the kernel.

No kubelet or API server runs here, but the kubelet's side of the CRI is
all the plugin reads, and tests/kernel/containerd_harness.py makes it as
the kubelet does (RunPodSandbox with the pod's labels and annotations and
the kubelet's io.kubernetes.pod.* labels, CreateContainer with
io.kubernetes.container.name, StartContainer; ExecSync to run commands in
a container, as `kubectl exec` and exec probes do). Five pods: a
Deployment's, a privileged DaemonSet's, a StatefulSet's, a CronJob Job's,
and a second Deployment-like pod in another namespace; two before the
daemon starts (found by the /proc scan and the cgroup walk), three after
(found through the cgroup mkdir records).

The plugin is installed as a package would be (pip into a directory on the
daemon's PYTHONPATH: tetrad finds it by its entry point) and enabled by a
drop-in. Two policies kill `cat` of a path unique to this run: a
TracingPolicyNamespaced of one namespace and a TracingPolicy with a
podSelector (a label and the namespace key). Each pod runs `cat` of both
paths: only the selected pods' processes die (ExecSync exit 137), and the
events say which pod did what, in Tetragon's process.pod.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

pytestmark = pytest.mark.kernel
grpc = pytest.importorskip("grpc")

from tests.kernel.containerd_harness import IMAGE, Kubelet, PodSpec, start_containerd  # noqa: E402
from tests.kernel.daemon_harness import REPO, DaemonProcess, JournalSocket, wait_for  # noqa: E402

RUN = uuid.uuid4().hex[:8]
SHOP, INFRA, OPS, DEV = (f"{ns}-{RUN}" for ns in ("shop", "infra", "ops", "dev"))
NAMESPACED_PATH = f"/tmp/k8s-{RUN}-namespaced"
SELECTED_PATH = f"/tmp/k8s-{RUN}-selected"
TIME = float(os.environ.get("TETRAD_TIME_FACTOR", "1"))

PODS = {
    "deployment": PodSpec(f"web-7d9f8b6c5d-{RUN[:5]}", SHOP, {"app": "web", "pod-template-hash": "7d9f8b6c5d"},
                          {"team": "blue"}, container="web"),
    "daemonset": PodSpec(f"agent-{RUN[3:8]}", INFRA, {"app": f"agent-{RUN}", "controller-revision-hash": "6c7b9d5f8",
                                                      "pod-template-generation": "1"},
                         container="agent", privileged=True),
    "statefulset": PodSpec("db-0", SHOP, {"app": "db", "controller-revision-hash": "db-5c8d9",
                                          "statefulset.kubernetes.io/pod-name": "db-0"}, container="db"),
    "cronjob": PodSpec(f"backup-29409120-{RUN[:5]}", OPS, {"batch.kubernetes.io/job-name": "backup-29409120",
                                                           "job-name": "backup-29409120"}, container="backup"),
    "other": PodSpec(f"web-7d9f8b6c5d-{RUN[3:8]}", DEV, {"app": "web", "pod-template-hash": "7d9f8b6c5d"},
                     container="web"),
}
BEFORE = ("deployment", "daemonset")                 # made before the daemon starts
WORKLOADS = {"deployment": ("web", "Deployment"), "daemonset": ("agent", "DaemonSet"),
             "statefulset": ("db", "StatefulSet"), "cronjob": ("backup", "CronJob"),
             "other": ("web", "Deployment")}
KILLED_BY = {NAMESPACED_PATH: {"deployment", "statefulset"}, SELECTED_PATH: {"daemonset"}}


def kill_policy(name: str, path: str, kind: str = "TracingPolicy", namespace: str = "",
                scope: str = "") -> str:
    ns = f"  namespace: {namespace}\n" if namespace else ""
    return f"""apiVersion: cilium.io/v1alpha1
kind: {kind}
metadata:
  name: {name}
{ns}spec:
{scope}  kprobes:
  - call: sys_openat
    syscall: true
    args:
    - index: 1
      type: string
    selectors:
    - matchArgs:
      - index: 1
        operator: Equal
        values: ["{path}"]
      matchActions:
      - action: Sigkill
"""


POLICIES = {
    f"k8s-namespaced-{RUN}": kill_policy(f"k8s-namespaced-{RUN}", NAMESPACED_PATH,
                                         "TracingPolicyNamespaced", SHOP),
    f"k8s-selected-{RUN}": kill_policy(
        f"k8s-selected-{RUN}", SELECTED_PATH,
        scope=(f"  podSelector:\n    matchLabels:\n      app: agent-{RUN}\n    matchExpressions:\n"
               f"    - key: k8s:io.kubernetes.pod.namespace\n      operator: In\n      values: [{INFRA}]\n")),
}


def install_plugin(target) -> None:
    """pip installs the plugin's distribution as a package manager would:
    its module and its entry point (dist-info), from a copy of the source
    (the build leaves files behind)."""
    source = target.parent / "plugin-src"
    shutil.copytree(REPO / "plugins/kubernetes", source)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                           "--no-build-isolation", "--target", str(target), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (next(target.glob("tetrad_kubernetes-*.dist-info")) / "entry_points.txt").read_text().count(
        "kubernetes = tetrad_kubernetes.spec:SPEC") == 1


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp(f"k8s-{RUN}")
    containerd = start_containerd(work / "containerd")
    kubelet = journal = daemon = None
    try:
        kubelet = Kubelet(containerd)
        pods = {key: kubelet.run(PODS[key]) for key in BEFORE}
        install_plugin(work / "site")
        config = work / "config"
        (config / "tetrad.d").mkdir(parents=True)
        (config / "tetrad.d/kubernetes.toml").write_text(
            f'[kubernetes]\nenabled = true\ncri_sockets = ["{containerd.sock}"]\npod_annotations = true\n')
        args = []
        for name, text in POLICIES.items():
            (work / f"{name}.yaml").write_text(text)
            args += ["--policy", str(work / f"{name}.yaml")]
        journal = JournalSocket(work / "systemd")
        daemon = DaemonProcess(config, *args, journal=work / "systemd",
                               env={"PYTHONPATH": str(work / "site")})
        for key in PODS:
            if key not in BEFORE:
                pods[key] = kubelet.run(PODS[key])
        yield {"daemon": daemon, "kubelet": kubelet, "pods": pods, "journal": journal, "work": work}
    finally:
        try:
            if daemon is not None:
                daemon.stop()
        finally:
            if journal is not None:
                journal.close()
            if kubelet is not None:
                kubelet.close()
            containerd.stop()


def pod_execs(daemon, key: str, binary: str = "/bin/busybox") -> list[dict]:
    name = PODS[key].name
    return [e["process_exec"]["process"] for e in daemon.events() if "process_exec" in e
            and e["process_exec"]["process"].get("binary") == binary
            and (e["process_exec"]["process"].get("pod") or {}).get("name") == name]


def seen(daemon) -> str:
    """The pods of the last `cat` execs, and the daemon's log: what it knew."""
    cats = [e["process_exec"]["process"].get("pod") for e in daemon.events()
            if "process_exec" in e and e["process_exec"]["process"].get("binary") == "/bin/busybox"]
    return f"last cat execs' pods: {cats[-3:]}\n{daemon.stderr_path.read_text()[-3000:]}"


@pytest.fixture(scope="module")
def ran(cluster):
    """Every pod runs `cat` of both paths, once the daemon knows it (its exec
    events name the pod) and the selected pods' policies are in force (a
    selected pod's `cat` is killed: tried until it is, each try a new exec).
    Returns {(pod, path): exit code}."""
    daemon, kubelet, pods = cluster["daemon"], cluster["kubelet"], cluster["pods"]
    for key, pod in pods.items():
        wait_for(lambda: kubelet.exec_sync(pod, "/bin/cat", "/dev/null").exit_code == 0
                 and pod_execs(daemon, key), 30 * TIME, f"the daemon naming pod {key}",
                 context=lambda: seen(daemon))
    codes = {}
    for path, selected in KILLED_BY.items():
        for key in sorted(selected):
            codes[key, path] = wait_for(lambda: kubelet.exec_sync(pods[key], "/bin/cat", path).exit_code == 137
                                        and 137, 15 * TIME, f"{path} killed in pod {key}")
    for path in KILLED_BY:
        for key in PODS:
            if (key, path) not in codes:
                codes[key, path] = kubelet.exec_sync(pods[key], "/bin/cat", path).exit_code
        codes["host", path] = subprocess.run(["cat", path], capture_output=True).returncode
    daemon.sync()
    return codes


def test_only_the_selected_pods_processes_are_killed(ran):
    for path, selected in KILLED_BY.items():
        for key in [*PODS, "host"]:
            # 137: killed by SIGKILL (ExecSync's exit code); 1: cat found no such file
            assert ran[key, path] == (137 if key in selected else 1), (key, path, ran[key, path])


def test_kill_events_name_the_pod_and_only_selected_pods(cluster, ran):
    kills = {}
    for e in cluster["daemon"].events():
        body = e.get("process_kprobe")
        if body and body.get("policy_name") in POLICIES:
            assert body["action"] == "KPROBE_ACTION_SIGKILL"
            pod = body["process"]["pod"]
            kills.setdefault(body["policy_name"], set()).add((pod["namespace"], pod["name"]))
    assert kills == {f"k8s-namespaced-{RUN}": {(SHOP, PODS["deployment"].name), (SHOP, "db-0")},
                     f"k8s-selected-{RUN}": {(INFRA, PODS["daemonset"].name)}}


def test_events_carry_tetragons_pod(cluster, ran):
    for key, pod in cluster["pods"].items():
        spec = PODS[key]
        process = pod_execs(cluster["daemon"], key)[-1]
        got = dict(process["pod"])
        container = dict(got.pop("container"))
        assert got.pop("pod_annotations")["kubernetes.io/config.source"] == "api"
        assert got == {"namespace": spec.namespace, "name": spec.name, "uid": spec.uid,
                       "pod_labels": spec.labels, "workload": WORKLOADS[key][0],
                       "workload_kind": WORKLOADS[key][1]}, key
        assert container.pop("start_time").endswith("Z")
        assert container.pop("image")["id"].startswith("sha256:")
        assert container == {"id": f"containerd://{pod.container}", "name": spec.container,
                             "security_context": {"privileged": True} if spec.privileged else {}}, key
        assert process["docker"] == pod.container[:31]


def test_image_name_and_annotations_switch(cluster, ran):
    process = pod_execs(cluster["daemon"], "deployment")[-1]
    assert process["pod"]["container"]["image"]["name"] == IMAGE
    assert process["pod"]["pod_annotations"]["team"] == "blue"


def tetra(cluster, *flags) -> list[str]:
    with open(cluster["daemon"].export, "rb") as f:
        out = subprocess.run([sys.executable, "-m", "tetrad.cli.tetra", "getevents", "-o", "compact",
                              "-e", "PROCESS_EXEC", *flags], stdin=f, cwd=REPO, capture_output=True,
                             text=True, timeout=60, check=True)
    return [line for line in out.stdout.splitlines() if "/bin/busybox" in line]


def test_tetra_filters_on_namespace_and_pod_and_shows_namespace_slash_pod(cluster, ran):
    shop = tetra(cluster, "--namespace", SHOP)
    assert shop and {line.split()[2] for line in shop} == {f"{SHOP}/{PODS['deployment'].name}", f"{SHOP}/db-0"}
    agent = tetra(cluster, "--pod", "^agent-")
    assert agent and {line.split()[2] for line in agent} == {f"{INFRA}/{PODS['daemonset'].name}"}
    assert tetra(cluster, "--namespace", f"nowhere-{RUN}") == []
    both = tetra(cluster, "-n", f"{OPS},{DEV}")
    assert {line.split()[2] for line in both} == {f"{OPS}/{PODS['cronjob'].name}", f"{DEV}/{PODS['other'].name}"}


def test_journal_entries_have_the_pod_fields(cluster, ran):
    pod = cluster["pods"]["statefulset"]
    entries = [e for e in cluster["journal"].settle() if e.get("TETRAD_POD_UID") == pod.spec.uid
               and e.get("TETRAD_EVENT") == "process_exec"]
    assert entries
    entry = entries[-1]
    assert (entry["TETRAD_POD_NAMESPACE"], entry["TETRAD_POD_NAME"], entry["TETRAD_POD_WORKLOAD"],
            entry["TETRAD_POD_WORKLOAD_KIND"]) == (SHOP, "db-0", "db", "StatefulSet")
    assert entry["MESSAGE"].split()[2] == f"{SHOP}/db-0"
    assert json.loads(entry["TETRAD_JSON"])["process_exec"]["process"]["pod"]["uid"] == pod.spec.uid


def test_the_plugin_reports_in_status(cluster, ran):
    out = subprocess.run([sys.executable, "-m", "tetrad.cli.tetra", "--socket", str(cluster["daemon"].socket),
                          "status", "-o", "json"], cwd=REPO, capture_output=True, text=True, timeout=60,
                         check=True)
    status = json.loads(out.stdout)
    stats = status["stats"]["plugins"]["kubernetes"]
    assert stats["pods_cached"] >= len(PODS) and stats["cri_errors"] == 0
    scopes = {p["name"]: p.get("scope") for p in status["policies"]}
    assert scopes[f"k8s-namespaced-{RUN}"] == f"containers of pods with namespace {SHOP}"
    assert "plugins: kubernetes" in cluster["daemon"].stderr_path.read_text()
