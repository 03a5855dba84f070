"""The JSON export file under faults, on a small tmpfs each test mounts.

Written as a broken disk and a careless administrator would act: rotation
blocked by an immutable directory or a directory in a backup's place, gzip
running out of space, a disk that fills up with backups on it or without.
Each case checks that writing goes on, that every line is in a file or
counted lost (never both, never neither), and that the sink never touches a
descriptor it does not own. Needs root (mount, chattr); CI runs as root.
"""

import contextlib
import errno
import gzip
import json
import logging
import os
import subprocess
import time
from pathlib import Path

import pytest

from tetrad.sinks import jsonfile
from tetrad.sinks.dispatch import SinkWorker, queued_bytes
from tetrad.sinks.jsonfile import JsonLinesSink
from tests.unit.events import event

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="mounts a 256 KiB tmpfs and sets chattr +i: run as root")

LINE = len(event(pid=100).to_json("n")) + 1


@pytest.fixture
def fs(tmp_path):
    """A 256 KiB tmpfs: small enough to fill in a test."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tetrad-test", str(mnt)],
                   check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["chattr", "-i", str(mnt)], check=False)
        # lazy: a sink a failed test left open must not keep the mount
        subprocess.run(["umount", "--lazy", str(mnt)], check=True)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def after_retry(self) -> None:
        self.now += max(jsonfile.ROTATE_RETRY_S, jsonfile.WRITE_RETRY_S) + 1


def pids_in(path: Path) -> list[int]:
    """The pids of the events in one file, in order; no line may be cut."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt") as f:
        text = f.read()
    assert text == "" or text.endswith("\n"), f"{path.name} ends inside a line"
    return [json.loads(line)["process_exec"]["process"]["pid"] for line in text.splitlines()]


def all_pids(directory: Path, stem: str = "t.log") -> list[int]:
    """Pids in every export file, oldest file first."""
    names = [n for n in os.listdir(directory) if n.startswith(stem)]

    def age(name: str) -> int:
        rest = name[len(stem):].removesuffix(".gz")
        return -int(rest[1:]) if rest else 0
    return [pid for name in sorted(names, key=age) for pid in pids_in(directory / name)]


def fill(fs: Path) -> Path:
    """Fill the file system to ENOSPC; returns the file that holds the space."""
    blocker = fs / "blocker"
    with open(blocker, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC
    return blocker


def write_range(sink, start: int, stop: int) -> None:
    for pid in range(start, stop):
        sink.write(event(pid=pid))


def test_a_rotation_into_an_immutable_directory_fails_once_logged_and_writing_goes_on(fs, caplog):
    clock = Clock()
    path = fs / "t.log"
    sink = JsonLinesSink(str(path), "n", max_bytes=40 * LINE, max_backups=2, clock=clock)
    write_range(sink, 0, 30)
    subprocess.run(["chattr", "+i", str(fs)], check=True)
    with caplog.at_level(logging.ERROR, logger="tetrad.sinks.jsonfile"):
        write_range(sink, 30, 60)            # rotation due at 40: rename refused (EPERM)
        sink.flush()
        assert pids_in(path) == list(range(60)), "events after the failed rotation are not in the file"
        clock.after_retry()
        write_range(sink, 60, 70)            # tried again, refused again
        sink.flush()
    assert pids_in(path) == list(range(70))
    counters = sink.counters()
    assert counters["failed_rotations"] == 2 and counters["rotations"] == 0
    refusals = [r for r in caplog.records if "rotate" in r.getMessage()]
    assert len(refusals) == 1, "a failed rotation is logged once, not per attempt"
    assert "chattr" in refusals[0].getMessage() or "lsattr" in refusals[0].getMessage()

    subprocess.run(["chattr", "-i", str(fs)], check=True)
    clock.after_retry()
    write_range(sink, 70, 80)
    sink.close()
    assert sink.counters()["rotations"] == 1
    assert all_pids(fs) == list(range(80))
    assert sink.counters()["lost_lines"] == 0 and sink.counters()["written_lines"] == 80


def test_after_a_failed_rotation_no_descriptor_of_another_file_is_written_or_closed(fs, tmp_path):
    """The old sink closed its descriptor before renaming, kept the number when
    the rename failed, then wrote to and closed whatever got that number next."""
    path = fs / "t.log"
    sink = JsonLinesSink(str(path), "n", max_bytes=20 * LINE, max_backups=2)
    write_range(sink, 0, 15)
    subprocess.run(["chattr", "+i", str(fs)], check=True)
    with contextlib.suppress(OSError):
        write_range(sink, 15, 30)            # rotation fails here
    sentinel = os.open(tmp_path / "sentinel", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(sentinel, b"sentinel\n")
        for pid in range(30, 60):
            with contextlib.suppress(OSError):
                sink.write(event(pid=pid))
        with contextlib.suppress(OSError):
            sink.close()
        os.fstat(sentinel)                   # EBADF if the sink closed it
        assert (tmp_path / "sentinel").read_bytes() == b"sentinel\n", "the sink wrote into another file"
    finally:
        os.close(sentinel)
    assert pids_in(path) == list(range(60))


def test_a_directory_in_the_oldest_backups_place_fails_the_rotation_not_the_sink(fs):
    clock = Clock()
    path = fs / "t.log"
    (fs / "t.log.1").mkdir()
    (fs / "t.log.1" / "keep").write_text("not tetrad's\n")
    sink = JsonLinesSink(str(path), "n", max_bytes=20 * LINE, max_backups=1, clock=clock)
    write_range(sink, 0, 50)
    sink.flush()
    assert pids_in(path) == list(range(50))
    assert sink.counters()["failed_rotations"] == 1
    (fs / "t.log.1" / "keep").unlink()
    (fs / "t.log.1").rmdir()
    clock.after_retry()
    write_range(sink, 50, 55)
    sink.close()
    assert all_pids(fs) == list(range(55)) and sink.counters()["rotations"] == 1


def test_no_space_for_the_gzip_copy_leaves_no_partial_backup_and_loses_nothing(fs):
    clock = Clock()
    path = fs / "t.log"
    sink = JsonLinesSink(str(path), "n", max_bytes=100 * LINE, max_backups=3, compress=True,
                         clock=clock)
    write_range(sink, 0, 99)
    sink.flush()
    blocker = fill(fs)
    write_range(sink, 99, 140)               # rotation due: gzip hits ENOSPC
    assert sink.counters()["failed_rotations"] == 1
    assert sorted(os.listdir(fs)) == ["blocker", "t.log"], "a partial gzip backup was left behind"
    blocker.unlink()
    clock.after_retry()
    write_range(sink, 140, 150)
    sink.close()
    assert sink.counters()["rotations"] >= 1
    assert all_pids(fs) == list(range(150))
    assert sink.counters()["lost_lines"] == 0


def test_a_full_disk_with_backups_deletes_the_oldest_and_loses_no_event(fs):
    """On a full disk new events are worth more than the oldest backup."""
    path = fs / "t.log"
    sink = JsonLinesSink(str(path), "n", max_bytes=60 * LINE, max_backups=4)
    write_range(sink, 0, 230)                # t.log, .1, .2, .3
    sink.flush()
    blocker = fill(fs)
    write_range(sink, 230, 1230)
    sink.flush()
    blocker.unlink()                         # space again
    write_range(sink, 1230, 1330)
    sink.close()
    counters = sink.counters()
    got = all_pids(fs)
    assert counters["lost_lines"] == 0, f"{counters['lost_lines']} of 1,100 lost"
    assert got == list(range(got[0], 1330)), "the files hold a gap, not only the oldest dropped"
    assert counters["dropped_backups"] >= 1 and got[0] > 0
    assert counters["written_lines"] == 1330


def test_a_full_disk_without_backups_counts_each_lost_line_once_and_never_as_written(fs):
    """Through the real sink worker: what it counts as written is in the file."""
    path = fs / "t.log"
    sink = JsonLinesSink(str(path), "n", max_backups=0, pending_limit=30 * LINE)
    blocker = fill(fs)
    worker = SinkWorker(sink, capacity=1000)
    worker.start()
    batch = [event(pid=pid) for pid in range(200)]
    worker.offer(batch, [queued_bytes(e) for e in batch])
    deadline = time.monotonic() + 10
    while worker.backlog and time.monotonic() < deadline:
        time.sleep(0.02)
    assert worker.backlog == 0
    blocker.unlink()
    worker.retire()
    assert worker.join(10)
    got = pids_in(path)
    lost = sink.counters()["lost_lines"]
    assert lost > 0
    assert len(got) == worker.written, "the dispatcher counted lost lines as written"
    assert len(got) + lost == 200
    assert got == sorted(got)
