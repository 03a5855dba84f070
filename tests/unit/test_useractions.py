"""GetUrl and DnsLookup as the daemon does them (tetrad/useractions.py):
against an HTTP server and a DNS responder on 127.0.0.1 that each test
starts; the reader thread never waits; failures and a full queue are
counted."""

import socket
import time

import pytest

from tetrad import config as cfg
from tetrad.useractions import UserAction, UserActions, dns_query, parse_server
from tests import loopback_servers


def wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def http_server():
    with loopback_servers.http_server() as server:
        yield server


@pytest.fixture
def dns_server():
    with loopback_servers.dns_responder() as server:
        yield server


def test_a_dns_query_is_rfc_1035():
    q = dns_query("Canary.example.org.", 0x1234)
    assert q == (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
                 b"\x06Canary\x07example\x03org\x00\x00\x01\x00\x01")


@pytest.mark.parametrize("text,expected", [("1.1.1.1:53", ("1.1.1.1", 53)), ("127.0.0.1", ("127.0.0.1", 53)),
                                           ("[::1]:5353", ("::1", 5353)), ("[::1]", ("::1", 53))])
def test_server_addresses(text, expected):
    assert parse_server(text) == expected


@pytest.mark.parametrize("text", ["", "1.1.1.1:0", "1.1.1.1:x", "1.1.1.1:70000", "[::1]x", "dns.example:53"])
def test_bad_server_addresses(text):
    with pytest.raises(ValueError):
        parse_server(text)


def test_geturl_and_dnslookup_reach_their_servers(http_server, dns_server):
    http_port, paths = http_server
    dns_port, names = dns_server
    actions = UserActions(f"127.0.0.1:{dns_port}", timeout=5)
    actions.submit((UserAction("GetUrl", f"http://127.0.0.1:{http_port}/trip?x=1"),
                    UserAction("DnsLookup", "canary.example.org"),
                    UserAction("GetUrl", f"http://127.0.0.1:{http_port}/moved"),
                    UserAction("GetUrl", f"http://127.0.0.1:{http_port}/missing")))
    assert wait(lambda: actions.counters["done"] == 4), actions.counters
    actions.close()
    # A redirect is an answer, not followed; a 404 is an answer too.
    assert paths == ["/trip?x=1", "/moved", "/missing"]
    assert names == [("canary.example.org", 1, 1)]            # A, IN
    assert actions.counters == {"requested": 4, "done": 4, "failed": 0, "dropped": 0}


def test_failures_are_counted_and_logged_once(caplog):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()                      # nothing listens there
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))       # bound, never answers
    actions = UserActions(f"127.0.0.1:{silent.getsockname()[1]}", timeout=0.2)
    actions.submit((UserAction("GetUrl", f"http://127.0.0.1:{port}/"),) * 2
                   + (UserAction("DnsLookup", "a.example"),))
    assert wait(lambda: actions.counters["failed"] == 3), actions.counters
    actions.close()
    silent.close()
    assert actions.counters["done"] == 0
    assert [r.message.split(" failed")[0] for r in caplog.records] == \
        [f"GetUrl http://127.0.0.1:{port}/", "DnsLookup a.example"]


def test_submit_never_waits_and_counts_what_does_not_fit():
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    actions = UserActions(f"127.0.0.1:{silent.getsockname()[1]}", timeout=2, queue_size=4)
    started = time.monotonic()
    actions.submit((UserAction("DnsLookup", "slow.example"),) * 20)
    assert time.monotonic() - started < 0.5
    # The worker holds one, the queue four: the rest are dropped.
    assert actions.counters["dropped"] >= 15
    assert actions.counters["requested"] + actions.counters["dropped"] == 20
    actions.close(wait=0.1)
    silent.close()


def test_the_dns_server_and_timeout_are_config_keys(tmp_path):
    base = tmp_path / "tetrad.toml"
    base.write_text('[actions]\ndns_server = "127.0.0.1:5353"\ntimeout = "2s"\n')
    got = cfg.load([base])
    assert (got.actions.dns_server, got.actions.timeout) == ("127.0.0.1:5353", "2s")
    base.write_text('[actions]\ndns_server = "127.0.0.1:0"\n')
    with pytest.raises(cfg.ConfigError, match="actions.dns_server"):
        cfg.load([base])
    base.write_text('[actions]\ntimeout = "soon"\n')
    with pytest.raises(cfg.ConfigError, match="actions.timeout"):
        cfg.load([base])
