"""The packages build, pass lintian, and hold the files users need.
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


def build(script: str, out: Path) -> Path:
    done = subprocess.run([str(REPO / "packaging" / script), str(out)], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return Path(done.stdout.split()[-1])


def missing(listing: str) -> list[str]:
    return [e for e in EXPECTED if not any(e in line for line in listing.splitlines())]


@pytest.mark.skipif(not Path("/usr/bin/dpkg").exists(), reason="needs Debian's dpkg")
def test_deb_builds_lintian_clean_with_conffiles(tmp_path):
    deb = build("build-deb.sh", tmp_path)         # fails on any lintian error or warning
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True).stdout
    assert missing(listing) == []
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
    rpm = build("build-rpm.sh", tmp_path)
    listing = subprocess.run(["rpm", "-qlvp", str(rpm)], capture_output=True, text=True).stdout
    assert missing(listing) == []
    configs = subprocess.run(["rpm", "-qcp", str(rpm)], capture_output=True, text=True).stdout
    assert "/etc/tetragon/tetrad.toml" in configs
    scripts = subprocess.run(["rpm", "-qp", "--scripts", str(rpm)], capture_output=True, text=True).stdout
    assert "postuninstall" in scripts
    print(f"{rpm.name}: {rpm.stat().st_size} bytes")
