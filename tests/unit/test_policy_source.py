"""tetrad.policy.source: reading a policy file as an attacker would hand it over."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pytest

from tetrad.cli.policy import INVALID, OK, check_file
from tetrad.policy import limits, source
from tetrad.policy.errors import PolicyError
from tests import policy_files

SECRET = "root:$6$saltsaltsalt$hashhashhashhashhashhash:19000:0:99999:7:::\n"


@pytest.fixture(autouse=True)
def no_hang():
    """A read that blocks fails the test instead of hanging it."""
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("blocked"))
    signal.alarm(10)
    yield
    signal.alarm(0)


def refused(path) -> str:
    with pytest.raises(PolicyError) as info:
        source.read_file(str(path))
    [(where, reason)] = info.value.problems
    assert info.value.source == str(path) and where == ""
    return reason


def test_a_regular_file_is_read(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(policy_files.lseek_equal("p", 1))
    f = source.read_file(str(path))
    assert f.data == path.read_bytes() and stat.S_ISREG(f.stat.st_mode)


def test_a_fifo_does_not_hang(tmp_path):
    fifo = tmp_path / "p.yaml"
    os.mkfifo(fifo)
    assert refused(fifo) == "is a FIFO; a policy must be a regular file"
    verdict, line = check_file(str(fifo), as_root=False)
    assert verdict == INVALID and "is a FIFO" in line


def test_devices_directories_and_sockets_are_not_read(tmp_path):
    assert refused("/dev/zero") == "is a character device; a policy must be a regular file"
    assert refused(tmp_path) == "is a directory; a policy must be a regular file"


def test_symlinks_are_not_followed(tmp_path):
    target = tmp_path / "real.yaml"
    target.write_text(policy_files.lseek_equal("p", 1))
    link = tmp_path / "p.yaml"
    link.symlink_to(target)
    assert "is a symbolic link" in refused(link)


def test_a_hard_link_is_refused_without_leaking_its_content(tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text(SECRET)
    link = tmp_path / "p.yaml"
    os.link(secret, link)
    reason = refused(link)
    assert reason.startswith("has 2 hard links")
    verdict, line = check_file(str(link), as_root=False)
    assert verdict == INVALID and "root:" not in line and "hash" not in line


def test_size_limit_exactly(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_bytes(b"#" * limits.FILE_BYTES)
    assert len(source.read_file(str(path)).data) == limits.FILE_BYTES
    path.write_bytes(b"#" * (limits.FILE_BYTES + 1))
    assert refused(path) == f"is {limits.FILE_BYTES + 1} bytes, more than the {limits.FILE_BYTES} a policy may have"


def test_a_file_that_grows_past_its_stat_size_is_cut(tmp_path):
    """/proc files say 0 bytes; what is read is still bounded."""
    path = tmp_path / "p.yaml"
    path.write_bytes(b"#" * 100)
    f = source.read_file(str(path), size_limit=99 + 1)
    assert len(f.data) == 100
    with pytest.raises(PolicyError, match="is 100 bytes, more than the 99"):
        source.read_file(str(path), size_limit=99)


def test_missing_file(tmp_path):
    assert refused(tmp_path / "none.yaml") == "cannot open: No such file or directory"


def test_text_is_strict_utf8():
    with pytest.raises(PolicyError) as info:
        source.text(b"a: 1\nb: \xff\xfe" + SECRET.encode(), "p.yaml")
    assert str(info.value) == "p.yaml: not UTF-8 (line 2, byte offset 8); save the file as UTF-8"
    assert source.text("a: é\n".encode(), "p.yaml") == "a: é\n"


def fake_stat(uid: int, mode: int) -> os.stat_result:
    return os.stat_result((stat.S_IFREG | mode, 1, 1, 1, uid, 0, 10, 0, 0, 0))


def test_the_daemons_ownership_rule():
    assert source.trust_problem(fake_stat(0, 0o644), "the file") == ""
    assert source.trust_problem(fake_stat(0, 0o600), "the file") == ""
    assert "owned by uid 1000, not root" in source.trust_problem(fake_stat(1000, 0o644), "the file")
    assert "group- or world-writable (mode 0664)" in source.trust_problem(fake_stat(0, 0o664), "the file")
    assert "mode 0646" in source.trust_problem(fake_stat(0, 0o646), "the file")


def test_read_refuses_what_the_daemon_must_not_trust_and_check_says_so(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(policy_files.lseek_equal("p", 1))
    os.chmod(path, 0o664)
    with pytest.raises(PolicyError, match="group- or world-writable"):
        source.read(str(path))
    assert source.read_file(str(path)).trust_problem     # check can still read it
    verdict, line = check_file(str(path), as_root=False)
    assert verdict == INVALID
    assert line.startswith(f"REFUSED {path}: the daemon would refuse this file: the file is group- "
                           "or world-writable (mode 0664); fix with: chmod go-w (its policy is valid: "
                           "policy p (enforce), 1 hooks: syscall __x64_sys_lseek)")
    os.chmod(path, 0o644)
    if os.geteuid() == 0:
        assert source.read(str(path)) == path.read_bytes()
        assert check_file(str(path), as_root=False)[0] == OK
    else:
        with pytest.raises(PolicyError, match="not root"):
            source.read(str(path))


def test_check_exit_status(tmp_path, capsys, monkeypatch):
    """0 when every file would load, 1 when any is ERROR or REFUSED. (Run as
    a user here: as root, check also probes the kernel.)"""
    from tetrad.cli import policy as cli
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(policy_files.lseek_equal("good", 1))
    bad.write_text("a: [\n")
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    args = type("Args", (), {})()
    trusted = {"yes": ""}
    monkeypatch.setattr(source, "trust_problem", lambda st, what: trusted["yes"])
    args.files = [str(good)]
    assert cli.run(args) == 0
    assert capsys.readouterr().out.startswith(f"OK {good}: policy good (enforce)")
    args.files = [str(good), str(bad)]
    assert cli.run(args) == 1
    out = capsys.readouterr().out
    assert f"ERROR {bad}: not valid YAML: line 2, column 1" in out
    assert out.endswith("1 of 2 files would not be loaded (1 invalid or refused, 0 not loadable "
                        "here)\n")
    trusted["yes"] = "the file is owned by uid 1000, not root; fix with: chown root"
    args.files = [str(good)]
    assert cli.run(args) == 1
    assert capsys.readouterr().out.startswith(f"REFUSED {good}: the daemon would refuse this file")


def test_read_path_names_no_content(tmp_path):
    path = Path(tmp_path / "p.yaml")
    path.write_bytes(SECRET.encode() * 3 + b"\xff")
    with pytest.raises(PolicyError) as info:
        source.text(source.read_file(str(path)).data, str(path))
    assert "root:" not in str(info.value)
