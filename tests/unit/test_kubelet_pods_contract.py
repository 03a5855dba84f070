"""Contract test of the kubelet source (tetrad_kubernetes/kubelet.py) against
a local TLS server standing in for the kubelet's authenticated API: it
serves GET /pods with a recorded PodList (tests/kubelet/podlist.json) only
to a client with the certificate it trusts, or with the bearer token it
knows. The PodList is not captured from a live kubelet (none runs here):
it is written in the form the kubelet serves /pods (core/v1 PodList, as
`kubectl get --raw /api/v1/nodes/NODE/proxy/pods` shows it), with a
Deployment's, a DaemonSet's, a CronJob Job's and a static pod, and two
malformed items. What is asserted is the contract tetrad relies on: TLS with
the server verified, one of the two credentials, the fields read."""

from __future__ import annotations

import http.server
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from tetrad_kubernetes.kubelet import KubeletPods

PODLIST = Path(__file__).resolve().parents[1] / "kubelet/podlist.json"
TOKEN = "kubelet-contract-token-4c1d"
WEB_UID = "5e0b3c1d-2a4f-4b6c-8d9e-0f1a2b3c4d5e"
APP = "b1c9e0ad5f0cbb2a3b7f1ea5ad7c2b4cd9c8e2f7a3b1d4e6f8a0c2e4b6d8f0a1"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, the kubelet's serving certificate for 127.0.0.1, a client
    certificate the CA signed, and one it did not."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "2", "-subj", "/CN=kubelet-ca", cwd=d)
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, cn, extra in (("server", "node-1", ["-extfile", "san.cnf"]), ("client", "system:node:node-1", [])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={cn}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", *extra, cwd=d)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "stranger.key", "-out",
            "stranger.crt", "-days", "2", "-subj", "/CN=stranger", cwd=d)
    (d / "token").write_text(TOKEN + "\n")
    return d


class Kubelet(http.server.BaseHTTPRequestHandler):
    requests: list = []

    def do_GET(self):
        cert = self.connection.getpeercert()
        authorized = bool(cert) or self.headers.get("Authorization") == f"Bearer {TOKEN}"
        Kubelet.requests.append((self.path, bool(cert), self.headers.get("Authorization")))
        if not authorized:
            self.send_response(401)
            self.end_headers()
            return
        body = PODLIST.read_bytes() if self.path == "/pods" else b"404"
        self.send_response(200 if self.path == "/pods" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def kubelet(pki):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Kubelet)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "server.crt", pki / "server.key")
    context.load_verify_locations(pki / "ca.crt")
    context.verify_mode = ssl.CERT_OPTIONAL          # a client cert, or a token
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_pods_with_a_client_certificate(kubelet, pki):
    source = KubeletPods(kubelet, ca=str(pki / "ca.crt"), cert=str(pki / "client.crt"),
                         key=str(pki / "client.key"))
    web = source.pod(WEB_UID)
    assert web["pod"] == {"name": "web-7d9f8b6c5d-x2x4q", "namespace": "prod", "uid": WEB_UID,
                          "labels": {"app": "web", "pod-template-hash": "7d9f8b6c5d", "tier": "front"},
                          "workload": "web", "workload_kind": "Deployment"}
    assert web["containers"][APP] == {"cri_id": "containerd://" + APP, "privileged": False,
                                      "start_time": 1_796_029_966_000_000_000}   # 2026-11-30T09:12:46Z
    assert len(web["containers"]) == 2
    agent = source.pod("7a2d9e41-3b6c-4f0e-9a1d-5c8b7e6f4a32")
    assert (agent["pod"]["workload"], agent["pod"]["workload_kind"]) == ("node-agent", "DaemonSet")
    assert [c["privileged"] for c in agent["containers"].values()] == [True]
    backup = source.pod("c41e8a0f-9d7b-4c2e-8f16-3a5b9d0e7c24")
    assert (backup["pod"]["workload"], backup["pod"]["workload_kind"]) == ("backup", "CronJob")
    assert backup["containers"] == {}                         # not started: no container id yet
    static = source.pod("9f8e7d6c5b4a39281706f5e4d3c2b1a0")
    assert (static["pod"]["workload"], static["pod"]["workload_kind"]) == ("kube-apiserver-node-1", "Pod")
    assert source.stats() == {"fetches": 1, "errors": 0, "pods": 4}
    assert Kubelet.requests[-1] == ("/pods", True, None)


def test_pods_with_a_bearer_token_and_annotations_when_asked(kubelet, pki):
    source = KubeletPods(kubelet, ca=str(pki / "ca.crt"), token_file=str(pki / "token"), annotations=True)
    assert source.pod(WEB_UID)["pod"]["annotations"]["prometheus.io/scrape"] == "true"
    assert Kubelet.requests[-1] == ("/pods", False, f"Bearer {TOKEN}")


def test_the_list_is_read_again_only_when_due(kubelet, pki):
    now = [0.0]
    source = KubeletPods(kubelet, ca=str(pki / "ca.crt"), token_file=str(pki / "token"),
                         refresh_s=10, clock=lambda: now[0])
    source.pod(WEB_UID)
    source.pod(WEB_UID)
    assert source.fetches == 1
    now[0] += 0.5
    assert source.pod("00000000-0000-0000-0000-000000000000") is None and source.fetches == 1
    now[0] += 1                                           # an unknown pod: read again, once a second
    source.pod("00000000-0000-0000-0000-000000000000")
    assert source.fetches == 2
    now[0] += 10
    source.pod(WEB_UID)
    assert source.fetches == 3


@pytest.mark.parametrize("how", ["no credentials", "an untrusted client certificate", "a wrong token"])
def test_refused_credentials_are_counted_and_name_nothing(kubelet, pki, tmp_path, how, caplog):
    kw = {"ca": str(pki / "ca.crt")}
    if how == "an untrusted client certificate":
        kw.update(cert=str(pki / "stranger.crt"), key=str(pki / "stranger.key"))
    elif how == "a wrong token":
        (tmp_path / "t").write_text("nope")
        kw["token_file"] = str(tmp_path / "t")
    source = KubeletPods(kubelet, **kw)
    assert source.pod(WEB_UID) is None
    assert source.errors == 1
    assert "pods are named from the CRI only" in caplog.text


def test_a_server_whose_certificate_the_ca_did_not_sign_is_refused(kubelet, pki):
    source = KubeletPods(kubelet, ca=str(pki / "stranger.crt"), token_file=str(pki / "token"))
    assert source.pod(WEB_UID) is None and source.errors == 1
