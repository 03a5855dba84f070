"""Network argument types, operators and actions on the real kernel,
through the real `tetrad run`, with loopback traffic the tests make.

Kprobes do not exist on every kernel, so these hook tracepoints that carry
kernel pointers (the kprobe forms are tests/guest/test_network_guest.py):
  sock:inet_sock_set_state  a struct sock (its skaddr field): connects to
                            listeners of ours
  net:net_dev_queue         a struct sk_buff (skbaddr): UDP datagrams of ours
                            leaving on lo
and syscalls:
  connect                   a struct sockaddr_un in user memory
  lseek                     the trigger of GetUrl and DnsLookup, whose HTTP
                            server and DNS responder listen on 127.0.0.1
Each operator is checked by calls of which exactly the ones it names are
reported. Socket tracking: a client connects and sleeps; the test (the
server) closes its end, and the client's sock goes to CLOSE_WAIT in the
test's own context (loopback delivers in the sender's softirq): reported
as the test's process, unless a TrackSock of the same policy recorded the
client as the sock's owner.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import socket
import subprocess
import sys
import uuid

import pytest
from bcc.libbcc import lib

from tetrad.abi import generic as enc
from tetrad.policy.kernel import tracepoint_fields
from tetrad.sensors.generic import SOCKTRACK_ENTRIES
from tests import loopback_servers
from tests.kernel.daemon_harness import REPO, DaemonProcess, wait_for
from tests.kernel.sockets import closed_by_server

pytestmark = pytest.mark.kernel

PID = os.getpid()
RUN = uuid.uuid4().hex[:8]
W_URL, W_DNS, W_NONE, W_ORDER = 6161, 6162, 6163, 6164     # lseek whence values: unique triggers
SYN_SENT, ESTABLISHED, CLOSE_WAIT = 2, 1, 8
EXAMPLES = REPO / "etc" / "examples"
SHIPPED = ("tcp-established.yaml", "dns-egress.yaml", "canary-file.yaml")


def field_index(subsys: str, event: str, name: str) -> int:
    """A tracepoint field's index as Tetragon counts it (common fields
    included), from this kernel's format: layouts differ between kernels."""
    return next(i for i, f in enumerate(tracepoint_fields(subsys, event)) if f.name == name)


SK = field_index("sock", "inet_sock_set_state", "skaddr")
NEWSTATE = field_index("sock", "inet_sock_set_state", "newstate")
SKB = field_index("net", "net_dev_queue", "skbaddr")


def doc(name: str, body: str) -> str:
    return (f'apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: "{name}"\n'
            f"spec:\n{body}")


def set_state(selectors: str) -> str:
    return f"""  tracepoints:
  - subsystem: sock
    event: inet_sock_set_state
    args:
    - index: {SK}
      type: sock
    - index: {NEWSTATE}
      type: int
    selectors:
{selectors}"""


def on_sock(*tests: tuple[str, str], state: int | None = None, action: str = "") -> str:
    """A selector: the sock argument's tests (operator, values) ANDed, with
    the new state's (an int) and one action (with argSock 0)."""
    out = "    - matchArgs:\n"
    for op, values in tests:
        out += f"      - index: {SK}\n        operator: {op}\n" + (f"        values: {values}\n" if values else "")
    if state is not None:
        out += f"      - index: {NEWSTATE}\n        operator: Equal\n        values: [\"{state}\"]\n"
    if action:
        out += f"      matchActions:\n      - action: {action}\n        argSock: 0\n"
    return out


def net_dev_queue(*tests: tuple[str, str]) -> str:
    """net:net_dev_queue with its skb's tests (operator, values), ANDed."""
    body = f"""  tracepoints:
  - subsystem: net
    event: net_dev_queue
    args:
    - index: {SKB}
      type: skb
    selectors:
    - matchArgs:
"""
    for op, values in tests:
        body += f"      - index: {SKB}\n        operator: {op}\n        values: {values}\n"
    return body


def free_port(family=socket.AF_INET, kind=socket.SOCK_STREAM, low=None) -> int:
    """A port nobody uses now (`low`: one below 1024, for a privileged one)."""
    for _ in range(200):
        port = random.randint(600, 1000) if low else 0
        with socket.socket(family, kind) as s:
            try:
                s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise AssertionError("no free port")


class Listener:
    """A TCP listener of ours on `addr`: its port, connections accepted."""

    def __init__(self, addr: str = "127.0.0.1", family=socket.AF_INET, port: int = 0):
        self.sock = socket.create_server((addr, port), family=family, backlog=16,
                                         dualstack_ipv6=family == socket.AF_INET6)
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def servers():
    """The HTTP server and DNS responder GetUrl and DnsLookup reach."""
    with loopback_servers.http_server() as (http_port, paths), \
            loopback_servers.dns_responder() as (dns_port, questions):
        yield {"http": http_port, "dns": dns_port, "paths": paths, "questions": questions}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, servers):
    work = tmp_path_factory.mktemp("network")
    os.chmod(work, 0o755)
    listeners = {k: Listener() for k in ("a", "b", "priv", "track")}
    listeners["any"] = Listener("0.0.0.0")
    listeners["six"] = Listener("::", socket.AF_INET6)      # v4 and v6
    listeners["privd"] = Listener("0.0.0.0", port=free_port(low=True))
    udp = {"x": free_port(kind=socket.SOCK_DGRAM), "y": free_port(kind=socket.SOCK_DGRAM)}
    unix_dir = work / "unix"
    unix_dir.mkdir()
    ports = {k: v.port for k, v in listeners.items()}
    a, any_, priv, six, track = ports["a"], ports["any"], ports["priv"], ports["six"], ports["track"]
    syn_sent = ("State", "[TCP_SYN_SENT]")
    to_track = ("DPort", f'["{track}"]')
    policies = {
        "t-sock": set_state(on_sock(("DPort", f'["{a}"]'), syn_sent)),
        "t-daddr": set_state(on_sock(("DAddr", '["127.0.0.2/32"]'), ("DPort", f'["{any_}"]'), syn_sent)),
        "t-notdaddr": set_state(on_sock(("NotDAddr", '["127.0.0.2/32"]'), ("DPort", f'["{any_}"]'), syn_sent)),
        "t-sportpriv": set_state(on_sock(("SPortPriv", ""), ("DPort", f'["{priv}"]'), syn_sent)),
        "t-notsportpriv": set_state(on_sock(("NotSPortPriv", ""), ("DPort", f'["{priv}"]'), syn_sent)),
        "t-dportpriv": set_state(on_sock(("DPortPriv", ""), ("DAddr", '["127.0.0.3"]'), syn_sent)),
        "t-notdportpriv": set_state(on_sock(("NotDPortPriv", ""), ("DAddr", '["127.0.0.3"]'), syn_sent)),
        "t-six": set_state(on_sock(("Family", "[AF_INET6]"), ("SAddr", '["::1/128"]'),
                                   ("Protocol", '[IPPROTO_UDP, "6:6"]'), ("DPort", f'["{six}"]'), syn_sent)),
        "t-four": set_state(on_sock(("Family", '["2"]'), ("NotSPort", f'["{six}"]'), ("DPort", f'["{six}"]'),
                                    syn_sent)),
        # Tracking: one policy tracks the client's sock at its connect
        # (CLOSE -> SYN_SENT, in the client), one tracks and untracks it
        # (SYN_SENT -> ESTABLISHED), one does neither; all report it going
        # to CLOSE_WAIT, which the test's close of its end makes.
        "t-track": set_state(on_sock(to_track, state=SYN_SENT, action="TrackSock")
                             + on_sock(to_track, state=CLOSE_WAIT)),
        "t-untrack": set_state(on_sock(to_track, state=SYN_SENT, action="TrackSock")
                               + on_sock(to_track, state=ESTABLISHED, action="UntrackSock")
                               + on_sock(to_track, state=CLOSE_WAIT)),
        "t-notrack": set_state(on_sock(to_track, state=CLOSE_WAIT)),
        "t-skb": net_dev_queue(("Protocol", "[IPPROTO_UDP]"), ("DPort", f'["{udp["x"]}"]')),
        "t-skb6": net_dev_queue(("DAddr", '["::1/128"]'), ("Family", "[AF_INET6]"),
                                ("DPort", f'["{udp["y"]}"]')),
        "t-unix": f"""  kprobes:
  - call: sys_connect
    syscall: true
    args:
    - index: 1
      type: sockaddr_un
    selectors:
    - matchPIDs:
      - operator: In
        values: [{PID}]
      matchArgs:
      - index: 1
        operator: Prefix
        values: ["{unix_dir}/"]
      - index: 1
        operator: Family
        values: [AF_UNIX]
    - matchPIDs:
      - operator: In
        values: [{PID}]
      matchArgs:
      - index: 1
        operator: Prefix
        values: ["tetrad-abs-{RUN}"]
""",
        "t-canary": f"""  kprobes:
  - call: sys_lseek
    syscall: true
    args:
    - index: 2
      type: int
    selectors:
    - matchArgs:
      - index: 2
        operator: Equal
        values: ["{W_URL}"]
      matchActions:
      - action: GetUrl
        argUrl: "http://127.0.0.1:{servers['http']}/canary-{RUN}?hit=1"
    - matchArgs:
      - index: 2
        operator: Equal
        values: ["{W_DNS}"]
      matchActions:
      - action: DnsLookup
        argFqdn: "{RUN}.canary.test"
""",
        # An enforcing action is the event's action before the others; in
        # monitor mode nothing is killed, the GET is made all the same.
        "t-order": f"""  options:
  - name: policy-mode
    value: monitor
  kprobes:
  - call: sys_lseek
    syscall: true
    args:
    - index: 2
      type: int
    selectors:
    - matchArgs:
      - index: 2
        operator: Equal
        values: ["{W_ORDER}"]
      matchActions:
      - action: Sigkill
      - action: GetUrl
        argUrl: "http://127.0.0.1:{servers['http']}/order-{RUN}"
""",
    }
    paths = []
    for name, body in policies.items():
        path = work / f"{name}.yaml"
        path.write_text(doc(f"{name}-{RUN}", body))
        paths.append(path)
    (work / "tetrad.toml").write_text(f'[actions]\ndns_server = "127.0.0.1:{servers["dns"]}"\n')
    # The shipped examples for these features that load without kprobes, at once with the rest.
    paths += [EXAMPLES / name for name in SHIPPED]
    daemon = DaemonProcess(work, *[a for p in paths for a in ("--policy", str(p))])
    yield {"daemon": daemon, "ports": ports, "udp": udp, "unix_dir": unix_dir, "work": work,
           "listeners": listeners}
    if daemon.proc.poll() is None:
        daemon.stop()
    for listener in listeners.values():
        listener.close()


def hits(events, policy: str, kind: str = "process_tracepoint") -> list[dict]:
    return [e[kind] for e in events if kind in e and e[kind]["policy_name"] == f"{policy}-{RUN}"]


def connect(addr: str, port: int, family=socket.AF_INET, source_port: int = 0) -> int:
    """Connects and closes; the local port."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        if source_port:
            s.bind(("127.0.0.1", source_port))
        s.connect((addr, port))
        return s.getsockname()[1]


def test_every_policy_loaded(setup):
    log = setup["daemon"].stderr_path.read_text()
    for name in ("t-sock", "t-skb", "t-unix", "t-canary", "t-track"):
        assert f"policy {name}-{RUN} loaded" in log, log
    for name in SHIPPED:
        assert f"policy {name.removesuffix('.yaml')} loaded" in log, log


def test_a_sock_argument_and_its_state(setup):
    ports = setup["ports"]
    sport = connect("127.0.0.1", ports["a"])
    connect("127.0.0.1", ports["b"])                       # another port: not reported
    [hit] = hits(setup["daemon"].sync(), "t-sock")
    sock, state = hit["args"]
    cookie = sock["sock_arg"].pop("cookie")
    assert int(cookie) > 0
    assert sock == {"sock_arg": {"family": "AF_INET", "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP",
                                 "saddr": "127.0.0.1", "daddr": "127.0.0.1", "sport": sport,
                                 "dport": ports["a"], "state": "TCP_SYN_SENT"}}
    assert state == {"int_arg": ESTABLISHED}
    assert hit["process"]["pid"] == PID and hit["subsys"] == "sock"


def test_daddr_and_notdaddr(setup):
    port = setup["ports"]["any"]
    connect("127.0.0.1", port)
    connect("127.0.0.2", port)
    events = setup["daemon"].sync()
    assert [h["args"][0]["sock_arg"]["daddr"] for h in hits(events, "t-daddr")] == ["127.0.0.2"]
    assert [h["args"][0]["sock_arg"]["daddr"] for h in hits(events, "t-notdaddr")] == ["127.0.0.1"]


def test_privileged_source_ports(setup):
    port = setup["ports"]["priv"]
    privileged = connect("127.0.0.1", port, source_port=free_port(low=True))
    ephemeral = connect("127.0.0.1", port)
    assert privileged < 1024 <= ephemeral
    events = setup["daemon"].sync()
    assert [h["args"][0]["sock_arg"]["sport"] for h in hits(events, "t-sportpriv")] == [privileged]
    assert [h["args"][0]["sock_arg"]["sport"] for h in hits(events, "t-notsportpriv")] == [ephemeral]


def test_privileged_destination_ports(setup):
    privileged, unprivileged = setup["ports"]["privd"], setup["ports"]["any"]
    connect("127.0.0.3", privileged)
    connect("127.0.0.3", unprivileged)
    events = setup["daemon"].sync()
    assert privileged < 1024 <= unprivileged
    assert [h["args"][0]["sock_arg"]["dport"] for h in hits(events, "t-dportpriv")] == [privileged]
    assert [h["args"][0]["sock_arg"]["dport"] for h in hits(events, "t-notdportpriv")] == [unprivileged]


def test_family_source_address_and_a_protocol_range(setup):
    port = setup["ports"]["six"]
    connect("::1", port, socket.AF_INET6)
    connect("127.0.0.1", port)
    events = setup["daemon"].sync()
    six = hits(events, "t-six")
    assert [(h["args"][0]["sock_arg"]["family"], h["args"][0]["sock_arg"]["saddr"]) for h in six] == \
        [("AF_INET6", "::1")]
    assert [h["args"][0]["sock_arg"]["family"] for h in hits(events, "t-four")] == ["AF_INET"]


def test_skb_of_udp_datagrams(setup):
    x, y = setup["udp"]["x"], setup["udp"]["y"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s4, \
            socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s6:
        s4.bind(("127.0.0.1", 0))
        s4.sendto(b"x" * 100, ("127.0.0.1", x))
        s4.sendto(b"y" * 10, ("127.0.0.1", y))              # IPv4 to y: neither policy
        s6.sendto(b"z" * 20, ("::1", y))
        sport = s4.getsockname()[1]
    events = setup["daemon"].sync()
    [four] = hits(events, "t-skb")
    skb = four["args"][0]["skb_arg"]
    for volatile in ("hash", "priority", "mark"):
        skb.pop(volatile, None)
    # 100 bytes, UDP (8), IPv4 (20), Ethernet header (14: lo's)
    assert skb == {"len": 142, "saddr": "127.0.0.1", "daddr": "127.0.0.1", "sport": sport, "dport": x,
                   "proto": 17, "protocol": "IPPROTO_UDP", "family": "AF_INET"}
    [six] = hits(events, "t-skb6")
    assert (six["args"][0]["skb_arg"]["daddr"], six["args"][0]["skb_arg"]["dport"],
            six["args"][0]["skb_arg"]["len"]) == ("::1", y, 20 + 8 + 40 + 14)


def connect_abstract_with_junk_after(name: str) -> None:
    """connect(2) to an abstract unix name whose buffer goes on past the
    length given: the name is the length's bytes, not up to a NUL."""
    libc = ctypes.CDLL(None, use_errno=True)
    path = name.encode()
    buf = ctypes.create_string_buffer(b"\x01\x00" + path + b"JUNK" * 8, 110)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        if libc.connect(c.fileno(), buf, 2 + len(path)) != 0:
            raise OSError(ctypes.get_errno(), "connect to the abstract name")


def test_sockaddr_un_in_user_memory(setup):
    unix_dir = setup["unix_dir"]
    inside, outside = unix_dir / "in.sock", setup["work"] / f"out-{RUN}.sock"
    abstract = f"\0tetrad-abs-{RUN}"
    servers = []
    for address in (str(inside), str(outside), abstract):
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(address)
        server.listen()
        servers.append(server)
    try:
        for address in (str(inside), str(outside)):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                c.connect(address)
        connect_abstract_with_junk_after(abstract)
    finally:
        for server in servers:
            server.close()
        outside.unlink()
    got = [h["args"][0] for h in hits(setup["daemon"].sync(), "t-unix", "process_kprobe")]
    assert got == [{"sockaddrun_arg": {"family": "AF_UNIX", "path": str(inside)}},
                   {"sockaddrun_arg": {"family": "AF_UNIX", "path": f"@tetrad-abs-{RUN}"}}]


def test_socket_tracking_reports_the_owner_of_a_sock(setup):
    """The client's sock goes to CLOSE_WAIT in the test's context: the
    policy that tracked it reports the client; the one that untracked it
    and the one that never tracked it, the test (each policy's tracking
    is its own)."""
    client = closed_by_server(setup["listeners"]["track"].sock, timeout=10)
    events = setup["daemon"].sync()

    def reported(policy: str) -> list[tuple[int, int, str]]:
        # The listener's port is this test's alone (its sport is 0 at the
        # CLOSE -> SYN_SENT change: the port is bound after it).
        return [(h["process"]["pid"], h["args"][1]["int_arg"], h.get("action", ""))
                for h in hits(events, policy)]
    assert reported("t-track") == [(client, SYN_SENT, "KPROBE_ACTION_TRACKSOCK"),
                                   (client, CLOSE_WAIT, "KPROBE_ACTION_POST")]
    assert reported("t-untrack") == [(client, SYN_SENT, "KPROBE_ACTION_TRACKSOCK"),
                                     (client, ESTABLISHED, "KPROBE_ACTION_UNTRACKSOCK"),
                                     (PID, CLOSE_WAIT, "KPROBE_ACTION_POST")]
    assert reported("t-notrack") == [(PID, CLOSE_WAIT, "KPROBE_ACTION_POST")]
    [tracked] = [h for h in hits(events, "t-track") if h["args"][1]["int_arg"] == CLOSE_WAIT]
    assert tracked["process"]["binary"] == os.path.realpath(sys.executable)


def test_geturl_and_dnslookup_reach_servers_on_loopback(setup, servers):
    for whence in (W_URL, W_DNS, W_NONE):
        try:
            os.lseek(-1, 0, whence)
        except OSError:
            pass
    events = setup["daemon"].sync()
    assert sorted(h.get("action") for h in hits(events, "t-canary", "process_kprobe")) == \
        ["KPROBE_ACTION_DNSLOOKUP", "KPROBE_ACTION_GETURL"]
    wait_for(lambda: servers["paths"] and servers["questions"], 15, "the GET and the DNS query",
             context=lambda: str(setup["daemon"].policy_counters(f"t-canary-{RUN}")))
    assert servers["paths"][:1] == [f"/canary-{RUN}?hit=1"]
    assert servers["questions"] == [(f"{RUN}.canary.test", 1, 1)]
    stats = wait_for(lambda: (s := status(setup["daemon"]))["user_actions"]["done"] >= 2 and s, 10,
                     "both counted done")
    assert stats["user_actions"]["failed"] == stats["user_actions"]["dropped"] == 0


def test_an_enforcing_action_is_the_events_action_and_the_others_still_run(setup, servers):
    try:
        os.lseek(-1, 0, W_ORDER)        # monitor mode: not killed
    except OSError:
        pass
    [hit] = hits(setup["daemon"].sync(), "t-order", "process_kprobe")
    assert hit["action"] == "KPROBE_ACTION_SIGKILL"
    wait_for(lambda: f"/order-{RUN}" in servers["paths"], 15, "the GET of the monitored selector")


def status(daemon) -> dict:
    out = subprocess.run([sys.executable, "-m", "tetrad.cli.tetra", "--socket", str(daemon.socket),
                          "status", "-o", "json"], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)["stats"]


def socktrack_entries(daemon) -> list[tuple[int, int]]:
    """(scope, sock) of every entry of the daemon's socktrack map (an LRU
    hash of SockKey -> SockOwner, found among its descriptors)."""
    shape = {"map_type": "9", "key_size": str(ctypes.sizeof(enc.SockKey)),
             "value_size": str(ctypes.sizeof(enc.SockOwner)), "max_entries": str(SOCKTRACK_ENTRIES)}
    ids = []
    for fd in os.listdir(f"/proc/{daemon.proc.pid}/fdinfo"):
        try:
            info = dict(line.split(":\t", 1) for line in
                        open(f"/proc/{daemon.proc.pid}/fdinfo/{fd}").read().splitlines() if ":\t" in line)
        except OSError:
            continue
        if all(info.get(k, "").strip() == v for k, v in shape.items()):
            ids.append(int(info["map_id"]))
    [map_id] = set(ids)
    fd = lib.bpf_map_get_fd_by_id(map_id)
    assert fd >= 0
    try:
        size = ctypes.sizeof(enc.SockKey)
        key, after, out, first = ctypes.create_string_buffer(size), ctypes.create_string_buffer(size), [], True
        while lib.bpf_get_next_key(fd, None if first else key, after) == 0:
            k = enc.SockKey.from_buffer_copy(after.raw)
            out.append((k.scope, k.sk))
            ctypes.memmove(key, after, size)
            first = False
        return out
    finally:
        os.close(fd)


def test_a_policy_that_unloads_leaves_nothing_tracked(setup):
    """t-track never untracks the client's sock: its entry stays until the
    policy is unloaded (disabled here), then every entry of its scope goes
    with it (the next policy given the scope must not inherit owners)."""
    daemon = setup["daemon"]
    tracked = socktrack_entries(daemon)
    assert tracked, "t-track's entry (test_socket_tracking_reports_the_owner_of_a_sock ran first)"
    subprocess.run([sys.executable, "-m", "tetrad.cli.tetra", "--socket", str(daemon.socket),
                    "policy", "disable", f"t-track-{RUN}"], check=True, capture_output=True, timeout=60)
    assert socktrack_entries(daemon) == []
