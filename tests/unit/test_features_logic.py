import struct

import pytest

from tetrad.bpf import features, syscall
from tetrad.bpf.features import Feature, MissingFeature


def test_instruction_encoding():
    assert syscall.mov_imm(2, 7) == struct.pack("<BBhi", 0xB7, 0x02, 0, 7)
    assert syscall.call(58) == struct.pack("<BBhi", 0x85, 0, 0, 58)
    assert syscall.RETURN_ZERO == bytes.fromhex("b700000000000000" "9500000000000000")


def test_verifier_reason_is_the_verifiers_own_words():
    log = ("0: R1=ctx() R10=fp0\n0: (b7) r2 = 0 ; R2=0\n1: (85) call bpf_override_return#58\n"
           "program of this type cannot use helper bpf_override_return#58\n"
           "processed 2 insns (limit 1000000) max_states_per_insn 0\n\n")
    assert syscall.verifier_reason(log) == "program of this type cannot use helper bpf_override_return#58"


def test_uts_release():
    text = '#define UTS_RELEASE "6.1.0-56-cloud-amd64"\n'
    assert features.uts_release(text) == "6.1.0-56-cloud-amd64"
    assert features.uts_release("/* nothing */") is None


def test_missing_feature_message_names_feature_need_and_reason():
    err = MissingFeature(Feature("kprobes", False, "no kprobe PMU"), need="kprobe on tcp_connect")
    assert str(err) == ("kprobe on tcp_connect needs kprobes, which this kernel lacks "
                        "(no kprobe PMU)")


def test_require_raises_for_the_first_missing(monkeypatch):
    monkeypatch.setitem(features._BY_NAME, "ringbuf", lambda: Feature("ringbuf", True, "ok"))
    monkeypatch.setitem(features._BY_NAME, "kprobes", lambda: Feature("kprobes", False, "x"))
    features.require("ringbuf")
    with pytest.raises(MissingFeature) as info:
        features.require("ringbuf", "kprobes")
    assert info.value.feature.name == "kprobes"


def test_elf_entry_offset_of_a_real_binary():
    import os
    offset = features.elf_entry_offset(os.path.realpath("/bin/true"))
    assert 0 < offset < os.path.getsize("/bin/true")
