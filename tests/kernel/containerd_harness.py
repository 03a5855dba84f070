"""A real containerd (Debian's 1.6) for the tests, and the kubelet's side of
the CRI, done as the kubelet does it.

`start_containerd(work)` runs containerd with a temporary root, state,
config and socket (CNI unused: pods use the host's network), and imports a
busybox image built here (`localhost/tetrad-cri-test:1`, and a pause image).
The socket sits at <work>/host/run/containerd/containerd.sock and the task
state elsewhere, so runtime state files name nothing: names can only come
from the CRI. `Kubelet` makes pods through the CRI with the labels,
annotations and settings the kubelet gives them (RunPodSandbox,
CreateContainer, StartContainer, ExecSync).

Needs root (containerd, runc, cgroups). Without systemd as PID 1 (and in the
guest, whose containerd is not told otherwise) containerd uses the cgroupfs
driver: pods live in /kubepods/<qos>/pod<uid>/<container id>.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from tetrad.containers.criapi import api_pb2
from tests.kubelet import kubelet_pb2 as kpb

IMAGE = "localhost/tetrad-cri-test:1"
PAUSE = "localhost/tetrad-cri-pause:1"
SERVICE = "/runtime.v1.RuntimeService/"
APPLETS = ("sh", "sleep", "true", "cat")


def image_archive(path: Path) -> None:
    """A docker-archive (what `docker save` writes) of busybox-static."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        for directory in ("bin", "tmp"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            t.addfile(info)
        t.add("/bin/busybox", "bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            t.addfile(link)
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    files, entries = {"layer.tar": layer_bytes}, []
    # Two images, not two tags of one: containerd reports an image's first tag.
    for tag, cmd in ((IMAGE, ["/bin/sleep", "600"]), (PAUSE, ["/bin/sleep", "601"])):
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "config": {"Cmd": cmd, "Env": ["PATH=/bin"]},
                             "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
        name = hashlib.sha256(config).hexdigest() + ".json"
        files[name] = config
        entries.append({"Config": name, "RepoTags": [tag], "Layers": ["layer.tar"]})
    files["manifest.json"] = json.dumps(entries).encode()
    with tarfile.open(path, "w") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


def own_processes(marker: str) -> list[int]:
    """Pids whose command line names our temporary directory (containerd, its shims)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


@dataclass
class Containerd:
    work: Path
    host: Path                    # the resolver's root in tests that redirect it
    sock: Path
    proc: subprocess.Popen
    log: object = None
    shim_dirs: list = field(default_factory=list)

    def log_tail(self) -> str:
        return (self.work / "containerd.log").read_text()[-3000:]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        deadline = time.monotonic() + 5                   # shims exit once their pod is gone
        while own_processes(str(self.work)) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in own_processes(str(self.work)):         # shims left behind, ours only
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()
        for leftover in self.shim_dirs:
            try:
                os.rmdir(leftover)                         # only if empty
            except OSError:
                pass


def start_containerd(work: Path) -> Containerd:
    if shutil.which("containerd") is None or not os.path.exists("/bin/busybox"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                        "containerd", "runc", "busybox-static"], check=True, timeout=600,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    host = work / "host"
    sock = host / "run/containerd/containerd.sock"
    sock.parent.mkdir(parents=True)
    (work / "cni").mkdir()
    config = work / "config.toml"
    config.write_text(f"""version = 2
root = "{work}/root"
state = "{work}/state"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{work}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  # Keep oom_score_adj at or above containerd's: lowering it (the sandbox asks for
  # -998) needs CAP_SYS_RESOURCE, which hosts like this CI VM's sandbox withhold.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      Root = "{work}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{work}/cni"
    conf_dir = "{work}/cni"
""")
    # containerd 1.6 puts shim sockets in /run/containerd/s whatever the config says.
    shim_dirs = [] if Path("/run/containerd").exists() else ["/run/containerd/s", "/run/containerd"]
    log = open(work / "containerd.log", "w")
    proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    running = Containerd(work, host, sock, proc, log, shim_dirs)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert sock.exists(), running.log_tail()
        tar = work / "image.tar"
        image_archive(tar)
        out = subprocess.run(["ctr", "--address", str(sock), "-n", "k8s.io", "images", "import", str(tar)],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
    except BaseException:
        running.stop()
        raise
    return running


@dataclass
class PodSpec:
    """A pod as the API server hands it to the kubelet."""

    name: str
    namespace: str
    labels: dict
    annotations: dict = field(default_factory=dict)
    container: str = "app"
    privileged: bool = False
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class RunningPod:
    spec: PodSpec
    sandbox: str
    container: str
    parent: str                   # the pod's cgroup (cgroupfs driver)


class Kubelet:
    """Makes pods through a runtime's CRI as the kubelet does
    (pkg/kubelet/kuberuntime): the sandbox's labels are the pod's labels plus
    io.kubernetes.pod.{name,namespace,uid}, its annotations the pod's; a
    container's labels io.kubernetes.container.name and the pod's three, its
    annotations the kubelet's bookkeeping (hash, restart count, termination
    message)."""

    def __init__(self, containerd: Containerd):
        self.containerd = containerd
        self.channel = grpc.insecure_channel("unix:" + str(containerd.sock))
        grpc.channel_ready_future(self.channel).result(timeout=30)
        self.pods: list[RunningPod] = []

    def call(self, method: str, request, reply_type, timeout: float = 60):
        return self.channel.unary_unary(SERVICE + method, request_serializer=type(request).SerializeToString,
                                        response_deserializer=reply_type.FromString)(request, timeout=timeout)

    def run(self, spec: PodSpec) -> RunningPod:
        pod_labels = {"io.kubernetes.pod.name": spec.name, "io.kubernetes.pod.namespace": spec.namespace,
                      "io.kubernetes.pod.uid": spec.uid}
        parent = f"/kubepods/besteffort/pod{spec.uid}"
        sandbox_config = kpb.PodSandboxConfig(
            metadata=api_pb2.PodSandboxMetadata(name=spec.name, uid=spec.uid, namespace=spec.namespace),
            # No hostname: with the host's network the pod has no UTS namespace of its own.
            log_directory=str(self.containerd.work / "logs" / f"{spec.namespace}_{spec.name}_{spec.uid}"),
            labels={**spec.labels, **pod_labels},
            annotations={**spec.annotations, "kubernetes.io/config.source": "api",
                         "kubernetes.io/config.seen": "2026-12-01T10:00:00.000000000Z"},
            linux=kpb.LinuxPodSandboxConfig(
                cgroup_parent=parent,
                security_context=kpb.LinuxSandboxSecurityContext(
                    namespace_options=kpb.NamespaceOption(network=kpb.NODE, pid=kpb.CONTAINER, ipc=kpb.POD),
                    privileged=spec.privileged)))
        sandbox = self._run_sandbox(sandbox_config)
        container_config = kpb.ContainerConfig(
            metadata=api_pb2.ContainerMetadata(name=spec.container),
            image=api_pb2.ImageSpec(image=IMAGE), command=["/bin/sleep"], args=["600"],
            labels={"io.kubernetes.container.name": spec.container, **pod_labels},
            annotations={"io.kubernetes.container.hash": "5d1a2f3c", "io.kubernetes.container.restartCount": "0",
                         "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
                         "io.kubernetes.container.terminationMessagePolicy": "File",
                         "io.kubernetes.pod.terminationGracePeriod": "30"},
            log_path=f"{spec.container}/0.log",
            linux=kpb.LinuxContainerConfig(security_context=kpb.LinuxContainerSecurityContext(
                privileged=spec.privileged,
                namespace_options=kpb.NamespaceOption(network=kpb.NODE, pid=kpb.CONTAINER, ipc=kpb.POD))))
        cid = self.call("CreateContainer", kpb.CreateContainerRequest(
            pod_sandbox_id=sandbox, config=container_config, sandbox_config=sandbox_config),
            kpb.CreateContainerResponse).container_id
        self.call("StartContainer", kpb.StartContainerRequest(container_id=cid), kpb.StartContainerResponse)
        pod = RunningPod(spec, sandbox, cid, parent)
        self.pods.append(pod)
        return pod

    def _run_sandbox(self, config) -> str:
        deadline = time.monotonic() + 30
        while True:                                        # the CRI plugin starts after the socket
            try:
                return self.call("RunPodSandbox", kpb.RunPodSandboxRequest(config=config),
                                 kpb.RunPodSandboxResponse).pod_sandbox_id
            except grpc.RpcError as err:
                not_yet = err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNIMPLEMENTED)
                if not not_yet or time.monotonic() > deadline:
                    raise AssertionError(self.containerd.log_tail()) from err
                time.sleep(0.5)

    def exec_sync(self, pod: RunningPod, *cmd: str, timeout: int = 30):
        """ExecSync, as the kubelet runs exec probes and `kubectl exec` runs
        commands: the process's stdout, stderr and exit code (137 when it was
        killed by SIGKILL)."""
        return self.call("ExecSync", kpb.ExecSyncRequest(container_id=pod.container, cmd=list(cmd),
                                                         timeout=timeout),
                         kpb.ExecSyncResponse, timeout=timeout + 30)

    def close(self) -> None:
        try:
            for pod in self.pods:
                for method, request, reply in (("StopPodSandbox", kpb.StopPodSandboxRequest, kpb.StopPodSandboxResponse),
                                               ("RemovePodSandbox", kpb.RemovePodSandboxRequest,
                                                kpb.RemovePodSandboxResponse)):
                    try:
                        self.call(method, request(pod_sandbox_id=pod.sandbox), reply)
                    except grpc.RpcError:
                        pass
        finally:
            self.channel.close()
            for pod in self.pods:
                remove_cgroups(pod.parent)


def remove_cgroups(parent: str) -> None:
    """The pod's cgroup and the kubepods parents the runtime made, if empty."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        for rel in (parent, "/kubepods/besteffort", "/kubepods"):
            try:
                (hierarchy / rel.lstrip("/")).rmdir()
            except OSError:
                pass
    for rel in (parent, "/kubepods/besteffort", "/kubepods"):
        try:
            Path("/sys/fs/cgroup", rel.lstrip("/")).rmdir()
        except OSError:
            pass
