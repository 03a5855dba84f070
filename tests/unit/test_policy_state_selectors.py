"""matchNamespaces, matchNamespaceChanges, matchCapabilities and
matchCapabilityChanges: parsed as Tetragon reads them, host_ns resolved
when compiled, and encoded as the point's state predicates (caller bits)."""

import pytest

from tetrad.abi import generic as enc
from tetrad.abi import state
from tetrad.policy.compile import KernelFacts, compile_policy
from tetrad.policy.errors import PolicyError
from tetrad.policy.points import PointFull, PointTables
from tetrad.policy.schema import parse
from tests.unit.tables import alone, hook_struct

HOST = tuple(4026531830 + i for i in range(len(state.NAMESPACES)))
FACTS = KernelFacts(arch_prefix="__x64_", host_ns=HOST)
MNT, NET, USER = (state.NAMESPACES.index(n) for n in ("mnt", "net", "user"))
CAP = {name: n for n, name in enumerate(state.CAPABILITIES)}


def policy(selectors: str, name: str = "s") -> str:
    return (f'apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: "{name}"\n'
            "spec:\n  kprobes:\n  - call: sys_lseek\n    syscall: true\n    args:\n"
            "    - index: 1\n      type: long\n    selectors:\n" + selectors)


def compiled(selectors: str, facts: KernelFacts = FACTS, name: str = "s"):
    [ch] = compile_policy(parse(policy(selectors, name), "s.yaml"), facts)
    return ch


def problems(selectors: str) -> str:
    with pytest.raises(PolicyError) as err:
        compiled(selectors)
    return str(err.value)


def spreds(ch) -> list[enc.SPred]:
    p = enc.Point.from_buffer_copy(alone(ch).point)
    return [p.spred[i] for i in range(p.nspreds)]


# ---- parsing -----------------------------------------------------------------------

def test_names_are_read_in_any_case_as_tetragon_does():
    sel = parse(policy("""    - matchNamespaces:
      - namespace: pidforchildren
        operator: In
        values: ["4026531836"]
      matchCapabilities:
      - type: permitted
        operator: NotIn
        values: ["cap_sys_admin"]
"""), "s.yaml").hooks[0].selectors[0]
    assert sel.match_namespaces[0].namespace == state.NAMESPACES.index("pidforchildren")
    assert sel.match_capabilities[0].cap_set == state.CAP_SETS.index("permitted")
    assert sel.match_capabilities[0].mask == 1 << CAP["CAP_SYS_ADMIN"]


def test_capability_type_defaults_to_effective_and_both_spellings_of_dac_override_work():
    [mc] = parse(policy("""    - matchCapabilities:
      - operator: In
        values: ["DAC_OVERRIDE", "CAP_DAC_OVERRIDE", "CAP_CHOWN"]
"""), "s.yaml").hooks[0].selectors[0].match_capabilities
    assert mc.cap_set == state.CAP_SETS.index("effective")
    assert mc.mask == 0b11


@pytest.mark.parametrize("selectors, expected", [
    ("""    - matchNamespaces:
      - namespace: Mount
        operator: In
        values: ["1"]
""", "unknown namespace 'Mount' (one of Uts, Ipc, Mnt"),
    ("""    - matchNamespaces:
      - namespace: Mnt
        operator: Equal
        values: ["1"]
""", "unknown or unsupported operator 'Equal' (supported: In, NotIn)"),
    ("""    - matchNamespaces:
      - namespace: Mnt
        operator: In
        values: ["1", "2", "3", "4", "5"]
""", "5 values; at most 4"),
    ("""    - matchNamespaces:
      - namespace: Mnt
        operator: In
        values: ["host"]
""", 'a namespace inode number (as `lsns` shows) or "host_ns"'),
    ("""    - matchCapabilities:
      - operator: In
        values: ["CAP_FLY"]
""", "'CAP_FLY' is not a capability"),
    ("""    - matchCapabilities:
      - type: Bounding
        operator: In
        values: ["CAP_CHOWN"]
""", "unknown capability set 'Bounding' (one of Effective, Inheritable, Permitted)"),
    ("""    - matchNamespaceChanges:
      - operator: In
        values: ["Mnt"]
      - operator: In
        values: ["Net"]
""", "at most one entry"),
])
def test_wrong_entries_are_named(selectors, expected):
    assert expected in problems(selectors)


# ---- compiling: host_ns --------------------------------------------------------------

def test_host_ns_becomes_the_hosts_inode_number():
    ch = compiled("""    - matchNamespaces:
      - namespace: Net
        operator: In
        values: ["host_ns", "77"]
""")
    [q] = spreds(ch)
    assert (q.kind, q.index, q.nvals) == (enc.SP_NS, NET, 2)
    assert sorted(q.vals[:2]) == sorted([77, HOST[NET]])


def test_host_ns_unknown_is_refused_not_guessed():
    facts = KernelFacts(arch_prefix="__x64_", host_ns=tuple(0 if i == MNT else h for i, h in enumerate(HOST)))
    with pytest.raises(PolicyError, match="host's mnt namespace is unknown"):
        compiled("""    - matchNamespaces:
      - namespace: Mnt
        operator: In
        values: ["host_ns"]
""", facts)


def test_namespace_capability_carries_the_host_user_namespace():
    ch = compiled("""    - matchCapabilities:
      - type: Effective
        operator: In
        isNamespaceCapability: true
        values: ["CAP_SYS_ADMIN"]
""")
    [q] = spreds(ch)
    assert (q.kind, q.index, q.mask, q.userns) == (
        enc.SP_CAPS_IN, state.CAP_SETS.index("effective"), 1 << CAP["CAP_SYS_ADMIN"], HOST[USER])


# ---- encoding ------------------------------------------------------------------------

def test_state_tests_are_caller_bits_and_notin_namespace_is_the_negated_bit():
    ch = compiled("""    - matchNamespaces:
      - namespace: Mnt
        operator: In
        values: ["11"]
      - namespace: Net
        operator: NotIn
        values: ["22"]
      matchCapabilities:
      - operator: NotIn
        values: ["CAP_NET_RAW"]
""")
    t = alone(ch)
    p = enc.Point.from_buffer_copy(t.point)
    assert p.flags & enc.POINT_STATE and not p.flags & enc.POINT_BASE
    by_kind = {(q.kind, q.index): q for q in spreds(ch)}
    mnt, net = by_kind[(enc.SP_NS, MNT)], by_kind[(enc.SP_NS, NET)]
    caps = by_kind[(enc.SP_CAPS_NOTIN, state.CAP_SETS.index("effective"))]
    assert caps.userns == 0 and caps.mask == 1 << CAP["CAP_NET_RAW"]
    sel = enc.Hook.from_buffer_copy(t.hooks[0]).sel[0]
    assert sel.cpos == (1 << mnt.bit) | (1 << caps.bit)
    assert sel.cneg == 1 << net.bit
    assert sel.chg == 0


def test_namespace_changes_in_and_notin_are_masks_of_namespaces():
    listed = (1 << MNT) | (1 << NET)
    every = (1 << len(state.NAMESPACES)) - 1
    for op, mask in (("In", listed), ("NotIn", every & ~listed)):
        ch = compiled(f"""    - matchNamespaceChanges:
      - operator: {op}
        values: ["Mnt", "Net"]
""")
        [q] = spreds(ch)
        assert (q.kind, q.mask) == (enc.SP_NSCHG, mask)
        p = enc.Point.from_buffer_copy(alone(ch).point)
        assert p.flags & enc.POINT_STATE and p.flags & enc.POINT_BASE
        assert hook_struct(ch).sel[0].chg == enc.SEL_NSCHG


def test_capability_changes_keep_in_and_notin_apart():
    kinds = set()
    for op in ("In", "NotIn"):
        ch = compiled(f"""    - matchCapabilityChanges:
      - type: Effective
        operator: {op}
        values: ["CAP_SETUID"]
""")
        [q] = spreds(ch)
        kinds.add(q.kind)
        assert q.mask == 1 << CAP["CAP_SETUID"]
        assert hook_struct(ch).sel[0].chg == enc.SEL_CAPCHG
    assert kinds == {enc.SP_CAPCHG_IN, enc.SP_CAPCHG_NOTIN}


def test_equal_state_tests_of_two_policies_share_a_bit_and_a_full_point_refuses():
    one = """    - matchNamespaces:
      - namespace: Mnt
        operator: In
        values: ["{v}"]
"""

    def hook(values, name):
        return compiled("".join(one.format(v=v) for v in values), name=name)
    pt = PointTables(1)
    pt.add(0, hook([5], "a"))
    pt.add(1, hook([5], "b"))
    assert enc.Point.from_buffer_copy(pt.tables().point).nspreds == 1
    # three hooks of five selectors each: sixteen distinct tests, the most
    for n in range(3):
        pt.add(2 + n, hook(range(100 * n + 100, 100 * n + 105), f"c{n}"))
    with pytest.raises(PointFull, match=f"more than {enc.MAX_SPREDS} distinct namespace and capability"):
        pt.add(9, hook([999], "e"))
    assert enc.Point.from_buffer_copy(pt.tables().point).nspreds == enc.MAX_SPREDS
