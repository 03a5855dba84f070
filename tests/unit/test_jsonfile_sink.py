import contextlib
import gzip
import json
import os
import resource
import signal

import pytest

from tetrad.sinks.jsonfile import WRITE_RETRY_S, JsonLinesSink
from tests.unit.events import event


def lines_of(path, only=False):
    """Events in `path`, or with only=False in every file of its directory."""
    out = []
    for name in [path.name] if only else sorted(os.listdir(path.parent)):
        full = path.parent / name
        opener = gzip.open if name.endswith(".gz") else open
        with opener(full, "rt") as f:
            text = f.read()
        assert text == "" or text.endswith("\n"), f"{name} ends inside a line"
        out += [json.loads(line) for line in text.splitlines()]
    return out


@pytest.mark.parametrize("compress", [False, True])
def test_flood_rotates_and_every_event_is_in_exactly_one_file(tmp_path, compress):
    path = tmp_path / "tetragon.log"
    sink = JsonLinesSink(str(path), "n", max_bytes=50_000, max_backups=1000, compress=compress)
    for pid in range(5000):
        sink.write(event(pid=pid))
    sink.close()
    got = lines_of(path)
    assert sorted(e["process_exec"]["process"]["pid"] for e in got) == list(range(5000))
    assert sink.counters()["rotations"] >= 20
    for name in os.listdir(tmp_path):
        assert os.stat(tmp_path / name).st_size <= 50_000 or name.endswith(".gz")
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o600


def test_backups_beyond_the_limit_are_deleted(tmp_path):
    path = tmp_path / "t.log"
    sink = JsonLinesSink(str(path), "n", max_bytes=2_000, max_backups=2)
    for pid in range(200):
        sink.write(event(pid=pid))
    sink.close()
    assert sorted(os.listdir(tmp_path)) == ["t.log", "t.log.1", "t.log.2"]
    newest = [e["process_exec"]["process"]["pid"] for e in lines_of(path, only=True)]
    assert newest[-1] == 199 and newest == sorted(newest)


def test_interval_rotation_uses_the_clock(tmp_path):
    now = [0.0]
    path = tmp_path / "t.log"
    sink = JsonLinesSink(str(path), "n", interval_s=3600, clock=lambda: now[0])
    sink.write(event(pid=1))
    now[0] = 3599
    sink.write(event(pid=2))
    now[0] = 3601
    sink.write(event(pid=3))
    sink.close()
    assert sink.counters()["rotations"] == 1
    assert [e["process_exec"]["process"]["pid"] for e in lines_of(tmp_path / "t.log.1", only=True)] == [1, 2]


def test_appends_across_restarts_and_tightens_mode(tmp_path):
    path = tmp_path / "t.log"
    path.write_text('{"old":1}\n')
    os.chmod(path, 0o644)
    sink = JsonLinesSink(str(path), "n")
    sink.write(event(pid=7))
    sink.close()
    assert len(path.read_text().splitlines()) == 2
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_a_refusing_disk_keeps_events_buffered_and_counts_each_lost_one_where_write_raises(tmp_path):
    """RLIMIT_FSIZE makes writes past 20 kB fail with EFBIG, as a full disk would."""
    now = [0.0]
    path = tmp_path / "t.log"
    line = len(event(pid=100).to_json("n")) + 1
    sink = JsonLinesSink(str(path), "n", max_bytes=1 << 30, pending_limit=50 * line,
                         clock=lambda: now[0])
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, old_limit[1]))
    raised = 0
    try:
        for pid in range(300):
            try:
                sink.write(event(pid=pid))
            except OSError:
                raised += 1
            if pid % 10 == 9:
                with contextlib.suppress(OSError):
                    sink.flush()
            now[0] += 0.1
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    now[0] += WRITE_RETRY_S
    sink.write(event(pid=1000))      # room again: what waited is written, then this
    sink.close()
    got = [e["process_exec"]["process"]["pid"] for e in lines_of(path, only=True)]
    counters = sink.counters()
    assert raised > 0 and counters["lost_lines"] == raised
    assert len(got) + raised == 301 and got[-1] == 1000 and got == sorted(got)
    assert counters["written_lines"] == len(got)


def test_events_after_rm_of_the_live_file_go_to_a_new_file(tmp_path):
    path = tmp_path / "t.log"
    sink = JsonLinesSink(str(path), "n")
    for pid in range(10):
        sink.write(event(pid=pid))
    sink.flush()
    path.unlink()
    for pid in range(10, 20):
        sink.write(event(pid=pid))
    sink.flush()
    assert path.exists(), "events went on to the removed file"
    assert [e["process_exec"]["process"]["pid"] for e in lines_of(path)] == list(range(10, 20))
    sink.close()
    assert sink.counters()["reopens"] == 1 and sink.counters()["written_lines"] == 20


@pytest.mark.parametrize("create", [False, True], ids=["nocreate", "create"])
def test_logrotate_without_copytruncate_moves_the_file_and_the_sink_follows_the_path(tmp_path, create):
    """logrotate renames the file (and with `create` puts an empty one in its place)."""
    path = tmp_path / "t.log"
    sink = JsonLinesSink(str(path), "n")
    for pid in range(10):
        sink.write(event(pid=pid))
    sink.flush()
    path.rename(tmp_path / "t.log-20261201")
    if create:
        path.touch(mode=0o640)
    for pid in range(10, 20):
        sink.write(event(pid=pid))
    sink.close()
    pids = [e["process_exec"]["process"]["pid"] for e in lines_of(path, only=True)]
    old = [e["process_exec"]["process"]["pid"] for e in lines_of(tmp_path / "t.log-20261201", only=True)]
    assert (old, pids) == (list(range(10)), list(range(10, 20)))
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert sink.counters()["reopens"] == 1
