"""Test suite wiring: markers for tests that need the real kernel or the guest.

- `kernel`: loads BPF programs into the running kernel; needs root.
- `guest`: needs what only the Debian test guest has (kprobes, BPF LSM,
  matching headers, systemd as PID 1). These run inside the guest, booted
  once per test run by tests/guest/run.sh; elsewhere they are skipped with
  that reason. TETRAD_IN_GUEST=1 marks the guest.

Every JSON event line tetrad makes in the test process (the JSON file, the
API stream, journald's TETRAD_JSON: all come from Event.to_json, and
rate_limit_info from filters.rate_limit_info) is checked against Tetragon's
schema (tests/tetragon_schema.py) by `event_lines_conform`; a test that
made a line that does not conform fails. The kernel tests' daemon runs in a
process of its own: tests/kernel/daemon_harness.py checks every line of its
export file.
"""

import os
import sys
from pathlib import Path

import pytest

from tests import tetragon_schema
from tetrad import filters
from tetrad.events.model import Event

IN_GUEST = os.environ.get("TETRAD_IN_GUEST") == "1"
# The Kubernetes plugin (its own distribution, plugins/kubernetes) is tested
# from the checkout too: its package importable without installing it. (The
# daemon finds it by its entry point: kernel tests install it, see
# tests/kernel/test_kubernetes.py.)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins/kubernetes"))


def pytest_collection_modifyitems(config, items):
    not_root = pytest.mark.skip(reason="loads BPF programs: run the tests as root")
    not_guest = pytest.mark.skip(reason="needs the Debian guest (kprobes, BPF LSM, systemd); "
                                 "runs there via tests/guest/run.sh")
    for item in items:
        if "guest" in item.keywords and not IN_GUEST:
            item.add_marker(not_guest)
        elif "kernel" in item.keywords and os.geteuid() != 0:
            item.add_marker(not_root)


@pytest.fixture(scope="session", autouse=True)
def kernel_mounts():
    """tracefs/securityfs/bpffs, which a host without systemd may lack."""
    if os.geteuid() == 0:
        from tetrad.bpf.mounts import ensure_kernel_mounts
        ensure_kernel_mounts()


@pytest.fixture(autouse=True)
def event_lines_conform(monkeypatch):
    bad: list[str] = []

    def checked(make):
        def wrapper(*args, **kwargs):
            line = make(*args, **kwargs)
            found = tetragon_schema.problems(line)
            if found:
                bad.append("\n  ".join(found) + f"\n  in {line[:1000]}")
            return line
        return wrapper

    monkeypatch.setattr(Event, "to_json", checked(Event.to_json))
    monkeypatch.setattr(filters, "rate_limit_info", checked(filters.rate_limit_info))
    yield
    if bad:
        pytest.fail(f"{len(bad)} event line(s) not in Tetragon's schema:\n  " + "\n  ".join(bad[:5]),
                    pytrace=False)
