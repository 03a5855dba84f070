"""Struct-typed and resolved arguments on kprobes and BPF LSM hooks, on the
guest's distro kernel: real bpf() loads and maps, a real kprobe perf event,
real credential and capability changes, a real module load (and a refused
second one), each value checked against what the test did.

Run inside the Debian guest (tests/guest/run.sh): kprobes and BPF LSM work
there; offsets come from its BTF. The tracepoint and syscall cases that run
on any kernel are tests/kernel/test_kernel_args.py.
"""

from __future__ import annotations

import base64
import ctypes
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from tetrad.bpf import syscall as bpf_syscall
from tetrad.events.kernelargs import PERF_TYPES
from tests.kernel.daemon_harness import DaemonProcess
from tests.kernel.test_kernel_args import run_as_nobody_in_a_user_namespace

pytestmark = pytest.mark.guest

RUN = uuid.uuid4().hex[:8]
PID = os.getpid()
NOBODY = 65534


def kernel_symbols() -> set[str]:
    path = Path("/proc/kallsyms")
    if not path.exists():
        return set()
    return {parts[2] for parts in (line.split() for line in path.read_text().splitlines())
            if len(parts) >= 3}


KSYMS = kernel_symbols()
MAP_HOOK = "security_bpf_map_create" if "security_bpf_map_create" in KSYMS else "security_bpf_map_alloc"
# Module candidates a distro kernel ships and nothing here loads by itself.
MODULES = ("dummy", "ifb", "vcan", "veth", "vxlan", "geneve", "macvlan", "bonding")
CAPS_MASK = (1 << 0) | (1 << 5) | (1 << 25)        # CAP_CHOWN, CAP_KILL, CAP_SYS_TIME


def policy(name: str, body: str) -> str:
    return f'apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: "{name}"\nspec:\n{body}'


def pid_selector(extra: str = "") -> str:
    return f"    selectors:\n    - matchPIDs:\n      - operator: In\n        values: [{PID}]\n{extra}"


def policies(work: Path, public: Path) -> dict[str, str]:
    hostname, setpriv = public / f"hostname-{RUN}", public / f"setpriv-{RUN}"
    sections = """  - call: find_module_sections
    syscall: false
    args:
    - index: 0
      type: nop
    - index: 1
      type: load_info
""" if "find_module_sections" in KSYMS else ""
    return {
        "bpf": policy("g-bpf", f"""  kprobes:
  - call: bpf_check
    syscall: false
    args:
    - index: 1
      type: bpf_attr
{pid_selector()}  - call: {MAP_HOOK}
    syscall: false
    args:
    - index: 0
      type: bpf_map
{pid_selector()}  - call: security_perf_event_alloc
    syscall: false
    args:
    - index: 0
      type: perf_event
{pid_selector()}"""),
        "creds": policy("g-creds", f"""  kprobes:
  - call: commit_creds
    syscall: false
    args:
    - index: 0
      type: cred
    - index: 0
      type: int
      resolve: euid.val
    selectors:
    - matchBinaries:
      - operator: In
        values: ["{setpriv}"]
  - call: cap_capable
    syscall: false
    args:
    - index: 1
      type: user_namespace
    - index: 2
      type: capability
    selectors:
    - matchBinaries:
      - operator: In
        values: ["{hostname}"]
      matchArgs:
      - index: 2
        operator: Equal
        values: ["21"]
  - call: security_capset
    syscall: false
    args:
    - index: 2
      type: kernel_cap_t
    - index: 4
      type: cap_permitted
    selectors:
    - matchArgs:
      - index: 2
        operator: Equal
        values: ["{CAPS_MASK}"]
"""),
        "exec": policy("g-exec", f"""  lsmhooks:
  - hook: bprm_check_security
    args:
    - index: 0
      type: linux_binprm
    - index: 0
      type: string
      resolve: mm.owner.real_parent.comm
    - index: 0
      type: path
      resolve: file.f_path
    selectors:
    - matchArgs:
      - index: 0
        operator: Prefix
        values: ["{work}/"]
"""),
        "io": policy("g-io", f"""  kprobes:
  - call: vfs_write
    syscall: false
    args:
    - index: 0
      type: file
    - index: 1
      type: char_buf
      sizeArgIndex: 3
    - index: 2
      type: size_t
    selectors:
    - matchArgs:
      - index: 0
        operator: Prefix
        values: ["{work}/"]
  - call: security_inode_follow_link
    syscall: false
    args:
    - index: 0
      type: dentry
    selectors:
    - matchArgs:
      - index: 0
        operator: Postfix
        values: ["link-{RUN}"]
  - call: dev_hard_start_xmit
    syscall: false
    args:
    - index: 1
      type: net_device
{pid_selector('''      matchArgs:
      - index: 1
        operator: Equal
        values: ["lo"]
''')}  - call: inet_sendmsg
    syscall: false
    args:
    - index: 1
      type: iov_iter
      resolve: msg_iter
{pid_selector()}"""),
        "modules": policy("g-modules", """  kprobes:
  - call: do_init_module
    syscall: false
    args:
    - index: 0
      type: module
""" + sections),
    }


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    work = tmp_path_factory.mktemp("guest-args")
    os.chmod(work, 0o755)
    # binaries user nobody may run (pytest's base directory is private)
    public = Path(tempfile.mkdtemp(prefix="tetrad-guest-args-"))
    public.chmod(0o755)
    shutil.copy("/usr/bin/hostname", public / f"hostname-{RUN}")
    shutil.copy(shutil.which("setpriv"), public / f"setpriv-{RUN}")
    args = []
    for name, text in policies(work, public).items():
        path = work / f"{name}.yaml"
        path.write_text(text)
        args += ["--policy", str(path)]
    d = DaemonProcess(work, *args)
    yield d, work, public
    if d.proc.poll() is None:
        d.stop()
    shutil.rmtree(public)


def hits(events, kind: str, policy_name: str, function: str = "") -> list[dict]:
    return [e[kind] for e in events if kind in e and e[kind]["policy_name"] == policy_name
            and (not function or e[kind].get("function_name") == function)]


def test_every_policy_loaded(daemon):
    log = daemon[0].stderr_path.read_text()
    for name in ("g-bpf", "g-creds", "g-exec", "g-io", "g-modules"):
        assert f"policy {name} loaded" in log, log


def test_bpf_program_map_and_perf_event(daemon):
    prog_name, map_name = f"p{RUN}"[:15], f"m{RUN}"[:15]
    insns = bpf_syscall.RETURN_ZERO
    code = ctypes.create_string_buffer(insns, len(insns))
    license_ = ctypes.create_string_buffer(b"GPL")
    attr = bytearray(128)
    struct.pack_into("<IIQQ", attr, 0, 1, 2, ctypes.addressof(code), ctypes.addressof(license_))
    attr[48:48 + len(prog_name)] = prog_name.encode()
    libc = ctypes.CDLL(None, use_errno=True)
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    fd = libc.syscall(321, 5, buf, len(attr))               # bpf(BPF_PROG_LOAD), x86_64
    assert fd >= 0, os.strerror(ctypes.get_errno())
    os.close(fd)
    bpf_syscall.map_create(1, 4, 8, 16, name=map_name).close()          # BPF_MAP_TYPE_HASH
    with bpf_syscall.probe_pmu_event("kprobe", b"do_sys_openat2", 0):
        pass
    events = daemon[0].sync()
    progs = [h["args"][0]["bpf_attr_arg"] for h in hits(events, "process_kprobe", "g-bpf", "bpf_check")]
    assert {"ProgType": "BPF_PROG_TYPE_SOCKET_FILTER", "InsnCnt": 2, "ProgName": prog_name} in progs
    maps = [h["args"][0]["bpf_map_arg"] for h in hits(events, "process_kprobe", "g-bpf", MAP_HOOK)]
    assert {"MapType": "BPF_MAP_TYPE_HASH", "KeySize": 4, "ValueSize": 8, "MaxEntries": 16,
            "MapName": map_name} in maps
    pmu = int(Path("/sys/bus/event_source/devices/kprobe/type").read_text())
    perf = [h["args"][0]["perf_event_arg"]
            for h in hits(events, "process_kprobe", "g-bpf", "security_perf_event_alloc")]
    assert {"KprobeFunc": "do_sys_openat2",
            "Type": PERF_TYPES[pmu] if pmu < len(PERF_TYPES) else str(pmu)} in perf, perf


def test_credentials_committed_by_setresuid(daemon):
    d, _, public = daemon
    setpriv = public / f"setpriv-{RUN}"
    subprocess.run([str(setpriv), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "true"],
                   check=True)
    subprocess.run(["setpriv", f"--reuid={NOBODY}", "true"], check=True)      # another binary
    got = hits(d.sync(), "process_kprobe", "g-creds", "commit_creds")
    assert got and all(h["process"]["binary"] == str(setpriv) for h in got)
    nobody = [h for h in got if h["args"][1] == {"int_arg": NOBODY}]
    assert nobody, got
    creds = nobody[-1]["args"][0]["process_credentials_arg"]
    assert (creds["uid"], creds["euid"], creds["suid"], creds["gid"], creds["egid"]) == (NOBODY,) * 5
    assert creds["user_ns"]["level"] == 0 and creds["user_ns"]["ns"]["is_host"]


def test_capability_checked_in_a_new_user_namespace(daemon):
    d, _, public = daemon
    inum = run_as_nobody_in_a_user_namespace(public / f"hostname-{RUN}")
    got = hits(d.sync(), "process_kprobe", "g-creds", "cap_capable")
    assert {"user_ns_arg": {"level": 1, "uid": NOBODY, "gid": NOBODY, "ns": {"inum": inum}}} in \
        [h["args"][0] for h in got], got
    assert all(h["args"][1] == {"capability_arg": {"value": 21, "name": "CAP_SYS_ADMIN"}} for h in got)


CAPSET = """
import ctypes, struct, sys
mask = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
hdr = ctypes.create_string_buffer(struct.pack("<Ii", 0x20080522, 0))
data = ctypes.create_string_buffer(24)
assert libc.syscall(125, hdr, data) == 0                      # capget
eff, prm, inh, eff2, prm2, inh2 = struct.unpack("<6I", data.raw)
for m in (mask, mask | 2):                                    # the second is not selected
    new = struct.pack("<6I", m & 0xffffffff, prm, 0, m >> 32, prm2, 0)
    assert libc.syscall(126, hdr, ctypes.create_string_buffer(new)) == 0, ctypes.get_errno()
print(prm | prm2 << 32)
"""


def test_capability_sets_passed_to_capset(daemon):
    done = subprocess.run([sys.executable, "-c", CAPSET, str(CAPS_MASK)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    permitted = int(done.stdout)
    got = hits(daemon[0].sync(), "process_kprobe", "g-creds", "security_capset")
    assert [h["args"] for h in got] == [[{"kernel_cap_t_arg": f"{CAPS_MASK:016x}"},
                                         {"cap_permitted_arg": f"{permitted:016x}"}]]


def test_lsm_exec_resolves_the_parents_name_and_the_binarys_path(daemon):
    d, work, _ = daemon
    binary = work / f"true-{RUN}"
    shutil.copy("/usr/bin/true", binary)
    subprocess.run([str(binary)], check=True)
    subprocess.run(["/usr/bin/true"], check=True)                      # not under the prefix
    got = hits(d.sync(), "process_lsm", "g-exec")
    comm = Path("/proc/self/comm").read_text().strip()
    assert [h["args"] for h in got] == [[{"linux_binprm_arg": {"path": str(binary)}},
                                         {"string_arg": comm}, {"path_arg": {"path": str(binary)}}]]


def test_kernel_function_arguments_file_buffer_dentry_device_and_iov_iter(daemon):
    d, work, _ = daemon
    payload = f"payload-{RUN}".encode()
    written = work / f"w-{RUN}"
    written.write_bytes(payload)
    link = work / f"link-{RUN}"
    link.symlink_to(written)
    link.read_bytes()                                                   # follows the link
    datagram = f"iter-{RUN}".encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(datagram, ("127.0.0.1", 9))
    events = d.sync()
    writes = [h["args"] for h in hits(events, "process_kprobe", "g-io", "vfs_write")]
    assert [{"file_arg": {"path": str(written)}}, {"bytes_arg": base64.b64encode(payload).decode()},
            {"size_arg": str(len(payload))}] in writes, writes
    links = [h["args"][0]["path_arg"]["path"]
             for h in hits(events, "process_kprobe", "g-io", "security_inode_follow_link")]
    assert links and all(p.endswith(f"/link-{RUN}") and str(link).endswith(p) for p in links)
    devices = [h["args"][0] for h in hits(events, "process_kprobe", "g-io", "dev_hard_start_xmit")]
    assert devices and all(dev == {"net_dev_arg": {"name": "lo"}} for dev in devices)
    # the message's iov_iter (resolved from struct msghdr): the datagram.
    # inet_sendmsg, not sock_sendmsg: Debian's 6.1 inlines sock_sendmsg
    # into sendto, so a kprobe there never sees a datagram sent this way.
    sent = [h["args"][0] for h in hits(events, "process_kprobe", "g-io", "inet_sendmsg")]
    assert {"bytes_arg": base64.b64encode(datagram).decode()} in sent, sent


def loadable_module() -> tuple[str, str]:
    for name in MODULES:
        if Path("/sys/module", name).exists():
            continue
        found = subprocess.run(["modinfo", "-n", name], capture_output=True, text=True)
        if found.returncode == 0:
            return name, found.stdout.strip()
    pytest.fail(f"none of {MODULES} can be loaded in this guest")


def test_a_module_load_and_a_refused_second_load(daemon):
    name, path = loadable_module()
    subprocess.run(["modprobe", name], check=True)
    try:
        again = subprocess.run(["insmod", path], capture_output=True, text=True)
        assert again.returncode != 0, "a second load of a loaded module was not refused"
    finally:
        subprocess.run(["modprobe", "-r", name], check=True)
    events = daemon[0].sync()
    loads = [h["args"][0]["module_arg"]
             for h in hits(events, "process_kprobe", "g-modules", "do_init_module")]
    # the refused load never reached do_init_module
    assert len([m for m in loads if m.get("name") == name]) == 1, loads
    if "find_module_sections" in KSYMS:
        infos = [h["args"][0]["module_arg"]
                 for h in hits(events, "process_kprobe", "g-modules", "find_module_sections")]
        mine = [m for m in infos if m.get("name") == name]
        assert mine and all(isinstance(m["signature_ok"], bool) for m in mine), infos
