"""Credentials and namespaces in Tetragon's JSON: `process.cap`,
`process.ns` and `process.process_credentials`.

Owns the step "process state -> its JSON fields", Tetragon's
`AnnotateProcess()`: the process cache asks an Annotator for the fields of
each ProcState it installs, and the Process puts them in its JSON. Pure but
for `host_namespaces()`, which reads the host's namespaces once at start-up
and is handed in: pid 1's, as Tetragon takes them, and where pid 1's cannot
be read (a sandbox that denies it, even to root) kthreadd's, which are the
kernel's initial ones by construction.

Shapes, as Tetragon's protojson export writes them (api/v1/tetragon/
tetragon.proto, capabilities.proto):
  cap                  {"permitted": [...], "effective": [...], "inheritable": [...]}
                       with CapabilitiesType names (bit 1 is "DAC_OVERRIDE",
                       without CAP_, as in Tetragon's enum); an empty set is
                       left out; a bit the enum does not name is its number.
  ns                   {"uts": {"inum": N, "is_host": true}, ...}; is_host is
                       left out when false; a namespace whose inode number is
                       unknown (0: a kernel without time namespaces) is left
                       out, as Tetragon does for time.
  process_credentials  {"uid": N, "gid": N, "euid": ..., "fsgid": N} (wrapped
                       integers: 0 is written), "securebits": [SecureBitsType
                       names] when any is set, "user_ns": {"level", "uid",
                       "gid", "ns": {"inum", "is_host"}} where the kernel said.
                       `caps` is left out, as Tetragon leaves it out of a
                       process's credentials: `cap` carries them.
`cap` and `process_credentials` come with `enable_process_cred`, `ns` with
`enable_process_ns` (Tetragon's --enable-process-cred / --enable-process-ns).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from tetrad.decode.process import (NAMESPACES, STATE_CREDS, STATE_NS, STATE_SECUREBITS,
                                   STATE_USER_NS, ProcState)
from tetrad.jsontext import dumps

log = logging.getLogger(__name__)

# CapabilitiesType value names, by capability number (capabilities.proto).
CAPABILITIES = (
    "CAP_CHOWN", "DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
# SecureBitsType: (bit value, name); the kernel's SECBIT_* of the same values.
SECUREBITS = (
    (0x01, "SecBitNoRoot"), (0x02, "SecBitNoRootLocked"), (0x04, "SecBitNoSetUidFixup"),
    (0x08, "SecBitNoSetUidFixupLocked"), (0x10, "SecBitKeepCaps"),
    (0x20, "SecBitKeepCapsLocked"), (0x40, "SecBitNoCapAmbientRaise"),
    (0x80, "SecBitNoCapAmbientRaiseLocked"),
)
_USER = NAMESPACES.index("user")
_MEMO_MAX = 4096


def capability_names(mask: int) -> list:
    """Names of the bits set in a capability mask, lowest first; a bit
    CapabilitiesType does not name is its number (as protojson writes an
    unknown enum value)."""
    return [CAPABILITIES[bit] if bit < len(CAPABILITIES) else bit
            for bit in range(64) if mask >> bit & 1]


def securebits_names(bits: int) -> list[str]:
    """SecureBitsType names of the bits set; bits the enum lacks are left
    out, as Tetragon does."""
    return [name for value, name in SECUREBITS if bits & value]


def parse_ns_link(target: str) -> int:
    """The inode number in a /proc/PID/ns/* link ("net:[4026531840]")."""
    _, sep, rest = target.partition(":[")
    if not sep or not rest.endswith("]") or not rest[:-1].isdigit():
        raise ValueError(f"not a namespace link: {target!r}")
    return int(rest[:-1])


def read_namespaces(pid: int | str, proc_root: str = "/proc") -> tuple[int, ...]:
    """Inode numbers of a process's namespaces in NAMESPACES order; 0 for
    one that cannot be read (a kernel without it, or the process is gone)."""
    out = []
    for name in NAMESPACES:
        try:
            out.append(parse_ns_link(os.readlink(f"{proc_root}/{pid}/ns/{name}")))
        except (OSError, ValueError):
            out.append(0)
    return tuple(out)


KTHREADD_PID = 2


def host_namespaces(proc_root: str = "/proc") -> tuple[int, ...]:
    """The initial namespaces: pid 1's, as Tetragon takes them (the daemon's
    own are not: systemd gives it a mount namespace of its own); for those
    pid 1 does not show, kthreadd's (kernel threads run in the initial
    namespaces); 0 for those neither shows (never is_host)."""
    host = read_namespaces(1, proc_root)
    if all(host):
        return host
    try:
        with open(f"{proc_root}/{KTHREADD_PID}/comm") as f:
            kthreadd = f.read().strip() == "kthreadd"
    except OSError:
        kthreadd = False
    if kthreadd:
        fallback = read_namespaces(KTHREADD_PID, proc_root)
        taken = [n for n, h, k in zip(NAMESPACES, host, fallback) if not h and k]
        host = tuple(h or k for h, k in zip(host, fallback))
        if taken:
            log.info("host namespaces pid 1 does not show, taken from kthreadd: %s",
                     ", ".join(taken))
    unknown = [name for name, inum in zip(NAMESPACES, host) if not inum]
    if unknown:
        log.info("host namespaces unknown (never is_host): %s", ", ".join(unknown))
    return host


@dataclass(frozen=True, slots=True)
class Annotation:
    """The JSON fields a ProcState gives a process; None for one left out.
    Shared between processes: never change them. `before_tid` and
    `after_tid` are their JSON text as it goes before and after the
    process's `tid` (proto order), encoded once for all processes that
    share the state (with both switches, ~4 KB of capability names per
    process and parent)."""

    cap: dict | None
    ns: dict | None
    process_credentials: dict | None
    before_tid: str = ""
    after_tid: str = ""

    @classmethod
    def of(cls, cap: dict | None, ns: dict | None, creds: dict | None) -> Annotation:
        before = (f',"cap":{dumps(cap)}' if cap is not None else "") + \
            (f',"ns":{dumps(ns)}' if ns is not None else "")
        after = f',"process_credentials":{dumps(creds)}' if creds is not None else ""
        return cls(cap, ns, creds, before, after)


class Annotator:
    """Renders ProcStates into Annotations for the configured switches,
    each distinct state once (a bounded memo: processes share a few)."""

    def __init__(self, cred: bool = False, ns: bool = False, host: tuple[int, ...] = ()):
        self.cred = cred
        self.ns = ns
        self._host = tuple(host) + (0,) * (len(NAMESPACES) - len(host))
        self._memo: dict[ProcState, Annotation | None] = {}

    def __call__(self, state: ProcState | None) -> Annotation | None:
        if state is None or not (self.cred or self.ns):
            return None
        try:
            return self._memo[state]
        except KeyError:
            pass
        if len(self._memo) >= _MEMO_MAX:
            self._memo.clear()
        found = self._memo[state] = self._render(state)
        return found

    def _namespace(self, index: int, inum: int) -> dict:
        host = self._host[index]
        return {"inum": inum, "is_host": True} if host and inum == host else {"inum": inum}

    def _render(self, s: ProcState) -> Annotation | None:
        cap = creds = ns = None
        if self.cred and s.known & STATE_CREDS:
            cap = {}
            for key, mask in (("permitted", s.permitted), ("effective", s.effective),
                              ("inheritable", s.inheritable)):
                if mask:
                    cap[key] = capability_names(mask)
            creds = {"uid": s.uid, "gid": s.gid, "euid": s.euid, "egid": s.egid,
                     "suid": s.suid, "sgid": s.sgid, "fsuid": s.fsuid, "fsgid": s.fsgid}
            if s.known & STATE_SECUREBITS:
                bits = securebits_names(s.securebits)
                if bits:
                    creds["securebits"] = bits
            if s.known & STATE_USER_NS and s.ns[_USER]:
                creds["user_ns"] = {"level": s.user_ns_level, "uid": s.user_ns_owner,
                                    "gid": s.user_ns_group,
                                    "ns": self._namespace(_USER, s.ns[_USER])}
        if self.ns and s.known & STATE_NS:
            ns = {name: self._namespace(i, inum)
                  for i, (name, inum) in enumerate(zip(NAMESPACES, s.ns)) if inum}
        if cap is None and ns is None:
            return None
        return Annotation.of(cap, ns, creds)
