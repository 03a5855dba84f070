"""Runtime state files as the runtimes write them, in a fixture tree."""

import json
import threading
from pathlib import Path

from tetrad.containers import metadata
from tetrad.containers.resolver import ContainerResolver

ID = "e7fe6efb952421eb280601039f4f8cd7683c0c5f631fecd491ad87bea23642fd"


def write(root: Path, rel: str, doc) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def test_docker_config_v2(tmp_path):
    write(tmp_path, f"var/lib/docker/containers/{ID}/config.v2.json",
          {"ID": ID, "Name": "/web", "Image": "sha256:abc",
           "Config": {"Image": "nginx:1.27", "Labels": {"app": "web"}}})
    assert metadata.from_state_files("docker", ID, root=tmp_path) == {
        "name": "web", "image": "nginx:1.27", "image_id": "sha256:abc", "labels": {"app": "web"}}


def test_podman_containers_json_root(tmp_path):
    write(tmp_path, "var/lib/containers/storage/overlay-containers/containers.json", [
        {"id": "0" * 64, "names": ["other"], "image": "x", "metadata": "{}"},
        {"id": ID, "names": ["tt2"], "image": "358e31dc",
         "metadata": json.dumps({"image-name": "localhost/tetrad-test:1", "name": "tt2"})}])
    assert metadata.from_state_files("podman", ID, root=tmp_path) == {
        "name": "tt2", "image": "localhost/tetrad-test:1", "image_id": "358e31dc"}


def test_podman_rootless_uses_the_users_graphroot(tmp_path):
    write(tmp_path, "root/.local/share/containers/storage/overlay-containers/containers.json",
          [{"id": ID, "names": ["mine"], "image": "i", "metadata": "{}"}])
    assert metadata.from_state_files("podman", ID, rootless_uid=0, root=tmp_path)["name"] == "mine"
    assert metadata.from_state_files("podman", ID, root=tmp_path) == {}


def test_containerd_cri_annotations(tmp_path):
    write(tmp_path, f"run/containerd/io.containerd.runtime.v2.task/k8s.io/{ID}/config.json",
          {"annotations": {"io.kubernetes.cri.container-name": "app",
                           "io.kubernetes.cri.image-name": "registry.local/app:2",
                           "io.kubernetes.cri.sandbox-name": "app-7d9f",
                           "io.kubernetes.cri.sandbox-namespace": "prod"}})
    assert metadata.from_state_files("containerd", ID, root=tmp_path) == {
        "name": "app", "image": "registry.local/app:2", "pod_name": "app-7d9f",
        "pod_namespace": "prod", "namespace": "k8s.io"}


def test_crio_annotations(tmp_path):
    write(tmp_path, f"run/containers/storage/overlay-containers/{ID}/userdata/config.json",
          {"annotations": {"io.kubernetes.container.name": "db",
                           "io.kubernetes.cri-o.ImageName": "postgres:16",
                           "io.kubernetes.pod.name": "db-0", "io.kubernetes.pod.namespace": "data"}})
    assert metadata.from_state_files("cri-o", ID, root=tmp_path) == {
        "name": "db", "image": "postgres:16", "pod_name": "db-0", "pod_namespace": "data"}


def test_garbage_and_missing_files_give_nothing(tmp_path):
    (tmp_path / f"var/lib/docker/containers/{ID}").mkdir(parents=True)
    (tmp_path / f"var/lib/docker/containers/{ID}/config.v2.json").write_text("{not json")
    assert metadata.from_state_files("docker", ID, root=tmp_path) == {}
    assert metadata.from_state_files("podman", ID, root=tmp_path) == {}
    assert metadata.from_state_files("lxc", "c1", root=tmp_path) == {}


class FakePaths:
    def __init__(self, paths):
        self.paths, self.calls = paths, 0

    def path_of(self, cgroup_id):
        self.calls += 1
        return self.paths.get(cgroup_id)


def test_resolver_caches_and_tells_host_from_container(tmp_path):
    write(tmp_path, f"var/lib/docker/containers/{ID}/config.v2.json",
          {"Name": "/web", "Config": {"Image": "nginx"}})
    paths = FakePaths({1: "/system.slice/ssh.service", 2: f"/system.slice/docker-{ID}.scope"})
    r = ContainerResolver(paths, root=tmp_path, use_api=False)
    assert r.for_cgroup_id(1) is None
    rec = r.for_cgroup_id(2)
    assert rec == {"id": ID, "runtime": "docker", "name": "web", "image": "nginx"}
    assert r.for_cgroup_id(2) is rec and r.for_cgroup_id(1) is None and paths.calls == 2
    assert r.for_cgroup_id(3) is None and r.unresolved == 1      # gone: not cached
    paths.paths[3] = "/machine.slice/machine-web\\x2d01.scope"
    assert r.for_cgroup_id(3) == {"id": "web-01", "runtime": "systemd-nspawn", "name": "web-01"}


def test_docker_api_fills_what_state_files_lack(tmp_path):
    """A fake Docker Engine API on a Unix socket: the first event is partial,
    later ones carry the name, and the first record is never changed."""
    import http.server
    import socketserver

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            assert self.path == f"/containers/{ID}/json"
            body = json.dumps({"Name": "/api-web", "Image": "sha256:1",
                               "Config": {"Image": "nginx:api"}}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    (tmp_path / "run").mkdir()
    server = socketserver.UnixStreamServer(str(tmp_path / "run/docker.sock"), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        r = ContainerResolver(FakePaths({7: f"/docker/{ID}"}), root=tmp_path)
        first = r.for_cgroup_id(7)
        assert first == {"id": ID, "runtime": "docker", "partial": True}
        import time
        deadline = time.monotonic() + 5
        while r.for_cgroup_id(7).get("name") != "api-web" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert r.for_cgroup_id(7) == {"id": ID, "runtime": "docker", "name": "api-web",
                                      "image": "nginx:api", "image_id": "sha256:1"}
        assert first == {"id": ID, "runtime": "docker", "partial": True}
    finally:
        server.shutdown()
        server.server_close()
