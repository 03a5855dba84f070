"""points.py, byte for byte: the tables bpf/generic_hook.c reads at one
attach point, built from the hooks of several policies."""

import ctypes
import ipaddress

import pytest

from tetrad.abi import generic as enc
from tetrad.policy.compile import KernelFacts, compile_policy
from tetrad.policy.points import PointFull, PointTables
from tetrad.policy.schema import parse

FACTS = KernelFacts(arch_prefix="__x64_")
LPOINT = 3


def hooks_of(body: str, name: str = "t"):
    text = (f'apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: "{name}"\n'
            f"spec:\n{body}")
    return compile_policy(parse(text, f"{name}.yaml"), FACTS)


def openat(selectors: str, name: str = "t", options: str = ""):
    [ch] = hooks_of(options + """  kprobes:
  - call: sys_openat
    syscall: true
    args:
    - index: 0
      type: int
    - index: 1
      type: string
    - index: 2
      type: uint32
    selectors:
""" + selectors, name)
    return ch


def lookup(entries: dict[bytes, bytes], table: str, id_: int, data: bytes) -> int:
    """What the kernel's longest-prefix lookup of `data` answers: the bits
    of the longest key that is a prefix of it (0 without one)."""
    best, bits = -1, 0
    for key, value in entries[table].items():
        k = enc.LpmStrKey.from_buffer_copy(key)
        n = (k.prefixlen - 32) // 8
        if k.id == id_ and n <= len(data) and bytes(k)[8:8 + n] == data[:n] and n > best:
            v = enc.Bits.from_buffer_copy(value)
            best, bits = n, sum(v.w[i] << (64 * i) for i in range(enc.WORDS))
    return bits


def word_bits(words) -> int:
    return sum(words[i] << (64 * i) for i in range(enc.WORDS))


CAT_PREFIX = """    - matchArgs:
      - index: 1
        operator: Prefix
        values: ["/etc/"]
      - index: 2
        operator: Mask
        values: ["0x241"]
      matchBinaries:
      - operator: In
        values: ["/usr/bin/cat"]
      matchActions:
      - action: Sigkill
"""


def test_one_hook_point_and_hook_bytes():
    pt = PointTables(LPOINT)
    pt.add(7, openat(CAT_PREFIX))
    t = pt.tables()
    p = enc.Point.from_buffer_copy(t.point)
    assert (p.nslots, p.nhooks, p.hooks[0], p.npreds) == (3, 1, 7, 1)
    assert p.flags == enc.POINT_ACTIVE | enc.POINT_BINARY | enc.POINT_RETRY
    assert [(p.slot[i].kind, p.slot[i].src) for i in range(3)] == \
        [(enc.GA["int"], 0), (enc.GA["ustr"], 1), (enc.GA["int"], 2)]
    assert p.slot[0].flags == enc.GS_SIGNED and p.slot[0].size == 4
    assert p.slot[1].flags == enc.GS_FWD | enc.GS_USER
    mask = p.pred[0]
    assert (mask.slot, mask.op, mask.nvals, mask.vals[0]) == (2, enc.IOPS["Mask"], 1, 0x241)
    h = enc.Hook.from_buffer_copy(t.hooks[7])
    assert (h.id, h.flags, h.nsel, h.nargs, list(h.argslot)[:3]) == (7, enc.HOOK_ACTIVE, 1, 3, [0, 1, 2])
    sel = h.sel[0]
    assert (sel.nact, sel.act[0].action) == (1, enc.ACTIONS["Sigkill"])
    # the Prefix predicate and the Mask predicate must both hold; the binary too
    assert word_bits(sel.pos) == (1 << 0) | (1 << mask.bit) and word_bits(sel.neg) == 0
    assert sel.cpos == 1 and sel.cneg == 0
    fwd = enc.trie_id(LPOINT, enc.TRIE_FWD, 1)
    assert lookup(t.entries, "str_fwd", fwd, b"/etc/shadow\0") == 1
    assert lookup(t.entries, "str_fwd", fwd, b"/tmp/x\0") == 0
    binary = enc.trie_id(LPOINT, enc.TRIE_FWD, enc.BINARY_SLOT)
    assert lookup(t.entries, "str_fwd", binary, b"/usr/bin/cat\0") == 1
    # matchBinaries In is exact: its key ends with the NUL
    assert lookup(t.entries, "str_fwd", binary, b"/usr/bin/catx\0") == 0


def test_a_binary_postfix_turns_on_the_reversed_binary_lookup():
    """Only a point with a matchBinaries Postfix pays for reversing the
    binary's path on every call (G_POINT_BIN_REV)."""
    pt = PointTables(LPOINT)
    pt.add(1, openat('    - matchBinaries:\n      - operator: Postfix\n        values: ["/head"]\n'))
    p = enc.Point.from_buffer_copy(pt.tables().point)
    assert p.flags & enc.POINT_BINARY and p.flags & enc.POINT_BIN_REV
    pt = PointTables(LPOINT)
    pt.add(1, openat('    - matchBinaries:\n      - operator: Prefix\n        values: ["/usr/"]\n'))
    p = enc.Point.from_buffer_copy(pt.tables().point)
    assert p.flags & enc.POINT_BINARY and not p.flags & enc.POINT_BIN_REV


def test_hooks_of_several_policies_share_slots_and_equal_tests():
    pt = PointTables(LPOINT)
    pt.add(1, openat('    - matchArgs:\n      - index: 1\n        operator: Prefix\n'
                     '        values: ["/etc/"]\n', "a"))
    pt.add(2, openat('    - matchArgs:\n      - index: 1\n        operator: Prefix\n'
                     '        values: ["/etc/"]\n', "b"))
    pt.add(3, openat('    - matchArgs:\n      - index: 1\n        operator: Prefix\n'
                     '        values: ["/etc/ssh/"]\n', "c"))
    t = pt.tables()
    p = enc.Point.from_buffer_copy(t.point)
    assert p.nslots == 3 and p.nhooks == 3          # one read of the path for all three
    pos = [word_bits(enc.Hook.from_buffer_copy(t.hooks[i]).sel[0].pos) for i in (1, 2, 3)]
    assert pos[0] == pos[1] != pos[2]               # the same test is one bit
    fwd = enc.trie_id(LPOINT, enc.TRIE_FWD, 1)
    # one lookup answers every hook: /etc/ssh/x holds both prefixes
    assert lookup(t.entries, "str_fwd", fwd, b"/etc/ssh/sshd_config\0") == pos[0] | pos[2]
    assert lookup(t.entries, "str_fwd", fwd, b"/etc/passwd\0") == pos[0]


def test_equal_and_prefix_in_one_trie():
    ch = openat('''    - matchArgs:
      - index: 1
        operator: Equal
        values: ["/etc/passwd"]
    - matchArgs:
      - index: 1
        operator: Prefix
        values: ["/etc/pass"]
''')
    pt = PointTables(LPOINT)
    pt.add(0, ch)
    t = pt.tables()
    h = enc.Hook.from_buffer_copy(t.hooks[0])
    equal, prefix = word_bits(h.sel[0].pos), word_bits(h.sel[1].pos)
    fwd = enc.trie_id(LPOINT, enc.TRIE_FWD, 1)
    assert lookup(t.entries, "str_fwd", fwd, b"/etc/passwd\0") == equal | prefix
    assert lookup(t.entries, "str_fwd", fwd, b"/etc/passwd-\0") == prefix
    assert lookup(t.entries, "str_fwd", fwd, b"/etc/pas\0") == 0


def test_not_operators_require_the_positive_bit_clear():
    pt = PointTables(LPOINT)
    pt.add(0, openat('''    - matchArgs:
      - index: 1
        operator: NotPostfix
        values: [".so"]
      - index: 0
        operator: NotEqual
        values: ["-100"]
'''))
    t = pt.tables()
    sel = enc.Hook.from_buffer_copy(t.hooks[0]).sel[0]
    assert word_bits(sel.pos) == 0 and bin(word_bits(sel.neg)).count("1") == 2
    p = enc.Point.from_buffer_copy(t.point)
    assert p.slot[1].flags & enc.GS_REV and p.pred[0].vals[0] == -100
    # Postfix values are stored reversed
    rev = enc.trie_id(LPOINT, enc.TRIE_REV, 1)
    assert lookup(t.entries, "str_rev", rev, b"os.bil/") != 0


def test_network_values_and_the_union_of_networks():
    [ch] = hooks_of("""  kprobes:
  - call: sys_connect
    syscall: true
    args:
    - index: 1
      type: sockaddr
    selectors:
    - matchArgs:
      - index: 1
        operator: NotDAddr
        values: ["10.0.0.0/8", "::1"]
    - matchArgs:
      - index: 1
        operator: DAddr
        values: ["10.42.0.0/16"]
      - index: 1
        operator: DPort
        values: ["80", "8000:8080"]
""")
    pt = PointTables(LPOINT)
    pt.add(0, ch)
    t = pt.tables()
    p = enc.Point.from_buffer_copy(t.point)
    assert p.slot[0].flags & enc.GS_DADDR and not p.slot[0].flags & enc.GS_SADDR
    port = p.pred[0]
    assert (port.op, port.nvals, list(port.vals)[:4]) == (enc.IOPS["DPort"], 4, [80, 80, 8000, 8080])
    keys = {}
    for key, value in t.entries["cidr"].items():
        k = enc.LpmAddrKey.from_buffer_copy(key)
        net = ipaddress.ip_network((bytes(k.addr)[:4 if k.family == 2 else 16], k.prefixlen - 40))
        keys[str(net)] = word_bits(enc.Bits.from_buffer_copy(value).w)
    h = enc.Hook.from_buffer_copy(t.hooks[0])
    wide, narrow = word_bits(h.sel[0].neg), word_bits(h.sel[1].pos) & ~(1 << port.bit)
    # 10.42/16 lies in 10/8: its entry answers both tests
    assert keys == {"10.0.0.0/8": wide, "10.42.0.0/16": wide | narrow, "::1/128": wide}


def test_caller_predicates_pids_and_binaries():
    ch = openat('''    - matchPIDs:
      - operator: In
        values: [42, 43]
        followForks: true
      - operator: NotIn
        values: [1]
      matchBinaries:
      - operator: NotPostfix
        values: ["sh"]
''')
    pt = PointTables(LPOINT)
    pt.add(0, ch)
    t = pt.tables()
    p = enc.Point.from_buffer_copy(t.point)
    assert p.flags & enc.POINT_PIDS and p.flags & enc.POINT_FORKS and p.flags & enc.POINT_BINARY
    sel = enc.Hook.from_buffer_copy(t.hooks[0]).sel[0]
    pids = {enc.PidKey.from_buffer_copy(k).pid: enc.PidBits.from_buffer_copy(v)
            for k, v in t.entries["pid_sel"].items()}
    assert set(pids) == {1, 42, 43}
    assert pids[42].forks and not pids[42].pid and pids[1].pid and not pids[1].forks
    assert sel.cpos == pids[42].forks and sel.cneg == pids[1].pid | (sel.cneg & ~pids[1].pid)
    assert bin(sel.cneg).count("1") == 2                  # NotIn 1 and NotPostfix sh


def test_bits_and_slots_stay_put_as_hooks_come_and_go():
    a = openat('    - matchArgs:\n      - index: 1\n        operator: Prefix\n        values: ["/a/"]\n', "a")
    b = openat('    - matchArgs:\n      - index: 1\n        operator: Prefix\n        values: ["/b/"]\n', "b")
    c = openat('    - matchArgs:\n      - index: 0\n        operator: Equal\n        values: ["5"]\n', "c")
    pt = PointTables(LPOINT)
    pt.add(1, a)
    pt.add(2, b)
    before = pt.tables()
    pt.remove(1)
    pt.add(3, c)
    after = pt.tables()
    assert before.hooks[2] == after.hooks[2]           # b reads the same slots and bits
    fwd = enc.trie_id(LPOINT, enc.TRIE_FWD, 1)
    b_bit = word_bits(enc.Hook.from_buffer_copy(after.hooks[2]).sel[0].pos)
    assert lookup(after.entries, "str_fwd", fwd, b"/b/x\0") == b_bit
    assert lookup(after.entries, "str_fwd", fwd, b"/a/x\0") == 0      # a's values are gone
    assert list(enc.Point.from_buffer_copy(after.point).hooks)[:2] == [2, 3]
    pt.remove(2)
    pt.remove(3)
    empty = pt.tables()
    assert enc.Point.from_buffer_copy(empty.point).flags == 0
    assert empty.hooks == {} and not any(empty.entries.values())


def test_return_match_and_actions():
    [ch] = hooks_of("""  kprobes:
  - call: sys_openat
    syscall: true
    return: true
    returnArg:
      index: 0
      type: int
    args:
    - index: 1
      type: string
    selectors:
    - matchReturnArgs:
      - index: 0
        operator: NotEqual
        values: ["-2"]
      matchReturnActions:
      - action: Signal
        argSig: 10
""")
    pt = PointTables(LPOINT)
    pt.add(0, ch)
    h = enc.Hook.from_buffer_copy(pt.tables().hooks[0])
    assert h.flags == enc.HOOK_ACTIVE | enc.HOOK_RETURN
    sel = h.sel[0]
    assert (sel.has_ret, sel.ret.op, sel.ret.negate, sel.ret.vals[0]) == (1, enc.IOPS["Equal"], 1, -2)
    assert (sel.nret_act, sel.ret_act[0].action, sel.ret_act[0].arg) == (1, enc.ACTIONS["Signal"], 10)


def test_hook_flags():
    mon = openat("    - matchActions:\n      - action: Sigkill\n", options=(
        "  options:\n  - name: policy-mode\n    value: monitor\n"
        "  - name: unreadable-args\n    value: no-match\n"))
    pt = PointTables(LPOINT)
    pt.add(0, mon)
    h = enc.Hook.from_buffer_copy(pt.tables().hooks[0])
    assert h.flags == enc.HOOK_ACTIVE | enc.HOOK_MONITOR | enc.HOOK_UNREADABLE_NOMATCH


def test_a_point_refuses_what_it_cannot_hold_and_stays_as_it_was():
    pt = PointTables(LPOINT)
    for i in range(enc.POINT_HOOKS):
        pt.add(i, openat("", f"p{i}"))
    before = pt.tables()
    with pytest.raises(PointFull, match="16 policy hooks"):
        pt.add(99, openat("", "extra"))
    assert pt.tables() == before
    # 32 distinct integer tests at most: five per hook, the seventh hook is one too many
    ints = PointTables(LPOINT)
    for i in range(6):
        ints.add(i, openat("".join(f'    - matchArgs:\n      - index: 0\n        operator: Equal\n'
                                   f'        values: ["{10 * i + j}"]\n' for j in range(5)), f"i{i}"))
    before = ints.tables()
    with pytest.raises(PointFull, match="32 distinct integer tests"):
        ints.add(6, openat("".join(f'    - matchArgs:\n      - index: 0\n        operator: Equal\n'
                                   f'        values: ["{100 + j}"]\n' for j in range(5)), "i6"))
    assert ints.tables() == before


def test_a_returned_string_is_a_slot_read_at_return_tested_by_trie_bits():
    [ch] = hooks_of("""  uprobes:
  - path: /bin/bash
    symbols: [readline]
    return: true
    returnArg:
      index: 0
      type: string
    selectors:
    - matchReturnArgs:
      - index: 0
        operator: Prefix
        values: ["sudo"]
""")
    pt = PointTables(LPOINT)
    pt.add(0, ch)
    t = pt.tables()
    point = enc.Point.from_buffer_copy(t.point)
    assert point.flags & enc.POINT_RETVAL and point.nslots == 1
    assert point.slot[0].flags == enc.GS_RETVAL | enc.GS_FWD and point.slot[0].src == enc.RET_SRC
    sel = enc.Hook.from_buffer_copy(t.hooks[0]).sel[0]
    assert sel.has_ret == 0 and sel.pos[0] == 1          # a trie bit, not the integer test
    [(key, _)] = t.entries["str_fwd"].items()
    assert enc.LpmStrKey.from_buffer_copy(key).data == b"sudo"
