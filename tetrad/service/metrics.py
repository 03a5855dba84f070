"""Prometheus metrics over HTTP (off unless server.metrics_address is set).

Series are named after Tetragon's so existing dashboards and alerts carry
over, plus tetrad's own (`tetrad_*`). prometheus_client writes the
exposition (the text format, or OpenMetrics when the scraper asks for it);
`SnapshotCollector` turns the snapshot the daemon's control thread last
published (at most a second old) into metric families at each scrape. So a
scrape never reads BPF maps, policy state or sink counters that other
threads are changing, and nothing is counted twice.

The HTTP server answers one request at a time on one thread, each
connection cut after REQUEST_TIMEOUT_S: a local client that holds a
connection open delays a scrape, but never costs the daemon a thread (the
unit allows 64 tasks). An address without a host (`:2112`) listens on
127.0.0.1 only.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from http.server import HTTPServer
from typing import Callable, Iterator

from prometheus_client.core import (CollectorRegistry, CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily, Metric)
from prometheus_client.exposition import MetricsHandler
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from tetrad import __version__

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
REQUEST_TIMEOUT_S = 5.0

SINK_COUNTS = ("rotations", "failed_rotations", "reopens", "dropped_backups", "written_lines",
               "lost_lines", "filtered", "rate_limited", "client_drops")
POLICY_ACTIONS = ("enforced", "monitored", "rate_limited", "dropped", "shed")


def parse_address(address: str) -> tuple[str, int]:
    """"HOST:PORT", "[V6]:PORT" or ":PORT" (127.0.0.1) as (host, port);
    ValueError naming the address when it is none of these."""
    host, sep, port = address.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    try:
        number = int(port)
        if not sep or not 0 < number < 65536:
            raise ValueError
        if host and ipaddress.ip_address(host).version != (6 if bracketed else 4):
            raise ValueError
    except ValueError:
        raise ValueError(f"metrics address {address!r}: expected HOST:PORT with an IP address "
                         "(e.g. 127.0.0.1:2112, [::1]:2112) or :PORT for 127.0.0.1") from None
    return host or DEFAULT_HOST, number


def _counter(name: str, help_: str, labels: tuple[str, ...], samples) -> CounterMetricFamily:
    family = CounterMetricFamily(name, help_, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def _gauge(name: str, help_: str, labels: tuple[str, ...], samples) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def _latency(histograms: dict[str, dict]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        "tetrad_event_latency_seconds",
        "Time from the kernel's timestamp of an event to its write by each sink.",
        labels=("sink",))
    for sink, h in sorted(histograms.items()):
        buckets, seen = [], 0
        for bound, count in zip(h["bounds_s"], h["counts"]):
            seen += count
            buckets.append((repr(float(bound)), seen))
        buckets.append(("+Inf", seen + h["counts"][-1]))
        family.add_metric((sink,), buckets, h["sum_s"])
    return family


def families(snapshot: dict) -> Iterator[Metric]:
    """The metric families of one published snapshot (tetrad/daemon.py
    `publish`): its "stats", "policies" and "latency"."""
    stats, policies = snapshot["stats"], snapshot["policies"]
    yield _gauge("tetragon_build_info", "Build information.", ("version",), [((__version__,), 1)])
    yield _counter("tetragon_events_total", "Events emitted, by type.", ("type",),
                   [((kind.upper(),), n) for kind, n in sorted(stats.get("events_by_type", {}).items())])
    yield _counter("tetragon_observer_ringbuf_events_received_total",
                   "Records read from the ring buffer.", (), [((), stats["records"])])
    yield _counter("tetragon_observer_ringbuf_events_lost_total",
                   "Records the kernel could not put in the ring buffer.", (),
                   [((), sum(stats["ringbuf_drops"].values()))])
    yield _counter("tetragon_bpf_missed_events_total", "Kernel send failures by program.", ("msg_op",),
                   [((op,), n) for op, n in sorted(stats["ringbuf_drops"].items())]
                   + [(("generic",), stats.get("policy_drops", 0))])
    yield _counter("tetrad_policy_records_shed_total",
                   "Policy records the kernel did not write because the reader was behind or every "
                   "sink queue was full (load shedding; enforcement is not affected).", (),
                   [((), stats.get("policy_shed", 0))])
    yield _counter("tetragon_observer_queue_events_lost_total",
                   "Events dropped because a sink's queue was full.", (), [((), stats["queue_drops"])])
    yield _counter("tetragon_errors_total",
                   "Records that failed to decode or handle (by op), policy records of hooks "
                   "unloaded since, reader failures, gaps in container scope, failed sink writes.",
                   ("type",),
                   [((f"record_{op}",), n) for op, n in sorted(stats["record_errors_by_type"].items())]
                   + [(("policy_record_unknown_hook",), stats["policy_records_unknown_hook"]),
                      (("reader",), stats["reader_failures"])]
                   + [((f"cgroup_scope_{k}",), n) for k, n in sorted(stats["cgroup_scope"].items())]
                   + [((f"sink_{name}",), n) for name, n in sorted(stats["sink_errors"].items())])
    yield _counter("tetrad_events_lost_total",
                   "Every kind of loss: ring buffer full, shed, sink queue full, sink lines lost and "
                   "write errors, records that failed, records of unloaded hooks, slow API clients.",
                   ("kind",), [((kind,), n) for kind, n in stats.get("losses", {}).items()])
    sinks = sorted(stats["sinks"].items())
    yield _counter("tetragon_events_exported_total", "Events written by each sink.", ("sink",),
                   [((name,), s["written"]) for name, s in sinks])
    yield _counter("tetrad_sink_counts_total",
                   "What each sink counts itself: file rotations and lost lines, events the export "
                   "filters kept out and the rate limit dropped, lines a slow API client missed.",
                   ("sink", "counter"),
                   [((name, key), n) for name, s in sinks for key, n in sorted(s.items())
                    if key in SINK_COUNTS])
    yield _latency(snapshot.get("latency", {}))
    containers = stats["containers"]
    yield _counter("tetrad_container_lookups_total",
                   "cgroup ids looked up for container identity, and how many were not found; "
                   "runtime API calls that failed.", ("result",),
                   [(("looked_up",), containers["lookups"]), (("unresolved",), containers["unresolved"]),
                    (("api_error",), containers["api_errors"])])
    yield _counter("tetrad_user_actions_total",
                   "GetUrl and DnsLookup actions: requested, done (answered), failed, dropped "
                   "(their queue was full).", ("result",),
                   [((k,), n) for k, n in sorted(stats.get("user_actions", {}).items())])
    yield _counter("tetrad_api_requests_total",
                   "Local API connections, and those refused (busy, not root), timed out, malformed "
                   "or failed.", ("result",), [((k,), n) for k, n in sorted(stats.get("api", {}).items())])
    cache = stats["process_cache"]
    yield _gauge("tetragon_process_cache_size", "Processes in the cache.", (), [((), cache["size"])])
    yield _gauge("tetragon_process_cache_capacity", "Process cache capacity.", (),
                 [((), cache["capacity"])])
    yield _counter("tetragon_process_cache_misses_total", "Events whose process was not cached.", (),
                   [((), cache["misses"])])
    yield _counter("tetragon_process_cache_evictions_total", "Processes evicted.", (),
                   [((), cache["evictions"])])
    states = {"enabled": 0, "disabled": 0, "error": 0}
    for p in policies:
        states[p["state"]] = states.get(p["state"], 0) + 1
    yield _gauge("tetragon_tracingpolicy_loaded", "Tracing policies by state.", ("state",),
                 [((s,), n) for s, n in sorted(states.items())])
    counted = [p for p in policies if "counters" in p]
    yield _counter("tetragon_policy_events_total", "Events posted by each policy.", ("policy",),
                   [((p["name"],), p["counters"]["posted"]) for p in counted])
    yield _counter("tetragon_tracingpolicy_selector_actions_total",
                   "Selector outcomes by policy: enforced, monitored, rate_limited, dropped, shed.",
                   ("policy", "action"),
                   [((p["name"], a), p["counters"][a]) for p in counted for a in POLICY_ACTIONS])
    yield _counter("tetrad_policy_user_memory_reads_total",
                   "Arguments in user memory a policy could not read at syscall entry, by policy: "
                   "calls decided at syscall exit instead (deferred), arguments unreadable even then "
                   "(unreadable; they match unless the policy says unreadable-args: no-match).",
                   ("policy", "outcome"),
                   [((p["name"], o), p["counters"][o]) for p in counted for o in ("deferred", "unreadable")])


class SnapshotCollector:
    """A prometheus_client collector over the daemon's published snapshot."""

    def __init__(self, snapshot: Callable[[], dict]):
        self._snapshot = snapshot

    def describe(self) -> list[Metric]:
        # Nothing to check for clashes at registration: the names are fixed
        # above, and a snapshot may not have been published yet.
        return []

    def collect(self) -> Iterator[Metric]:
        snapshot = self._snapshot()
        if snapshot.get("stats"):
            yield from families(snapshot)


def registry(snapshot: Callable[[], dict]) -> CollectorRegistry:
    """The daemon's series, and the process's own (CPU, memory, descriptors)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(snapshot))
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    return reg


class _Server(HTTPServer):
    """One request at a time (no thread per connection)."""

    def __init__(self, address: tuple[str, int], handler):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, handler)


class MetricsServer:
    def __init__(self, address: str, snapshot: Callable[[], dict]):
        self._address = parse_address(address)
        self._registry = registry(snapshot)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen and serve on a thread; OSError when the address is taken
        or cannot be bound."""
        handler = type("Handler", (MetricsHandler.factory(self._registry),),
                       {"timeout": REQUEST_TIMEOUT_S})
        self._server = _Server(self._address, handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,),
                                        name="tetrad-metrics", daemon=True)
        self._thread.start()
        log.info("metrics on http://%s/metrics", self.url_address)

    @property
    def url_address(self) -> str:
        host, port = self._server.server_address[:2] if self._server else self._address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
