"""Struct-typed and resolved arguments on the real kernel, through the real
`tetrad run`: tracepoints whose fields are kernel pointers and real
syscalls, each value checked against what the test knows (the file it
synced and its inode, its own user namespace and uid, the program it
loaded), each policy with a call it must report and one it must not.

Kprobe and LSM hooks (bpf_check, commit_creds, modules...) are in
tests/guest/test_kernel_args_guest.py.
"""

from __future__ import annotations

import base64
import ctypes
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.kernel.daemon_harness import REPO, DaemonProcess
from tetrad.policy.kernel import tracepoint_fields

pytestmark = pytest.mark.kernel

RUN = uuid.uuid4().hex[:8]
NOBODY = 65534
BPF_MAP_CREATE, BPF_PROG_LOAD = 0, 5


def has_tracepoint(subsys: str, event: str) -> bool:
    try:
        tracepoint_fields(subsys, event)
    except OSError:
        return False
    return True


CAP_CAPABLE = has_tracepoint("capability", "cap_capable")


def policy(name: str, body: str) -> str:
    return f'apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: "{name}"\nspec:\n{body}'


def mm_policy(work: Path, ino: int) -> str:
    """mmap_lock:mmap_lock_start_locking carries the caller's mm_struct: its
    executable file, walked to the file, its name, dentry, inode and path."""
    return policy("t-mm", f"""  tracepoints:
  - subsystem: mmap_lock
    event: mmap_lock_start_locking
    args:
    - index: 4
      type: file
      resolve: exe_file
    - index: 4
      type: string
      resolve: exe_file.f_path.dentry.d_name.name
    - index: 4
      type: dentry
      resolve: exe_file.f_path.dentry
    - index: 4
      type: uint64
      resolve: exe_file.f_inode.i_ino
    - index: 4
      type: path
      resolve: exe_file.f_path
    selectors:
    - matchArgs:
      - index: 4
        operator: Prefix
        values: ["{work}/"]
      - args: [3]
        operator: Equal
        values: ["{ino}"]
""")


def cap_policy(binary: Path) -> str:
    """cap_capable: the caller's credentials, the target user namespace and
    the capability; the euid resolved as an integer tells callers apart."""
    return policy("t-cap", f"""  tracepoints:
  - subsystem: capability
    event: cap_capable
    args:
    - index: 4
      type: cred
    - index: 5
      type: user_namespace
    - index: 7
      type: capability
    - index: 4
      type: int
      resolve: euid.val
    - index: 4
      type: int
      resolve: user_ns.parent.level
    selectors:
    - matchBinaries:
      - operator: In
        values: ["{binary}"]
      matchArgs:
      - index: 7
        operator: Equal
        values: ["21"]
""")


def parent_level_policy(binary: Path, level: int) -> str:
    """A resolved value behind a NULL pointer is 0 to selectors."""
    return policy(f"t-parent-{level}", f"""  tracepoints:
  - subsystem: capability
    event: cap_capable
    args:
    - index: 4
      type: int
      resolve: user_ns.parent.level
    selectors:
    - matchBinaries:
      - operator: In
        values: ["{binary}"]
      matchArgs:
      - index: 4
        operator: Equal
        values: ["{level}"]
""")


def bpf_policy() -> str:
    return policy("t-bpf", f"""  kprobes:
  - call: sys_bpf
    syscall: true
    args:
    - index: 0
      type: int
    - index: 1
      type: bpf_attr
    selectors:
    - matchPIDs:
      - operator: In
        values: [{os.getpid()}]
      matchArgs:
      - index: 0
        operator: Equal
        values: ["{BPF_PROG_LOAD}"]
""")


def iovec_policy() -> str:
    return policy("t-iovec", f"""  kprobes:
  - call: sys_writev
    syscall: true
    args:
    - index: 1
      type: char_iovec
      sizeArgIndex: 3
    - index: 2
      type: int
    - index: 1
      type: char_iovec
      sizeArgIndex: 3
      maxData: true
    selectors:
    - matchArgs:
      - index: 1
        operator: Prefix
        values: ["iov-{RUN}"]
""")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    work = tmp_path_factory.mktemp("kernel-args")
    os.chmod(work, 0o755)
    # binaries of our own; one that user nobody may run (pytest's base
    # directory is private)
    public = Path(tempfile.mkdtemp(prefix="tetrad-args-"))
    public.chmod(0o755)
    binary = public / f"hostname-{RUN}"
    shutil.copy("/usr/bin/hostname", binary)
    selected, other = work / f"true-{RUN}", work / f"true-other-{RUN}"
    for b in (selected, other):
        shutil.copy("/usr/bin/true", b)
    policies = {"mm": mm_policy(work, selected.stat().st_ino), "bpf": bpf_policy(),
                "iovec": iovec_policy()}
    if CAP_CAPABLE:
        policies["cap"] = cap_policy(binary)
        policies["parent0"] = parent_level_policy(binary, 0)
        policies["parent1"] = parent_level_policy(binary, 1)
    args = []
    for key, text in policies.items():
        path = work / f"{key}.yaml"
        path.write_text(text)
        args += ["--policy", str(path)]
    daemon = DaemonProcess(work, *args)
    yield {"daemon": daemon, "binary": binary, "selected": selected, "other": other}
    if daemon.proc.poll() is None:
        daemon.stop()
    shutil.rmtree(public)


def hits(events, kind: str, name: str) -> list[dict]:
    return [e[kind] for e in events if kind in e and e[kind]["policy_name"] == name]


def test_a_tracepoints_mm_pointer_is_walked_to_its_executable(setup):
    selected, other = setup["selected"], setup["other"]
    for binary in (selected, other, "/usr/bin/true"):      # the last two are not selected
        subprocess.run([str(binary)], check=True)
    got = hits(setup["daemon"].sync(), "process_tracepoint", "t-mm")
    assert got, "the selected binary's mmap locks were not reported"
    for hit in got:
        file_, name, dentry, ino, path = hit["args"]
        assert file_ == {"file_arg": {"path": str(selected)}}
        assert path == {"path_arg": {"path": str(selected)}}
        assert name == {"string_arg": selected.name}
        # a dentry alone is walked within its mount: the path's end
        assert str(selected).endswith(dentry["path_arg"]["path"])
        assert dentry["path_arg"]["path"].endswith("/" + selected.name)
        assert int(ino["size_arg"]) == selected.stat().st_ino


def run_as_nobody_in_a_user_namespace(binary: Path) -> int:
    """`binary` (hostname) as user nobody, root in a new user namespace that
    owns a new UTS namespace: setting the host name there checks
    CAP_SYS_ADMIN against that namespace. Returns its user namespace's inode."""
    script = f'stat -L -c %i /proc/self/ns/user && exec {binary} tetrad-{RUN}'
    done = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                           "unshare", "--user", "--map-root-user", "--uts", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[0])


@pytest.mark.skipif(not CAP_CAPABLE, reason="no capability:cap_capable tracepoint on this kernel")
def test_credentials_user_namespace_and_capability_of_a_capability_check(setup):
    binary = setup["binary"]
    inum = run_as_nobody_in_a_user_namespace(binary)
    # the same binary as root in the host namespace
    subprocess.run([str(binary), os.uname().nodename], check=True, capture_output=True)
    got = hits(setup["daemon"].sync(), "process_tracepoint", "t-cap")
    # sethostname checks against the new namespace (others may check the host's)
    ours = [h for h in got if h["args"][3] == {"int_arg": NOBODY}
            and h["args"][1]["user_ns_arg"]["level"] == 1]
    assert ours, got
    cred, user_ns, cap, euid, parent_level = ours[0]["args"]
    creds = cred["process_credentials_arg"]
    assert (creds["uid"], creds["euid"], creds["fsuid"], creds["gid"]) == (NOBODY,) * 4
    assert creds["user_ns"] == {"level": 1, "uid": NOBODY, "gid": NOBODY, "ns": {"inum": inum}}
    assert "CAP_SYS_ADMIN" in creds["caps"]["effective"]      # root in its own namespace
    assert user_ns == {"user_ns_arg": {"level": 1, "uid": NOBODY, "gid": NOBODY, "ns": {"inum": inum}}}
    assert cap == {"capability_arg": {"value": 21, "name": "CAP_SYS_ADMIN"}}
    assert parent_level == {"int_arg": 0}                   # the host namespace's level
    host = [h for h in got if h["args"][3] == {"int_arg": 0}]
    assert host, got
    bad = {"error_arg": {"Message": "Bad address encountered during resolve dereference at depth 1"}}
    for hit in host:
        assert hit["args"][1]["user_ns_arg"]["ns"]["is_host"]
        # the host namespace has no parent: the walk met a NULL pointer
        assert hit["args"][4] == bad
    # to selectors, that value is 0 (never the depth the event shows)
    events = setup["daemon"].sync()
    zero = [h["args"][0] for h in hits(events, "process_tracepoint", "t-parent-0")]
    assert bad in zero and {"int_arg": 0} in zero
    assert hits(events, "process_tracepoint", "t-parent-1") == []


def bpf(cmd: int, attr: bytes) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(attr, len(attr))
    fd = libc.syscall(321, cmd, buf, len(attr))         # SYS_bpf on x86_64
    if fd < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return fd


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="calls bpf() by its x86_64 number")
def test_bpf_prog_load_attr_is_read_from_the_callers_memory(setup):
    name = f"t{RUN}"[:15].encode()
    insns = struct.pack("<BBhi", 0xB7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)   # r0 = 0; exit
    code = ctypes.create_string_buffer(insns, len(insns))
    license_ = ctypes.create_string_buffer(b"GPL")
    attr = bytearray(128)
    struct.pack_into("<IIQQ", attr, 0, 1, 2, ctypes.addressof(code), ctypes.addressof(license_))
    attr[48:48 + len(name)] = name
    os.close(bpf(BPF_PROG_LOAD, bytes(attr)))
    # a map: another command, not selected
    os.close(bpf(BPF_MAP_CREATE, struct.pack("<IIII", 1, 4, 8, 16) + bytes(56)))
    got = hits(setup["daemon"].sync(), "process_kprobe", "t-bpf")
    [hit] = [h for h in got if h["args"][1]["bpf_attr_arg"].get("ProgName") == name.decode()]
    assert hit["args"] == [{"int_arg": BPF_PROG_LOAD}, {"bpf_attr_arg": {
        "ProgType": "BPF_PROG_TYPE_SOCKET_FILTER", "InsnCnt": 2, "ProgName": name.decode()}}]
    assert all(h["args"][0]["int_arg"] == BPF_PROG_LOAD for h in got)


def test_char_iovec_reads_the_vectors_and_max_data_keeps_256_bytes(setup):
    first, second = f"iov-{RUN}-".encode(), b"z" * 400
    fd = os.open("/dev/null", os.O_WRONLY)
    try:
        os.writev(fd, [first, b"", second])
        os.writev(fd, [b"other", first])                   # not the prefix: not reported
    finally:
        os.close(fd)
    got = hits(setup["daemon"].sync(), "process_kprobe", "t-iovec")
    assert len(got) == 1, got
    buf, count, big = got[0]["args"]
    whole = first + second
    assert count == {"int_arg": 3}
    for arg in (buf, big):
        t = arg["truncated_bytes_arg"]
        assert base64.b64decode(t["bytes_arg"]) == whole[:256] and int(t["orig_size"]) == len(whole)


def test_check_names_what_this_kernel_cannot_serve(tmp_path):
    """load_info needs a kernel with loadable modules (its struct in BTF);
    perf_event is a kernel object, not a syscall's argument."""
    modules = tmp_path / "modules.yaml"
    modules.write_text(policy("t-modules", """  kprobes:
  - call: find_module_sections
    syscall: false
    args:
    - index: 0
      type: nop
    - index: 1
      type: load_info
"""))
    perf = tmp_path / "perf.yaml"
    perf.write_text(policy("t-perf", """  kprobes:
  - call: sys_perf_event_open
    args:
    - index: 0
      type: perf_event
"""))
    for p in (modules, perf):
        p.chmod(0o644)

    def check(path):
        return subprocess.run([sys.executable, "-m", "tetrad", "policy", "check", str(path)], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
    out = check(perf)
    assert out.returncode == 1 and "type perf_event is not supported on syscall arguments" in out.stdout
    out = check(modules)
    if Path("/proc/modules").exists():
        # a kernel with modules has struct load_info: only kprobes may be missing
        assert out.returncode in (0, 3) and "load_info" not in out.stdout, out.stdout
    else:
        assert out.returncode == 3, out.stdout
        assert "no struct or union load_info in the BTF of this kernel" in out.stdout
