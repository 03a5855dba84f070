"""The compiled programs cache (the process sensor's and the policy
programs'), on the real kernel: a restart loads them without compiling; a
corrupt entry is never loaded, the daemon compiles instead and its policies
are in force either way."""

from __future__ import annotations

import base64
import json
import os
import uuid

import pytest

from tests.kernel.daemon_harness import TIME_FACTOR, DaemonProcess, wait_for
from tests.policy_files import lseek_equal, put

pytestmark = pytest.mark.kernel

RUN = uuid.uuid4().hex[:8]
OFFSET = 7_000_000 + (int(RUN, 16) % 1_000_000) * 4
COMPILED = "policy programs for syscall and tracepoint hooks compiled and loaded"
CACHED = "policy programs for syscall and tracepoint hooks taken from the cache and loaded"
SENSOR_COMPILED = "process sensor compiled and attached"
SENSOR_CACHED = "process sensor taken from the cache and attached"


def lseek(offset: int) -> None:
    try:
        os.lseek(-1, offset, 0)
    except OSError:
        pass


def start(work, cache: str) -> DaemonProcess:
    (work / "tetrad.toml").write_text(f'[policies]\nbpf_cache = "{cache}"\n')
    return DaemonProcess(work, "--policy-dir", str(work / "policies.d"))


def policy_in_force(daemon: DaemonProcess, offset: int) -> None:
    def seen():
        lseek(offset)
        return any(e.get("process_kprobe", {}).get("policy_name") == f"cache-{RUN}"
                   for e in daemon.events())
    wait_for(seen, 30 * TIME_FACTOR, f"an event of the policy for lseek offset {offset}")


def run_once(tmp_path, name: str, cache: str) -> str:
    """Start a daemon, prove its policy is in force, stop it; its log."""
    work = tmp_path / name
    (work / "policies.d").mkdir(parents=True, mode=0o755)
    put(work / "policies.d", "p.yaml", lseek_equal(f"cache-{RUN}", OFFSET))
    daemon = start(work, cache)
    try:
        policy_in_force(daemon, OFFSET)
    finally:
        daemon.stop()
    return daemon.stderr_path.read_text()


@pytest.fixture
def cache(tmp_path):
    os.chmod(tmp_path, 0o755)
    return tmp_path / "cache" / "bpf"


def entries(cache) -> list:
    return sorted(cache.glob("*.json"))


def test_a_restart_takes_the_programs_from_the_cache(tmp_path, cache):
    first = run_once(tmp_path, "first", str(cache))
    assert COMPILED in first and CACHED not in first
    assert SENSOR_COMPILED in first and SENSOR_CACHED not in first
    assert cache.stat().st_mode & 0o777 == 0o700
    sensor, policies = entries(cache)
    for entry in (sensor, policies):
        assert entry.stat().st_mode & 0o777 == 0o600 and entry.stat().st_uid == 0
    second = run_once(tmp_path, "second", str(cache))
    assert CACHED in second and COMPILED not in second
    assert SENSOR_CACHED in second and SENSOR_COMPILED not in second


def test_a_corrupt_entry_is_not_loaded_and_the_policy_still_works(tmp_path, cache):
    # Wrong modes and owners are refused the same way (tests/unit/test_bpfobject.py).
    run_once(tmp_path, "first", str(cache))
    for entry in entries(cache):
        entry.write_text('{"maps": [], "functions": {"g_read": "AAAA"')
    log = run_once(tmp_path, "second", str(cache))
    assert COMPILED in log and CACHED not in log and "unreadable" in log
    assert SENSOR_COMPILED in log and SENSOR_CACHED not in log


def test_a_cached_sensor_the_kernel_refuses_is_compiled_again_and_replaced(tmp_path, cache):
    """Well-formed but wrong (an entry of another build, say): the kernel
    refuses a program of it; the daemon compiles the sensor instead and
    writes the good result over the entry."""
    run_once(tmp_path, "first", str(cache))
    [sensor] = [e for e in entries(cache) if "follow_state" in json.loads(e.read_text())["functions"]]
    compiled = json.loads(sensor.read_text())
    name = next(n for n in compiled["functions"] if n.startswith("tracepoint__sched__"))
    compiled["functions"][name] = base64.b64encode(bytes(16)).decode()      # not a program
    sensor.write_text(json.dumps(compiled))
    log = run_once(tmp_path, "second", str(cache))
    assert "the process sensor from the BPF cache did not load" in log
    assert SENSOR_COMPILED in log
    third = run_once(tmp_path, "third", str(cache))
    assert SENSOR_CACHED in third and "did not load" not in third


def test_the_compiler_child_compiles_the_sensor_without_attaching_it():
    """bcc's BPF() attaches TRACEPOINT_PROBEs as it compiles; the child that
    compiles bpf/process.c must not run a second copy of the sensor."""
    from tetrad.sensors import compiler
    from tetrad.sensors.process import ProcessSensor
    sensor = ProcessSensor()
    b = compiler._CompileOnly(src_file=str(sensor.source()).encode(), cflags=sensor.cflags())
    try:
        assert not b.tracepoint_fds and not b.raw_tracepoint_fds
        assert b.num_open_kprobes() == 0
    finally:
        b.cleanup()
