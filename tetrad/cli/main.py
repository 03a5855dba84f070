"""`tetrad` command line: run the daemon, probe the kernel, debug helpers."""

from __future__ import annotations

import argparse
import logging
import sys

from tetrad import __version__
from tetrad.api.client import DEFAULT_SOCKET
from tetrad.cli import exit_status_epilog

# What each subcommand's exit status means (run.py, reload.py, policy.py,
# probe.py); --help and the man page say the same (tests/unit/test_manpages.py).
EXIT_STATUSES = {
    0: "success: run stopped by SIGTERM or SIGINT, reload done, policy check: every file OK",
    1: "run: not root, or the ring buffer reader failed; reload: refused; policy check: a file "
       "REFUSED or ERROR; probe: not root",
    2: "bad command line; run: a configuration error",
    3: "reload: the daemon could not be reached; policy check: every file valid, some not "
       "loadable on this kernel",
    4: "reload: the daemon is busy or did not answer in time",
    5: "reload: the daemon's answer was cut short or not understood",
    130: "reload: interrupted (Ctrl-C)",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tetrad", description=(
        "eBPF host security daemon: process, file and network events and "
        "Tetragon TracingPolicy enforcement for plain systemd hosts."),
        epilog=exit_status_epilog(EXIT_STATUSES),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"tetrad {__version__}")
    p.add_argument("--log-level", default=None,
                   choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument("--config-dir", default="/etc/tetragon", metavar="DIR",
                     help="where tetrad.toml and tetrad.d/*.toml are read (default /etc/tetragon)")
    run.add_argument("--export-file", metavar="PATH",
                     help="write events as JSON lines to PATH (mode 0600, appended); '' turns it off")
    run.add_argument("--export-file-max-size-mb", type=int, metavar="MB",
                     help="rotate the export file at this size (default 10)")
    run.add_argument("--export-file-max-backups", type=int, metavar="N",
                     help="rotated files to keep (default 5)")
    run.add_argument("--export-file-rotation-interval", metavar="DURATION",
                     help="also rotate after this long, e.g. 1h (default 0: by size only)")
    run.add_argument("--export-file-compress", action="store_true",
                     help="gzip rotated export files")
    run.add_argument("--export-rate-limit", type=int, metavar="PER_MINUTE",
                     help="events per minute written to the export file (-1: unlimited)")
    run.add_argument("--no-journald", action="store_true", help="do not write events to journald")
    run.add_argument("--enable-process-cred", action="store_true",
                     help="events carry each process's capabilities (cap) and credentials "
                          "(process_credentials), as Tetragon's flag of that name")
    run.add_argument("--enable-process-ns", action="store_true",
                     help="events carry each process's namespaces (ns), as Tetragon's flag "
                          "of that name")
    run.add_argument("--quiet", action="store_true",
                     help="do not print compact events on standard output")
    run.add_argument("--node-name", help="node name in events and exec_ids (default: hostname)")
    run.add_argument("--policy", action="append", default=[], metavar="FILE",
                     help="also load this TracingPolicy file at start (repeatable)")
    run.add_argument("--policy-dir", metavar="DIR",
                     help="policy directory (default /etc/tetragon/policies.d); '' for none")
    run.add_argument("--socket", metavar="PATH",
                     help="local API socket (default /run/tetrad/tetrad.sock); '' for none")
    run.add_argument("--metrics-address", metavar="HOST:PORT",
                     help="serve Prometheus metrics at http://HOST:PORT/metrics, e.g. "
                          "127.0.0.1:2112; :PORT is 127.0.0.1 only (default: off)")

    reload = sub.add_parser("reload", help="re-read config and policies in the running daemon; "
                            "waits until done (for systemd's ExecReload)")
    reload.add_argument("--socket", default=DEFAULT_SOCKET, metavar="PATH",
                        help=f"the daemon's API socket (default {DEFAULT_SOCKET})")

    policy = sub.add_parser("policy", help="work with TracingPolicy files")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True, metavar="WHAT")
    pcheck = policy_sub.add_parser("check", help="validate and compile policy files offline; "
                                   "exits non-zero on any error")
    pcheck.add_argument("files", nargs="+", metavar="FILE")

    probe = sub.add_parser("probe", help="show which BPF features this kernel has, by trying them")
    probe.add_argument("--json", action="store_true", help="machine-readable output")

    debug = sub.add_parser("debug", help="developer helpers")
    debug_sub = debug.add_subparsers(dest="debug_command", required=True, metavar="WHAT")
    debug_sub.add_parser("dump-bpf", help="print the process sensor's BPF C with the "
                         "compiler flags this kernel gets")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=(args.log_level or "info").upper(), stream=sys.stderr,
                        format="tetrad: %(levelname)s: %(message)s")
    if args.command == "run":
        from tetrad.cli import run
        return run.run(args)
    if args.command == "reload":
        from tetrad.cli import reload
        return reload.run(args)
    if args.command == "policy":
        from tetrad.cli import policy
        return policy.run(args)
    if args.command == "probe":
        from tetrad.cli import probe
        return probe.run(args)
    from tetrad.cli import debug
    return debug.run(args)
