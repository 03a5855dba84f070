"""CRI metadata from a real containerd (Debian's 1.6): the test starts its own
containerd (temporary root, state, config and socket; CNI unused: the pod uses
the host network), imports a busybox image built here, creates a pod and a
container through CRI as kubelet would (RunPodSandbox, CreateContainer,
StartContainer, with kubelet's io.kubernetes.* labels), then resolves the
container's real cgroup id through ContainerResolver. The socket sits at
<root>/run/containerd/containerd.sock and the task state elsewhere, so the
state files give nothing and the name can only come from CRI.

Needs root (containerd, runc, cgroups), hence the kernel marker; no BPF.
Without systemd as PID 1 containerd uses the cgroupfs driver, so the path is
the kubepods cgroupfs layout (runtime "cri"), not cri-containerd-<id>.scope.
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
from pathlib import Path

import pytest

from tetrad.containers import cri
from tetrad.containers.resolver import CgroupPaths, ContainerResolver

pytestmark = pytest.mark.kernel
grpc = pytest.importorskip("grpc")

RUN = uuid.uuid4().hex[:8]
POD_UID = str(uuid.uuid4())
IMAGE = "localhost/tetrad-cri-test:1"
PAUSE = "localhost/tetrad-cri-pause:1"
SERVICE = "/runtime.v1.RuntimeService/"


def field(number: int, value) -> bytes:
    """Request encoding for the set-up calls (what is tested is the reply)."""
    return cri.encode_field(number, value)


def kv(number: int, mapping: dict) -> bytes:
    return b"".join(field(number, field(1, k) + field(2, v)) for k, v in mapping.items())


def image_archive(path: Path) -> None:
    """A docker-archive (what `docker save` writes) of busybox-static."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        info = tarfile.TarInfo("bin")
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        t.addfile(info)
        t.add("/bin/busybox", "bin/busybox")
        for applet in ("sh", "sleep", "true"):
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


@pytest.fixture(scope="module")
def containerd(tmp_path_factory):
    if shutil.which("containerd") is None or not os.path.exists("/bin/busybox"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                        "containerd", "runc", "busybox-static"], check=True, timeout=600,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    work = tmp_path_factory.mktemp(f"containerd-{RUN}")
    host = work / "host"                                   # the resolver's root
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
    try:
        deadline = time.monotonic() + 30
        while not sock.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert sock.exists(), (work / "containerd.log").read_text()[-3000:]
        tar = work / "image.tar"
        image_archive(tar)
        out = subprocess.run(["ctr", "--address", str(sock), "-n", "k8s.io", "images", "import", str(tar)],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        yield {"work": work, "host": host, "sock": sock, "proc": proc}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        deadline = time.monotonic() + 5                   # shims exit once their pod is gone
        while own_processes(str(work)) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in own_processes(str(work)):              # shims left behind, ours only
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()
        for leftover in shim_dirs:
            try:
                os.rmdir(leftover)                         # only if empty
            except OSError:
                pass


@pytest.fixture(scope="module")
def pod(containerd):
    channel = grpc.insecure_channel("unix:" + str(containerd["sock"]))
    grpc.channel_ready_future(channel).result(timeout=30)

    def call(method, request, timeout=60):
        return channel.unary_unary(SERVICE + method)(request, timeout=timeout)

    def first_string(reply: bytes) -> str:
        assert reply[0] == 0x0a and reply[1] < 0x80, reply[:8]
        return reply[2:2 + reply[1]].decode()

    parent = f"/kubepods/besteffort/pod{POD_UID}"
    metadata = field(1, f"web-{RUN}") + field(2, POD_UID) + field(3, "prod")
    namespaces = field(1, 2)                               # network: NODE (no CNI)
    # No hostname (2): with the host's network the pod has no UTS namespace of its own.
    sandbox_config = (field(1, metadata) + field(3, str(containerd["work"] / "logs"))
                      + field(8, field(1, parent) + field(2, field(1, namespaces))))
    sandbox = ""
    try:
        deadline = time.monotonic() + 30
        while True:                                        # the CRI plugin starts after the socket
            try:
                sandbox = first_string(call("RunPodSandbox", field(1, sandbox_config)))
                break
            except grpc.RpcError as err:
                not_yet = err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNIMPLEMENTED)
                if not not_yet or time.monotonic() > deadline:
                    log = (containerd["work"] / "containerd.log").read_text()
                    raise AssertionError(log[-3000:]) from err
                time.sleep(0.5)
        labels = {"io.kubernetes.container.name": "app", "io.kubernetes.pod.name": f"web-{RUN}",
                  "io.kubernetes.pod.namespace": "prod", "io.kubernetes.pod.uid": POD_UID}
        container_config = (field(1, field(1, "app")) + field(2, field(1, IMAGE))
                            + field(3, "/bin/sleep") + field(4, "300") + kv(9, labels)
                            + field(11, "app.log"))
        cid = first_string(call("CreateContainer", field(1, sandbox) + field(2, container_config)
                                + field(3, sandbox_config)))
        call("StartContainer", field(1, cid))
        yield {"sandbox": sandbox, "id": cid, "labels": labels, "parent": parent}
    finally:
        try:
            if sandbox:
                call("StopPodSandbox", field(1, sandbox))
                call("RemovePodSandbox", field(1, sandbox))
        finally:
            channel.close()
            for hierarchy in Path("/sys/fs/cgroup").iterdir():
                for rel in (parent, "/kubepods/besteffort", "/kubepods"):
                    try:
                        (hierarchy / rel.lstrip("/")).rmdir()     # only if empty
                    except OSError:
                        pass


def container_pid(containerd, cid: str) -> int:
    out = subprocess.run(["ctr", "--address", str(containerd["sock"]), "-n", "k8s.io", "tasks", "ls"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    (line,) = [ln for ln in out.splitlines() if ln.startswith(cid)]
    return int(line.split()[1])


def test_client_reads_name_image_and_labels_from_containerd(containerd, pod):
    status = cri.make_client().container_status(str(containerd["sock"]), pod["id"])
    assert status["id"] == pod["id"]
    assert status["name"] == "app"
    assert status["image"] == IMAGE
    assert status["image_ref"].startswith("sha256:")
    assert status["labels"] == pod["labels"]


def test_resolver_names_the_container_from_its_real_cgroup(containerd, pod):
    paths = CgroupPaths()
    assert paths.mount, "no cgroup2 mount"
    pid = container_pid(containerd, pod["id"])
    (unified,) = [ln.split(":", 2)[2] for ln in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                  if ln.startswith("0::")]
    assert unified == f"{pod['parent']}/{pod['id']}"
    cgroup_id = os.stat(paths.mount + unified).st_ino
    assert not (containerd["host"] / "run/containerd/io.containerd.runtime.v2.task").exists()

    resolver = ContainerResolver(paths, root=containerd["host"])
    first = resolver.for_cgroup_id(cgroup_id)
    assert first == {"id": pod["id"], "runtime": "cri", "partial": True, "pod": {"uid": POD_UID}}
    deadline = time.monotonic() + 10
    while "partial" in resolver.for_cgroup_id(cgroup_id) and time.monotonic() < deadline:
        time.sleep(0.02)
    rec = resolver.for_cgroup_id(cgroup_id)
    assert rec["name"] == "app" and rec["image"] == IMAGE and "partial" not in rec
    assert rec["pod"] == {"name": f"web-{RUN}", "namespace": "prod", "uid": POD_UID}
    assert rec["image_id"].startswith("sha256:")
