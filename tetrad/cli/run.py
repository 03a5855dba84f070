"""`tetrad run`: the daemon in the foreground."""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import replace

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


def run(args) -> int:
    if os.geteuid() != 0:
        log.error("tetrad run needs root (it loads BPF programs); try: sudo tetrad run")
        return 1
    config = DaemonConfig()
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
