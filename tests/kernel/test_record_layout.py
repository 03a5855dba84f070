"""The ctypes mirrors (tetrad/api/records.py, tetrad/policy/encoding.py) match bpf/*.h.

bcc builds its own ctypes type for each map value from clang's view of the
C struct; a map per record struct gives us clang's layout to compare field
by field (the alignchecker idea). A field moved on one side only fails here.
"""

import ctypes

import pytest

from tetrad.api import records
from tetrad.paths import bpf_dir
from tetrad.policy import encoding

pytestmark = pytest.mark.kernel

PAIRS = {
    "tetrad_msg_header": records.MsgHeader,
    "tetrad_proc_key": records.ProcKey,
    "tetrad_msg_exec": records.MsgExec,
    "tetrad_msg_exit": records.MsgExit,
    "tetrad_msg_clone": records.MsgClone,
    "tetrad_msg_cgroup": records.MsgCgroup,
    "tetrad_exec_entry": records.ExecEntry,
    "g_sockinfo": encoding.SockInfo,
    "g_slot": encoding.Slot,
    "g_match": encoding.Match,
    "g_action": encoding.Action,
    "g_selector": encoding.Selector,
    "g_hook": encoding.Hook,
    "g_hook_list": encoding.HookList,
    "g_str_key": encoding.StrKey,
    "g_cgroup_key": encoding.CgroupKey,
    "g_lpm_str_key": encoding.LpmStrKey,
    "g_lpm_addr_key": encoding.LpmAddrKey,
    "g_msg": encoding.Msg,
    "g_hook_stats": encoding.HookStats,
}


@pytest.fixture(scope="module")
def compiled():
    from bcc import BPF
    text = '#include "execve_map.h"\n#include "generic.h"\n' + "".join(
        f"BPF_ARRAY(layout_{name}, struct {name}, 1);\n" for name in PAIRS)
    text += "int unused(void *ctx) { return 0; }\n"
    b = BPF(text=text.encode(), cflags=[f"-I{bpf_dir()}"])
    yield b
    b.cleanup()


def layout(ctype):
    # bcc spells out trailing padding as __pad_* fields; sizes are compared too
    return [(name, getattr(ctype, name).offset, ctypes.sizeof(t)) for name, t in ctype._fields_
            if not name.startswith("__pad")]


@pytest.mark.parametrize("name", PAIRS)
def test_mirror_matches_compiled_struct(compiled, name):
    mirror = PAIRS[name]
    clang = compiled[f"layout_{name}".encode()].Leaf
    assert ctypes.sizeof(mirror) == ctypes.sizeof(clang)
    assert layout(mirror) == layout(clang)
