"""Network types, operators and actions, from the policy to the kernel's
tables and back to the event: sock, socket, skb, sockaddr (user and kernel
memory), sockaddr_un, net_device; SPortPriv and its kin, State, named
ranges; TrackSock/UntrackSock (argSock, returnArgAction); GetUrl and
DnsLookup. Pure: the kernel side is tests/kernel/test_network.py and
tests/guest/test_network_guest.py."""

import ctypes
import ipaddress
import json

import pytest

from tetrad.abi import generic as enc
from tetrad.decode.generic import PolicyRecord, Slot
from tetrad.events import policy as events
from tetrad.events.policy import HookPlan, policy_event, user_actions
from tetrad.policy import kernel
from tetrad.policy.compile import KernelFacts, TracepointField, compile_policy
from tetrad.policy.points import PointTables
from tetrad.policy.schema import PolicyError, parse
from tetrad.bpf import offsets
from tetrad.useractions import UserAction
from tests import tetragon_schema
from tests.unit.events import process

HEAD = 'apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: "t"\nspec:\n'
# sock:inet_sock_set_state as tracefs describes it (fields after the common ones).
SET_STATE = [TracepointField("common_type", "unsigned short", 0, 2, False, False, False),
             TracepointField("skaddr", "const void *", 8, 8, False, False, True),
             TracepointField("oldstate", "int", 16, 4, True, False, False),
             TracepointField("newstate", "int", 20, 4, True, False, False),
             TracepointField("sport", "__u16", 24, 2, False, False, False)]
FACTS = KernelFacts(arch_prefix="__x64_", tracepoint_fields=lambda subsys, event: SET_STATE)


def policy(body: str):
    return parse(HEAD + body, "t.yaml")


def compiled(body: str):
    return compile_policy(policy(body), FACTS)


def problems(body: str) -> dict[str, str]:
    with pytest.raises(PolicyError) as info:
        compile_policy(parse(HEAD + body, "t.yaml"), FACTS)
    return dict(info.value.problems)


def kprobe(args: str, selectors: str = "", extra: str = "", call: str = "f") -> str:
    return (f"  kprobes:\n  - call: {call}\n    syscall: false\n{extra}    args:\n{args}"
            + (f"    selectors:\n{selectors}" if selectors else ""))


SOCK0 = "    - index: 0\n      type: sock\n"


def match(op: str, values: str = "", index: int = 0) -> str:
    vals = f"\n        values: {values}" if values else ""
    return f"    - matchArgs:\n      - index: {index}\n        operator: {op}{vals}\n"


# ---- the schema ----------------------------------------------------------------------

@pytest.mark.parametrize("type_", ["sock", "socket", "skb", "sockaddr", "sockaddr_un", "net_device"])
def test_every_network_type_compiles_on_a_kprobe(type_):
    [ch] = compiled(kprobe(f"    - index: 0\n      type: {type_}\n"))
    kind = {"sockaddr": "ksockaddr", "sockaddr_un": "ksockaddr_un", "net_device": "netdev"}.get(type_, type_)
    assert ch.reads[0].kind == enc.GA[kind]


@pytest.mark.parametrize("type_,kind", [("sockaddr", "usockaddr"), ("sockaddr_un", "usockaddr_un")])
def test_socket_addresses_of_syscalls_are_user_memory_read_again_at_exit(type_, kind):
    [ch] = compiled(f"  kprobes:\n  - call: sys_connect\n    syscall: true\n    args:\n"
                    f"    - index: 1\n      type: {type_}\n")
    assert ch.reads[0].kind == enc.GA[kind] and ch.reads[0].user and ch.retry


@pytest.mark.parametrize("call,index,length", [("sys_connect", 1, 2), ("sys_bind", 1, 2),
                                               ("sys_sendto", 4, 5), ("sys_accept", 1, None)])
def test_a_syscalls_address_length_bounds_its_read(call, index, length):
    """An abstract unix name is not NUL-terminated: where the syscall passes
    the address's length, the kernel reads that many bytes and no more."""
    [ch] = compiled(f"  kprobes:\n  - call: {call}\n    syscall: true\n    args:\n"
                    f"    - index: {index}\n      type: sockaddr_un\n")
    assert ch.reads[0].sizesrc == length


@pytest.mark.parametrize("type_", ["sock", "skb", "socket", "net_device"])
def test_kernel_structs_are_refused_on_syscalls(type_):
    got = problems(f"  kprobes:\n  - call: sys_connect\n    syscall: true\n    args:\n"
                   f"    - index: 1\n      type: {type_}\n")
    assert got == {"spec.kprobes[0].args[0].type":
                   f"type {type_} is not supported on syscall arguments (user-space values)"}


def test_a_tracepoint_pointer_field_takes_a_struct_type():
    [ch] = compiled("  tracepoints:\n  - subsystem: sock\n    event: inet_sock_set_state\n    args:\n"
                    "    - index: 1\n      type: sock\n    - index: 3\n      type: int\n")
    assert (ch.reads[0].kind, ch.reads[0].src) == (enc.GA["sock"], 8)
    got = problems("  tracepoints:\n  - subsystem: sock\n    event: inet_sock_set_state\n    args:\n"
                   "    - index: 3\n      type: skb\n")
    assert got == {"spec.tracepoints[0].args[0].type":
                   "type skb is not supported on tracepoints (field newstate is int, not a pointer)"}


@pytest.mark.parametrize("type_,op,values,reason", [
    ("skb", "State", '["TCP_LISTEN"]',
     "State applies to sock and socket arguments, not skb (Tetragon's never matches there)"),
    ("sockaddr", "Protocol", '["IPPROTO_TCP"]', "does not apply to a sockaddr argument"),
    ("sockaddr_un", "SAddr", '["10.0.0.1"]', "does not apply to a sockaddr_un argument"),
    ("net_device", "DPort", '["53"]', "does not apply to a net_device argument"),
    ("sock", "Prefix", '["x"]', "does not apply to a sock argument"),
])
def test_operators_are_those_tetragon_allows_on_each_type(type_, op, values, reason):
    got = problems(kprobe(f"    - index: 0\n      type: {type_}\n", match(op, values)))
    assert reason in got["spec.kprobes[0].selectors[0].matchArgs[0].operator"]


def test_privileged_port_operators_take_no_values():
    got = problems(kprobe(SOCK0, match("DPortPriv", '["80"]')))
    assert got == {"spec.kprobes[0].selectors[0].matchArgs[0].values":
                   "DPortPriv takes no values (it means ports 0..1023)"}


@pytest.mark.parametrize("op,value,message", [
    ("State", "TCP_BOGUS", "'TCP_BOGUS' is not a name Tetragon knows for State"),
    ("State", "256", "256 is out of range 0..255"),
    ("Protocol", "65536", "65536 is out of range 0..65535"),
    ("Protocol", "17:6", "range '17:6' is empty"),
])
def test_named_values(op, value, message):
    got = problems(kprobe(SOCK0, match(op, f'["{value}"]')))
    assert message in got["spec.kprobes[0].selectors[0].matchArgs[0].values[0]"]


def test_argsock_names_a_sock_argument_by_its_position():
    args = "    - index: 2\n      type: int\n    - index: 0\n      type: sock\n"
    sel = "    - matchActions:\n      - action: {action}\n        argSock: {pos}\n"
    [ch] = compiled(kprobe(args, sel.format(action="TrackSock", pos=1)))
    assert ch.hook.selectors[0].actions[0].arg_sock == 1        # its place in Hook.args
    got = problems(kprobe(args, sel.format(action="UntrackSock", pos=0)))
    assert got == {"spec.kprobes[0].selectors[0].matchActions[0].argSock":
                   "UntrackSock needs argSock, the position in args of a sock or socket argument; "
                   "argument 0 is of type int"}
    got = problems(kprobe(args, sel.format(action="TrackSock", pos=3)))
    assert "there is no argument 3" in got["spec.kprobes[0].selectors[0].matchActions[0].argSock"]


def test_argsock_names_the_sock_when_its_index_appears_twice():
    """An index may repeat (a struct argument and a member resolved from
    it): the record slot written for TrackSock is the sock's own."""
    args = ("    - index: 0\n      type: sock\n"
            "    - index: 0\n      type: uint32\n      resolve: sk_mark\n")
    sel = "    - matchActions:\n      - action: TrackSock\n        argSock: 0\n"
    [hook] = policy(kprobe(args, sel)).hooks
    assert hook.selectors[0].actions[0].arg_sock == 0
    [ch] = compiled(kprobe(args, sel))
    tables = PointTables(1)
    tables.add(0, ch)
    [raw] = tables.tables().hooks.values()
    h = enc.Hook.from_buffer_copy(raw)
    assert (h.sel[0].act[0].action, h.sel[0].act[0].arg) == (enc.ACTIONS["TrackSock"], 0)


RET_SOCK = "    return: true\n    returnArg:\n      index: 0\n      type: {type}\n{action}"


def test_return_arg_action_tracks_a_returned_sock_only():
    body = kprobe("    - index: 1\n      type: int\n",
                  extra=RET_SOCK.format(type="sock", action="    returnArgAction: TrackSock\n"),
                  call="sk_alloc")
    [ch] = compiled(body)
    assert ch.hook.return_arg_action == "TrackSock" and ch.ret_read.retval
    assert policy(body).tracks_socks
    got = problems(kprobe("    - index: 1\n      type: int\n",
                          extra=RET_SOCK.format(type="int", action="    returnArgAction: UntrackSock\n")))
    assert got == {"spec.kprobes[0].returnArgAction":
                   "UntrackSock needs `return: true` and a returnArg of type sock"}
    got = problems("  kprobes:\n  - call: sys_socket\n    syscall: true\n"
                   + RET_SOCK.format(type="int", action="    returnArgAction: TrackSock\n"))
    assert "a syscall returns a number" in got["spec.kprobes[0].returnArgAction"]
    assert not policy(kprobe(SOCK0)).tracks_socks


def test_a_sock_return_value_takes_the_record_slot_after_the_args():
    five = "".join(f"    - index: {i}\n      type: int\n" for i in range(5))
    got = problems(kprobe(five, extra=RET_SOCK.format(type="sock", action="")))
    assert got == {"spec.kprobes[0].args": "a hook with a sock returnArg has at most 4 args "
                                           "(the returned sock takes a record slot)"}


@pytest.mark.parametrize("action,key,value,reason", [
    ("GetUrl", "argUrl", "ftp://example.org/x", "is not an http:// or https:// URL with a host"),
    ("GetUrl", "argUrl", "http:///nohost", "is not an http:// or https:// URL with a host"),
    ("GetUrl", "argUrl", "http://a b/", "is not an http:// or https:// URL with a host"),
    ("GetUrl", "argUrl", "http://h:99999/", "is not an http:// or https:// URL with a host"),
    ("DnsLookup", "argFqdn", "bad..name", "is not a domain name"),
    ("DnsLookup", "argFqdn", "x" * 64 + ".org", "is not a domain name"),
    ("DnsLookup", "argFqdn", "a/b", "is not a domain name"),
])
def test_urls_and_names_are_checked(action, key, value, reason):
    got = problems(kprobe(SOCK0, f"    - matchActions:\n      - action: {action}\n        {key}: \"{value}\"\n"))
    assert reason in got[f"spec.kprobes[0].selectors[0].matchActions[0].{key}"]


def test_geturl_and_dnslookup_need_their_argument_and_only_theirs():
    got = problems(kprobe(SOCK0, "    - matchActions:\n      - action: GetUrl\n"
                                 "      - action: DnsLookup\n        argUrl: http://x/\n"))
    assert got == {"spec.kprobes[0].selectors[0].matchActions[0].argUrl":
                   "GetUrl needs argUrl, the http:// or https:// URL to request",
                   "spec.kprobes[0].selectors[0].matchActions[1].argFqdn":
                   "DnsLookup needs argFqdn, the domain name to look up",
                   "spec.kprobes[0].selectors[0].matchActions[1].argUrl": "argUrl applies to GetUrl only"}


# ---- the tables --------------------------------------------------------------------------

def tables(body: str, track: int = 0):
    pt = PointTables(3)
    ch = compiled(body)[0]
    pt.add(5, ch, track)
    t = pt.tables()
    return ch, enc.Point.from_buffer_copy(t.point), enc.Hook.from_buffer_copy(t.hooks[5])


def ipreds(point) -> list[tuple[int, int, list[int]]]:
    return [(q.slot, q.op, list(q.vals[:q.nvals])) for q in point.pred[:point.npreds]]


def test_privileged_ports_are_the_port_range_0_1023_sharing_its_bit():
    _, p, h = tables(kprobe(SOCK0, "    - matchArgs:\n      - index: 0\n        operator: SPortPriv\n"
                                   "      - index: 0\n        operator: NotDPortPriv\n"
                                   "      - index: 0\n        operator: SPort\n        values: [\"0:1023\"]\n"))
    assert ipreds(p) == [(0, enc.IOPS["SPort"], [0, 1023]), (0, enc.IOPS["DPort"], [0, 1023])]
    sel = h.sel[0]
    bits = {q.op: q.bit for q in p.pred[:2]}
    assert sel.pos[0] == 1 << bits[enc.IOPS["SPort"]]           # SPortPriv and SPort 0:1023: one bit
    assert sel.neg[0] == 1 << bits[enc.IOPS["DPort"]]


def test_names_and_ranges_are_ranges():
    _, p, _ = tables(kprobe(SOCK0, "    - matchArgs:\n      - index: 0\n        operator: Protocol\n"
                                   "        values: [IPPROTO_UDP, \"6:8\"]\n"
                                   "      - index: 0\n        operator: State\n        values: [TCP_SYN_RECV]\n"
                                   "      - index: 0\n        operator: Family\n        values: [AF_INET6]\n"))
    assert ipreds(p) == [(0, enc.IOPS["Protocol"], [17, 17, 6, 8]), (0, enc.IOPS["State"], [3, 3]),
                         (0, enc.IOPS["Family"], [10, 10])]


def test_sockaddr_un_family_is_its_integer_and_its_path_a_string():
    _, p, _ = tables(kprobe("    - index: 1\n      type: sockaddr_un\n",
                            "    - matchArgs:\n      - index: 1\n        operator: Family\n"
                            "        values: [AF_UNIX]\n      - index: 1\n        operator: Prefix\n"
                            "        values: [/run/]\n"))
    assert ipreds(p) == [(0, enc.IOPS["InRange"], [1, 1])]
    assert p.slot[0].kind == enc.GA["ksockaddr_un"] and p.slot[0].flags & enc.GS_FWD


def test_tracking_fills_the_hook_for_the_kernel():
    args = "    - index: 0\n      type: int\n    - index: 1\n      type: sock\n"
    body = kprobe(args, "    - matchActions:\n      - action: TrackSock\n        argSock: 1\n",
                  extra=RET_SOCK.format(type="sock", action="    returnArgAction: UntrackSock\n"))
    ch, p, h = tables(body, track=9)
    assert (h.track, h.ret_action, h.nargs) == (9, enc.ACTIONS["UntrackSock"], 3)
    assert h.sockargs == 0b110                      # the sock argument and the returned sock
    assert h.flags & enc.HOOK_RETSLOT and h.flags & enc.HOOK_RETURN
    assert (h.sel[0].act[0].action, h.sel[0].act[0].arg) == (enc.ACTIONS["TrackSock"], 1)
    ret = p.slot[h.argslot[2]]
    assert (ret.kind, ret.flags & enc.GS_RETVAL) == (enc.GA["sock"], enc.GS_RETVAL)
    # A policy that tracks nothing: no lookups at post.
    _, _, h = tables(kprobe(args))
    assert (h.track, h.sockargs, h.ret_action) == (0, 0, 0)


# ---- events ------------------------------------------------------------------------------

CHILD = process(10, "/usr/bin/nc", "-l 80")
PARENT = process(5, "/bin/bash", "")


def sockinfo(**fields) -> bytes:
    si = enc.SockInfo()
    for k, v in fields.items():
        if k in ("saddr", "daddr"):
            ctypes.memmove(getattr(si, k), v, len(v))
        else:
            setattr(si, k, v)
    return bytes(si)


def event(body: str, slots: list[Slot], action=1, flags=0, retval=0, selector=0) -> dict:
    [ch] = compiled(body)
    rec = PolicyRecord(1, 2, 3, 10, 10, 1_000, retval, selector, action, flags, tuple(slots))
    e = policy_event(rec, HookPlan(ch), 1_700_000_000_000_000_000, CHILD, PARENT)
    line = json.loads(e.to_json("n"))
    assert tetragon_schema.problems_of(line) == []
    return line["process_kprobe"]


def test_sock_arg_in_tetragons_words(monkeypatch):
    monkeypatch.setattr(events, "_COOKIE_KEY", bytes(16))
    v4 = ipaddress.IPv4Address
    got = event(kprobe(SOCK0), [Slot(0, sockinfo(family=2, type=1, protocol=6, sport=40000, dport=443,
                                                 state=10, mark=7, priority=6, cookie=0xffff888012345678,
                                                 saddr=v4("10.0.0.1").packed,
                                                 daddr=v4("10.0.0.2").packed), 0)])
    cookie = events.sock_cookie(0xffff888012345678)
    assert got["args"] == [{"sock_arg": {"family": "AF_INET", "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP",
                                         "mark": 7, "priority": 6, "saddr": "10.0.0.1", "daddr": "10.0.0.2",
                                         "sport": 40000, "dport": 443, "cookie": str(cookie),
                                         "state": "TCP_LISTEN"}}]
    assert cookie != 0xffff888012345678 and cookie == events.sock_cookie(0xffff888012345678)
    assert events.sock_cookie(0xffff888012345680) != cookie and events.sock_cookie(0) == 0
    # A sock that is not IP: names as Tetragon writes them, no addresses.
    got = event(kprobe(SOCK0), [Slot(0, sockinfo(family=1, type=2), 0)])
    assert got["args"] == [{"sock_arg": {"family": "AF_UNIX", "type": "SOCK_DGRAM", "protocol": "IPPROTO_IP",
                                         "state": "0"}}]


def test_skb_arg():
    v6 = ipaddress.IPv6Address
    got = event(kprobe("    - index: 0\n      type: skb\n"),
                [Slot(0, sockinfo(family=10, protocol=17, sport=5353, dport=53, len=93, hash=77, mark=1,
                                  priority=2, saddr=v6("fe80::1").packed, daddr=v6("::1").packed), 0)])
    assert got["args"] == [{"skb_arg": {"hash": 77, "len": 93, "priority": 2, "mark": 1, "saddr": "fe80::1",
                                        "daddr": "::1", "sport": 5353, "dport": 53, "proto": 17,
                                        "protocol": "IPPROTO_UDP", "family": "AF_INET6"}}]


def test_sockaddr_un_and_net_device():
    body = kprobe("    - index: 0\n      type: sockaddr_un\n    - index: 1\n      type: sockaddr_un\n"
                  "    - index: 2\n      type: net_device\n      label: dev\n")
    got = event(body, [Slot(1, b"/run/x.sock", 0), Slot(1, b"abstract", enc.SLOT_ABSTRACT),
                       Slot(0, b"lo", 0)])
    assert got["args"] == [{"sockaddrun_arg": {"family": "AF_UNIX", "path": "/run/x.sock"}},
                           {"sockaddrun_arg": {"family": "AF_UNIX", "path": "@abstract"}},
                           {"net_dev_arg": {"name": "lo"}, "label": "dev"}]


def test_a_returned_sock_is_the_slot_after_the_args(monkeypatch):
    monkeypatch.setattr(events, "_COOKIE_KEY", bytes(16))
    body = kprobe("    - index: 1\n      type: int\n", call="sk_alloc",
                  extra=RET_SOCK.format(type="sock", action="    returnArgAction: TrackSock\n"))
    got = event(body, [Slot(2, b"", 0), Slot(0, sockinfo(family=2, cookie=0x1234), 0)],
                flags=enc.MSG_RETURN, retval=0x1234)
    assert got["args"] == [{"int_arg": 2}]
    assert got["return"] == {"sock_arg": {"family": "AF_INET", "type": "0", "protocol": "IPPROTO_IP",
                                          "saddr": "0.0.0.0", "daddr": "0.0.0.0",
                                          "cookie": str(events.sock_cookie(0x1234)), "state": "0"}}
    assert got["return_action"] == "KPROBE_ACTION_POST"


@pytest.mark.parametrize("name,code", [("TrackSock", 8), ("UntrackSock", 9), ("GetUrl", 10), ("DnsLookup", 11)])
def test_action_names(name, code):
    assert enc.ACTIONS[name] == code
    got = event(kprobe(SOCK0), [Slot(0, sockinfo(family=2), 0)], action=code)
    assert got["action"] == f"KPROBE_ACTION_{name.upper()}"


def test_user_actions_are_the_selectors_at_entry_or_return():
    body = kprobe(SOCK0, "    - matchArgs:\n      - index: 0\n        operator: DPort\n        values: [\"53\"]\n"
                         "      matchActions:\n      - action: DnsLookup\n        argFqdn: canary.example.\n"
                         "      - action: GetUrl\n        argUrl: http://127.0.0.1:9/x\n"
                         "    - matchActions:\n      - action: Post\n",
                  extra=RET_SOCK.format(type="int", action="").replace("type: int", "type: int"))
    [ch] = compiled(body)
    plan = HookPlan(ch)

    def rec(selector, flags=0):
        return PolicyRecord(1, 2, 3, 10, 10, 0, 0, selector, 1, flags, ())
    assert user_actions(rec(0), plan) == (UserAction("DnsLookup", "canary.example."),
                                          UserAction("GetUrl", "http://127.0.0.1:9/x"))
    assert user_actions(rec(0, enc.MSG_RETURN), plan) == user_actions(rec(0), plan)
    assert user_actions(rec(1), plan) == () and user_actions(rec(0xfe), plan) == ()


def test_a_type_whose_struct_members_this_kernel_lacks_is_named(monkeypatch):
    """A kernel whose BTF lacks sk_buff.head cannot load skb arguments: the
    check names the member, and other types are not refused for it."""
    known = {m: 8 for m in offsets.POLICY_FIELDS if m != "OFF_SKB_HEAD"}
    monkeypatch.setattr(offsets, "policy_offsets", lambda: known)
    skb = compiled(kprobe("    - index: 0\n      type: skb\n"))
    assert kernel.missing_members(skb[0]) == [
        ("spec.kprobes[0]", "type skb needs sk_buff.head, which this kernel's BTF does not have")]
    assert kernel.missing_members(compiled(kprobe(SOCK0))[0]) == []
