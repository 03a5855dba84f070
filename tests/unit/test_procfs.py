import os
import subprocess
import sys
import time

from tetrad.process.procfs import ProcfsScanner, cgroup_v2_path, start_ticks


def test_start_ticks_with_hostile_comm():
    # comm may hold spaces and parentheses; fields are counted after the last ')'
    line = "123 (a) b (c)) S 1 123 123 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10"
    assert start_ticks(line) == 987654


def test_scan_finds_a_running_child_with_its_identity(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "marker-arg"],
                             cwd=tmp_path)
    try:
        time.sleep(0.2)
        scanner = ProcfsScanner(clk_tck=100, boot_wall_ns=1_000)
        result = scanner.scan()
        [entry] = [e for e in result.entries if e.pid == child.pid]
        assert entry.argv[-1] == "marker-arg"
        assert entry.binary == os.path.realpath(sys.executable)
        assert entry.cwd == str(tmp_path)
        assert entry.ppid == os.getpid()
        assert entry.parent_ktime == scanner.ktime_of(os.getpid())
        assert entry.ktime % 10_000_000 == 0 and entry.start_time_ns == 1_000 + entry.ktime
        assert entry.uid == os.getuid()
        assert result.threads[child.pid] >= 1
        with open(f"/proc/{child.pid}/cgroup") as f:
            assert entry.cgroup == cgroup_v2_path(f.read())
        assert not [e for e in result.entries if e.pid == 2 or e.ppid == 2]   # no kernel threads
    finally:
        child.kill()
        child.wait()


def test_cgroup_v2_path_from_v1_hybrid_and_v2_files():
    hybrid = "9:name=systemd:/libpod_parent/libpod-ab\n1:cpu:/x\n0::/libpod_parent/libpod-ab\n"
    assert cgroup_v2_path(hybrid) == "/libpod_parent/libpod-ab"
    assert cgroup_v2_path("0::/system.slice/ssh.service\n") == "/system.slice/ssh.service"
    assert cgroup_v2_path("4:memory:/x\n") == ""
