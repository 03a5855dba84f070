import pytest

from tetrad.abi.ops import ExitHow
from tetrad.decode.process import (CloneRecord, DecodeError, ExecRecord, ExitRecord, ProcKey,
                                   decode)
from tests.unit.records import clone_bytes, exec_bytes, exit_bytes


def test_exec_record_splits_payload_pieces():
    rec = decode(exec_bytes(pid=42, ktime=1000, argv=("/bin/true", "a b", "", "c"),
                            exe="/usr/bin/true", cwd="/tmp", filename="/bin/true",
                            parent=(7, 500), uid=1000, gid=100, auid=1000, flags=0x801))
    assert isinstance(rec, ExecRecord)
    assert rec.argv == ("/bin/true", "a b", "", "c")
    assert (rec.exe, rec.cwd, rec.filename) == ("/usr/bin/true", "/tmp", "/bin/true")
    assert rec.parent == ProcKey(7, 500)
    assert (rec.pid, rec.uid, rec.gid, rec.auid, rec.flags, rec.ktime) == (42, 1000, 100, 1000, 0x801, 1000)


def test_exec_without_parent_or_args():
    rec = decode(exec_bytes(pid=1, ktime=5, exe="/sbin/init"))
    assert rec.parent is None
    assert rec.argv == ()


def test_exec_keeps_undecodable_bytes_visible():
    raw = exec_bytes(pid=1, ktime=5, cwd="/x")
    raw = raw[:-2] + b"/\xff"
    assert decode(raw).cwd == "/\\xff"


def test_truncated_exec_payload_is_an_error():
    raw = exec_bytes(pid=1, ktime=5, argv=("abc",), cwd="/tmp")
    with pytest.raises(DecodeError, match="payload"):
        decode(raw[:-2])


def test_clone_and_exit_records():
    c = decode(clone_bytes(pid=9, ktime=77, parent=(8, 66)))
    assert c == CloneRecord(ktime=77, proc=ProcKey(9, 77), parent=ProcKey(8, 66), flags=0x800)
    e = decode(exit_bytes(pid=9, ktime=99, proc_ktime=77, parent=(8, 66), how=2, code=9))
    assert isinstance(e, ExitRecord)
    assert (e.proc, e.parent, e.how, e.code) == (ProcKey(9, 77), ProcKey(8, 66), ExitHow.SIGNAL, 9)


def test_exit_of_unknown_process_has_no_key():
    assert decode(exit_bytes(pid=9, ktime=99, proc_ktime=0)).proc is None


@pytest.mark.parametrize("raw,message", [(b"\x01\x00", "shorter than a header"),
                                         (bytes([77]) + bytes(31), "unknown op code 77")])
def test_bad_records(raw, message):
    with pytest.raises(DecodeError, match=message):
        decode(raw)
