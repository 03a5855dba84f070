"""Feature probes on the real kernel.

The truth differs per kernel, so the expected answers come from the
environment: TETRAD_EXPECT_FEATURES="btf,tracepoints,!kprobes,..." (a name
must be available, !name must not). .ci/run states this machine's; the
guest run states the guest's. Without it, only invariants are checked.
"""

import os
import time

import pytest

from tetrad.bpf import features
from tetrad.bpf.btf import Btf

pytestmark = pytest.mark.kernel


def expectations() -> dict[str, bool]:
    raw = os.environ.get("TETRAD_EXPECT_FEATURES", "")
    return {n.lstrip("!"): not n.startswith("!") for n in raw.split(",") if n}


def test_probe_all_matches_this_kernels_expected_features():
    started = time.monotonic()
    results = {f.name: f for f in features.probe_all()}
    print(f"probe_all in {time.monotonic() - started:.2f}s")
    for f in results.values():
        print(f"{f.name}: {f.available} ({f.detail})")
        assert f.detail
    if results["kretprobes"].available:
        assert results["kprobes"].available
    if results["lsm_loadable"].available:
        assert results["lsm_active"].available
    expected = expectations()
    unknown = set(expected) - set(results)
    assert not unknown, f"TETRAD_EXPECT_FEATURES names unknown features {unknown}"
    # A run that states its kernel states all of it: a new feature probe
    # is added to .ci/run and tests/guest/inside.sh with what each kernel has.
    unstated = set(results) - set(expected) if expected else set()
    assert not unstated, f"TETRAD_EXPECT_FEATURES does not say whether this kernel has {sorted(unstated)}"
    wrong = {n: results[n].detail for n, want in expected.items() if results[n].available != want}
    assert not wrong, f"probe disagrees with the expected features: {wrong}"


def test_vmlinux_btf_gives_sane_offsets():
    started = time.monotonic()
    btf = Btf.load()
    print(f"parsed vmlinux BTF in {time.monotonic() - started:.2f}s")
    assert btf.member_offset("path", "mnt") == 0
    assert btf.member_offset("path", "dentry") == 8
    assert btf.member_offset("qstr", "name") == 8
    assert btf.member_offset("task_struct", "pid") != btf.member_offset("task_struct", "tgid")
    assert btf.type(btf.find("bpf_lsm_file_open", "func")).kind == "func"


def test_btf_offsets_agree_with_headers_where_headers_match():
    """Where the installed headers are for the running kernel, clang's
    offsetof and BTF must agree: a check on the BTF parser itself."""
    if not features.matching_headers().available:
        pytest.skip("headers do not match this kernel (checked in the guest)")
    from bcc import BPF
    from tetrad.bpf.offsets import _FIELDS, struct_offsets
    public = {m: f for m, f in _FIELDS.items() if f[0] != "mount"}   # struct mount is private
    text = "#include <linux/fs.h>\n#include <linux/sched.h>\n#include <linux/mm_types.h>\n" \
           "#include <linux/fs_struct.h>\n#include <linux/dcache.h>\n#include <linux/mount.h>\n"
    text += "".join(f"BPF_ARRAY(o_{m}, char, offsetof(struct {s}, {f}) + 1);\n"
                    for m, (s, f) in public.items())
    text += "int unused(void *ctx) { return 0; }\n"
    b = BPF(text=text.encode())
    from_btf = struct_offsets()
    try:
        for macro in public:
            assert b[f"o_{macro}".encode()].max_entries - 1 == from_btf[macro], macro
    finally:
        b.cleanup()
