"""Daemon lifecycle: start-up order, the control loop, reload, shutdown.

Lifecycle only; every arrow of the data flow lives in its own module.
Start-up follows Tetragon's order so nothing is missed: kernel mounts ->
process sensor attached -> ring buffer opened -> /proc scan (processes that
predate the sensor) -> sinks and the reader running -> policies (each
probes the features it needs) -> API -> READY=1 -> every feature probed
and logged. Records that arrive during the scan wait in the ring buffer and
are read after it.

Two threads own everything:
  reader    (tetrad.observer.Reader) drains the ring buffer: records ->
            pipeline -> sinks. It never waits for anything below.
  control   (the main thread, `run`) owns BPF loading and policy state:
            policy directory syncs, API requests that change something,
            reloads, the status snapshot, systemd notifications.
Signal handlers and the API's threads only set flags or queue work; the
API answers status and policy listings from the snapshot the control
thread publishes every second and after every change, so they answer even
while a policy compiles.
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
from tetrad.abi.generic import OP_GENERIC
from tetrad.abi.ops import Op
from tetrad.api import commands
from tetrad.api.server import ApiServer, EventStreams
from tetrad.bpf import features
from tetrad.bpf.mounts import ensure_kernel_mounts
from tetrad.containers.pods import NO_PODS
from tetrad.containers.resolver import ContainerResolver
from tetrad.events.policy import HookPlan
from tetrad.libc import libc
from tetrad.observer import Backpressure, Observer, Reader
from tetrad.pipeline import PolicyEvents, ProcessEvents
from tetrad.useractions import UserActions
from tetrad.policy import registry as reg
from tetrad.policy import workloads
from tetrad.policy.cgroup_scope import CgroupScope
from tetrad.policy.directory import PolicyDirectory, PolicyFiles
from tetrad.policy.registry import PolicyRegistry
from tetrad.policy.watch import DirectoryWatcher
from tetrad.process.annotate import Annotator, host_namespaces
from tetrad.process.cache import ProcessCache
from tetrad.process.procfs import ProcfsScanner
from tetrad.process.redaction import Redaction
from tetrad.sensors import bpfobject
from tetrad.sensors.enforcers import Enforcers
from tetrad.sensors.generic import SHARED_MAPS, GenericPrograms
from tetrad.sensors.policies import PolicyLoader
from tetrad.sensors.process import ProcessSensor, ProcessSensorConfig
from tetrad.sensors.stacks import Stacks
from tetrad.sensors.teardown import close_tracepoints
from tetrad.service.metrics import MetricsServer
from tetrad.service.notify import Notifier
from tetrad.sinks.dispatch import BATCH_MAX, Sink, SinkDispatcher
from tetrad.timefmt import KtimeClock

log = logging.getLogger(__name__)

# How long the control loop waits for an API request before its periodic
# work: how soon a stop or reload flag is seen.
CONTROL_TICK_S = 0.1
SNAPSHOT_INTERVAL_S = 1.0
STATUS_INTERVAL_S = 5.0
SCOPE_REFRESH_S = 0.5             # re-deciding containers a runtime API has named since
COMPILE_EXTEND_S = 120.0          # more start/reload time per hook being compiled
# A stop (SIGTERM) takes about a second even under a flood: the records
# left in the ring buffer are read for at most STOP_DRAIN_S, the sinks write
# what they hold for at most STOP_SINKS_S; the rest is counted as dropped.
STOP_DRAIN_S = 0.2
STOP_SINKS_S = 0.5
# Young-generation collection threshold (Python's default: 700 allocations).
# Every event allocates a handful of containers, so at the default the
# collector ran every ~100 events and took 13% of the daemon's CPU in
# bench/throughput; with this and the start-up objects frozen (settle_heap),
# 3%.
GC_THRESHOLD = 10_000
OP_NAMES = {**{int(op): op.name.lower() for op in Op}, OP_GENERIC: "policy"}


@dataclass(frozen=True)
class DaemonConfig:
    node_name: str = field(default_factory=socket.gethostname)
    process_cache_size: int = 65536
    sink_queue_size: int = 65536
    sink_queue_bytes: int = 64 << 20
    stats_interval_s: float = 60.0
    sensor: ProcessSensorConfig = ProcessSensorConfig()
    policy_files: tuple[str, ...] = ()     # loaded at start, in order (--policy)
    policy_dir: str = ""                   # watched; "" for none
    bpf_cache: str = ""                    # compiled policy programs kept here; "" for none
    socket_path: str = ""                  # local API; "" for none
    metrics_address: str = ""              # host:port for Prometheus; "" for none
    redaction: Redaction = Redaction()     # secrets hidden in arguments (process cache)
    enable_process_cred: bool = False      # events carry cap, process_credentials
    enable_process_ns: bool = False        # events carry ns
    dns_server: str = "1.1.1.1:53"         # DnsLookup actions ask it
    action_timeout_s: float = 5.0          # per GetUrl request or DnsLookup query


def losses(stats: dict) -> dict[str, int]:
    """Every kind of loss in one place, for the stats line, STATUS=,
    `tetra status` and metrics alike: records the kernel could not write
    (ring buffer full) or shed (user space could not take them), events a
    sink queue had no room for, events a sink failed to write (a sink that
    counts its lost lines itself says how many; otherwise each failed write
    is one: the Sink contract of tetrad/sinks/dispatch.py), records that
    failed to decode or handle, policy records of hooks unloaded since, and
    lines an API client read too slowly for."""
    sinks = stats.get("sinks", {}).values()
    return {
        "ringbuf_full": sum(stats.get("ringbuf_drops", {}).values()) + stats.get("policy_drops", 0),
        "shed": stats.get("policy_shed", 0),
        "queue_full": stats.get("queue_drops", 0),
        "sink_failed": sum(s["lost_lines"] if "lost_lines" in s else s.get("errors", 0) for s in sinks),
        "record_errors": stats.get("record_errors", 0),
        "unknown_hook": stats.get("policy_records_unknown_hook", 0),
        "api_client_slow": sum(s.get("client_drops", 0) for s in sinks),
    }


def status_text(rows: list[dict], lost: dict[str, int], rate: float) -> str:
    """systemd's STATUS= line: policies, the event rate, and every kind of
    loss that happened, by name."""
    enabled = sum(1 for r in rows if r["state"] == "enabled")
    failed = sum(1 for r in rows if r.get("error"))
    kinds = ", ".join(f"{k} {n}" for k, n in lost.items() if n)
    return (f"{enabled} policies loaded{f', {failed} with errors' if failed else ''}; "
            f"{rate:.0f} events/s; {sum(lost.values())} lost{f' ({kinds})' if kinds else ''}")


def stats_text(s: dict) -> str:
    """The counters the daemon logs when it stops, every kind of loss among them."""
    lost = " ".join(f"{k}={n}" for k, n in s["losses"].items())
    return (f"records={s['records']} written={s['events_written']} "
            f"ringbuf_drops={sum(s['ringbuf_drops'].values())} policy_drops={s['policy_drops']} "
            f"policy_shed={s['policy_shed']} queue_drops={s['queue_drops']} {lost} "
            f"cache={s['process_cache']['size']} misses={s['process_cache']['misses']}")


def annotator(config: DaemonConfig) -> Annotator:
    """What events say of credentials and namespaces; is_host compares with
    pid 1's namespaces, read once here."""
    cred, ns = config.enable_process_cred, config.enable_process_ns
    return Annotator(cred, ns, host_namespaces() if cred or ns else ())


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
                 reconfigure: Reconfigure | None = None, plugins: list | None = None):
        self.config = config
        # Started plugins (tetrad/plugins.py); the daemon closes them at stop.
        self.plugins = plugins or []
        self.pods = next((p.pods for p in self.plugins if p.pods is not None), NO_PODS)
        self.clock = KtimeClock()
        self.cache = ProcessCache(config.node_name, self.clock, capacity=config.process_cache_size,
                                  redaction=config.redaction, annotator=annotator(config))
        self.streams = EventStreams(config.node_name)
        self.sinks = SinkDispatcher(sinks + [self.streams], capacity=config.sink_queue_size,
                                    capacity_bytes=config.sink_queue_bytes,
                                    clock=self.clock)
        self.sensor = ProcessSensor(config.sensor, config.bpf_cache)
        self.observer = Observer(OP_NAMES)
        self.notify = notifier or Notifier()
        self._reconfigure = reconfigure
        self.containers: ContainerResolver | None = None
        self.loader: PolicyLoader | None = None
        self.registry: PolicyRegistry | None = None
        self.process_events: ProcessEvents | None = None
        self.policy_events: PolicyEvents | None = None
        self.stacks: Stacks | None = None
        self.user_actions = UserActions(config.dns_server, config.action_timeout_s)
        self.files: PolicyFiles | None = None
        self.directory: PolicyDirectory | None = None
        self.watcher: DirectoryWatcher | None = None
        self.reader: Reader | None = None
        self.backpressure: Backpressure | None = None
        self.api: ApiServer | None = None
        self.metrics: MetricsServer | None = None
        self.started_at = 0.0
        # What the API and metrics read, replaced as a whole by the control
        # thread (publish()); never changed in place.
        self.snapshot: dict = {"policies": [], "stats": {}}
        # Set by signal handlers (plain flags: a handler must not take locks).
        self.stop_requested = False
        self.reload_requested = False
        self.exit_code = 0
        self._commands: queue.Queue = queue.Queue()
        self._last_records = (0.0, 0)

    # ---- start --------------------------------------------------------------------

    def start(self) -> None:
        self.started_at = time.monotonic()
        mounted = ensure_kernel_mounts()
        if mounted:
            log.info("mounted %s", ", ".join(mounted))
        self.sensor.begin()      # compiled in a child, or taken from the cache

        sensor = self.sensor

        def shared() -> dict[str, int]:
            return {name: sensor.map_fd(name) for name in SHARED_MAPS}
        programs = GenericPrograms(shared, self.config.bpf_cache)
        enforcers = Enforcers(shared, bpfobject.Cache(self.config.bpf_cache))
        # The programs nearly every policy set needs compile (or come from
        # the cache) in a child process while the process sensor compiles.
        programs.begin("syscall")
        with self.notify.busy(COMPILE_EXTEND_S, "loading the process sensor"):
            self.sensor.load()
        # Events carry credentials and namespaces: follow their changes after
        # exec too (a few ns on every syscall while on; bpf/process.c).
        self.sensor.follow_state_changes(self.config.enable_process_cred
                                         or self.config.enable_process_ns)
        self.containers = ContainerResolver(pods=self.pods)
        scope = CgroupScope(self.containers, programs, self.containers.cgroup2_mount)
        self.loader = PolicyLoader(programs, enforcers, scope, prepare=HookPlan, progress=self._progress)
        self.registry = PolicyRegistry(self.loader, admit=workloads.admission(self.pods.enabled))
        self.process_events = ProcessEvents(self.cache, self.clock, self.sinks.emit, self.containers)
        self.process_events.cgroup_listeners.append(scope.on_record)
        loader = self.loader
        self.stacks = Stacks(programs.stack_map)
        self.policy_events = PolicyEvents(self.cache, self.clock, self.sinks.emit, lambda: loader.hooks,
                                          self.stacks, self.user_actions)
        for events in (self.process_events, self.policy_events):
            for op, decoder, handler in events.routes():
                self.observer.register(op, decoder, handler)
        self.observer.open(self.sensor.map_fd("events"))
        self._seed_from_procfs()
        self.sinks.start()
        self.backpressure = Backpressure(self.sinks.room, self.config.sink_queue_size,
                                         self.sensor.set_shedding, batch=BATCH_MAX)
        self.reader = Reader(self.observer, self.sinks.commit, self.backpressure)
        self.reader.start()
        if self.config.policy_files:
            self.files = PolicyFiles(self.config.policy_files)
        if self.config.policy_dir:
            self.directory = PolicyDirectory(self.config.policy_dir)
            self.watcher = DirectoryWatcher(self.config.policy_dir)
        self.sync_policies()
        if self.watcher is not None:
            self.watcher.start()
        if self.config.socket_path:
            self.api = ApiServer(self.config.socket_path, self.handle, self.streams)
            self.api.start()
        if self.config.metrics_address:
            self._start_metrics()
        settle_heap()
        release_free_memory()
        gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
        self.publish()
        log.info("ready in %.2fs", time.monotonic() - self.started_at)
        self.notify.ready(self.status_line())
        # Every feature probed, for the log (bug reports, `tetrad probe`
        # says the same): after READY, as only the features the loaded
        # policies need were asked for before (0.6 s of attachments here).
        log.info("kernel: %s", features.summary_line())

    def _start_metrics(self) -> None:
        """Metrics are not worth a crash loop: an address that cannot be
        bound (taken, not on this host) is logged and the daemon runs
        without them (Prometheus sees the target down)."""
        metrics = MetricsServer(self.config.metrics_address, lambda: self.snapshot)
        try:
            metrics.start()
        except OSError as err:
            log.error("metrics off: cannot listen on %s: %s", self.config.metrics_address,
                      err.strerror or err)
            return
        self.metrics = metrics

    def _seed_from_procfs(self) -> None:
        started = time.monotonic()
        scan = ProcfsScanner().scan()
        seeded = self.sensor.seed(scan)
        for entry in scan.entries:
            proc = self.cache.add_procfs(entry)
            if entry.cgroup:
                proc.set_container(self.containers.for_path(entry.cgroup))
        log.info("found %d running processes in /proc (%d told to the kernel, %d vanished "
                 "while read) in %.2fs", len(scan.entries), seeded, scan.skipped,
                 time.monotonic() - started)

    def _progress(self, what: str):
        """Around each hook's load (which may wait for a compile): systemd
        gets more time and watchdog pings, `tetra status` a fresh snapshot."""
        self.publish()
        return self.notify.busy(COMPILE_EXTEND_S, what)

    def sync_policies(self, retry: bool = False) -> None:
        """Make what is loaded follow the --policy files and the directory."""
        with self.backpressure.hold():
            for origin, source in ((reg.FILE, self.files), (reg.DIRECTORY, self.directory)):
                if source is not None:
                    desired = source.scan()
                    if desired is not None:
                        self.registry.reconcile(origin, desired, retry)
        release_free_memory()
        self.publish()

    # ---- control loop --------------------------------------------------------------

    def run(self) -> None:
        """The control loop, until stop_requested."""
        next_stats = time.monotonic() + self.config.stats_interval_s
        next_status = next_snapshot = time.monotonic()
        next_scope = 0.0
        while not self.stop_requested:
            self._run_commands(CONTROL_TICK_S)
            if self.reload_requested:
                self.reload_requested = False
                self.reload()
            if self.watcher is not None and self.watcher.due():
                self.sync_policies()
            self.notify.watchdog()
            now = time.monotonic()
            if now >= next_scope:
                self.loader.scope.refresh()
                next_scope = now + SCOPE_REFRESH_S
            if now >= next_snapshot:
                self.publish()
                next_snapshot = now + SNAPSHOT_INTERVAL_S
            if now >= next_status:
                self.notify.status(self.status_line())
                next_status = now + STATUS_INTERVAL_S
            if now >= next_stats:
                log.info("%s", self.stats_line())
                next_stats = now + self.config.stats_interval_s
            if not self.reader.alive:
                log.error("the ring buffer reader stopped; exiting so that systemd restarts tetrad")
                self.exit_code = 1
                return

    def handle(self, request: dict) -> dict:
        """An API request (on the API's thread): listings from the snapshot,
        everything else on the control thread."""
        answer = commands.from_snapshot(self, request)
        return answer if answer is not None else self.submit(request)

    def submit(self, request: dict, timeout: float = 600.0) -> dict:
        """Run an API request on the control thread and wait for its answer."""
        done = threading.Event()
        box: dict = {}
        self._commands.put((request, box, done))
        if not done.wait(timeout):
            return {"ok": False, "busy": True,
                    "error": f"the daemon did not answer within {timeout:.0f}s"}
        return box["answer"]

    def _run_commands(self, wait: float) -> None:
        try:
            item = self._commands.get(timeout=wait)
        except queue.Empty:
            return
        while True:
            request, box, done = item
            try:
                with self.backpressure.hold():
                    box["answer"] = commands.execute(self, request)
            except Exception as err:       # an API bug must not stop the daemon
                log.exception("API request %r failed", request.get("op"))
                box["answer"] = {"ok": False, "error": f"internal error: {err}"}
            self.publish()
            done.set()
            try:
                item = self._commands.get_nowait()
            except queue.Empty:
                return

    def reload(self) -> dict:
        """SIGHUP / `tetrad reload`: re-read config (sinks) and policies.
        Old sinks finish and close on their own threads; nothing waits."""
        started = time.monotonic()
        self.notify.reloading()
        log.info("reloading")
        errors_before = self.registry.errors
        if self._reconfigure is not None:
            try:
                new_sinks = self._reconfigure()
            except Exception as err:
                log.error("config not reloaded, the previous one stays in force: %s", err)
            else:
                self.sinks.replace(new_sinks + [self.streams])
        self.sync_policies(retry=True)
        errors = self.registry.errors - errors_before
        settle_heap()
        log.info("reloaded in %.2fs (%d policy errors)", time.monotonic() - started, errors)
        self.notify.ready(self.status_line())
        return {"ok": True, "policy_errors": errors, "seconds": round(time.monotonic() - started, 3)}

    # ---- state (control thread) ----------------------------------------------------

    def publish(self) -> None:
        """A fresh snapshot for the API and metrics: policies with their
        kernel counters, every counter of the daemon, and the sinks'
        latency histograms."""
        policies = self.policy_states()
        self.snapshot = {"policies": policies, "stats": self.stats(),
                         "kernel_features": {f.name: f.available for f in features.probe_all()},
                         "latency": self.sinks.latency()}

    def policy_states(self) -> list[dict]:
        rows = []
        for entry in self.registry.entries() if self.registry else ():
            row = {"name": entry.name, "source": entry.source, "state": entry.state}
            policy = entry.loaded.policy if entry.loaded else entry.wanted
            if policy is not None:
                row["mode"] = policy.mode
                if policy.workloads is not None:
                    row["scope"] = policy.workloads.describe()
            if entry.loaded is not None:
                handle = entry.loaded.handle
                row.update(hooks=len(handle.hooks), load_seconds=round(handle.load_seconds, 3),
                           counters=self.loader.counters(handle))
            if entry.error:
                kept = " (the version shown stays in force)" if entry.loaded else ""
                row["error"] = entry.error + kept
            rows.append(row)
        return rows

    def stats(self) -> dict:
        stats = self._counters()
        stats["losses"] = losses(stats)
        return stats

    def _counters(self) -> dict:
        cache = self.cache.stats()
        scope = self.loader.scope if self.loader else None
        policy_totals = self.loader.totals() if self.loader else {}
        return {
            "records": self.observer.received,
            "record_errors": sum(self.observer.errors.values()),
            "record_errors_by_type": dict(self.observer.errors),
            "reader_failures": self.reader.failures if self.reader else 0,
            "api": self.api.counters() if self.api else {},
            "shedding": {"now": self.backpressure.shedding if self.backpressure else False,
                         "episodes": self.backpressure.episodes if self.backpressure else 0},
            "policy_records_unknown_hook": self.policy_events.unknown_hook if self.policy_events else 0,
            # Stack traces asked for that the kernel did not keep (the event has none).
            "stack_traces_lost": self.stacks.lost if self.stacks else 0,
            "ringbuf_drops": self.sensor.drops() if self.sensor.loaded else {},
            "policy_drops": policy_totals.get("dropped", 0),
            "policy_shed": policy_totals.get("shed", 0),
            "execve_map_errors": self.sensor.map_errors() if self.sensor.loaded else 0,
            "events_emitted": self.sinks.emitted,
            "events_by_type": dict(self.sinks.by_kind),
            "events_written": self.sinks.written,
            "queue_drops": self.sinks.dropped,
            "sink_errors": self.sinks.errors,
            "sinks": self.sinks.per_sink(),
            "process_cache": {"size": cache.size, "capacity": cache.capacity,
                              "misses": cache.misses, "evictions": cache.evictions,
                              "state_misses": cache.state_misses},
            "containers": {k: getattr(self.containers, k, 0)
                           for k in ("lookups", "unresolved", "api_errors")},
            "policy_errors": (self.registry.errors if self.registry else 0)
                             + sum(s.errors for s in (self.files, self.directory) if s),
            # Workload-scoped policies: cgroups not tracked (too many) and
            # selections the kernel map refused (full): each is a gap in scope.
            "cgroup_scope": {"untracked": scope.untracked if scope else 0,
                             "map_full": scope.map_full if scope else 0},
            "plugins": {p.name: p.stats() for p in self.plugins},
            # GetUrl/DnsLookup: requested, done (answered), failed, dropped (queue full).
            "user_actions": dict(self.user_actions.counters),
        }

    def status(self) -> dict:
        """`tetra status`, from the snapshot (any thread)."""
        snap = self.snapshot
        return {"version": __version__, "node_name": self.config.node_name,
                "uptime_seconds": round(time.monotonic() - self.started_at, 1),
                "kernel_features": snap.get("kernel_features", {}),
                "policies": snap["policies"], "stats": snap["stats"]}

    def status_line(self) -> str:
        now = time.monotonic()
        at, records = self._last_records
        rate = (self.observer.received - records) / (now - at) if at and now > at else 0.0
        self._last_records = (now, self.observer.received)
        return status_text(self.snapshot["policies"], self.snapshot["stats"].get("losses", {}), rate)

    def stats_line(self) -> str:
        return stats_text(self.stats())

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
        if self.reader is not None:
            self.reader.stop()
        if not self.sensor.loaded:
            self.sinks.close(STOP_SINKS_S)
            return
        if self.reader is not None and self.reader.alive:
            log.warning("the ring buffer reader did not stop; records still queued are not read")
        else:
            until = time.monotonic() + STOP_DRAIN_S
            while time.monotonic() < until and self.observer.drain():
                pass
            self.observer.close()
        self.sinks.close(STOP_SINKS_S)
        self.user_actions.close()
        final = self.stats_line()          # before unloading: it reads the policies' counters
        close_tracepoints(self.sensor.detach_fds() + (self.loader.tracepoint_fds() if self.loader else []))
        if self.loader is not None:
            self.loader.close()
        if self.stacks is not None:
            self.stacks.close()
        self.sensor.close()
        for plugin in self.plugins:
            plugin.close()
        log.info("stopped, programs detached; %s", final)
