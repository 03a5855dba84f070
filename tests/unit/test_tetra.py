"""tetra getevents on JSON lines: the flags filter like the daemon's export filter."""

import json

from tetrad.cli import tetra

ID = "e7fe6efb952421eb280601039f4f8cd7683c0c5f631fecd491ad87bea23642fd"


def line(kind, binary, **body):
    process = {"exec_id": "x", "pid": 1, "binary": binary, **body.pop("process", {})}
    return json.dumps({kind: {"process": process, **body}, "node_name": "n", "time": "t"})


LINES = [
    line("process_exec", "/usr/bin/curl", process={"arguments": "-I x"}),
    line("process_exit", "/usr/bin/curl", status=0),
    line("process_kprobe", "/usr/bin/cat", policy_name="files", function_name="__x64_sys_openat",
         args=[{"string_arg": "/etc/shadow"}], action="KPROBE_ACTION_POST"),
    line("process_exec", "/bin/sh", process={"docker": ID[:31]}),      # Tetragon's own export
    line("process_exec", "/bin/sh", process={"container": {"id": ID, "name": "web"}}),
    json.dumps({"rate_limit_info": {"number_of_dropped_process_events": 3}, "node_name": "n"}),
]


def run(capsys, *flags):
    args = tetra._parser().parse_args(["getevents", *flags])
    assert tetra._print_events(LINES, args, tetra.flag_filter(args)) == 0
    return capsys.readouterr().out.splitlines()


def test_compact_lines_from_json(capsys):
    out = run(capsys, "-o", "compact")
    assert out[0] == "🚀 process n /usr/bin/curl -I x"
    assert out[1] == "💥 exit    n /usr/bin/curl 0"
    assert out[2].startswith("📬 open    n /usr/bin/cat /etc/shadow")
    assert out[4] == "🚀 process web /bin/sh"


def test_flags_filter_types_process_policy_and_container(capsys):
    compact = ("-o", "compact")
    assert len(run(capsys, *compact, "--event-types", "process_exec")) == 3
    assert len(run(capsys, *compact, "--event-types", "PROCESS_EXEC", "--process", "curl$")) == 1
    assert len(run(capsys, *compact, "--policy-names", "files")) == 1
    # both the full container id and Tetragon's docker prefix match an id prefix
    assert len(run(capsys, *compact, "--container", ID[:12])) == 2
    # records that are not events (rate_limit_info) pass through in JSON output only
    assert any("rate_limit_info" in l for l in run(capsys, "--event-types", "PROCESS_EXIT"))
    assert not any("rate_limit_info" in l for l in run(capsys, "-o", "compact"))


def test_unknown_event_type_is_an_error(capsys):
    assert tetra.main(["getevents", "--event-types", "EXEC"]) == 2
    assert "event_set: unknown" in capsys.readouterr().err


def test_status_names_every_kind_of_loss_there_is():
    from tetrad.cli.tetra import _status_lines
    stats = {"events_emitted": 10, "events_written": 7, "records": 12,
             "losses": {"ringbuf_full": 0, "shed": 5, "queue_full": 3, "sink_lines_lost": 0},
             "shedding": {"now": True},
             "process_cache": {"size": 1, "capacity": 2, "misses": 0}}
    lines = _status_lines({"version": "v", "node_name": "n", "uptime_seconds": 1,
                           "kernel_features": {"btf": True}, "stats": stats, "policies": []})
    assert "lost: 5 shed, 3 queue full (shedding now)" in lines
    stats["losses"] = {"shed": 0}
    stats["shedding"] = {"now": False}
    assert "lost: nothing" in _status_lines({"version": "v", "node_name": "n", "uptime_seconds": 1,
                                             "kernel_features": {}, "stats": stats, "policies": []})
