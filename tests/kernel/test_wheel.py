"""Installable the Python way (issue 19): a wheel built from pyproject.toml
with Debian's setuptools holds the BPF sources and default config as
package data; installed into a venv made with --system-site-packages (bcc
comes from the distribution), pip finds every declared dependency among the
distribution's packages without an index; and `tetrad run` from that venv,
outside the tree, reports the exec of a UUID-named binary on the real
kernel."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import uuid
import zipfile
from pathlib import Path

import pytest

from tests.kernel.daemon_harness import TIME_FACTOR, REPO, TRUE, wait_for

pytestmark = pytest.mark.kernel

PY = "/usr/bin/python3"          # Debian's: it has setuptools, venv and bcc
# Build artefacts and what is not the project's own.
NOT_SOURCE = shutil.ignore_patterns(".git", "__pycache__", ".pytest_cache", "build", "dist",
                                    "*.egg-info")


def run(*cmd, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))}\n{out.stdout}\n{out.stderr}"
    return out


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(REPO, src, symlinks=True, ignore=NOT_SOURCE)
    run(PY, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir",
        "-w", str(work / "dist"), str(src), cwd=work)
    wheel = next((work / "dist").glob("tetrad-*.whl"))
    venv = work / "venv"
    run(PY, "-m", "venv", "--system-site-packages", str(venv))
    # No index: every dependency the wheel declares, extras too, must be
    # met by the distribution's packages, under the names it declares.
    run(str(venv / "bin" / "pip"), "install", "--no-index", f"{wheel}[journald,cri]", cwd=work)
    return {"wheel": wheel, "venv": venv, "work": work}


def test_wheel_holds_the_bpf_sources_and_default_config(venv):
    names = set(zipfile.ZipFile(venv["wheel"]).namelist())
    bpf = sorted(p.name for p in (REPO / "bpf").iterdir() if p.suffix in (".c", ".h"))
    assert bpf and {f"tetrad/data/bpf/{n}" for n in bpf} <= names
    assert "tetrad/data/etc/tetrad.toml" in names
    meta = zipfile.ZipFile(venv["wheel"]).read(next(n for n in names if n.endswith("/METADATA"))).decode()
    requires = {line.split(":", 1)[1].strip().replace("'", '"') for line in meta.splitlines()
                if line.startswith("Requires-Dist:")}
    assert {"watchdog", "toml", "psutil", "sdnotify", "PyYAML", "prometheus-client", "pyelftools",
            'systemd-python ; extra == "journald"', 'grpcio ; extra == "cri"'} <= requires, requires


def test_tetrad_run_from_the_venv_reports_an_exec(venv, tmp_path):
    bindir = venv["venv"] / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("TETRAD_BPF_DIR", "PYTHONPATH")}
    where = json.loads(run(str(bindir / "python"), "-c",
                           "import json, tetrad, tetrad.paths; print(json.dumps([tetrad.__file__, "
                           "str(tetrad.paths.bpf_dir()), str(tetrad.paths.shipped_etc_dir())]))",
                           cwd=tmp_path, env=env).stdout)
    for path in where:                        # the venv's copies, not the tree's
        assert path.startswith(str(venv["venv"])) and not Path(path).is_symlink(), where
    binary = tmp_path / f"wheel-{uuid.uuid4().hex}"
    shutil.copy(TRUE, binary)
    export = tmp_path / "events.json"
    stderr = open(tmp_path / "daemon.stderr", "w")
    proc = subprocess.Popen([str(bindir / "tetrad"), "run", "--quiet", "--no-journald",
                             "--config-dir", str(tmp_path), "--policy-dir", "", "--socket", "",
                             "--export-file", str(export)],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        log = lambda: (tmp_path / "daemon.stderr").read_text()   # noqa: E731
        wait_for(lambda: "ready in" in log() or proc.poll() is not None, 120 * TIME_FACTOR,
                 "the daemon ready", context=log)
        assert proc.poll() is None, log()
        run(str(binary), "marker")

        def exec_seen():
            text = export.read_text() if export.exists() else ""
            return [e for e in map(json.loads, text.splitlines()) if "process_exec" in e
                    and e["process_exec"]["process"]["binary"] == str(binary)]
        seen = wait_for(exec_seen, 30 * TIME_FACTOR, "the exec in the export file", context=log)
        assert seen[0]["process_exec"]["process"]["arguments"] == "marker"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60 * TIME_FACTOR)
        stderr.close()
    assert proc.returncode == 0 and "stopped, programs detached" in log(), log()
