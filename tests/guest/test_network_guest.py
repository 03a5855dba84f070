"""Network types and socket tracking on kprobes: the guest's distro kernel
(kprobes, kretprobes, BPF LSM). The tracepoint forms run everywhere:
tests/kernel/test_network.py.

- security_socket_connect(struct socket *, struct sockaddr *, int): a
  socket and a sockaddr in kernel memory;
- ip_output(net, sk, skb): an skb; dev_hard_start_xmit(skb, dev, ...): an
  skb and a net_device;
- socket tracking as Tetragon documents it: sk_alloc's returned sock
  tracked (returnArgAction: TrackSock), __sk_free untracking it, and
  tcp_set_state reporting the sock's owner when the call runs in another
  task (the client's sock going to CLOSE_WAIT in the server's context);
  a policy without tracking reports the server.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid

import pytest

from tests.kernel.daemon_harness import DaemonProcess
from tests.kernel.sockets import closed_by_server

pytestmark = pytest.mark.guest

PID = os.getpid()
RUN = uuid.uuid4().hex[:8]
PYTHON = os.path.realpath(sys.executable)
CLOSE_WAIT = 8


def doc(name: str, body: str) -> str:
    return (f'apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: "{name}-{RUN}"\n'
            f"spec:\n  kprobes:\n{body}")


def connect_policy(port: int) -> str:
    return doc("g-connect", f"""  - call: security_socket_connect
    syscall: false
    args:
    - index: 0
      type: socket
    - index: 1
      type: sockaddr
    - index: 2
      type: int
    selectors:
    - matchPIDs:
      - operator: In
        values: [{PID}]
      matchArgs:
      - index: 0
        operator: Protocol
        values: [IPPROTO_TCP]
      - index: 1
        operator: Family
        values: [AF_INET, AF_INET6]
      - index: 1
        operator: SAddr
        values: ["127.0.0.1"]
      - index: 1
        operator: SPort
        values: ["{port}"]
""")


def skb_policy(port: int) -> str:
    return doc("g-skb", f"""  - call: ip_output
    syscall: false
    args:
    - index: 2
      type: skb
    selectors:
    - matchArgs:
      - index: 2
        operator: Protocol
        values: [IPPROTO_UDP]
      - index: 2
        operator: DPort
        values: ["{port}"]
  - call: dev_hard_start_xmit
    syscall: false
    args:
    - index: 0
      type: skb
    - index: 1
      type: net_device
    selectors:
    - matchArgs:
      - index: 1
        operator: Equal
        values: [lo]
      - index: 0
        operator: DPort
        values: ["{port}"]
""")


def tracking_policy(name: str, port: int, track: bool) -> str:
    hooks = f"""  - call: sk_alloc
    syscall: false
    return: true
    args:
    - index: 1
      type: int
      label: family
    returnArg:
      index: 0
      type: sock
    returnArgAction: TrackSock
    selectors:
    - matchArgs:
      - index: 1
        operator: Equal
        values: ["2"]
      matchBinaries:
      - operator: In
        values: ["{PYTHON}"]
  - call: __sk_free
    syscall: false
    args:
    - index: 0
      type: sock
    selectors:
    - matchArgs:
      - index: 0
        operator: DPort
        values: ["{port}"]
      matchActions:
      - action: UntrackSock
        argSock: 0
""" if track else ""
    return doc(name, hooks + f"""  - call: tcp_set_state
    syscall: false
    args:
    - index: 0
      type: sock
    - index: 1
      type: int
      label: state
    selectors:
    - matchArgs:
      - index: 0
        operator: DPort
        values: ["{port}"]
      - index: 0
        operator: State
        values: [TCP_ESTABLISHED]
      - index: 1
        operator: Equal
        values: ["{CLOSE_WAIT}"]
""")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    work = tmp_path_factory.mktemp("guest-network")
    listener = socket.create_server(("127.0.0.1", 0))
    connect_port = socket.create_server(("127.0.0.1", 0))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        udp_port = probe.getsockname()[1]
    track_port = listener.getsockname()[1]
    texts = {"connect": connect_policy(connect_port.getsockname()[1]), "skb": skb_policy(udp_port),
             "track": tracking_policy("g-track", track_port, True),
             "notrack": tracking_policy("g-notrack", track_port, False)}
    paths = []
    for key, text in texts.items():
        path = work / f"{key}.yaml"
        path.write_text(text)
        paths.append(path)
    daemon = DaemonProcess(work, *[a for p in paths for a in ("--policy", str(p))])
    yield {"daemon": daemon, "listener": listener, "connect": connect_port, "udp": udp_port}
    if daemon.proc.poll() is None:
        daemon.stop()
    listener.close()
    connect_port.close()


def hits(events, policy: str) -> list[dict]:
    return [e["process_kprobe"] for e in events if "process_kprobe" in e
            and e["process_kprobe"]["policy_name"] == f"{policy}-{RUN}"]


def test_every_policy_loaded(setup):
    log = setup["daemon"].stderr_path.read_text()
    for name in ("g-connect", "g-skb", "g-track", "g-notrack"):
        assert f"policy {name}-{RUN} loaded" in log, log


def test_socket_and_kernel_sockaddr_of_security_socket_connect(setup):
    port = setup["connect"].getsockname()[1]
    with socket.create_server(("127.0.0.1", 0)) as other:
        for target in (port, other.getsockname()[1]):
            with socket.create_connection(("127.0.0.1", target), timeout=5):
                pass
    [hit] = hits(setup["daemon"].sync(), "g-connect")
    sock, address, length = hit["args"]
    assert sock["sock_arg"]["family"] == "AF_INET" and sock["sock_arg"]["protocol"] == "IPPROTO_TCP"
    assert sock["sock_arg"]["type"] == "SOCK_STREAM"
    assert address == {"sockaddr_arg": {"family": "AF_INET", "addr": "127.0.0.1", "port": port}}
    assert length == {"int_arg": 16}
    assert hit["function_name"] == "security_socket_connect"


def test_skb_and_net_device(setup):
    port = setup["udp"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"x" * 32, ("127.0.0.1", port))
        s.sendto(b"x" * 32, ("127.0.0.1", port + 1 if port < 65535 else port - 1))
    events = setup["daemon"].sync()
    out = [h for h in hits(events, "g-skb") if h["function_name"] == "ip_output"]
    assert [(h["args"][0]["skb_arg"]["dport"], h["args"][0]["skb_arg"]["protocol"],
             h["args"][0]["skb_arg"]["daddr"]) for h in out] == [(port, "IPPROTO_UDP", "127.0.0.1")]
    xmit = [h for h in hits(events, "g-skb") if h["function_name"] == "dev_hard_start_xmit"]
    assert [(h["args"][0]["skb_arg"]["dport"], h["args"][1]) for h in xmit] == \
        [(port, {"net_dev_arg": {"name": "lo"}})]


def test_sk_alloc_tracking_reports_the_owner(setup):
    client = closed_by_server(setup["listener"])     # its sock: CLOSE_WAIT in this process
    events = setup["daemon"].sync()
    [tracked] = [h for h in hits(events, "g-track") if h["function_name"] == "tcp_set_state"]
    [untracked] = hits(events, "g-notrack")
    assert tracked["process"]["pid"] == client
    assert untracked["process"]["pid"] == PID
    assert tracked["args"][1] == {"int_arg": CLOSE_WAIT, "label": "state"}
    # The client's sk_alloc: its returned sock, tracked.
    allocs = [h for h in hits(events, "g-track")
              if h["function_name"] == "sk_alloc" and h["process"]["pid"] == client]
    assert allocs and all(h["return"]["sock_arg"]["family"] == "AF_INET" for h in allocs)
    assert allocs[0]["args"][0] == {"int_arg": 2, "label": "family"}
