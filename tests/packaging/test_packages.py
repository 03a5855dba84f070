"""The packages build, pass lintian, and hold the files users need: tetrad,
and the Kubernetes plugin's tetrad-kubernetes (its module, the entry point
tetrad finds it by, the drop-in that enables it; exactly this tetrad).
(Installing and running the .deb is tests/guest/test_package_guest.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

EXPECTED = ["/usr/bin/tetrad", "/usr/bin/tetra", "/tetrad/daemon.py", "/tetrad/policy/directory.py",
            "/usr/share/tetrad/bpf/process.c", "/usr/share/tetrad/bpf/generic_hook.c",
            "/usr/share/tetrad/etc/tetrad.toml", "/etc/tetragon/tetrad.toml",
            "/etc/tetragon/policies.d/sensitive-files.yaml", "/tetrad.service",
            "/usr/share/man/man8/tetrad.8", "/var/log/tetragon",
            # importlib.resources finds the BPF sources and defaults through it
            "/tetrad/data -> ",
            "/usr/share/bash-completion/completions/tetrad",
            "/usr/share/bash-completion/completions/tetra -> tetrad",
            "/usr/share/man/man8/tetra.8",
            "/usr/share/doc/tetrad/examples/prometheus/tetrad-alerts.yml",
            "/usr/share/doc/tetrad/examples/rsyslog/tetrad-file.conf",
            "/usr/share/doc/tetrad/examples/rsyslog/tetrad-journal.conf"]


PLUGIN = ["/tetrad_kubernetes/pods.py", "/tetrad_kubernetes/spec.py",
          "/tetrad_kubernetes-0.1.0.dist-info/entry_points.txt",
          "/usr/share/tetrad/etc/tetrad.d/kubernetes.toml"]
ENTRY_POINT = "[tetrad.plugins]\nkubernetes = tetrad_kubernetes.spec:SPEC\n"


def build(script: str, out: Path) -> tuple[Path, Path]:
    """(tetrad's package, the plugin's)."""
    done = subprocess.run([str(REPO / "packaging" / script), str(out)], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    built = [Path(p) for p in done.stdout.split()[-2:]]
    (plugin,) = [p for p in built if "kubernetes" in p.name]
    (main,) = [p for p in built if p != plugin]
    return main, plugin


def missing(listing: str, expected=EXPECTED) -> list[str]:
    return [e for e in expected if not any(e in line for line in listing.splitlines())]


@pytest.mark.skipif(not Path("/usr/bin/dpkg").exists(), reason="needs Debian's dpkg")
def test_deb_builds_lintian_clean_with_conffiles(tmp_path):
    deb, plugin = build("build-deb.sh", tmp_path)   # fails on any lintian error or warning
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True).stdout
    assert missing(listing) == [] and "tetrad_kubernetes" not in listing
    assert "/tetrad/containers/criapi/api_pb2.py" in listing
    plugin_listing = subprocess.run(["dpkg-deb", "-c", str(plugin)], capture_output=True, text=True).stdout
    assert missing(plugin_listing, PLUGIN) == []
    depends = subprocess.run(["dpkg-deb", "-f", str(plugin), "Depends"], capture_output=True, text=True).stdout
    assert "tetrad (= 0.1.0)" in depends and "python3-grpcio" in depends and "python3-protobuf" in depends
    unpacked = tmp_path / "plugin"
    subprocess.run(["dpkg-deb", "-x", str(plugin), str(unpacked)], check=True)
    (entry,) = unpacked.glob("usr/lib/python3/dist-packages/tetrad_kubernetes-*.dist-info/entry_points.txt")
    assert entry.read_text().strip() == ENTRY_POINT.strip()
    conffiles = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True,
                               text=True).stdout
    assert "python3-bpfcc" in conffiles and "python3-prometheus-client" in conffiles
    ctrl = tmp_path / "ctrl"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(ctrl)], check=True)
    conf = (ctrl / "conffiles").read_text().split()
    assert "/etc/tetragon/tetrad.toml" in conf and "/etc/tetragon/policies.d/sensitive-files.yaml" in conf
    print(f"{deb.name}: {deb.stat().st_size} bytes")


@pytest.mark.skipif(not Path("/usr/bin/dpkg").exists(), reason="needs apt to install rpmbuild")
def test_rpm_builds_with_the_same_layout(tmp_path):
    rpm, plugin = build("build-rpm.sh", tmp_path)
    listing = subprocess.run(["rpm", "-qlvp", str(rpm)], capture_output=True, text=True).stdout
    assert missing(listing) == [] and "tetrad_kubernetes" not in listing
    plugin_listing = subprocess.run(["rpm", "-qlvp", str(plugin)], capture_output=True, text=True).stdout
    assert missing(plugin_listing, PLUGIN) == []
    requires = subprocess.run(["rpm", "-qp", "--requires", str(plugin)], capture_output=True, text=True).stdout
    assert "tetrad = 0.1.0-1" in requires and "python3-grpcio" in requires
    archive = subprocess.run(["rpm2archive", "-"], stdin=open(plugin, "rb"), capture_output=True).stdout
    entry = subprocess.run(["tar", "-xzO", "--wildcards", "*entry_points.txt"], input=archive,
                           capture_output=True).stdout.decode()
    assert entry.strip() == ENTRY_POINT.strip()
    configs = subprocess.run(["rpm", "-qcp", str(rpm)], capture_output=True, text=True).stdout
    assert "/etc/tetragon/tetrad.toml" in configs
    scripts = subprocess.run(["rpm", "-qp", "--scripts", str(rpm)], capture_output=True, text=True).stdout
    assert "postuninstall" in scripts
    print(f"{rpm.name}: {rpm.stat().st_size} bytes")
