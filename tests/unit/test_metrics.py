"""Metrics from a published snapshot (tetrad/service/metrics.py): Tetragon's
series names with the snapshot's values, a latency histogram, an exposition
that `promtool check metrics` accepts, and an HTTP server that a client
holding connections open cannot make spawn threads."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import urllib.request

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tetrad.service import metrics
from tetrad.sinks.dispatch import LATENCY_BUCKETS_S


def snapshot() -> dict:
    counters = {"posted": 7, "enforced": 2, "monitored": 0, "rate_limited": 1, "dropped": 0,
                "shed": 3, "deferred": 4, "unreadable": 5}
    return {
        "policies": [{"name": "files", "state": "enabled", "counters": counters},
                     {"name": "broken", "state": "error", "error": "bad"}],
        "stats": {
            "records": 100, "record_errors_by_type": {"exec": 1}, "reader_failures": 0,
            "api": {"connections": 3, "timeouts": 1},
            "policy_records_unknown_hook": 2, "ringbuf_drops": {"exec": 4, "exit": 1},
            "policy_drops": 6, "policy_shed": 3, "queue_drops": 8,
            "events_by_type": {"process_exec": 40, "process_kprobe": 7},
            "sink_errors": {"jsonfile": 0}, "cgroup_scope": {"untracked": 0, "map_full": 1},
            "sinks": {"jsonfile": {"written": 47, "dropped": 0, "errors": 0, "rotations": 2,
                                   "lost_lines": 0, "backlog": 0}},
            "process_cache": {"size": 10, "capacity": 64, "misses": 1, "evictions": 0},
            "containers": {"lookups": 5, "unresolved": 1, "api_errors": 0},
            "user_actions": {"requested": 3, "done": 2, "failed": 1, "dropped": 0},
            "losses": {"ringbuf_full": 11, "shed": 3, "queue_full": 8},
        },
        "latency": {"jsonfile": {"bounds_s": list(LATENCY_BUCKETS_S),
                                 "counts": [0, 5, 40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                                 "sum_s": 1.25}},
    }


def exposition(snap=None) -> str:
    snap = snap or snapshot()
    return generate_latest(metrics.registry(lambda: snap)).decode()


def samples(text: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_series_carry_tetragon_names_and_the_snapshot_values():
    got = samples(exposition())
    assert got[("tetragon_events_total", (("type", "PROCESS_EXEC"),))] == 40
    assert got[("tetragon_policy_events_total", (("policy", "files"),))] == 7
    assert got[("tetragon_tracingpolicy_loaded", (("state", "error"),))] == 1
    assert got[("tetragon_tracingpolicy_loaded", (("state", "enabled"),))] == 1
    assert got[("tetragon_tracingpolicy_selector_actions_total",
                (("action", "shed"), ("policy", "files")))] == 3
    assert got[("tetragon_bpf_missed_events_total", (("msg_op", "generic"),))] == 6
    assert got[("tetragon_observer_ringbuf_events_lost_total", ())] == 5
    assert got[("tetrad_events_lost_total", (("kind", "ringbuf_full"),))] == 11
    assert got[("tetrad_sink_counts_total", (("counter", "rotations"), ("sink", "jsonfile")))] == 2
    assert got[("tetrad_policy_user_memory_reads_total",
                (("outcome", "unreadable"), ("policy", "files")))] == 5
    assert got[("tetrad_user_actions_total", (("result", "failed"),))] == 1
    assert got[("tetragon_build_info", (("version", metrics.__version__),))] == 1
    assert got[("process_open_fds", ())] > 0            # the process's own series too


def test_latency_histogram_is_cumulative_with_sum_and_count():
    got = samples(exposition())
    bucket = {dict(labels)["le"]: v for (name, labels), v in got.items()
              if name == "tetrad_event_latency_seconds_bucket"}
    assert bucket["0.005"] == 0 and bucket["0.01"] == 5 and bucket["0.025"] == 45
    assert bucket["30.0"] == 45 and bucket["+Inf"] == 47
    assert got[("tetrad_event_latency_seconds_count", (("sink", "jsonfile"),))] == 47
    assert got[("tetrad_event_latency_seconds_sum", (("sink", "jsonfile"),))] == 1.25


def test_promtool_finds_nothing_to_complain_about():
    out = subprocess.run(["promtool", "check", "metrics"], input=exposition(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and out.stdout + out.stderr == "", out.stdout + out.stderr


def test_nothing_before_the_first_snapshot():
    text = generate_latest(metrics.registry(lambda: {"policies": [], "stats": {}})).decode()
    assert "tetragon_" not in text and "process_open_fds" in text


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1:2112", ("127.0.0.1", 2112)),
    (":2112", ("127.0.0.1", 2112)),
    ("0.0.0.0:9000", ("0.0.0.0", 9000)),
    ("[::1]:2112", ("::1", 2112)),
])
def test_addresses(address, expected):
    assert metrics.parse_address(address) == expected


@pytest.mark.parametrize("address", ["2112", "localhost:2112", "127.0.0.1:", "127.0.0.1:99999",
                                     "127.0.0.1:0", "::1:2112", "[::1]:x"])
def test_bad_addresses_are_errors_naming_them(address):
    with pytest.raises(ValueError, match="metrics address"):
        metrics.parse_address(address)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connections_held_open_cost_no_thread_and_only_delay_a_scrape(monkeypatch):
    monkeypatch.setattr(metrics, "REQUEST_TIMEOUT_S", 0.5)
    port = free_port()
    server = metrics.MetricsServer(f"127.0.0.1:{port}", snapshot)
    server.start()
    try:
        threads = threading.active_count()
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        time.sleep(0.2)
        assert threading.active_count() == threads
        started = time.monotonic()
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
        took = time.monotonic() - started
        assert "tetragon_policy_events_total" in text
        # Each idle connection ahead of the scrape was cut at the timeout.
        assert took < 3 * 0.5 + 2, took
        for s in idle:
            s.settimeout(5)
            assert s.recv(1) == b""
            s.close()
    finally:
        server.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_a_taken_address_is_an_oserror_at_start():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = metrics.MetricsServer(f"127.0.0.1:{taken.getsockname()[1]}", snapshot)
        with pytest.raises(OSError):
            server.start()
