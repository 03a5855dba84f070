"""Selector actions the daemon performs itself: GetUrl and DnsLookup.

Owns the arrow "policy event -> remote interaction". Tetragon's GetUrl
(argUrl) requests a URL with GET and its DnsLookup (argFqdn) asks a DNS
server for the name's IPv4 addresses, when an event of a selector with the
action reaches user space: a way to trip a canary (Thinkst canarytokens and
the like) from a policy. Both are fire and forget: the answer is read and
dropped, only whether one came is counted.

The reader thread must never wait on a network, so `submit` only queues
the request (a bounded queue: a request that finds it full is dropped and
counted, as Tetragon would drop nothing but stall its event path instead);
one worker thread, started with the first request, does them in order, each
within `timeout` seconds:
  GetUrl     HTTP(S) GET with urllib, redirects not followed, the response
             closed unread
  DnsLookup  one query for the name's A records, over UDP, to `dns_server`
             (Tetragon asks 1.1.1.1:53; so does tetrad unless configured:
             [actions] dns_server), its answer awaited
The URLs and names come from root-owned policy files, checked when parsed
(tetrad/policy/schema.py: http/https URLs, domain names).
"""

from __future__ import annotations

import ipaddress
import logging
import queue
import secrets
import socket
import struct
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass

log = logging.getLogger(__name__)

QUEUE_SIZE = 256
DNS_ANSWER_MAX = 512            # a plain DNS/UDP message (RFC 1035)


@dataclass(frozen=True)
class UserAction:
    kind: str                   # GetUrl or DnsLookup
    target: str                 # the URL or the domain name


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None             # the 3xx answer is the answer


def dns_query(name: str, query_id: int) -> bytes:
    """An RFC 1035 query for the A records of `name`, recursion desired."""
    labels = [part.encode("ascii") for part in name.rstrip(".").split(".")]
    qname = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
    return struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)


def parse_server(text: str) -> tuple[str, int]:
    """"ADDRESS:PORT" or "[IPv6]:PORT" (port 53 when left out) -> (address,
    port); ValueError naming what is wrong. An IP address: finding the DNS
    server by name would need DNS."""
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r} is not ADDRESS:PORT")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not ADDRESS:PORT (a port 1..65535)")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r} is not ADDRESS:PORT (an IP address)") from None
    return host, int(port)


class UserActions:
    """The worker and its queue; `counters` for `tetra status`."""

    def __init__(self, dns_server: str = "1.1.1.1:53", timeout: float = 5.0,
                 queue_size: int = QUEUE_SIZE):
        self._dns = parse_server(dns_server)
        self._timeout = timeout
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._warned: set[str] = set()
        # requested: queued; done: answered; failed: no answer (error,
        # timeout); dropped: the queue was full.
        self.counters = {"requested": 0, "done": 0, "failed": 0, "dropped": 0}

    def submit(self, actions: tuple[UserAction, ...]) -> None:
        """Queue the actions of one event (reader thread: never blocks)."""
        for action in actions:
            try:
                self._queue.put_nowait(action)
            except queue.Full:
                self.counters["dropped"] += 1
                continue
            self.counters["requested"] += 1
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="user-actions", daemon=True)
                    self._thread.start()

    def close(self, wait: float = 1.0) -> None:
        """Stop the worker after what it is doing (requests still queued are
        dropped with the daemon)."""
        if self._thread is None:
            return
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)
        self._thread.join(wait)

    # ---- the worker ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            action = self._queue.get()
            if action is None:
                return
            try:
                if action.kind == "GetUrl":
                    self._get(action.target)
                else:
                    self._lookup(action.target)
            except (OSError, ValueError, urllib.error.URLError) as err:
                self.counters["failed"] += 1
                if action.kind not in self._warned:     # once per kind, then counted
                    self._warned.add(action.kind)
                    log.warning("%s %s failed: %s (further failures are only counted)",
                                action.kind, action.target, err)
            except Exception:
                # A bug must not end the worker (and with it every action).
                self.counters["failed"] += 1
                log.exception("%s %s failed unexpectedly", action.kind, action.target)
            else:
                self.counters["done"] += 1

    def _get(self, url: str) -> None:
        try:
            with self._opener.open(urllib.request.Request(url, method="GET"), timeout=self._timeout):
                pass
        except urllib.error.HTTPError as err:
            err.close()             # an answer all the same (4xx, 5xx, a redirect)

    def _lookup(self, name: str) -> None:
        host, port = self._dns
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        query_id = secrets.randbits(16)
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(self._timeout)
            s.connect((host, port))
            s.send(dns_query(name, query_id))
            while True:             # until our answer, or the timeout
                answer = s.recv(DNS_ANSWER_MAX)
                if len(answer) >= 2 and struct.unpack_from("!H", answer)[0] == query_id:
                    return
