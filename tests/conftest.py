"""Test suite wiring: markers for tests that need the real kernel or the guest.

- `kernel`: loads BPF programs into the running kernel; needs root.
- `guest`: needs what only the Debian test guest has (kprobes, BPF LSM,
  matching headers, systemd as PID 1). These run inside the guest, booted
  once per test run by tests/guest/run.sh; elsewhere they are skipped with
  that reason. TETRAD_IN_GUEST=1 marks the guest.
"""

import os

import pytest

IN_GUEST = os.environ.get("TETRAD_IN_GUEST") == "1"


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
