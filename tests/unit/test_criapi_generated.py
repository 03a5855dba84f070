"""The committed CRI modules (tetrad/containers/criapi/api_pb2*.py, and the
tests' tests/kubelet/kubelet_pb2.py) are what their generate.sh makes of
their .proto now: a change to a .proto without regenerating fails here. Needs Debian's protobuf-compiler and
python3-grpc-tools (packaging/dev.sh test installs them)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CRIAPI = REPO / "tetrad/containers/criapi"


def test_generated_modules_are_current(tmp_path):
    assert shutil.which("protoc"), "protoc missing: apt install protobuf-compiler (packaging/dev.sh test does)"
    done = subprocess.run([str(CRIAPI / "generate.sh"), str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    for name in ("api_pb2.py", "api_pb2_grpc.py"):
        fresh = (tmp_path / "tetrad/containers/criapi" / name).read_text()
        assert fresh == (CRIAPI / name).read_text(), f"{name} is stale: run {CRIAPI}/generate.sh"


def test_the_tests_kubelet_messages_are_current(tmp_path):
    done = subprocess.run([str(REPO / "tests/kubelet/generate.sh"), str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    fresh = (tmp_path / "tests/kubelet/kubelet_pb2.py").read_text()
    assert fresh == (REPO / "tests/kubelet/kubelet_pb2.py").read_text(), \
        "tests/kubelet/kubelet_pb2.py is stale: run tests/kubelet/generate.sh"
