"""`tetrad run`: the daemon in the foreground."""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import replace
from pathlib import Path

from tetrad.daemon import Daemon, DaemonConfig

log = logging.getLogger(__name__)


def _sinks(args, node_name: str) -> list:
    sinks = []
    if not args.quiet:
        from tetrad.sinks.terminal import TerminalSink
        sinks.append(TerminalSink(node_name))
    if args.export_file:
        from tetrad.sinks.jsonfile import JsonLinesSink
        sinks.append(JsonLinesSink(args.export_file, node_name))
    return sinks


def policy_dir_files(directory: str | None) -> tuple[str, ...]:
    if not directory:
        return ()
    return tuple(str(p) for p in sorted(Path(directory).iterdir())
                 if p.is_file() and p.suffix in (".yaml", ".yml", ".json"))


def run(args) -> int:
    if os.geteuid() != 0:
        log.error("tetrad run needs root (it loads BPF programs); try: sudo tetrad run")
        return 1
    config = DaemonConfig(policy_files=tuple(args.policy) + policy_dir_files(args.policy_dir))
    if args.node_name:
        config = replace(config, node_name=args.node_name)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    daemon = Daemon(config, _sinks(args, config.node_name))
    try:
        daemon.start()
        daemon.run(stop)
    finally:
        daemon.stop()
    return 0
