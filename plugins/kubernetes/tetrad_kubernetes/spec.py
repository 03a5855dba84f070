"""The Kubernetes plugin as tetrad sees it: its config table and how to start it.

Imported by tetrad when a config layer has a [kubernetes] table (through the
entry point); it imports nothing heavy: grpc comes with start(). The keys,
with their meaning, are in etc/kubernetes.toml (the packaged drop-in).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tetrad.config import parse_duration
from tetrad.containers import cri
from tetrad.plugins import Host, PluginError, PluginSpec
from tetrad_kubernetes.kubelet import KubeletPods
from tetrad_kubernetes.pods import KubernetesPods

READ_ONLY_PORT = 10255            # the kubelet's unauthenticated port: never


@dataclass(frozen=True)
class KubernetesConfig:
    enabled: bool = False
    cri_sockets: list = field(default_factory=lambda: ["/run/containerd/containerd.sock",
                                                       "/run/crio/crio.sock"])
    pod_annotations: bool = False
    kubelet_url: str = ""
    kubelet_ca: str = "/var/lib/kubelet/pki/kubelet.crt"
    kubelet_client_cert: str = ""
    kubelet_client_key: str = ""
    kubelet_token_file: str = ""
    kubelet_refresh: str = "10s"


def check(config: KubernetesConfig) -> list[str]:
    """Problems with the merged table (tetrad reports them as config errors)."""
    problems = []
    if not config.cri_sockets or not all(isinstance(s, str) and s.startswith("/")
                                         for s in config.cri_sockets):
        problems.append("cri_sockets must list absolute paths of CRI sockets")
    try:
        if parse_duration(config.kubelet_refresh) < 1:
            problems.append("kubelet_refresh must be at least 1s")
    except ValueError as err:
        problems.append(f"kubelet_refresh: {err}")
    if config.kubelet_url:
        url = urlsplit(config.kubelet_url)
        if url.scheme != "https" or not url.hostname:
            problems.append(f"kubelet_url {config.kubelet_url!r} must be https://HOST:PORT "
                            "(the kubelet's authenticated API)")
        elif (url.port or 443) == READ_ONLY_PORT:
            problems.append(f"kubelet_url: {READ_ONLY_PORT} is the kubelet's read-only, "
                            "unauthenticated port; use the authenticated one (10250)")
        cert, token = config.kubelet_client_cert or config.kubelet_client_key, config.kubelet_token_file
        if bool(cert) == bool(token):
            problems.append("kubelet_url needs either kubelet_client_cert and kubelet_client_key, "
                            "or kubelet_token_file")
        elif cert and not (config.kubelet_client_cert and config.kubelet_client_key):
            problems.append("kubelet_client_cert and kubelet_client_key go together")
    return problems


class KubernetesPlugin:
    """The running plugin: a pod source for the daemon's container resolver."""

    name = "kubernetes"

    def __init__(self, pods: KubernetesPods):
        self.pods = pods

    def stats(self) -> dict:
        return self.pods.stats()

    def close(self) -> None:
        self.pods.close()


def start(config: KubernetesConfig, host: Host) -> KubernetesPlugin:
    client = cri.make_client()
    if isinstance(client, cri.NoCriClient):
        raise PluginError("the kubernetes plugin needs python3-grpcio and python3-protobuf (3.20 "
                          "or later) to ask the CRI for pods: install them")
    kubelet = None
    if config.kubelet_url:
        try:
            kubelet = KubeletPods(config.kubelet_url, ca=config.kubelet_ca,
                                  cert=config.kubelet_client_cert, key=config.kubelet_client_key,
                                  token_file=config.kubelet_token_file,
                                  refresh_s=parse_duration(config.kubelet_refresh),
                                  annotations=config.pod_annotations)
        except (OSError, ValueError) as err:
            client.close()
            raise PluginError(f"kubernetes plugin: the kubelet source cannot be set up: {err}") from None
    return KubernetesPlugin(KubernetesPods(client, tuple(config.cri_sockets),
                                           annotations=config.pod_annotations, kubelet=kubelet))


SPEC = PluginSpec(name="kubernetes", package="tetrad-kubernetes", config=KubernetesConfig,
                  start=start, check=check)
