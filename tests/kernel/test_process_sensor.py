"""The process sensor on the real kernel, through the real `tetrad run`.

One daemon serves the module; every test makes its own uniquely marked
processes and reads the resulting events from the JSON export.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from tests.kernel.daemon_harness import TRUE, DaemonProcess, execs, exits

pytestmark = pytest.mark.kernel
PY = sys.executable
SH = os.path.realpath("/bin/sh")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = DaemonProcess(tmp_path_factory.mktemp("daemon"))
    yield d
    if d.proc.poll() is None:
        d.stop()


def mark() -> str:
    return uuid.uuid4().hex[:12]


def test_short_lived_process_has_binary_args_cwd_uid_parent_and_status(daemon, tmp_path):
    m = mark()
    os.chmod(tmp_path, 0o755)
    subprocess.run([TRUE, f"alpha-{m}", "beta gamma", f"delta-{m}"], cwd=tmp_path, check=True)
    # and one run as another user, exiting with a status
    subprocess.run([SH, "-c", f"exit 3 # {m}"], cwd=tmp_path, user=65534, group=65534)
    events = daemon.sync()

    [ex] = execs(events, arguments=f'alpha-{m} "beta gamma" delta-{m}')
    proc = ex["process"]
    assert proc["binary"] == TRUE
    assert proc["cwd"] == str(tmp_path)
    assert proc["uid"] == 0
    assert proc["pid"] == proc["tid"]
    assert "execve" in proc["flags"] and "clone" in proc["flags"]
    # the parent is this test process, known from the /proc scan
    assert ex["parent"]["pid"] == os.getpid()
    assert proc["parent_exec_id"] == ex["parent"]["exec_id"]
    assert ex["parent"]["binary"] == os.path.realpath(sys.executable)
    [done] = exits(events, exec_id=proc["exec_id"])
    assert "status" not in done and "signal" not in done   # exit status 0

    [sh] = execs(events, arguments=f'-c "exit 3 # {m}"')
    assert sh["process"]["uid"] == 65534
    [sh_exit] = exits(events, exec_id=sh["process"]["exec_id"])
    assert sh_exit["status"] == 3


def test_shell_pipeline_children_name_the_shell_as_parent(daemon, tmp_path):
    m = mark()
    out = subprocess.run([SH, "-c", f"echo {m} | tr a-z A-Z | cat"], cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == m.upper()
    events = daemon.sync()
    [sh] = execs(events, arguments=f'-c "echo {m} | tr a-z A-Z | cat"')
    sh_id = sh["process"]["exec_id"]
    [tr] = execs(events, binary=os.path.realpath("/usr/bin/tr"), arguments="a-z A-Z",
                 parent_exec_id=sh_id)
    [cat] = execs(events, binary=os.path.realpath("/usr/bin/cat"), parent_exec_id=sh_id)
    for e in (tr, cat):
        assert e["parent"]["binary"] == SH
        assert e["process"]["cwd"] == str(tmp_path)
        assert exits(events, exec_id=e["process"]["exec_id"])
    # `echo` runs in a forked shell that never execs: a clone of sh, which
    # still gets an exit event naming sh as its parent.
    clones = exits(events, parent_exec_id=sh_id, flags="clone")
    assert clones and all(c["process"]["binary"] == SH for c in clones)
    assert exits(events, exec_id=sh_id)


def test_child_of_a_subshell_names_the_subshell(daemon):
    m = mark()
    subprocess.run([SH, "-c", f"( tr a-z A-Z; true ) </dev/null # {m}"], check=True)
    events = daemon.sync()
    [sh] = execs(events, arguments=f'-c "( tr a-z A-Z; true ) </dev/null # {m}"')
    [tr] = [e for e in execs(events, binary=os.path.realpath("/usr/bin/tr"))
            if e["parent"].get("parent_exec_id") == sh["process"]["exec_id"]]
    assert tr["parent"]["flags"] == "clone"
    assert tr["parent"]["binary"] == SH
    assert tr["process"]["parent_exec_id"] == tr["parent"]["exec_id"]


def _sleeper(m: str, setup: str = "import time") -> subprocess.Popen:
    """A python3 that runs `setup`, says so, then sleeps: a signal sent
    after this returns finds it past start-up (a fixed delay did not, on a
    loaded machine: SIGINT landed while `site` ran and was swallowed)."""
    # A shell's background job starts with SIGINT ignored, and Python then
    # keeps it so: the sleeper takes the default action, whoever ran us.
    proc = subprocess.Popen([PY, "-c", f"{setup}; print('ready', flush=True); time.sleep(60) # {m}"],
                            stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline() == "ready\n"
    return proc


def _exit_of(events, m: str) -> dict:
    [ex] = [e for e in execs(events) if e["process"].get("arguments", "").endswith(f"# {m}\"")]
    [done] = exits(events, exec_id=ex["process"]["exec_id"])
    return done


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_death_by_signal_names_the_signal(daemon, sig):
    # SIGTERM takes the kernel's shortcut (the group exit is decided when the
    # signal is sent and each thread then "takes" SIGKILL); Python catches
    # SIGINT, then re-raises it with the default action to die of it.
    m = mark()
    p = _sleeper(m)
    p.send_signal(sig)
    assert p.wait() == -sig
    done = _exit_of(daemon.sync(), m)
    assert done["signal"] == sig.name and "status" not in done


def test_handled_sigterm_then_clean_exit_is_a_status(daemon):
    m = mark()
    p = _sleeper(m, "import signal,sys,time; signal.signal(signal.SIGTERM, "
                    "lambda *a: sys.exit(0))")
    p.terminate()
    assert p.wait() == 0
    done = _exit_of(daemon.sync(), m)
    assert "signal" not in done and "status" not in done


def test_multithreaded_exit_group_reports_its_code_not_sigkill(daemon):
    m = mark()
    code = ("import os,threading,time; [threading.Thread(target=time.sleep, args=(60,), "
            "daemon=True).start() for _ in range(4)]; time.sleep(0.2); os._exit(7)")
    p = subprocess.Popen([PY, "-c", f"{code} # {m}"])
    assert p.wait() == 7
    done = _exit_of(daemon.sync(), m)
    assert done.get("status") == 7 and "signal" not in done


def test_crash_reports_sigsegv(daemon):
    m = mark()
    p = subprocess.Popen([PY, "-c", f"import ctypes; ctypes.string_at(0) # {m}"])
    assert p.wait() == -signal.SIGSEGV
    assert _exit_of(daemon.sync(), m)["signal"] == "SIGSEGV"


def test_exec_storm_loses_nothing(daemon):
    """10,000 fork+exec: exactly 10,000 exec and 10,000 exit events.
    TETRAD_STORM_EXECS lowers the count where execs are slow: the guest
    runs under emulation at ~36 ms per exec."""
    m = mark()
    n = int(os.environ.get("TETRAD_STORM_EXECS", "10000"))
    started = time.monotonic()
    for _ in range(n):
        pid = os.posix_spawn(TRUE, [TRUE, f"storm-{m}"], os.environ)
        os.waitpid(pid, 0)
    spawn_s = time.monotonic() - started
    events = daemon.sync(timeout=120)
    storm = execs(events, arguments=f"storm-{m}")
    ids = {e["process"]["exec_id"] for e in storm}
    ended = [e for e in exits(events, arguments=f"storm-{m}") if e["process"]["exec_id"] in ids]
    print(f"{n} fork+exec in {spawn_s:.1f}s: {len(storm)} exec, {len(ended)} exit events")
    assert len(storm) == n and len(ids) == n
    assert len(ended) == n


def test_daemon_stops_cleanly_and_reports_no_loss(daemon):
    """Runs last in this module: SIGTERM, then the final counters."""
    counters = daemon.stop()
    assert daemon.proc.returncode == 0
    assert counters["ringbuf_drops"] == 0
    assert counters["queue_drops"] == 0
    assert counters["records"] > 2 * int(os.environ.get("TETRAD_STORM_EXECS", "10000"))
