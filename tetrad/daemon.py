"""Daemon lifecycle: start-up order, the main loop, shutdown.

Lifecycle only; every arrow of the data flow lives in its own module. Start-up
follows Tetragon's order so nothing is missed: kernel mounts -> feature probe
-> process sensor attached -> ring buffer opened -> /proc scan (processes that
predate the sensor) -> sinks running. Records that arrive during the scan wait
in the ring buffer and are applied after it, so they win over the scan.

Signal handlers only set a flag; the loop drains the ring buffer on a short
timer, so it always wakes to see it.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass, field

from tetrad.bpf import features
from tetrad.bpf.mounts import ensure_kernel_mounts
from tetrad.events.timefmt import KtimeClock
from tetrad.observer import Observer
from tetrad.pipeline import ProcessEvents
from tetrad.policy import schema
from tetrad.process.cache import ProcessCache
from tetrad.process.procfs import ProcfsScanner
from tetrad.sensors.process import ProcessSensor, ProcessSensorConfig
from tetrad.sinks.dispatch import Sink, SinkDispatcher

log = logging.getLogger(__name__)

# How long the loop sleeps when the ring buffer is empty: the latency of an
# event on an idle host, and the idle wake-up rate.
DRAIN_INTERVAL_S = 0.02


@dataclass(frozen=True)
class DaemonConfig:
    node_name: str = field(default_factory=socket.gethostname)
    process_cache_size: int = 65536
    sink_queue_size: int = 65536
    stats_interval_s: float = 60.0
    sensor: ProcessSensorConfig = ProcessSensorConfig()
    policy_files: tuple[str, ...] = ()     # loaded at start, in order


class Daemon:
    def __init__(self, config: DaemonConfig, sinks: list[Sink]):
        self.config = config
        self.clock = KtimeClock()
        self.cache = ProcessCache(config.node_name, self.clock, capacity=config.process_cache_size)
        self.sinks = SinkDispatcher(sinks, capacity=config.sink_queue_size)
        self.sensor = ProcessSensor(config.sensor)
        self.observer = Observer()
        self.policies = None            # PolicyManager, once the sensor is up
        self.started_at = 0.0

    def start(self) -> None:
        self.started_at = time.monotonic()
        mounted = ensure_kernel_mounts()
        if mounted:
            log.info("mounted %s", ", ".join(mounted))
        log.info("kernel: %s", features.summary_line())
        self.sensor.load()
        for op, decoder, handler in ProcessEvents(self.cache, self.clock, self.sinks.emit).routes():
            self.observer.register(op, decoder, handler)
        self.observer.open(self.sensor.bpf)
        self._seed_from_procfs()
        self._load_policies()
        self.sinks.start()
        log.info("ready in %.2fs", time.monotonic() - self.started_at)

    def _seed_from_procfs(self) -> None:
        started = time.monotonic()
        scan = ProcfsScanner().scan()
        seeded = self.sensor.seed(scan)
        for entry in scan.entries:
            self.cache.add_procfs(entry)
        log.info("found %d running processes in /proc (%d told to the kernel, %d vanished "
                 "while read) in %.2fs", len(scan.entries), seeded, scan.skipped,
                 time.monotonic() - started)

    def _load_policies(self) -> None:
        """Load the configured policy files; a bad one is reported and the
        others still load."""
        from tetrad.policy.manager import PolicyManager
        self.policies = PolicyManager(self.observer, self.sinks.emit, self.cache, self.clock)
        for path in self.config.policy_files:
            try:
                self.policies.load(schema.read(path))
            except schema.PolicyError as err:
                log.error("policy not loaded:\n%s", err)

    def run(self, stop: threading.Event) -> None:
        next_stats = time.monotonic() + self.config.stats_interval_s
        while not stop.is_set():
            if not self.observer.drain():
                stop.wait(DRAIN_INTERVAL_S)
            self.sinks.commit()
            if time.monotonic() >= next_stats:
                log.info("%s", self.stats_line())
                next_stats = time.monotonic() + self.config.stats_interval_s

    def stats(self) -> dict:
        cache = self.cache.stats()
        return {
            "records": self.observer.received,
            "record_errors": self.observer.errors,
            "ringbuf_drops": self.sensor.drops(),
            "execve_map_errors": self.sensor.map_errors(),
            "events_written": self.sinks.written,
            "queue_drops": self.sinks.dropped,
            "sink_errors": dict(self.sinks.errors),
            "process_cache": {"size": cache.size, "capacity": cache.capacity,
                              "misses": cache.misses, "evictions": cache.evictions},
        }

    def stats_line(self) -> str:
        s = self.stats()
        return (f"records={s['records']} written={s['events_written']} "
                f"ringbuf_drops={sum(s['ringbuf_drops'].values())} queue_drops={s['queue_drops']} "
                f"cache={s['process_cache']['size']} misses={s['process_cache']['misses']}")

    def stop(self) -> None:
        """Drain what the kernel already queued, flush sinks, detach."""
        if self.sensor.bpf is None:
            self.sinks.close()
            return
        self.observer.drain()
        self.sinks.commit()
        self.sinks.close()
        final = self.stats_line()
        if self.policies is not None:
            self.policies.close()
        self.sensor.close()
        log.info("stopped, programs detached; %s", final)
