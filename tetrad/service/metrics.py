"""Prometheus metrics over HTTP (off unless server.metrics_address is set).

Series are named after Tetragon's so existing dashboards and alerts carry
over; the values are the daemon's own counters as its control thread last
published them (the snapshot, at most a second old), so a scrape never
reads BPF maps or policy state that the control thread may be changing,
and nothing is counted twice. Served by the standard library's threading
HTTP server: one page, no dependency needed.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tetrad import __version__

log = logging.getLogger(__name__)


SINK_COUNTS = ("rotations", "failed_rotations", "reopens", "dropped_backups", "written_lines",
               "lost_lines", "filtered", "rate_limited", "client_drops")


def _quoted(value) -> str:
    """A label value in the exposition format: backslash and quote escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"')


def _labels(**labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_quoted(v)}"' for k, v in labels.items()) + "}"


def render(stats: dict, policies: list[dict]) -> str:
    """The text exposition format of the daemon's counters."""
    out: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[dict, float]]) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(f"{name}{_labels(**labels)} {value}" for labels, value in samples)

    metric("tetragon_build_info", "gauge", "Build information.", [({"version": __version__}, 1)])
    metric("tetragon_events_total", "counter", "Events emitted, by type.",
           [({"type": kind.upper()}, n) for kind, n in sorted(stats.get("events_by_type", {}).items())])
    metric("tetragon_observer_ringbuf_events_received_total", "counter",
           "Records read from the ring buffer.", [({}, stats["records"])])
    metric("tetragon_observer_ringbuf_events_lost_total", "counter",
           "Records the kernel could not put in the ring buffer.",
           [({}, sum(stats["ringbuf_drops"].values()))])
    metric("tetragon_bpf_missed_events_total", "counter", "Kernel send failures by program.",
           [({"msg_op": op}, n) for op, n in sorted(stats["ringbuf_drops"].items())]
           + [({"msg_op": "generic"}, stats.get("policy_drops", 0))])
    metric("tetrad_policy_records_shed_total", "counter",
           "Policy records the kernel did not write because the reader was behind or every "
           "sink queue was full (load shedding; enforcement is not affected).",
           [({}, stats.get("policy_shed", 0))])
    metric("tetragon_observer_queue_events_lost_total", "counter",
           "Events dropped because a sink's queue was full.", [({}, stats["queue_drops"])])
    metric("tetragon_errors_total", "counter", "Records that failed to decode or handle (by op), policy records of hooks unloaded "
           "since, reader failures, gaps in container scope, failed sink writes.",
           [({"type": f"record_{op}"}, n) for op, n in sorted(stats["record_errors_by_type"].items())]
           + [({"type": "policy_record_unknown_hook"}, stats["policy_records_unknown_hook"]),
              ({"type": "reader"}, stats["reader_failures"])]
           + [({"type": f"cgroup_scope_{k}"}, n) for k, n in sorted(stats["cgroup_scope"].items())]
           + [({"type": f"sink_{name}"}, n) for name, n in sorted(stats["sink_errors"].items())])
    metric("tetrad_events_lost_total", "counter",
           "Every kind of loss: ring buffer full, shed, sink queue full, sink lines lost and "
           "write errors, records that failed, records of unloaded hooks, slow API clients.",
           [({"kind": kind}, n) for kind, n in stats.get("losses", {}).items()])
    metric("tetragon_events_exported_total", "counter", "Events written by each sink.",
           [({"sink": name}, s["written"]) for name, s in sorted(stats["sinks"].items())])
    metric("tetrad_sink_counts_total", "counter",
           "What each sink counts itself: file rotations and lost lines, events the export "
           "filters kept out and the rate limit dropped, lines a slow API client missed.",
           [({"sink": name, "counter": key}, n) for name, s in sorted(stats["sinks"].items())
            for key, n in sorted(s.items()) if key in SINK_COUNTS])
    metric("tetrad_container_lookups_total", "counter",
           "cgroup ids looked up for container identity, and how many were not found; "
           "runtime API calls that failed.",
           [({"result": "looked_up"}, stats["containers"]["lookups"]),
            ({"result": "unresolved"}, stats["containers"]["unresolved"]),
            ({"result": "api_error"}, stats["containers"]["api_errors"])])
    metric("tetrad_api_requests_total", "counter",
           "Local API connections, and those refused (busy, not root), timed out, malformed "
           "or failed.", [({"result": k}, n) for k, n in sorted(stats.get("api", {}).items())])
    cache = stats["process_cache"]
    metric("tetragon_process_cache_size", "gauge", "Processes in the cache.", [({}, cache["size"])])
    metric("tetragon_process_cache_capacity", "gauge", "Process cache capacity.",
           [({}, cache["capacity"])])
    metric("tetragon_process_cache_misses_total", "counter", "Events whose process was not cached.",
           [({}, cache["misses"])])
    metric("tetragon_process_cache_evictions_total", "counter", "Processes evicted.",
           [({}, cache["evictions"])])
    states: dict[str, int] = {"enabled": 0, "disabled": 0, "error": 0}
    for p in policies:
        states[p["state"]] = states.get(p["state"], 0) + 1
    metric("tetragon_tracingpolicy_loaded", "gauge", "Tracing policies by state.",
           [({"state": s}, n) for s, n in sorted(states.items())])
    metric("tetragon_policy_events_total", "counter", "Events posted by each policy.",
           [({"policy": p["name"]}, p["counters"]["posted"]) for p in policies if "counters" in p])
    actions = []
    for p in policies:
        for action in ("enforced", "monitored", "rate_limited", "dropped", "shed"):
            if "counters" in p:
                actions.append(({"policy": p["name"], "action": action}, p["counters"][action]))
    metric("tetragon_tracingpolicy_selector_actions_total", "counter",
           "Selector outcomes by policy: enforced, monitored, rate_limited, dropped, shed.", actions)
    metric("tetrad_policy_user_memory_reads_total", "counter",
           "Arguments in user memory a policy could not read at syscall entry, by policy: calls "
           "decided at syscall exit instead (deferred), arguments unreadable even then "
           "(unreadable; they match unless the policy says unreadable-args: no-match).",
           [({"policy": p["name"], "outcome": outcome}, p["counters"][outcome])
            for p in policies if "counters" in p for outcome in ("deferred", "unreadable")])
    return "\n".join(out) + "\n"


class MetricsServer:
    def __init__(self, address: str, snapshot: Callable[[], dict]):
        host, _, port = address.rpartition(":")
        self._address = (host.strip("[]") or "127.0.0.1", int(port))
        self._snapshot = snapshot
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        snapshot = self._snapshot

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/metrics":
                    self.send_error(404, "only /metrics is here")
                    return
                snap = snapshot()
                body = render(snap["stats"], snap["policies"]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(self._address, Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.1,), name="tetrad-metrics",
                         daemon=True).start()
        log.info("metrics on http://%s:%d/metrics", *self._address)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
