"""Policy records, byte for byte: raw record -> decode_policy -> policy_event
-> the JSON line, for every argument type, hook kind and action.

The expected lines were written by the ctypes decoder and the dict-based
event builder; a faster path must produce the same text."""

import ctypes
import json

import pytest

from tetrad.decode.generic import decode_policy
from tetrad.decode.process import DecodeError
from tetrad.events.policy import HookPlan, policy_event
from tetrad.abi import generic as enc
from tetrad.bpf import unistd
from tetrad.policy.compile import KernelFacts, TracepointField, compile_policy
from tetrad.policy.schema import parse
from tetrad.elf import UsdtArg, UsdtProbe
from tests.unit.events import process

HEAD = 'apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: "{name}"\nspec:\n'
FIELDS = [TracepointField("__syscall_nr", "int", 8, 4, True, False, False),
          TracepointField("dfd", "int", 16, 8, True, False, False),
          TracepointField("filename", "const char *", 24, 8, False, False, True)]
PROBE = UsdtProbe("app", "req", 0x1234, 0x3018, (UsdtArg("reg", 8, True, reg="di"),
                                                 UsdtArg("deref", 2, False, reg="bp", value=-8)))
FACTS = KernelFacts(arch_prefix="__x64_", tracepoint_fields=lambda subsys, event: FIELDS,
                    usdt_probes=lambda binary: [PROBE])
T0 = 1_700_000_000_123_456_789

WRITE = """  kprobes:
  - call: sys_write
    syscall: true
    return: true
    returnArg:
      index: 0
      type: int
    message: "written"
    tags: ["io", "t\\u00e9st"]
    args:
    - index: 0
      type: fd
      label: "the fd"
    - index: 1
      type: char_buf
      sizeArgIndex: 3
    - index: 2
      type: size_t
"""
KERNEL = """  kprobes:
  - call: security_bprm_check
    args:
    - index: 0
      type: file
    - index: 1
      type: path
    - index: 2
      type: linux_binprm
    - index: 3
      type: string
    - index: 4
      type: uint32
"""
INTS = """  kprobes:
  - call: some_function
    args:
    - index: 0
      type: int8
    - index: 1
      type: long
    - index: 2
      type: ulong
    - index: 3
      type: uint16
    - index: 4
      type: auto
"""
SOCK = """  kprobes:
  - call: tcp_connect
    args:
    - index: 0
      type: sock
"""
CONNECT = """  kprobes:
  - call: sys_connect
    syscall: true
    args:
    - index: 1
      type: sockaddr
"""
TRACEPOINT = """  tracepoints:
  - subsystem: syscalls
    event: sys_enter_openat
    args:
    - index: 1
      type: int
    - index: 2
      type: string
"""
TRACEPOINT_AUTO = """  tracepoints:
  - subsystem: syscalls
    event: sys_enter_openat
    args:
    - index: 0
    - index: 1
"""
UPROBE = """  uprobes:
  - path: /usr/bin/bash
    symbols: [readline]
"""
RETURN_ACTIONS = """  kprobes:
  - call: sys_lseek
    syscall: true
    return: true
    returnArg:
      index: 0
      type: int
    args:
    - index: 2
      type: int
    selectors:
    - matchArgs:
      - {index: 2, operator: Equal, values: ["5555"]}
      matchReturnActions:
      - action: Sigkill
    - matchArgs:
      - {index: 2, operator: Equal, values: ["5556"]}
      matchActions:
      - action: Sigkill
"""
UPROBE_RETURN = """  uprobes:
  - path: /usr/bin/bash
    symbols: ["readline+4"]
    return: true
    returnArg:
      index: 0
      type: int64
    args:
    - index: 0
      type: int
"""
UPROBE_OFFSET = """  uprobes:
  - path: /usr/bin/bash
    offsets: [4096]
    refCtrOffsets: [12312]
"""
USDT = """  usdts:
  - path: /usr/bin/app
    provider: app
    name: req
    message: "a request"
    tags: ["app"]
    args:
    - index: 0
    - index: 1
"""
EVERY_SYSCALL = """  lists:
  - name: all
    type: generated_syscalls
  kprobes:
  - call: "list:all"
"""
LSM = """  lsmhooks:
  - hook: file_open
    args:
    - index: 0
      type: file
"""


def hook(text: str, name: str = "p", mode: str = ""):
    doc = HEAD.format(name=name) + (f"  options:\n  - name: policy-mode\n    value: {mode}\n" if mode else "") + text
    [ch] = compile_policy(parse(doc, "t.yaml"), FACTS)
    return ch


def sockinfo(family, saddr: bytes, daddr: bytes, sport=0, dport=0, type_=1, protocol=6, state=0):
    si = enc.SockInfo(family=family, type=type_, protocol=protocol, sport=sport, dport=dport, state=state)
    ctypes.memmove(si.saddr, saddr, len(saddr))
    ctypes.memmove(si.daddr, daddr, len(daddr))
    return bytes(si)


def record(slots=(), *, ktime=5_000, action=1, flags=0, retval=0, pid=4242, proc_ktime=77,
           obj_id=3, hook_id=2, tid=4243, selector=0, nr=0) -> bytes:
    """A policy record as the kernel writes it: the fixed part and only
    `len(slots)` slots; each slot is (ival, data, flags)."""
    m = enc.Msg()
    m.hdr.op, m.hdr.ktime, m.hdr.cpu = enc.OP_GENERIC, ktime, 1
    m.obj_id, m.hook_id, m.pid, m.tid, m.proc_ktime = obj_id, hook_id, pid, tid, proc_ktime
    m.retval, m.selector, m.action, m.flags, m.nslots = retval, selector, action, flags, len(slots)
    m.nr = nr
    for i, (ival, data, sflags) in enumerate(slots):
        m.slots[i].ival, m.slots[i].len, m.slots[i].flags = ival, len(data), sflags
        ctypes.memmove(ctypes.addressof(m.slots[i]) + enc.Slot.data.offset, data, len(data))
    size = enc.Msg.slots.offset + len(slots) * ctypes.sizeof(enc.Slot)
    m.hdr.size = size
    return bytes(m)[:size]


PARENT = process(pid=1, binary="/usr/lib/systemd/systemd", arguments="")
CHILD = process(pid=4242, binary="/usr/bin/cat", arguments='"a b" c\\d é')
CHILD.parent_exec_id = PARENT.exec_id

CASES = {
    "syscall with return, label, message, tags": (
        WRITE, "", record([(3, b"/var/log/x\xff", 0), (-1, b"\x00\x01bin\xff", 0), (-1, b"", 0)],
                          flags=enc.MSG_RETURN, retval=-9)),
    "truncated buffer, no return flag": (
        WRITE, "", record([(3, b"", 0), (70000, b"abc", enc.SLOT_TRUNC), (70000, b"", 0)], action=3)),
    "kernel types": (
        KERNEL, "", record([(0, b"/etc/passwd", 0), (0, b"/etc", 0), (0, b"/usr/bin/ls", 0),
                            (0, b'quote " and \\ and \n', 0), (-2, b"", 0)])),
    "integers": (
        INTS, "", record([(-5, b"", 0), (-(1 << 40), b"", 0), (-1, b"", 0), (65535, b"", 0), (-7, b"", 0)])),
    "sock, IPv4": (
        SOCK, "", record([(0, sockinfo(2, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), 40000, 443, state=2), 0)])),
    "sock, IPv6, unknown names": (
        SOCK, "", record([(0, sockinfo(10, bytes(15) + b"\1", bytes([0x20, 1, 0xd, 0xb8]) + bytes(12),
                                       1, 2, type_=9, protocol=99, state=99), 0)])),
    "sockaddr": (
        CONNECT, "", record([(0, sockinfo(2, b"", bytes([127, 0, 0, 1]), dport=8080), 0)])),
    "sockaddr, zero port and address": (
        CONNECT, "", record([(0, sockinfo(2, b"", bytes(4)), 0)])),
    "return action (matchReturnActions)": (
        RETURN_ACTIONS, "", record([(5555, b"", 0)], action=3, flags=enc.MSG_RETURN, retval=-9,
                                   selector=0)),
    "entry action run at return": (
        RETURN_ACTIONS, "", record([(5556, b"", 0)], action=3, flags=enc.MSG_RETURN, selector=1)),
    "sockaddr, unknown family": (
        CONNECT, "", record([(0, sockinfo(99, b"", bytes([1, 2, 3, 4]), dport=1), 0)])),
    "monitor mode": (
        CONNECT, "monitor", record([(0, sockinfo(2, b"", bytes([127, 0, 0, 1]), dport=80), 0)],
                                   action=3, flags=enc.MSG_MONITOR)),
    "other actions": (
        KERNEL, "", record([(0, b"", 0)] * 5, action=5)),
    "unknown action": (
        KERNEL, "", record([(0, b"", 0)] * 5, action=99, flags=enc.MSG_MONITOR)),
    "tracepoint": (
        TRACEPOINT, "", record([(-100, b"", 0), (0, b"/tmp/f", 0)])),
    "tracepoint fields typed by their format": (
        TRACEPOINT_AUTO, "", record([(-(1 << 32) + 257, b"", 0), (-100, b"", 0)])),
    "uprobe": (UPROBE, "", record([])),
    "uprobe return value": (UPROBE_RETURN, "", record([(7, b"", 0)], flags=enc.MSG_RETURN, retval=-42)),
    "uprobe by offset, with a semaphore": (UPROBE_OFFSET, "", record([])),
    "usdt": (USDT, "", record([(-3, b"", 0), (65535, b"", 0)])),
    "every syscall, each named": (EVERY_SYSCALL, "", record([], nr=0)),
    "loader": ("  loader: true\n", "", record([(5, b"", 0), (3, b"/usr/lib/libc.so.6", 0)])),
    "lsm": (LSM, "", record([(0, b"/etc/shadow", enc.SLOT_PATH_TRUNC)])),
    "unreadable string, labelled": (
        WRITE, "", record([(3, b"/tmp/x", enc.SLOT_UNREADABLE), (0, b"", enc.SLOT_ERROR | enc.SLOT_UNREADABLE),
                           (5, b"", 0)], action=3)),
    "unreadable tracepoint string": (
        TRACEPOINT, "", record([(-100, b"", 0), (0, b"", enc.SLOT_ERROR | enc.SLOT_UNREADABLE)], action=3)),
}

EXPECTED = {
    'syscall with return, label, message, tags': ('process_kprobe',
         '"function_name":"__x64_sys_write","args":[{"file_arg":{"path":"/var/log/x\\\\xff"},"la'
         'bel":"the fd"},{"bytes_arg":"AAFiaW7/"},{"size_arg":"18446744073709551615"}],"return":'
         '{"int_arg":-9},"action":"KPROBE_ACTION_POST","return_action":"KPROBE_ACTION_POST","pol'
         'icy_name":"p","message":"written","tags":["io","tést"]'),
    'truncated buffer, no return flag': ('process_kprobe',
         '"function_name":"__x64_sys_write","args":[{"file_arg":{},"label":"the fd"},{"truncated'
         '_bytes_arg":{"bytes_arg":"YWJj","orig_size":"70000"}},{"size_arg":"70000"}],"action":"'
         'KPROBE_ACTION_SIGKILL","policy_name":"p","message":"written","tags":["io","tést"]'),
    'kernel types': ('process_kprobe',
         '"function_name":"security_bprm_check","args":[{"file_arg":{"path":"/etc/passwd"}},{"pa'
         'th_arg":{"path":"/etc"}},{"linux_binprm_arg":{"path":"/usr/bin/ls"}},{"string_arg":"qu'
         'ote \\" and \\\\ and \\n"},{"uint_arg":4294967294}],"action":"KPROBE_ACTION_POST","pol'
         'icy_name":"p"'),
    'integers': ('process_kprobe',
         '"function_name":"some_function","args":[{"int_arg":-5},{"long_arg":"-1099511627776"},{'
         '"size_arg":"18446744073709551615"},{"uint_arg":65535},{"size_arg":"1844674407370955160'
         '9"}],"action":"KPROBE_ACTION_POST","policy_name":"p"'),
    'sock, IPv4': ('process_kprobe',
         '"function_name":"tcp_connect","args":[{"sock_arg":{"family":"AF_INET","type":"SOCK_STR'
         'EAM","protocol":"IPPROTO_TCP","saddr":"10.0.0.1","daddr":"10.0.0.2","sport":40000,"dpo'
         'rt":443,"state":"TCP_SYN_SENT"}}],"action":"KPROBE_ACTION_POST","policy_name":"p"'),
    'sock, IPv6, unknown names': ('process_kprobe',
         '"function_name":"tcp_connect","args":[{"sock_arg":{"family":"AF_INET6","type":"9","pro'
         'tocol":"99","saddr":"::1","daddr":"2001:db8::","sport":1,"dport":2,"state":"99"}}],"ac'
         'tion":"KPROBE_ACTION_POST","policy_name":"p"'),
    'sockaddr': ('process_kprobe',
         '"function_name":"__x64_sys_connect","args":[{"sockaddr_arg":{"family":"AF_INET","addr"'
         ':"127.0.0.1","port":8080}}],"action":"KPROBE_ACTION_POST","policy_name":"p"'),
    'sockaddr, zero port and address': ('process_kprobe',
         '"function_name":"__x64_sys_connect","args":[{"sockaddr_arg":{"family":"AF_INET","addr"'
         ':"0.0.0.0"}}],"action":"KPROBE_ACTION_POST","policy_name":"p"'),
    # Tetragon's pair: the entry's action and the return's.
    'return action (matchReturnActions)': ('process_kprobe',
         '"function_name":"__x64_sys_lseek","args":[{"int_arg":5555}],"return":{"int_arg":-9},"'
         'action":"KPROBE_ACTION_POST","return_action":"KPROBE_ACTION_SIGKILL","policy_name":"p"'),
    'entry action run at return': ('process_kprobe',
         '"function_name":"__x64_sys_lseek","args":[{"int_arg":5556}],"return":{"int_arg":0},"a'
         'ction":"KPROBE_ACTION_SIGKILL","return_action":"KPROBE_ACTION_POST","policy_name":"p"'),
    # no address shown for a family that is not IPv4/IPv6 (Tetragon's "invalid IP")
    'sockaddr, unknown family': ('process_kprobe',
         '"function_name":"__x64_sys_connect","args":[{"sockaddr_arg":{"family":"99","port":1}}'
         '],"action":"KPROBE_ACTION_POST","policy_name":"p"'),
    # What the policy would have done; its counters say it was not done.
    'monitor mode': ('process_kprobe',
         '"function_name":"__x64_sys_connect","args":[{"sockaddr_arg":{"family":"AF_INET","addr"'
         ':"127.0.0.1","port":80}}],"action":"KPROBE_ACTION_SIGKILL","policy_name":"p"'),
    'other actions': ('process_kprobe',
         '"function_name":"security_bprm_check","args":[{"file_arg":{}},{"path_arg":{}},{"linux_'
         'binprm_arg":{}},{"string_arg":""},{"uint_arg":0}],"action":"KPROBE_ACTION_OVERRIDE","p'
         'olicy_name":"p"'),
    'unknown action': ('process_kprobe',
         '"function_name":"security_bprm_check","args":[{"file_arg":{}},{"path_arg":{}},{"linux_'
         'binprm_arg":{}},{"string_arg":""},{"uint_arg":0}],"policy_name":"p"'),
    'tracepoint': ('process_tracepoint',
         '"subsys":"syscalls","event":"sys_enter_openat","args":[{"int_arg":-100},{"string_arg":'
         '"/tmp/f"}],"action":"KPROBE_ACTION_POST","policy_name":"p"'),
    # an int field (4 bytes, signed: int_arg) and a long one (long_arg), as Tetragon
    'tracepoint fields typed by their format': ('process_tracepoint',
         '"subsys":"syscalls","event":"sys_enter_openat","args":[{"int_arg":257},{"long_arg":"-'
         '100"}],"action":"KPROBE_ACTION_POST","policy_name":"p"'),
    'uprobe': ('process_uprobe',
         '"path":"/usr/bin/bash","symbol":"readline","action":"KPROBE_ACTION_POST","policy_name"'
         ':"p"'),
    # Tetragon merges the return value into the args, last.
    'uprobe return value': ('process_uprobe',
         '"path":"/usr/bin/bash","symbol":"readline+4","args":[{"int_arg":7},{"long_arg":"-42"}],'
         '"action":"KPROBE_ACTION_POST","policy_name":"p"'),
    'uprobe by offset, with a semaphore': ('process_uprobe',
         '"path":"/usr/bin/bash","offset":"4096","ref_ctr_offset":"12312","action":"KPROBE_ACTI'
         'ON_POST","policy_name":"p"'),
    'usdt': ('process_usdt',
         '"path":"/usr/bin/app","provider":"app","name":"req","args":[{"long_arg":"-3"},{"uint_ar'
         'g":65535}],"action":"KPROBE_ACTION_POST","policy_name":"p","message":"a request","tags'
         '":["app"]'),
    'every syscall, each named': ('process_kprobe',
         '"function_name":"__x64_sys_' + unistd.names().get(0, "0") + '","action":"KPROBE_ACTION_POST","p'
         'olicy_name":"p"'),
    # spec.loader: the mapped file's path (Tetragon's buildid: none here).
    'loader': ('process_loader', '"path":"/usr/lib/libc.so.6"'),
    'lsm': ('process_lsm',
         '"function_name":"file_open","args":[{"file_arg":{"path":"/etc/shadow"}}],"action":"KPR'
         'OBE_ACTION_POST","policy_name":"p"'),
    # Tetragon's error argument instead of a value (never a guess); the label stays.
    'unreadable string, labelled': ('process_kprobe',
         '"function_name":"__x64_sys_write","args":[{"error_arg":{"Message":"unreadable user mem'
         'ory"},"label":"the fd"},{"error_arg":{"Message":"unreadable user memory"}},{"size_arg"'
         ':"5"}],"action":"KPROBE_ACTION_SIGKILL","policy_name":"p","message":"written","tags":['
         '"io","tést"]'),
    'unreadable tracepoint string': ('process_tracepoint',
         '"subsys":"syscalls","event":"sys_enter_openat","args":[{"int_arg":-100},{"error_arg":{'
         '"Message":"unreadable user memory"}}],"action":"KPROBE_ACTION_SIGKILL","policy_name":"'
         'p"'),
}


PROCESSES = '"process":' + CHILD.to_json() + ',"parent":' + PARENT.to_json()


@pytest.mark.parametrize("name", CASES)
def test_policy_record_to_json_line(name):
    text, mode, raw = CASES[name]
    kind, fields = EXPECTED[name]
    event = policy_event(decode_policy(raw), HookPlan(hook(text, mode=mode)), T0, CHILD, PARENT)
    line = event.to_json("node-a")
    assert line == ('{"' + kind + '":{' + PROCESSES + "," + fields +
                    '},"node_name":"node-a","time":"2023-11-14T22:13:20.123456789Z"}')
    assert json.loads(line) == event.to_dict("node-a")


def test_record_fields():
    rec = decode_policy(record([(7, b"ab\0c", 3)], ktime=11, action=4, flags=3, retval=-1,
                               pid=5, proc_ktime=6, obj_id=9, hook_id=8, tid=10))
    assert (rec.ktime, rec.obj_id, rec.hook_id, rec.pid, rec.tid, rec.proc_ktime, rec.retval,
            rec.selector, rec.action, rec.flags, rec.nr) == (11, 9, 8, 5, 10, 6, -1, 0, 4, 3, 0)
    assert decode_policy(record([], nr=257)).nr == 257
    assert rec.monitor and rec.has_return
    [slot] = rec.slots
    assert (slot.ival, slot.data, slot.flags) == (7, b"ab\0c", 3)


def test_slot_length_is_capped_at_the_slot_size():
    raw = bytearray(record([(0, b"x" * enc.STR_MAX, 0)]))
    at = enc.Msg.slots.offset + enc.Slot.len.offset
    raw[at:at + 2] = (5000).to_bytes(2, "little")
    assert decode_policy(bytes(raw)).slots[0].data == b"x" * enc.STR_MAX


@pytest.mark.parametrize("cut,message", [(40, "need at least"), (100, "short for 1 slots")])
def test_short_records_are_errors(cut, message):
    with pytest.raises(DecodeError, match=message):
        decode_policy(record([(0, b"x", 0)])[:cut])


def test_compact_line_of_a_policy_event_is_made_from_its_json():
    from tetrad.events.compact import event_line
    event = policy_event(decode_policy(record([(-100, b"", 0), (0, b"/tmp/a b", 0)], action=3)),
                         HookPlan(hook(TRACEPOINT)), T0, CHILD, PARENT)
    assert event_line(event, "n") == "⁉️ tracepoint n /usr/bin/cat syscalls sys_enter_openat"
