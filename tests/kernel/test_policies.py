"""TracingPolicies on the real kernel, through the real `tetrad run`.

Each operator is checked by a pair of calls of which exactly one must be
reported, so an inverted operator fails. Triggers are unique per run:
lseek(-1, offset, whence) with marker values (the call fails with EBADF, but
its entry is traced), connects to our own listeners, files in a temp dir.
"""

from __future__ import annotations

import base64
import ctypes
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tetrad.bpf import features, unistd
from tetrad.policy.compile import compile_policy
from tetrad.policy.kernel import kernel_facts
from tetrad.policy.schema import parse
from tetrad.sensors.targets import unresolved
from tests.kernel.daemon_harness import REPO, DaemonProcess, exits, wait_for
from tests.policy_files import lseek_equal

pytestmark = pytest.mark.kernel

PID = os.getpid()
RUN = uuid.uuid4().hex[:8]
BASE = 7_000_000 + (int(RUN, 16) % 1_000_000) * 16


def lseek_policy(name: str, selectors: str, extra: str = "") -> str:
    return f"""apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: "{name}"
spec:{extra}
  kprobes:
  - call: "sys_lseek"
    syscall: true
    args:
    - index: 0
      type: int
    - index: 1
      type: long
    - index: 2
      type: int
    selectors:
{selectors}"""


def policy(name: str, body: str, extra: str = "") -> str:
    return f"""apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: "{name}"
spec:{extra}
{body}"""


# Each waits for a line, then calls lseek(-1, 0, whence) and says it lived.
WRAP_WHENCE, EXACT_WHENCE = 4343, 4344
VICTIM = ("import os, sys\nsys.stdin.readline()\ntry:\n    os.lseek(-1, 0, {})\n"
          "except OSError:\n    pass\nprint('alive', flush=True)\n")


def pid_policy(name: str, pid_value: int, whence: int) -> str:
    return lseek_policy(name, f"""    - matchPIDs:
      - operator: In
        values: [{pid_value}]
      matchArgs:
      - index: 2
        operator: Equal
        values: ["{whence}"]
      matchActions:
      - action: Sigkill
""")


def connect_hook(op: str, value: str) -> str:
    return f"""  kprobes:
  - call: "sys_connect"
    syscall: true
    args:
    - index: 0
      type: int
    - index: 1
      type: sockaddr
    selectors:
    - matchPIDs:
      - operator: In
        values: [{PID}]
      matchArgs:
      - index: 1
        operator: {op}
        values: ["{value}"]
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    work = tmp_path_factory.mktemp("policies")
    os.chmod(work, 0o755)
    files = work / "files"
    files.mkdir()
    victim = work / f"victim-{RUN}"
    watched = work / f"watched-{RUN}"
    shutil.copy("/usr/bin/touch", victim)
    shutil.copy("/usr/bin/touch", watched)
    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    listener6 = socket.create_server(("::1", 0), family=socket.AF_INET6)
    ports = [s.getsockname()[1] for s in listeners]
    # Started before the daemon, so their PIDs can be in policies.
    pid_victims = {w: subprocess.Popen([sys.executable, "-c", VICTIM.format(w)], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True)
                   for w in (WRAP_WHENCE, EXACT_WHENCE)}
    policies = {
        # Issue 12: 2^32 + P was stored as P in the u32 pid field.
        "pid-wrap": pid_policy("t-pid-wrap", 2 ** 32 + pid_victims[WRAP_WHENCE].pid, WRAP_WHENCE),
        "pid-exact": pid_policy("t-pid-exact", pid_victims[EXACT_WHENCE].pid, EXACT_WHENCE),
        "eq-ne": lseek_policy("t-eq-ne", f"""    - matchArgs:
      - index: 1
        operator: Equal
        values: ["{BASE + 1}"]
      - index: 2
        operator: NotEqual
        values: ["4444"]
"""),
        "mask": lseek_policy("t-mask", """    - matchArgs:
      - index: 1
        operator: Mask
        values: ["0x10000"]
      - index: 2
        operator: Equal
        values: ["7777"]
"""),
        "range": lseek_policy("t-range", f"""    - matchArgs:
      - index: 2
        operator: Equal
        values: ["8888"]
      - index: 1
        operator: InRange
        values: ["{BASE}:{BASE + 10}"]
    - matchArgs:
      - index: 2
        operator: Equal
        values: ["9999"]
      - index: 1
        operator: LessThan
        values: ["100"]
"""),
        "rate": lseek_policy("t-rate", """    - matchArgs:
      - index: 2
        operator: Equal
        values: ["1212"]
      matchActions:
      - action: Post
        rateLimit: "1m"
"""),
        "dport": policy("t-dport", connect_hook("DPort", str(ports[0]))),
        "notdport": policy("t-notdport", connect_hook("NotDPort", str(ports[0]))),
        "daddr": policy("t-daddr", connect_hook("DAddr", "127.0.0.0/8")),
        "notdaddr": policy("t-notdaddr", connect_hook("NotDAddr", "127.0.0.0/8")),
        "open": policy("t-open", f"""  kprobes:
  - call: "sys_openat"
    syscall: true
    args:
    - index: 1
      type: string
    selectors:
    - matchArgs:
      - index: 1
        operator: Prefix
        values: ["{files}/"]
      matchBinaries:
      - operator: In
        values: ["{os.path.realpath('/usr/bin/cat')}"]
"""),
        "binpostfix": policy("t-binpostfix", f"""  kprobes:
  - call: "sys_openat"
    syscall: true
    args:
    - index: 1
      type: string
    selectors:
    - matchArgs:
      - index: 1
        operator: Prefix
        values: ["{files}/bp-"]
      matchBinaries:
      - operator: Postfix
        values: ["/head"]
"""),
        "postfix": policy("t-postfix", f"""  kprobes:
  - call: "sys_openat"
    syscall: true
    args:
    - index: 1
      type: string
    selectors:
    - matchPIDs:
      - operator: In
        values: [{PID}]
      matchArgs:
      - index: 1
        operator: Postfix
        values: [".post-{RUN}"]
"""),
        "and": policy("t-and", f"""  kprobes:
  - call: "sys_openat"
    syscall: true
    args:
    - index: 1
      type: string
    selectors:
    - matchPIDs:
      - operator: In
        values: [{PID}]
      matchArgs:
      - index: 1
        operator: Prefix
        values: ["{files}/"]
      - index: 1
        operator: Postfix
        values: [".and-{RUN}"]
"""),
        "list": policy("t-list", f"""  lists:
  - name: "dups"
    type: "syscalls"
    values: ["sys_dup", "sys_dup2"]
  kprobes:
  - call: "list:dups"
    args:
    - index: 0
      type: int
    selectors:
    - matchPIDs:
      - operator: In
        values: [{PID}]
"""),
        "inmap": policy("t-inmap", f"""  lists:
  - name: "dups"
    type: "syscalls"
    values: ["sys_dup", "sys_dup2"]
  tracepoints:
  - subsystem: "raw_syscalls"
    event: "sys_enter"
    args:
    - index: 4
      type: "syscall64"
    selectors:
    - matchPIDs:
      - operator: In
        values: [{PID}]
      matchArgs:
      - index: 0
        operator: "InMap"
        values: ["list:dups"]
"""),
        "kill": policy("t-kill", f"""  kprobes:
  - call: "sys_execve"
    syscall: true
    args:
    - index: 0
      type: string
    selectors:
    - matchArgs:
      - index: 0
        operator: Equal
        values: ["{victim}"]
      matchActions:
      - action: Sigkill
"""),
        "monitor": policy("t-monitor", f"""  kprobes:
  - call: "sys_execve"
    syscall: true
    args:
    - index: 0
      type: string
    selectors:
    - matchArgs:
      - index: 0
        operator: Equal
        values: ["{watched}"]
      matchActions:
      - action: Sigkill
""", extra="\n  options:\n  - name: policy-mode\n    value: monitor"),
        "return": policy("t-return", f"""  kprobes:
  - call: "sys_openat"
    syscall: true
    return: true
    returnArg:
      index: 0
      type: int
    args:
    - index: 1
      type: string
    selectors:
    - matchArgs:
      - index: 1
        operator: Prefix
        values: ["{files}/ret-"]
      matchReturnArgs:
      - index: 0
        operator: Equal
        values: ["-2"]
"""),
        "write": policy("t-write", f"""  kprobes:
  - call: "sys_write"
    syscall: true
    args:
    - index: 0
      type: fd
    - index: 1
      type: char_buf
      sizeArgIndex: 3
    - index: 2
      type: size_t
    selectors:
    - matchArgs:
      - index: 0
        operator: Prefix
        values: ["{files}/w-"]
"""),
        "kprobe": policy("t-kprobe", """  kprobes:
  - call: "tcp_connect"
    syscall: false
    args:
    - index: 0
      type: sock
"""),
    }
    paths = []
    for key, text in policies.items():
        path = work / f"{key}.yaml"
        path.write_text(text)
        paths.append(path)
    args = [a for p in paths for a in ("--policy", str(p))]
    daemon = DaemonProcess(work, *args)
    yield {"daemon": daemon, "files": files, "victim": victim, "watched": watched, "ports": ports,
           "pid_victims": pid_victims,
           "port6": listener6.getsockname()[1], "work": work}
    if daemon.proc.poll() is None:
        daemon.stop()
    for p in pid_victims.values():
        if p.poll() is None:
            p.kill()
        p.wait()
    for s in listeners + [listener6]:
        s.close()


def hits(events, policy_name: str) -> list[dict]:
    return [e["process_kprobe"] for e in events if "process_kprobe" in e
            and e["process_kprobe"]["policy_name"] == policy_name]


def lseek(offset: int, whence: int) -> None:
    try:
        os.lseek(-1, offset, whence)
    except OSError:
        pass


def arg_values(hit: dict) -> list:
    """Each argument's value; 64-bit integers (JSON strings in protojson) as numbers."""
    values = []
    for arg in hit["args"]:
        key, value = next((k, v) for k, v in arg.items() if k != "label")
        values.append(int(value) if key in ("long_arg", "size_arg") else value)
    return values


def test_equal_and_notequal(setup):
    lseek(BASE + 1, 4444)      # whence excluded by NotEqual
    lseek(BASE + 1, 5555)
    lseek(BASE + 2, 5555)      # offset not Equal
    got = [arg_values(h)[1:] for h in hits(setup["daemon"].sync(), "t-eq-ne")]
    assert got == [[BASE + 1, 5555]]


def test_mask(setup):
    lseek(0x10000 | 5, 7777)
    lseek(0x20000, 7777)
    got = [arg_values(h)[1] for h in hits(setup["daemon"].sync(), "t-mask")]
    assert got == [0x10005]


def test_inrange_lessthan_and_first_selector_wins(setup):
    lseek(BASE + 5, 8888)
    lseek(BASE + 11, 8888)
    lseek(50, 9999)
    lseek(150, 9999)
    got = [arg_values(h)[1:] for h in hits(setup["daemon"].sync(), "t-range")]
    assert got == [[BASE + 5, 8888], [50, 9999]]


def test_rate_limit_posts_once(setup):
    for _ in range(3):
        lseek(BASE + 3, 1212)
    assert len(hits(setup["daemon"].sync(), "t-rate")) == 1


def connect(addr, port, family=socket.AF_INET) -> None:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect((addr, port))


def test_ports(setup):
    a, b = setup["ports"]
    connect("127.0.0.1", a)
    connect("127.0.0.1", b)
    events = setup["daemon"].sync()
    dport = [arg_values(h)[1]["port"] for h in hits(events, "t-dport")]
    notdport = [arg_values(h)[1]["port"] for h in hits(events, "t-notdport") if arg_values(h)[1]["port"] in (a, b)]
    assert dport == [a]
    assert notdport == [b]
    [hit] = hits(events, "t-dport")
    assert hit["args"][1]["sockaddr_arg"] == {"family": "AF_INET", "addr": "127.0.0.1", "port": a}
    assert hit["function_name"] == "__x64_sys_connect"
    assert hit["process"]["pid"] == PID


def test_cidr(setup):
    connect("127.0.0.1", setup["ports"][0])
    connect("::1", setup["port6"], socket.AF_INET6)
    events = setup["daemon"].sync()
    daddr = {arg_values(h)[1]["addr"] for h in hits(events, "t-daddr")}
    notdaddr = {arg_values(h)[1]["addr"] for h in hits(events, "t-notdaddr")}
    assert daddr == {"127.0.0.1"}
    assert "::1" in notdaddr and "127.0.0.1" not in notdaddr


def test_openat_prefix_and_matchbinaries(setup):
    files = setup["files"]
    (files / "a.txt").write_text("x")
    subprocess.run(["cat", str(files / "a.txt")], check=True, capture_output=True)
    subprocess.run(["head", "-c1", str(files / "a.txt")], check=True, capture_output=True)
    subprocess.run(["cat", "/proc/version"], check=True, capture_output=True)
    got = hits(setup["daemon"].sync(), "t-open")
    assert [(h["process"]["binary"], arg_values(h)[0]) for h in got] == \
        [(os.path.realpath("/usr/bin/cat"), str(files / "a.txt"))]


def test_matchbinaries_in_is_exact(setup):
    """In compares the whole path: a binary whose path merely starts with
    the value (/usr/bin/cat-<run> beside /usr/bin/cat) is not selected."""
    files = setup["files"]
    (files / "c.txt").write_text("x")
    longer = Path(os.path.realpath("/usr/bin/cat") + f"-{RUN}")
    shutil.copy("/usr/bin/cat", longer)
    try:
        subprocess.run([str(longer), str(files / "c.txt")], check=True, capture_output=True)
    finally:
        longer.unlink()
    got = [arg_values(h)[0] for h in hits(setup["daemon"].sync(), "t-open")]
    assert str(files / "c.txt") not in got


def test_matchbinaries_postfix(setup):
    """Postfix on the binary: the binary's path is looked up reversed (a
    point flag turns that lookup on only where a policy needs it)."""
    target = setup["files"] / f"bp-{RUN}"
    target.write_text("x")
    for tool in ("head", "cat"):
        subprocess.run([tool, str(target)], check=True, capture_output=True)
    got = [(h["process"]["binary"], arg_values(h)[0]) for h in hits(setup["daemon"].sync(), "t-binpostfix")]
    assert got == [(os.path.realpath(shutil.which("head")), str(target))]


def test_postfix(setup):
    path = setup["files"] / f"b.post-{RUN}"
    path.write_text("x")
    path.read_text()
    (setup["files"] / f"b.post-{RUN}.not").write_text("y")
    got = [arg_values(h)[0] for h in hits(setup["daemon"].sync(), "t-postfix")]
    assert got and all(g == str(path) for g in got)


def test_several_match_args_on_one_argument_must_all_hold(setup):
    """Prefix and Postfix on the same argument, as Tetragon ANDs them."""
    inside = setup["files"] / f"x.and-{RUN}"
    outside = setup["work"] / f"x.and-{RUN}"
    for path in (inside, setup["files"] / f"x.and-{RUN}.not", outside):
        path.write_text("x")
        path.read_text()
    got = [arg_values(h)[0] for h in hits(setup["daemon"].sync(), "t-and")]
    assert got and set(got) == {str(inside)}


def test_a_syscalls_list_hooks_each_syscall_and_in_map_selects_by_id(setup):
    """Tetragon's lists: `call: list:dups` is a hook on dup and on dup2;
    InMap on raw_syscalls' id takes the list's numbers. dup3 is in neither."""
    libc = ctypes.CDLL(None, use_errno=True)     # os.dup calls fcntl(F_DUPFD_CLOEXEC), not dup
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        copies = [libc.dup(fd), os.dup2(fd, 900), os.dup2(fd, 901, inheritable=False)]
        assert copies[0] >= 0
    finally:
        for f in [fd] + copies:
            os.close(f)
    events = setup["daemon"].sync()
    listed = {(h["function_name"].removeprefix("__x64_"), arg_values(h)[0])
              for h in hits(events, "t-list") if arg_values(h)[0] == fd}
    assert listed == {("sys_dup", fd), ("sys_dup2", fd)}
    ids = {arg_values(e["process_tracepoint"])[0]["id"] for e in events
           if e.get("process_tracepoint", {}).get("policy_name") == "t-inmap"}
    numbers = {name: unistd.number(name) for name in ("dup", "dup2", "dup3")}
    assert ids == {numbers["dup"], numbers["dup2"]}


def test_sigkill_on_execve_kills_before_the_binary_runs(setup):
    marker = setup["work"] / f"touched-{RUN}"
    p = subprocess.run([str(setup["victim"]), str(marker)])
    assert p.returncode == -9
    assert not marker.exists()          # the new image never ran user code
    events = setup["daemon"].sync()
    [hit] = hits(events, "t-kill")
    assert hit["action"] == "KPROBE_ACTION_SIGKILL"
    assert exits(events, pid=hit["process"]["pid"])[-1]["signal"] == "SIGKILL"


def test_equal_is_exact_not_a_prefix(setup):
    """Equal compares the whole string: a longer path that starts with the
    value is not killed (the kernel pads its copy of the argument itself)."""
    longer = setup["victim"].with_name(setup["victim"].name + "-longer")
    shutil.copy(setup["victim"], longer)
    marker = setup["work"] / f"longer-{RUN}"
    assert subprocess.run([str(longer), str(marker)]).returncode == 0 and marker.exists()


def test_monitor_mode_reports_without_killing(setup):
    marker = setup["work"] / f"monitored-{RUN}"
    p = subprocess.run([str(setup["watched"]), str(marker)])
    assert p.returncode == 0 and marker.exists()
    [hit] = hits(setup["daemon"].sync(), "t-monitor")
    # Tetragon's way: the policy's action, which the policy's counters say was
    # monitored, not enforced
    assert hit["action"] == "KPROBE_ACTION_SIGKILL" and "monitor_action" not in hit
    counted = wait_for(lambda: (c := setup["daemon"].policy_counters("t-monitor"))["monitored"] and c,
                       10, "the monitored call counted")
    assert counted["enforced"] == 0


def test_return_value_selects(setup):
    files = setup["files"]
    (files / "ret-exists").write_text("x")
    (files / "ret-exists").read_text()
    with pytest.raises(FileNotFoundError):
        open(files / "ret-missing")
    got = hits(setup["daemon"].sync(), "t-return")
    assert [(arg_values(h)[0], h["return"]["int_arg"]) for h in got] == [(str(files / "ret-missing"), -2)]


def test_write_resolves_fd_and_copies_the_buffer(setup):
    path = setup["files"] / "w-out"
    with open(path, "w") as f:
        f.write("hello tetrad")
    [hit] = hits(setup["daemon"].sync(), "t-write")
    fd, buf, size = hit["args"]
    assert fd == {"file_arg": {"path": str(path)}}
    assert base64.b64decode(buf["bytes_arg"]) == b"hello tetrad"
    assert size == {"size_arg": "12"}


def test_kernel_without_kprobes_refuses_the_kprobe_policy_only(setup):
    from tetrad.bpf import features
    log = setup["daemon"].stderr_path.read_text()
    if features.has_kprobes().available:
        assert "policy t-kprobe loaded" in log
    else:
        assert "tcp_connect) needs kprobes, which this kernel lacks" in log
        assert "policy t-kprobe loaded" not in log
    assert "policy t-open loaded" in log


# ---- targets that do not exist here are refused by name, before loading -----------

def test_missing_targets_are_each_named_before_anything_loads():
    """The loader and `tetrad policy check` ask the same question
    (tetrad.sensors.targets.unresolved)."""
    doc = """apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: "targets"
spec:
  kprobes:
  - call: "sys_nosuchcall"
    syscall: true
  - call: "sys_openat"
    syscall: true
  uprobes:
  - path: "/bin/bash"
    symbols: ["no_such_symbol_here"]
  - path: "/nonexistent/binary"
    symbols: ["main"]
  - path: "/bin/bash"
    symbols: ["readline"]
"""
    problems = dict(unresolved(compile_policy(parse(doc), kernel_facts())))
    assert set(problems) == {"spec.kprobes[0]", "spec.uprobes[0]", "spec.uprobes[1]"}
    assert "sys_enter_nosuchcall" in problems["spec.kprobes[0]"]
    assert "no symbol 'no_such_symbol_here' in /bin/bash" in problems["spec.uprobes[0]"]
    assert "/nonexistent/binary does not exist" in problems["spec.uprobes[1]"]


def test_a_pid_beyond_32_bits_is_refused_and_the_process_lives(setup):
    """matchPIDs In [2^32 + P] Sigkilled P: now the policy is refused by
    name and range, and P survives the call that policy would have killed;
    the same policy with P itself kills it (the trigger works)."""
    wrap, exact = setup["pid_victims"][WRAP_WHENCE], setup["pid_victims"][EXACT_WHENCE]
    log = setup["daemon"].stderr_path.read_text()
    assert ("matchPIDs[0].values[0]: " + f"{2 ** 32 + wrap.pid} is out of range 0..4294967295") in log
    assert "policy t-pid-wrap loaded" not in log and "policy t-pid-exact loaded" in log
    for p in (wrap, exact):
        p.stdin.write("go\n")
        p.stdin.flush()
    assert wrap.stdout.readline() == "alive\n" and wrap.wait(timeout=10) == 0
    assert exact.wait(timeout=10) == -9


def test_check_exit_status_tells_valid_but_not_loadable_here(tmp_path):
    """`tetrad policy check` as root: 0 loadable here, 1 invalid, 3 valid but
    this machine lacks what it needs (here: a uprobe symbol), every missing
    thing named."""
    good, absent = tmp_path / "good.yaml", tmp_path / "absent.yaml"
    good.write_text(lseek_equal("good", 1))
    absent.write_text("""apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: "absent"
spec:
  uprobes:
  - path: "/bin/bash"
    symbols: ["no_such_symbol_here"]
  kprobes:
  - call: "sys_nosuchcall"
    syscall: true
""")

    def check(*paths):
        return subprocess.run([sys.executable, "-m", "tetrad", "policy", "check", *map(str, paths)],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
    ok = check(good)
    assert ok.returncode == 0 and "loadable on this kernel" in ok.stdout, ok.stdout + ok.stderr
    out = check(good, absent)
    assert out.returncode == 3, out.stdout + out.stderr
    assert f"NOT LOADABLE HERE {absent}" in out.stdout
    assert "no symbol 'no_such_symbol_here' in /bin/bash" in out.stdout
    assert "sys_enter_nosuchcall" in out.stdout


def test_syscall_enforcement_is_loadable_exactly_where_the_kernel_can_fail_a_syscall(tmp_path):
    """Override on a syscall hook and NotifyEnforcer need a fmod_ret program
    or a kprobe override on the syscall's function: `policy check` says
    loadable where the probe finds one (the guest), and names what is
    missing where it does not (this CI machine). The enforcement itself is
    tests/guest/test_enforcers_guest.py."""
    policy = tmp_path / "deny.yaml"
    policy.write_text(f"""apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: "deny"
spec:
  kprobes:
  - call: "sys_openat"
    syscall: true
    args:
    - index: 1
      type: string
    selectors:
    - matchArgs:
      - index: 1
        operator: "Prefix"
        values: ["{tmp_path}/denied/"]
      matchActions:
      - action: Override
        argError: -13
""")
    out = subprocess.run([sys.executable, "-m", "tetrad", "policy", "check", str(policy)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    if features.has_syscall_override().available:
        assert out.returncode == 0 and "loadable on this kernel" in out.stdout, out.stdout + out.stderr
    else:
        assert out.returncode == 3, out.stdout + out.stderr
        assert "Override needs making a syscall fail (fmod_ret, or a kprobe with " \
               "bpf_override_return), which this kernel lacks" in out.stdout
