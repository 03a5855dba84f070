import gzip
import json
import os
import resource
import signal

import pytest

from tetrad.sinks.jsonfile import JsonLinesSink
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
    assert sink.rotations >= 20
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
    assert sink.rotations == 1
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


def test_full_disk_loses_counted_events_and_leaves_no_half_line(tmp_path):
    """RLIMIT_FSIZE makes writes past 20 kB fail with EFBIG, as a full disk would."""
    path = tmp_path / "t.log"
    sink = JsonLinesSink(str(path), "n", max_bytes=1 << 30)
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, old_limit[1]))
    failures = 0
    try:
        for pid in range(300):
            sink.write(event(pid=pid))
            if pid % 10 == 9:
                try:
                    sink.flush()
                except OSError:
                    failures += 1
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    sink.write(event(pid=1000))      # space again: later events are written
    sink.close()
    got = [e["process_exec"]["process"]["pid"] for e in lines_of(path, only=True)]
    assert failures > 0 and sink.lost > 0
    assert len(got) + sink.lost == 301 and got[-1] == 1000
    assert os.path.getsize(path) <= 20_000 + len(path.read_text().splitlines()[-1]) + 1
