"""bpf/tetrad_events.h, struct tetrad_proc_state: the indexes of a task's
namespaces and capability sets, and the capability names, as the policy
selectors (matchNamespaces, matchCapabilities and their *Changes) and the
event fields (process.ns, process.cap) name them.

The orders are Tetragon's (its ns_* and caps_* enums), so that an index
means the same thing in its policies, in our kernel tables and in events.
"""

# Namespaces by index, as a policy names them (matched case-insensitively).
NAMESPACES = ("uts", "ipc", "mnt", "pid", "pidforchildren", "net", "time", "timeforchildren",
              "cgroup", "user")
NS_USER = NAMESPACES.index("user")

# Capability sets by index, as a policy names them (case-insensitively).
CAP_SETS = ("permitted", "effective", "inheritable")

# Tetragon's CapabilitiesType names, by capability number (capabilities.proto:
# bit 1 is "DAC_OVERRIDE", without CAP_, an oddity of its enum).
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


def capability_number(name: str) -> int | None:
    """The number of a capability named as Tetragon's enum does, or with the
    kernel's CAP_ prefix where the enum has none (CAP_DAC_OVERRIDE); None
    for a name neither knows."""
    upper = name.strip().upper()
    for number, known in enumerate(CAPABILITIES):
        if upper in (known, "CAP_" + known):
            return number
    return None
