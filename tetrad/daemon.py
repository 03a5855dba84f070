"""Daemon lifecycle: start-up order, the main loop, reload, shutdown.

Lifecycle only; every arrow of the data flow lives in its own module. Start-up
follows Tetragon's order so nothing is missed: kernel mounts -> feature probe
-> process sensor attached -> ring buffer opened -> /proc scan (processes that
predate the sensor) -> policies -> sinks running -> READY=1. Records that
arrive during the scan wait in the ring buffer and are applied after it.

One thread owns BPF: the main loop drains the ring buffer on a short timer
and, between drains, syncs the policy directory when it changed, runs API
requests queued by the socket threads, and reloads on SIGHUP. Signal handlers
and other threads only set flags or queue work.
"""

from __future__ import annotations

import gc
import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from tetrad import __version__
from tetrad.bpf import features
from tetrad.bpf.mounts import ensure_kernel_mounts
from tetrad.timefmt import KtimeClock
from tetrad.libc import libc
from tetrad.observer import Observer
from tetrad.pipeline import ProcessEvents, annotate
from tetrad.policy import schema
from tetrad.process.cache import ProcessCache
from tetrad.process.procfs import ProcfsScanner
from tetrad.process.redaction import Redaction
from tetrad.sensors.process import ProcessSensor, ProcessSensorConfig
from tetrad.service.notify import Notifier
from tetrad.sinks.dispatch import Sink, SinkDispatcher

log = logging.getLogger(__name__)

# How long the loop sleeps when the ring buffer is empty: the latency of an
# event on an idle host, and the idle wake-up rate.
DRAIN_INTERVAL_S = 0.02
STATUS_INTERVAL_S = 5.0
SCOPE_REFRESH_S = 0.5             # re-deciding containers a runtime API has named since
COMPILE_EXTEND_S = 120.0          # more start/reload time per policy being compiled
# Young-generation collection threshold (Python's default: 700 allocations).
# Every event allocates a handful of containers, so at the default the
# collector ran every ~100 events and took 13% of the daemon's CPU in
# bench/throughput; with this and the start-up objects frozen (settle_heap),
# 3%.
GC_THRESHOLD = 10_000


@dataclass(frozen=True)
class DaemonConfig:
    node_name: str = field(default_factory=socket.gethostname)
    process_cache_size: int = 65536
    sink_queue_size: int = 65536
    stats_interval_s: float = 60.0
    sensor: ProcessSensorConfig = ProcessSensorConfig()
    policy_files: tuple[str, ...] = ()     # loaded at start, in order (--policy)
    policy_dir: str = ""                   # watched; "" for none
    socket_path: str = ""                  # local API; "" for none
    metrics_address: str = ""              # host:port for Prometheus; "" for none
    redaction: Redaction = Redaction()     # secrets hidden in arguments (process cache)


def release_free_memory() -> None:
    """Give the heap clang left behind back to the kernel (glibc keeps freed
    memory mapped): tens of MB of RSS after compiling programs."""
    libc.malloc_trim(0)


def settle_heap() -> None:
    """After start-up and each reload: collect, then freeze what is left
    (bcc tables, compiled policies, the /proc scan) so the cyclic garbage
    collector stops walking it during floods. Unfreezing first lets the
    collection free what the reload dropped, such as unloaded policies."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


# Rebuilds sinks from the config files on reload (tetrad/cli/run.py).
Reconfigure = Callable[[], list[Sink]]


class Daemon:
    def __init__(self, config: DaemonConfig, sinks: list[Sink], notifier: Notifier | None = None,
                 reconfigure: Reconfigure | None = None):
        from tetrad.api.server import EventStreams
        self.config = config
        self.clock = KtimeClock()
        self.cache = ProcessCache(config.node_name, self.clock, capacity=config.process_cache_size,
                                  redaction=config.redaction)
        self.streams = EventStreams(config.node_name)
        self.sinks = SinkDispatcher(sinks + [self.streams], capacity=config.sink_queue_size)
        self.sensor = ProcessSensor(config.sensor)
        self.observer = Observer()
        self.notify = notifier or Notifier()
        self._reconfigure = reconfigure
        self.containers = None          # ContainerResolver, once the sensor is up
        self.policies = None            # PolicyManager, once the sensor is up
        self.directory = None           # PolicyDirectory
        self.watcher = None             # DirectoryWatcher
        self.extra_policies: dict[str, object] = {}    # name -> LoadedPolicy (--policy, tetra add)
        self.disabled: dict[str, tuple[object, str]] = {}   # name -> (Policy, where it came from)
        self.api = None
        self.metrics = None
        self.started_at = 0.0
        # Set by signal handlers (plain flags: a handler must not take locks).
        self.stop_requested = False
        self.reload_requested = False
        self._commands: queue.Queue = queue.Queue()
        self._last_records = (0.0, 0)

    # ---- start --------------------------------------------------------------------

    def start(self) -> None:
        self.started_at = time.monotonic()
        mounted = ensure_kernel_mounts()
        if mounted:
            log.info("mounted %s", ", ".join(mounted))
        log.info("kernel: %s", features.summary_line())
        self.notify.extend(COMPILE_EXTEND_S, "compiling the process sensor")
        self.sensor.load()
        from tetrad.containers.resolver import ContainerResolver
        self.containers = ContainerResolver()
        self.process_events = ProcessEvents(self.cache, self.clock, self.sinks.emit, self.containers)
        for op, decoder, handler in self.process_events.routes():
            self.observer.register(op, decoder, handler)
        self.observer.open(self.sensor.bpf)
        self._seed_from_procfs()
        self._start_policies()
        self.sinks.start()
        if self.config.socket_path:
            from tetrad.api.server import ApiServer
            self.api = ApiServer(self.config.socket_path, self.submit, self.streams)
            self.api.start()
        if self.config.metrics_address:
            from tetrad.service.metrics import MetricsServer
            self.metrics = MetricsServer(self.config.metrics_address, self)
            self.metrics.start()
        settle_heap()
        release_free_memory()
        gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
        log.info("ready in %.2fs", time.monotonic() - self.started_at)
        self.notify.ready(self.status_line())

    def _seed_from_procfs(self) -> None:
        started = time.monotonic()
        scan = ProcfsScanner().scan()
        seeded = self.sensor.seed(scan)
        for entry in scan.entries:
            proc = self.cache.add_procfs(entry)
            if entry.cgroup:
                annotate(proc, self.containers.for_path(entry.cgroup))
        log.info("found %d running processes in /proc (%d told to the kernel, %d vanished "
                 "while read) in %.2fs", len(scan.entries), seeded, scan.skipped,
                 time.monotonic() - started)

    def _start_policies(self) -> None:
        """Load --policy files, then the directory; a bad policy is reported
        and the others still load."""
        from tetrad.policy.directory import PolicyDirectory
        from tetrad.policy.manager import PolicyManager
        from tetrad.policy.watch import DirectoryWatcher
        self.policies = PolicyManager(self.observer, self.sinks.emit, self.cache, self.clock,
                                      self.containers)
        self.process_events.cgroup_listeners.append(self.policies.scope.on_record)
        for path in self.config.policy_files:
            try:
                policy = schema.read(path)
                self.extra_policies[policy.name] = self._load(policy)
            except schema.PolicyError as err:
                log.error("policy not loaded:\n%s", err)
        if self.config.policy_dir:
            self.directory = PolicyDirectory(self.config.policy_dir, self._load, self._unload)
            self.watcher = DirectoryWatcher(self.config.policy_dir)
            self.directory.sync()
            self.watcher.start()

    def _load(self, policy):
        if policy.name in self.disabled or policy.name in self.extra_policies:
            raise schema.PolicyError(policy.source, [("metadata.name", f"a policy named "
                                     f"{policy.name!r} is already loaded or disabled")])
        self.notify.extend(COMPILE_EXTEND_S, f"compiling policy {policy.name}")
        try:
            return self.policies.load(policy)
        finally:
            release_free_memory()

    def _unload(self, loaded) -> None:
        if loaded is not None:
            self.policies.unload(loaded)

    # ---- main loop ----------------------------------------------------------------

    def run(self) -> None:
        """The main loop, until stop_requested."""
        next_stats = time.monotonic() + self.config.stats_interval_s
        next_status = time.monotonic() + STATUS_INTERVAL_S
        next_scope = 0.0
        while not self.stop_requested:
            if not self.observer.drain():
                time.sleep(DRAIN_INTERVAL_S)     # a stop/reload flag is seen within this
            self.sinks.commit()
            self._run_commands()
            if self.reload_requested:
                self.reload_requested = False
                self.reload()
            if self.watcher is not None and self.watcher.due():
                self.directory.sync()
            self.notify.watchdog()
            now = time.monotonic()
            if self.policies is not None and now >= next_scope:
                self.policies.scope.refresh()
                next_scope = now + SCOPE_REFRESH_S
            if now >= next_status:
                self.notify.status(self.status_line())
                next_status = now + STATUS_INTERVAL_S
            if now >= next_stats:
                log.info("%s", self.stats_line())
                next_stats = now + self.config.stats_interval_s

    def submit(self, request: dict, timeout: float = 600.0) -> dict:
        """Run an API request on the main loop (called from API threads)."""
        done = threading.Event()
        box: dict = {}
        self._commands.put((request, box, done))
        if not done.wait(timeout):
            return {"ok": False, "error": f"the daemon did not answer within {timeout:.0f}s"}
        return box["answer"]

    def _run_commands(self) -> None:
        from tetrad.api.commands import execute
        while True:
            try:
                request, box, done = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                box["answer"] = execute(self, request)
            except Exception as err:       # an API bug must not stop the daemon
                log.exception("API request %r failed", request.get("op"))
                box["answer"] = {"ok": False, "error": f"internal error: {err}"}
            done.set()

    def reload(self) -> dict:
        """SIGHUP / `tetrad reload`: re-read config (sinks) and policies."""
        started = time.monotonic()
        self.notify.reloading()
        log.info("reloading")
        errors_before = self.directory.errors if self.directory else 0
        if self._reconfigure is not None:
            try:
                new_sinks = self._reconfigure()
            except Exception as err:
                log.error("config not reloaded, the previous one stays in force: %s", err)
            else:
                self.sinks.commit()
                self.sinks.replace(new_sinks + [self.streams])
        if self.directory is not None:
            self.directory.sync(retry=True)
        errors = (self.directory.errors if self.directory else 0) - errors_before
        settle_heap()
        log.info("reloaded in %.2fs (%d policy errors)", time.monotonic() - started, errors)
        self.notify.ready(self.status_line())
        return {"ok": True, "policy_errors": errors, "seconds": round(time.monotonic() - started, 3)}

    # ---- state --------------------------------------------------------------------

    def policy_states(self) -> list[dict]:
        out = []
        loaded = self.policies.loaded() if self.policies else []
        origin = {}
        if self.directory is not None:
            for path, entry in self.directory.entries.items():
                origin[id(entry.loaded)] = (path, entry.error)
                if entry.loaded is None and entry.name not in self.disabled:
                    out.append({"name": entry.name or "", "source": path, "state": "error",
                                "error": entry.error})
        for lp in loaded:
            path, error = origin.get(id(lp), (lp.source, ""))
            row = {"name": lp.name, "source": path, "state": "enabled", "mode": lp.mode,
                   "hooks": len(lp.hooks), "load_seconds": round(lp.load_seconds, 3),
                   "counters": self.policies.counters(lp)}
            if lp.policy.workloads is not None:
                row["scope"] = lp.policy.workloads.describe()
            if error:
                row["error"] = error + " (the version shown stays in force)"
            out.append(row)
        for name, (policy, source) in self.disabled.items():
            out.append({"name": name, "source": source, "state": "disabled", "mode": policy.mode})
        return out

    def stats(self) -> dict:
        cache = self.cache.stats()
        return {
            "records": self.observer.received,
            "record_errors": self.observer.errors,
            "ringbuf_drops": self.sensor.drops(),
            "policy_drops": self.policies.dropped() if self.policies else 0,
            "execve_map_errors": self.sensor.map_errors(),
            "events_emitted": self.sinks.emitted,
            "events_by_type": dict(self.sinks.by_kind),
            "events_written": self.sinks.written,
            "queue_drops": self.sinks.dropped,
            "sink_errors": dict(self.sinks.errors),
            "sinks": self.sinks.per_sink(),
            "process_cache": {"size": cache.size, "capacity": cache.capacity,
                              "misses": cache.misses, "evictions": cache.evictions},
            "containers": {k: getattr(self.containers, k, 0)
                           for k in ("lookups", "unresolved", "api_errors")},
            "policy_errors": self.directory.errors if self.directory else 0,
            # Workload-scoped policies: cgroups not tracked (too many) and
            # selections the kernel map refused (full): each is a gap in scope.
            "cgroup_scope": {"untracked": self.policies.scope.untracked if self.policies else 0,
                             "map_full": self.policies.scope.map_full if self.policies else 0},
        }

    def status(self) -> dict:
        return {"version": __version__, "node_name": self.config.node_name,
                "uptime_seconds": round(time.monotonic() - self.started_at, 1),
                "kernel_features": {f.name: f.available for f in features.probe_all()},
                "policies": self.policy_states(), "stats": self.stats()}

    def status_line(self) -> str:
        now = time.monotonic()
        at, records = self._last_records
        rate = (self.observer.received - records) / (now - at) if at and now > at else 0.0
        self._last_records = (now, self.observer.received)
        # Counted from what is loaded and the directory's last errors: no
        # per-policy counter reads (map lookups) just for a status line.
        enabled = len(self.policies.loaded()) if self.policies else 0
        failed = sum(1 for e in self.directory.entries.values() if e.error) if self.directory else 0
        drops = (sum(self.sensor.drops().values()) + self.sinks.dropped
                 + (self.policies.dropped() if self.policies else 0))
        return (f"{enabled} policies loaded{f', {failed} with errors' if failed else ''}; "
                f"{rate:.0f} events/s; {drops} dropped")

    def stats_line(self) -> str:
        s = self.stats()
        return (f"records={s['records']} written={s['events_written']} "
                f"ringbuf_drops={sum(s['ringbuf_drops'].values())} policy_drops={s['policy_drops']} "
                f"queue_drops={s['queue_drops']} sink_errors={sum(s['sink_errors'].values())} "
                f"cache={s['process_cache']['size']} misses={s['process_cache']['misses']}")

    # ---- stop ---------------------------------------------------------------------

    def stop(self) -> None:
        """Drain what the kernel already queued, flush sinks, detach."""
        self.notify.stopping()
        if self.watcher is not None:
            self.watcher.stop()
        if self.api is not None:
            self.api.close()
        if self.metrics is not None:
            self.metrics.close()
        if self.sensor.bpf is None:
            self.sinks.close()
            return
        self.observer.drain()
        self.sinks.commit()
        self.sinks.close()
        final = self.stats_line()          # before unloading: it reads the policies' counters
        if self.policies is not None:
            self.policies.close()
        self.sensor.close()
        log.info("stopped, programs detached; %s", final)
