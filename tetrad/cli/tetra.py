"""`tetra`: talk to the running daemon over its local socket.

  tetra getevents [-o compact|json] [--timestamps] [-e TYPES] [--process RE]
                  [--policy-names N] [-n NAMESPACES] [--pod RE] [--host]
                  [--containers RE] [--container ID]
  tetra policy list | add FILE | delete NAME | enable NAME | disable NAME
  tetra status [-o json]

`getevents` streams live events from the daemon, or, when standard input is
a file or a pipe, reads JSON lines from it instead (`tetra getevents -o
compact < /var/log/tetragon/tetragon.log`), with the same filters: tetrad's
export files and Tetragon's alike (loader, usdt and throttle events too).
Flags are Tetragon's `tetra getevents` flags (with their aliases
--processes, --namespaces, --pods); `--container` (an id prefix) is tetrad's.
Exit statuses: see tetrad/api/client.py (0 ok, 1 the daemon said no, 2 bad
command line, 3 unreachable, 4 busy or no answer in time, 5 answer cut short
or not understood); every failure is one line on standard error, never a
traceback.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from types import SimpleNamespace

from tetrad.api import client
from tetrad.api.client import ApiError
from tetrad.cli import exit_status_epilog
from tetrad.events import compact
from tetrad.filters import Filter, FilterError

# What a malformed answer or event breaks when shown.
SHOWING_FAILS = (KeyError, TypeError, AttributeError, ValueError)
EXPORT_FILE = "/var/log/tetragon/tetragon.log"        # the packaged config's


# ---- events ----------------------------------------------------------------------------

def _container(proc: dict) -> dict | None:
    """The container record (as the daemon's filters read it) of a JSON
    process: from `pod`, or Tetragon's `docker` id prefix alone."""
    pod = proc.get("pod") or {}
    found = pod.get("container") or {}
    record = {k: found[k] for k in ("id", "name") if found.get(k)}
    if "://" in record.get("id", ""):
        record["id"] = record["id"].split("://", 1)[1]      # a pod's "containerd://<id>"
    if "id" not in record and proc.get("docker"):
        record["id"] = proc["docker"]
    k8s = {k: pod[k] for k in ("namespace", "name") if pod.get(k)}
    if k8s:
        record["pod"] = k8s
    return record or None


def _process(proc: dict) -> SimpleNamespace:
    return SimpleNamespace(binary=proc.get("binary", ""), arguments=proc.get("arguments", ""),
                           pid=proc.get("pid"), container=_container(proc))


def event_view(kind: str, body: dict) -> SimpleNamespace:
    """A JSON event as the attributes the export filter reads (kind,
    process, parent, policy_name)."""
    parent = body.get("parent")
    return SimpleNamespace(kind=kind, process=_process(body.get("process") or {}),
                           parent=_process(parent) if isinstance(parent, dict) else None,
                           policy_name=body.get("policy_name", ""))


class _Values(argparse.Action):
    """A flag given several times, each a comma-separated list (as Tetragon's
    string-slice flags)."""

    def __call__(self, parser, namespace, value, option_string=None):
        values = getattr(namespace, self.dest) or []
        setattr(namespace, self.dest, values + [v for v in value.split(",") if v])


def flag_filter(args) -> Filter:
    """The getevents flags as one export filter (tetrad/filters.py): the
    same matching the daemon applies to its JSON file."""
    spec = {}
    if args.event_types:
        spec["event_set"] = [t.upper() for t in args.event_types]
    if args.process:
        spec["binary_regex"] = args.process
    if args.policy_names:
        spec["policy_names"] = args.policy_names
    if args.container:
        spec["container_id"] = args.container
    if args.containers:
        spec["container_name_regex"] = args.containers
    if args.namespace or args.host:
        spec["namespace"] = (args.namespace or []) + ([""] if args.host else [])
    if args.pod:
        spec["pod_regex"] = args.pod
    return Filter.parse(spec)


def _is_event(kind: str, body) -> bool:
    """Events (with a process, or Tetragon's throttle), not other records
    (rate_limit_info)."""
    return isinstance(body, dict) and (kind in compact.FORMATTERS or isinstance(body.get("process"), dict))


def _print_events(lines, args, keep: Filter) -> int:
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            print(f"tetra: skipping a line that is not a JSON object: {line[:80]!r}", file=sys.stderr)
            continue
        kind = compact.event_kind(record)
        body = record.get(kind)
        if not _is_event(kind, body):
            if args.output == "json":
                print(line, flush=True)
            continue
        try:
            if not keep.matches(event_view(kind, body)):
                continue
            text = line if args.output == "json" else compact.line(record, args.timestamps)
        except SHOWING_FAILS as err:
            print(f"tetra: skipping a malformed {kind[:40]!r} event ({type(err).__name__}: {err})",
                  file=sys.stderr)
            continue
        if text is not None:
            print(text, flush=True)
    return 0


def _tell(message: str) -> None:
    """A note for a person at a terminal, on standard error; never in a
    pipe's or a script's way."""
    if sys.stderr.isatty():
        print(f"tetra: {message}", file=sys.stderr, flush=True)


def _connect(path: str) -> client.EventStream:
    """The daemon's event stream, saying so at a terminal; when the daemon
    cannot be reached, where events already written are."""
    _tell(f"connecting to tetrad at {path}")
    try:
        stream = client.EventStream(path)
    except ApiError as err:
        if err.exit_status == client.EXIT_UNREACHABLE:
            raise ApiError(f"{err}; events already written are in the export file: "
                           f"tetra getevents < {EXPORT_FILE}", err.exit_status) from None
        raise
    _tell("connected; waiting for events (Ctrl-C stops)")
    return stream


def getevents(args) -> int:
    keep = flag_filter(args)
    if not sys.stdin.isatty() and not args.live:
        # Export files are UTF-8 (JSON); a damaged byte is a malformed line, not a crash.
        lines = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
        return _print_events(lines, args, keep)
    with _connect(args.socket) as stream:
        try:
            _print_events(stream.lines(), args, keep)
        except KeyboardInterrupt:
            return client.EXIT_OK
    raise ApiError("the daemon ended the event stream (stopped or restarted? "
                   f"{client.CHECK_DAEMON})", client.EXIT_BAD_ANSWER)


# ---- policies and status ---------------------------------------------------------------

def _answer(result: dict) -> int:
    if not result["ok"]:
        print(f"tetra: {result.get('error')}", file=sys.stderr)
        return client.EXIT_REFUSED
    return client.EXIT_OK


def _show(render, result: dict, what: str) -> list[str]:
    """The lines `render` makes of an answer, or the answer is malformed."""
    try:
        return render(result)
    except SHOWING_FAILS as err:
        raise client.bad_answer(f"{what} ({type(err).__name__}: {err})") from None


def _policy_table(result: dict) -> list[str]:
    out = [f"{'NAME':<32} {'STATE':<9} {'MODE':<8} {'HOOKS':>5} {'EVENTS':>8} {'ENFORCED':>8}  SOURCE"]
    for p in result["policies"]:
        c = p.get("counters", {})
        out.append(f"{p['name']:<32} {p['state']:<9} {p.get('mode', ''):<8} {p.get('hooks', 0):>5} "
                   f"{c.get('posted', 0):>8} {c.get('enforced', 0):>8}  {p['source']}")
        if p.get("scope"):
            out.append(f"    only for: {p['scope']}")
        if p.get("error"):
            out.append(f"    error: {p['error']}")
    return out


def policy(args) -> int:
    if args.policy_command == "add":
        try:
            with open(args.file, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as err:
            print(f"tetra: cannot read {args.file}: {getattr(err, 'strerror', None) or err}",
                  file=sys.stderr)
            return client.EXIT_USAGE
        return _answer(client.request(args.socket, "policy_add", yaml=text,
                                      source=os.path.abspath(args.file)))
    if args.policy_command in ("delete", "enable", "disable"):
        return _answer(client.request(args.socket, f"policy_{args.policy_command}", name=args.name))
    result = client.request(args.socket, "policy_list")
    if result["ok"]:
        print("\n".join(_show(_policy_table, result, "the policy list")))
    return _answer(result)


def _status_lines(result: dict) -> list[str]:
    s = result["stats"]
    have = [k for k, v in result["kernel_features"].items() if v]
    lack = [k for k, v in result["kernel_features"].items() if not v]
    out = [f"tetrad {result['version']} on {result['node_name']}, up {result['uptime_seconds']:.0f}s",
           f"kernel: have {', '.join(have)}; lack {', '.join(lack) or 'nothing'}",
           f"events: {s['events_emitted']} emitted, {s['events_written']} written, "
           f"{s['records']} records",
           "lost: " + (", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in s["losses"].items() if n)
                       or "nothing") + (" (shedding now)" if s.get("shedding", {}).get("now") else ""),
           f"process cache: {s['process_cache']['size']}/{s['process_cache']['capacity']}, "
           f"{s['process_cache']['misses']} misses"]
    for name, counters in s.get("plugins", {}).items():
        out.append(f"plugin {name}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counters.items()
                                                  if not isinstance(v, dict)))
    for p in result["policies"]:
        c = p.get("counters", {})
        out.append(f"policy {p['name']}: {p['state']}"
                   + (f", {c.get('posted', 0)} events, {c.get('enforced', 0)} enforced" if c else "")
                   + (f" — {p['error']}" if p.get("error") else ""))
    return out


def status(args) -> int:
    result = client.request(args.socket, "status")
    if args.output == "json":
        print(json.dumps(result, indent=2))
    elif result["ok"]:
        print("\n".join(_show(_status_lines, result, "the status")))
    return _answer(result)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tetra", description="Talk to the running tetrad daemon.",
                                epilog=exit_status_epilog(client.EXIT_STATUSES),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--socket", default=client.DEFAULT_SOCKET,
                   help=f"API socket (default {client.DEFAULT_SOCKET})")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ge = sub.add_parser("getevents", help="print events (live, or JSON lines from stdin)")
    ge.add_argument("-o", "--output", choices=["compact", "json"], default="json")
    ge.add_argument("--timestamps", action="store_true", help="the event's time first (compact lines)")
    ge.add_argument("-e", "--event-types", action=_Values, metavar="TYPES",
                    help="PROCESS_EXEC, PROCESS_EXIT, PROCESS_KPROBE, ...")
    ge.add_argument("--process", "--processes", action=_Values, metavar="REGEX",
                    help="binary path matches")
    ge.add_argument("--policy-names", action=_Values, metavar="NAMES")
    ge.add_argument("-n", "--namespace", "--namespaces", action=_Values, metavar="NAMESPACES",
                    help="Kubernetes namespace of the process's pod")
    ge.add_argument("--pod", "--pods", action=_Values, metavar="REGEX", help="pod name matches")
    ge.add_argument("--host", action="store_true",
                    help="host processes (in no container); with --namespace, either")
    ge.add_argument("--containers", action=_Values, metavar="REGEX", help="container name matches")
    ge.add_argument("--container", action=_Values, metavar="ID", help="container id prefix")
    ge.add_argument("--live", action="store_true", help="read from the daemon even if stdin is not a terminal")
    pol = sub.add_parser("policy", aliases=["tracingpolicy", "tp"], help="list and change policies")
    psub = pol.add_subparsers(dest="policy_command", required=True, metavar="WHAT")
    psub.add_parser("list")
    add = psub.add_parser("add", help="load a policy file (until the daemon restarts)")
    add.add_argument("file")
    for what in ("delete", "enable", "disable"):
        psub.add_parser(what).add_argument("name")
    st = sub.add_parser("status", help="version, uptime, kernel features, policies, counters")
    st.add_argument("-o", "--output", choices=["text", "json"], default="text")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "getevents":
            return getevents(args)
        if args.command in ("policy", "tracingpolicy", "tp"):
            return policy(args)
        return status(args)
    except ApiError as err:
        print(f"tetra: {err}", file=sys.stderr)
        return err.exit_status
    except FilterError as err:
        print(f"tetra: {err}", file=sys.stderr)
        return client.EXIT_USAGE
    except BrokenPipeError:                 # our standard output: `tetra getevents | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return client.EXIT_OK
    except KeyboardInterrupt:
        return client.EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
