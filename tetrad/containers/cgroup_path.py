"""Container runtime and id from a cgroup path, for every common layout.

Runtimes name the cgroup of a container after it; the path is all a host
agent needs to know *that* a process is in a container and which one.
Layouts (cgroup v2 and the v1/hybrid hierarchies look alike):

  systemd driver   .../docker-<id>.scope          Docker
                   .../cri-containerd-<id>.scope  containerd (CRI)
                   .../crio-<id>.scope            CRI-O
                   .../libpod-<id>.scope          Podman (root and rootless,
                                                  under user@UID.service)
  cgroupfs driver  /docker/<id>, /libpod_parent/libpod-<id>,
                   /kubepods/<qos>/pod<uid>/<id>, /system.slice/containerd.service/...
  machines         machine.slice/machine-<name>.scope   systemd-nspawn, libvirt
                   /lxc.payload.<name>, /lxc/<name>     LXC
  Kubernetes       kubepods[-<qos>]-pod<uid>.slice      pod uid (with any of the above)

Conmon/helper scopes (libpod-conmon-, crio-conmon-) are not containers. The
innermost match wins, so nested containers report the inner one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ID = r"([0-9a-f]{64})"
# (regex on one path component, runtime); the id/name is group 1.
_COMPONENT_RULES = [
    (re.compile(rf"^docker-{_ID}\.scope$"), "docker"),
    (re.compile(rf"^cri-containerd-{_ID}\.scope$"), "containerd"),
    (re.compile(rf"^crio-{_ID}\.scope$"), "cri-o"),
    (re.compile(rf"^libpod-{_ID}\.scope$"), "podman"),
    (re.compile(rf"^libpod-{_ID}$"), "podman"),
    (re.compile(r"^machine-(.+)\.scope$"), "systemd-nspawn"),
    (re.compile(r"^lxc\.payload\.(.+)$"), "lxc"),
]
# Rules that look at a component and its parent.
_PARENT_RULES = [
    ("docker", re.compile(rf"^{_ID}$"), "docker"),
    ("lxc", re.compile(r"^(.+)$"), "lxc"),
]
_POD = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")
_BARE_ID = re.compile(rf"^{_ID}$")


@dataclass(frozen=True)
class CgroupIdentity:
    runtime: str
    id: str                    # 64-hex container id, or the machine/LXC name
    pod_uid: str = ""
    rootless_uid: int = -1     # podman under user@UID.service

    @property
    def is_machine(self) -> bool:
        return self.runtime in ("systemd-nspawn", "lxc")


def unescape_systemd(name: str) -> str:
    """systemd unit-name escaping: \\x2d is '-', and so on."""
    return re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), name)


def parse(path: str) -> CgroupIdentity | None:
    """The container a cgroup path belongs to, or None for the host."""
    parts = [p for p in path.split("/") if p]
    pod = _POD.search(path)
    pod_uid = pod.group(1).replace("_", "-") if pod else ""
    rootless = re.search(r"/user@(\d+)\.service/", path)
    found: CgroupIdentity | None = None
    for i, part in enumerate(parts):
        hit = None
        for regex, runtime in _COMPONENT_RULES:
            m = regex.match(part)
            if m:
                name = m.group(1)
                if runtime == "systemd-nspawn":
                    name = unescape_systemd(name)
                hit = (runtime, name)
                break
        if hit is None and i > 0:
            for parent, regex, runtime in _PARENT_RULES:
                m = regex.match(part)
                if parts[i - 1] == parent and m:
                    hit = (runtime, m.group(1))
                    break
        if hit is None and pod_uid and _BARE_ID.match(part):
            hit = ("cri", part)             # kubepods cgroupfs layout: runtime unknown here
        if hit is not None:
            runtime, ident = hit
            uid = int(rootless.group(1)) if rootless and runtime == "podman" else -1
            found = CgroupIdentity(runtime, ident, pod_uid if runtime != "systemd-nspawn" else "", uid)
    return found
