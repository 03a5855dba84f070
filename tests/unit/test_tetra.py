"""tetra getevents on JSON lines: the flags filter like the daemon's export
filter; tetrad's export files and Tetragon's print alike."""

import json
import subprocess
import sys
from pathlib import Path

from tetrad.cli import tetra

ID = "e7fe6efb952421eb280601039f4f8cd7683c0c5f631fecd491ad87bea23642fd"


def line(kind, binary, **body):
    process = {"exec_id": "x", "pid": 1, "binary": binary, **body.pop("process", {})}
    return json.dumps({kind: {"process": process, **body}, "node_name": "n",
                       "time": "2023-11-14T22:13:20.5Z"})


LINES = [
    line("process_exec", "/usr/bin/curl", process={"arguments": "-I x"}),
    line("process_exit", "/usr/bin/curl", status=0),
    line("process_kprobe", "/usr/bin/cat", policy_name="files", function_name="__x64_sys_openat",
         args=[{"int_arg": -100}, {"string_arg": "/etc/shadow"}], action="KPROBE_ACTION_POST"),
    line("process_exec", "/bin/sh", process={"docker": ID[:31]}),      # Tetragon outside Kubernetes
    line("process_exec", "/bin/sh", process={"pod": {"container": {"id": ID, "name": "web"}},
                                             "docker": ID[:31]}),     # tetrad, a container
    line("process_exec", "/usr/sbin/nginx",
         process={"pod": {"namespace": "prod", "name": "web-7d9",
                          "container": {"id": "containerd://c0ffee", "name": "app"}}}),
    json.dumps({"rate_limit_info": {"number_of_dropped_process_events": "3"}, "node_name": "n"}),
    json.dumps({"process_throttle": {"type": "THROTTLE_START", "cgroup": "/kubepods/x"}, "node_name": "n"}),
    line("process_loader", "/usr/bin/curl", path="/usr/lib/x86_64-linux-gnu/libc.so.6", buildid="3q2+7w=="),
    line("process_usdt", "/usr/bin/python3", path="/usr/bin/python3", provider="python", name="gc__start"),
]


def run(capsys, *flags, lines=LINES):
    args = tetra._parser().parse_args(["getevents", *flags])
    assert tetra._print_events(lines, args, tetra.flag_filter(args)) == 0
    return capsys.readouterr().out.splitlines()


def test_compact_lines_from_json(capsys):
    assert run(capsys, "-o", "compact") == [
        '🚀 process n /usr/bin/curl "-I x"',
        "💥 exit    n /usr/bin/curl  0",
        "📬\ufe0f openat  n /usr/bin/cat /etc/shadow",
        "🚀 process n /bin/sh ",
        "🚀 process web /bin/sh ",
        "🚀 process prod/web-7d9 /usr/sbin/nginx ",
        "🧬 throttle START /kubepods/x",
        "🧬 loader  n /usr/bin/curl deadbeef /usr/lib/x86_64-linux-gnu/libc.so.6",
        "🕵️ usdt    n /usr/bin/python3 /usr/bin/python3 python gc__start",
    ]


def test_timestamps_first(capsys):
    out = run(capsys, "-o", "compact", "--timestamps", "-e", "PROCESS_EXEC")
    assert out[0] == '2023-11-14T22:13:20.500000000Z 🚀 process n /usr/bin/curl "-I x"'


def test_flags_filter_types_process_policy_and_container(capsys):
    compact = ("-o", "compact")
    assert len(run(capsys, *compact, "--event-types", "process_exec")) == 4
    assert len(run(capsys, *compact, "-e", "PROCESS_EXEC,PROCESS_LOADER")) == 5
    assert len(run(capsys, *compact, "--event-types", "PROCESS_EXEC", "--process", "curl$")) == 1
    assert len(run(capsys, *compact, "--processes", "curl$")) == 3
    assert len(run(capsys, *compact, "--policy-names", "files")) == 1
    # both the full container id and Tetragon's docker prefix match an id prefix
    assert len(run(capsys, *compact, "--container", ID[:12])) == 2
    assert run(capsys, *compact, "--containers", "^we") == ["🚀 process web /bin/sh "]
    # a pod's container id is Kubernetes' "containerd://<id>"; the prefix is the id's
    assert run(capsys, *compact, "--container", "c0ff") == ["🚀 process prod/web-7d9 /usr/sbin/nginx "]
    # records that are not events (rate_limit_info) pass through in JSON output only
    assert any("rate_limit_info" in l for l in run(capsys, "--event-types", "PROCESS_EXIT"))
    assert not any("rate_limit_info" in l for l in run(capsys, "-o", "compact"))


def test_namespace_pod_and_host(capsys):
    compact = ("-o", "compact", "-e", "PROCESS_EXEC")
    nginx = "🚀 process prod/web-7d9 /usr/sbin/nginx "
    assert run(capsys, *compact, "--namespace", "prod") == [nginx]
    assert run(capsys, *compact, "-n", "dev,prod") == [nginx]
    assert run(capsys, *compact, "--pod", "^web-") == [nginx]
    assert run(capsys, *compact, "--pods", "^db-") == []
    # host: in no container (Tetragon's own export outside Kubernetes has only
    # `docker`, which says a container too)
    assert run(capsys, *compact, "--host") == ['🚀 process n /usr/bin/curl "-I x"']
    assert len(run(capsys, *compact, "--host", "--namespace", "prod")) == 2


def test_json_output_passes_lines_through_unchanged(capsys):
    # records that are not events are not filtered
    assert run(capsys, "-e", "PROCESS_KPROBE") == [LINES[2], LINES[6]]


def test_malformed_lines_are_skipped_with_a_word(capsys):
    bad = ["not json", "[1]", json.dumps({"process_exec": {"process": {"binary": 5}}}),
           json.dumps({"process_kprobe": {"process": {}, "args": [{}, {}, {"size_arg": "x"}],
                                          "function_name": "__x64_sys_write"}}),
           LINES[0]]
    args = tetra._parser().parse_args(["getevents", "-o", "compact"])
    assert tetra._print_events(bad, args, tetra.flag_filter(args)) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ['🚀 process n /usr/bin/curl "-I x"']
    assert err.count("tetra: skipping") == 4, err


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
    stats["plugins"] = {"kubernetes": {"pods_cached": 4, "cri_errors": 0, "kubelet": {"errors": 1}}}
    assert "plugin kubernetes: pods cached 4, cri errors 0" in _status_lines(
        {"version": "v", "node_name": "n", "uptime_seconds": 1, "kernel_features": {}, "stats": stats,
         "policies": []})
    stats["losses"] = {"shed": 0}
    stats["shedding"] = {"now": False}
    assert "lost: nothing" in _status_lines({"version": "v", "node_name": "n", "uptime_seconds": 1,
                                             "kernel_features": {}, "stats": stats, "policies": []})


def test_a_damaged_export_file_is_read_line_by_line():
    damaged = (LINES[0].encode() + b"\n\xff\xfe{\n" + LINES[1].encode().replace(b"curl", b"cu\xffrl") + b"\n")
    out = subprocess.run([sys.executable, "-m", "tetrad.cli.tetra", "getevents", "-o", "compact"],
                         input=damaged, capture_output=True, cwd=Path(__file__).resolve().parents[2],
                         timeout=60)
    assert out.returncode == 0
    assert out.stdout.decode().splitlines() == ['🚀 process n /usr/bin/curl "-I x"',
                                                "💥 exit    n /usr/bin/cu\ufffdrl  0"]
    assert out.stderr.decode().count("tetra: skipping") == 1
