"""`tetrad run`: the daemon in the foreground (also what systemd starts).

Configuration comes from the TOML layers of tetrad/config.py; the flags
given here are the last layer. Which sinks run follows from it: the terminal
unless --quiet, journald when enabled and reachable, the JSON file when a
path is set (with the export filters and rate limit in front of it).
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

from tetrad import config as cfg
from tetrad.daemon import Daemon, DaemonConfig
from tetrad.filters import ExportFilter, FilteredSink, RateLimit
from tetrad.plugins import Host, PluginError, PluginRegistry
from tetrad.sensors.process import ProcessSensorConfig
from tetrad.service.metrics import parse_address
from tetrad.sinks.journald import SOCKET, JournaldSink, listening
from tetrad.sinks.jsonfile import JsonLinesSink
from tetrad.sinks.terminal import TerminalSink

log = logging.getLogger(__name__)


def overrides(args) -> dict:
    """The flags given, as a config layer."""
    layer: dict = {}
    export: dict = {}
    if args.node_name is not None:
        layer["node_name"] = args.node_name
    if args.policy_dir is not None:
        layer["policies"] = {"dir": args.policy_dir}
    process = {key: True for key in ("enable_process_cred", "enable_process_ns")
               if getattr(args, key)}
    if process:
        layer["process"] = process
    if args.export_file is not None:
        export["file"] = args.export_file
    if args.export_file_max_size_mb is not None:
        export["max_size_mb"] = args.export_file_max_size_mb
    if args.export_file_max_backups is not None:
        export["max_backups"] = args.export_file_max_backups
    if args.export_file_rotation_interval is not None:
        export["rotation_interval"] = args.export_file_rotation_interval
    if args.export_file_compress:
        export["compress"] = True
    if args.export_rate_limit is not None:
        export["rate_limit"] = args.export_rate_limit
    if export:
        layer["export"] = export
    if args.no_journald:
        layer["journald"] = {"enabled": False}
    if args.socket is not None:
        layer["server"] = {"socket": args.socket}
    if args.metrics_address is not None:
        layer.setdefault("server", {})["metrics_address"] = args.metrics_address
    return layer


def build_sinks(config: cfg.Config, quiet: bool) -> list:
    node = config.node
    sinks = []
    if not quiet:
        sinks.append(TerminalSink(node))
    if config.journald.enabled:
        if listening():
            sinks.append(JournaldSink(node))
        else:
            log.warning("journald sink off: nothing answers on %s (is systemd-journald running?)",
                        SOCKET)
    ex = config.export
    if ex.file:
        Path(ex.file).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        file_sink = JsonLinesSink(ex.file, node, max_bytes=ex.max_size_mb << 20,
                                  max_backups=ex.max_backups,
                                  interval_s=cfg.parse_duration(ex.rotation_interval),
                                  compress=ex.compress)
        if ex.allow or ex.deny or ex.rate_limit >= 0:
            file_sink = FilteredSink(file_sink, ExportFilter(ex.allow, ex.deny),
                                     RateLimit(ex.rate_limit), node)
        sinks.append(file_sink)
    return sinks


def daemon_config(config: cfg.Config, extra_policies: list[str]) -> DaemonConfig:
    return DaemonConfig(
        node_name=config.node,
        process_cache_size=config.process.cache_size,
        sink_queue_size=config.queue_size,
        sink_queue_bytes=config.queue_mb << 20,
        stats_interval_s=cfg.parse_duration(config.stats_interval),
        sensor=ProcessSensorConfig(ringbuf_pages=config.process.ringbuf_pages,
                                   execve_map_entries=config.process.execve_map_entries),
        policy_files=tuple(extra_policies),
        policy_dir=config.policies.dir,
        bpf_cache=config.policies.bpf_cache,
        socket_path=config.server.socket,
        metrics_address=config.server.metrics_address,
        redaction=config.redaction_filters,
        enable_process_cred=config.process.enable_process_cred,
        enable_process_ns=config.process.enable_process_ns,
        dns_server=config.actions.dns_server,
        action_timeout_s=cfg.parse_duration(config.actions.timeout))


def run(args) -> int:
    if os.geteuid() != 0:
        log.error("tetrad run needs root (it loads BPF programs); try: sudo tetrad run")
        return 1
    plugins = PluginRegistry.installed()

    def load_config() -> cfg.Config:
        return cfg.load(cfg.layer_files(Path(args.config_dir)), overrides(args), plugins)

    try:
        config = load_config()
        if config.server.metrics_address:
            parse_address(config.server.metrics_address)
        sinks = build_sinks(config, args.quiet)
        running = plugins.start_enabled(config.plugins, Host(node_name=config.node))
    except (cfg.ConfigError, PluginError, OSError, ValueError) as err:
        log.error("%s; fix it and start again", err)
        return 2
    log.info("config: %s", ", ".join(config.sources))
    if args.log_level is None:
        logging.getLogger().setLevel(config.log_level.upper())

    def reconfigure() -> list:
        """Sinks from the config files as they are now (SIGHUP, tetrad reload).
        Settings that shape kernel maps need a restart; they are not re-read."""
        return build_sinks(load_config(), args.quiet)

    if running:
        log.info("plugins: %s", ", ".join(p.name for p in running))
    daemon = Daemon(daemon_config(config, args.policy), sinks, reconfigure=reconfigure,
                    plugins=running)
    # Handlers only assign a flag the main loop reads. A handler runs in the
    # main thread between two bytecodes, possibly while that thread holds a
    # lock; threading.Event.set() there (it takes the Event's lock) hung the
    # daemon on SIGTERM about once in 25 stops.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: setattr(daemon, "stop_requested", True))
    signal.signal(signal.SIGHUP, lambda *_: setattr(daemon, "reload_requested", True))
    try:
        daemon.start()
        daemon.run()
    finally:
        daemon.stop()
    return daemon.exit_code
