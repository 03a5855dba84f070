import pytest

from tetrad.containers.cgroup_path import CgroupIdentity, parse

ID = "3f1c9a2b7d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd"
POD = "5e0b3c1d-2a4f-4b6c-8d9e-0f1a2b3c4d5e"

# Paths as seen on real hosts (/proc/<pid>/cgroup, the 0:: line or the v1 ones).
CASES = [
    (f"/system.slice/docker-{ID}.scope", CgroupIdentity("docker", ID)),
    (f"/docker/{ID}", CgroupIdentity("docker", ID)),
    (f"/system.slice/containerd.service/kubepods-besteffort-pod{POD.replace('-', '_')}.slice:cri-containerd:{ID}",
     None),   # containerd's systemd-cgroup string form is not a cgroup path
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD.replace('-', '_')}.slice/"
     f"cri-containerd-{ID}.scope", CgroupIdentity("containerd", ID, POD)),
    (f"/kubepods.slice/kubepods-pod{POD.replace('-', '_')}.slice/crio-{ID}.scope",
     CgroupIdentity("cri-o", ID, POD)),
    (f"/kubepods/burstable/pod{POD}/{ID}", CgroupIdentity("cri", ID, POD)),
    (f"/machine.slice/libpod-{ID}.scope", CgroupIdentity("podman", ID)),
    (f"/machine.slice/libpod-{ID}.scope/container", CgroupIdentity("podman", ID)),
    (f"/libpod_parent/libpod-{ID}", CgroupIdentity("podman", ID)),
    (f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope",
     CgroupIdentity("podman", ID, rootless_uid=1000)),
    (f"/machine.slice/libpod-conmon-{ID}.scope", None),
    (f"/kubepods.slice/crio-conmon-{ID}.scope", None),
    ("/machine.slice/machine-web\\x2d01.scope/payload", CgroupIdentity("systemd-nspawn", "web-01")),
    ("/lxc.payload.db1/init.scope", CgroupIdentity("lxc", "db1")),
    ("/lxc/db1", CgroupIdentity("lxc", "db1")),
    ("/user.slice/user-1000.slice/session-3.scope", None),
    ("/system.slice/ssh.service", None),
    ("/", None),
    ("/process_api/ccbd870ba76cbf17904f73580b195047", None),
    (f"/system.slice/docker-{ID}.scope/system.slice/docker-{ID[::-1]}.scope",
     CgroupIdentity("docker", ID[::-1])),        # docker in docker: the inner one
]


@pytest.mark.parametrize("path,expected", CASES)
def test_parse(path, expected):
    assert parse(path) == expected
