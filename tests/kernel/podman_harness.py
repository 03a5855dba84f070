"""A local busybox image and podman helpers for the real-container tests.

On this CI host podman runs with `--runtime runc` (cgroup v1 hybrid: crun
is not usable) and lowered limits (the host's hard limits are below
podman's defaults); the guest (cgroup v2, systemd) runs the same tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

IMAGE = "localhost/tetrad-test:1"
PODMAN_RUN = ["podman", "run", "-d", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
if not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
    PODMAN_RUN += ["--runtime", "runc"]


def podman(*args: str) -> str:
    out = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def remove(*names: str) -> None:
    """Remove containers one by one: podman 4.3's `rm -f A B` removes
    nothing at all when B does not exist (and still exits 0)."""
    for name in dict.fromkeys(names):
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True, timeout=120)


def build_image(work: Path) -> str:
    """Import IMAGE from a rootfs holding only busybox (no registry needed)."""
    if shutil.which("podman") is None or not os.path.exists("/bin/busybox"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                        "podman", "runc", "busybox-static"], check=True, timeout=600,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    root = work / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin/busybox")
    for applet in ("sh", "sleep", "true", "cat"):
        os.symlink("busybox", root / "bin" / applet)
    tar = work / "busybox.tar"
    with tarfile.open(tar, "w") as t:
        t.add(root, arcname=".")
    podman("import", "--change", 'CMD ["/bin/sleep","600"]', str(tar), IMAGE)
    return IMAGE
