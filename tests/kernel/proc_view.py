"""What /proc shows of a process's credentials and namespaces, read from
outside: the oracle the credential tests compare the sensor with. Written
independently of tetrad's own /proc reading (tetrad/process/procfs.py)."""

from __future__ import annotations

import os

NAMESPACES = ("uts", "ipc", "mnt", "pid", "pid_for_children", "net", "time",
              "time_for_children", "cgroup", "user")


def proc_state(pid: int) -> dict:
    """ids as {"uid": .., "euid": .., ..}, capability masks as
    {"permitted": .., "effective": .., "inheritable": ..}, and namespace
    inode numbers in NAMESPACES order (0 where the link cannot be read)."""
    status = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            status[key] = value.split()
    ids = {}
    for key, names in (("Uid", ("uid", "euid", "suid", "fsuid")),
                       ("Gid", ("gid", "egid", "sgid", "fsgid"))):
        ids.update(zip(names, map(int, status[key])))
    caps = {name: int(status[key][0], 16) for name, key in
            (("permitted", "CapPrm"), ("effective", "CapEff"), ("inheritable", "CapInh"))}
    ns = []
    for name in NAMESPACES:
        try:
            target = os.readlink(f"/proc/{pid}/ns/{name}")
        except OSError:
            ns.append(0)
            continue
        ns.append(int(target.partition("[")[2].rstrip("]")))
    return {"ids": ids, "caps": caps, "ns": ns}
