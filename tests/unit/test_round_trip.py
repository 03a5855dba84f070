"""Round trip without a kernel: events of every kind tetrad makes go through
the real sinks (JSON file, terminal, journald's fields); `tetra getevents -o
compact` on the file prints the terminal's lines, which are journald's
MESSAGEs. (tests/kernel/test_export.py does the same with the real daemon,
for the hook kinds this kernel has.)"""

import io

import pytest

from tetrad.cli import tetra
from tetrad.decode.generic import decode_policy
from tetrad.events.model import exec_event, exit_event
from tetrad.events.policy import HookPlan, policy_event
from tetrad.sinks.journald import journal_fields
from tetrad.sinks.jsonfile import JsonLinesSink
from tetrad.sinks.terminal import TerminalSink
from tests.unit import test_policy_events as recorded
from tests.unit.events import process

HOSTILE = process(pid=66, binary="/tmp/\x1b[2J\nname", arguments='\x1b]0;t\x07 "a b" \u202e',
                  container={"id": "c0ffee" * 10, "runtime": "docker", "name": "web\x1b[1m"})
POD = process(pid=67, binary="/usr/sbin/nginx", arguments="",
              container={"id": "4d1e3c", "runtime": "containerd", "name": "app",
                         "pod": {"namespace": "prod", "name": "web-7d9"}})


def events():
    yield exec_event(1_700_000_000_000_000_000, HOSTILE, recorded.PARENT)
    yield exec_event(1_700_000_000_120_000_000, POD, None)
    for text, mode, raw in recorded.CASES.values():
        yield policy_event(decode_policy(raw), HookPlan(recorded.hook(text, mode=mode)), recorded.T0,
                           recorded.CHILD, recorded.PARENT)
    yield exit_event(1_700_000_001_000_000_000, HOSTILE, None, None, 9)
    yield exit_event(1_700_000_001_000_000_001, POD, None, 0, None)


def test_tetra_prints_what_the_daemon_printed(tmp_path, capsys):
    path = tmp_path / "tetragon.log"
    export = JsonLinesSink(str(path), "node-a")
    screen = io.StringIO()
    terminal = TerminalSink("node-a", screen)
    messages = []
    for event in events():
        export.write(event)
        terminal.write(event)
        messages.append(dict(f.split("=", 1) for f in journal_fields(event, "node-a"))["MESSAGE"])
    export.close()
    lines = screen.getvalue().splitlines()
    assert len(lines) == len(recorded.CASES) + 4 and messages == lines
    assert lines[0].startswith('🚀 process "web\\x1b[1m" "/tmp/\\x1b[2J\\nname" ')
    assert lines[1] == "🚀 process prod/web-7d9 /usr/sbin/nginx "
    args = tetra._parser().parse_args(["getevents", "-o", "compact"])
    with open(path) as f:
        tetra._print_events(f, args, tetra.flag_filter(args))
    assert capsys.readouterr().out.splitlines() == lines


@pytest.mark.parametrize("flag,count", [("--host", len(recorded.CASES)), ("--namespace=prod", 2),
                                        ("--containers=^web", 2)])
def test_tetra_filters_the_daemons_file(tmp_path, capsys, flag, count):
    path = tmp_path / "tetragon.log"
    export = JsonLinesSink(str(path), "node-a")
    for event in events():
        export.write(event)
    export.close()
    args = tetra._parser().parse_args(["getevents", "-o", "compact", flag])
    with open(path) as f:
        tetra._print_events(f, args, tetra.flag_filter(args))
    assert len(capsys.readouterr().out.splitlines()) == count
