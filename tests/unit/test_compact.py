"""Compact lines, as Tetragon's `tetra getevents -o compact` prints them, and
text from processes made safe for a terminal and journald's MESSAGE."""

import pytest

from tetrad.events import compact
from tetrad.events.quote import maybe_quote, quote

NODE = "node-a"
PROC = {"exec_id": "x", "pid": 7, "binary": "/usr/bin/curl", "arguments": "cilium.io"}


def kprobe(function, *args, **process):
    body = {"process": {**PROC, **process}, "function_name": function}
    if args:
        body["args"] = list(args)
    return {"process_kprobe": body, "node_name": NODE}


SOCK = {"sock_arg": {"family": "AF_INET", "saddr": "10.0.0.1", "sport": 41234, "daddr": "1.2.3.4",
                     "dport": 443}}


@pytest.mark.parametrize("record,text", [
    ({"process_exec": {"process": PROC}, "node_name": NODE},
     "🚀 process node-a /usr/bin/curl cilium.io"),
    ({"process_exec": {"process": {**PROC, "arguments": ""}}, "node_name": NODE},
     "🚀 process node-a /usr/bin/curl "),
    ({"process_exit": {"process": PROC, "status": 1}, "node_name": NODE},
     "💥 exit    node-a /usr/bin/curl cilium.io 1"),
    ({"process_exit": {"process": PROC}, "node_name": NODE},
     "💥 exit    node-a /usr/bin/curl cilium.io 0"),
    ({"process_exit": {"process": PROC, "signal": "SIGKILL"}, "node_name": NODE},
     "💥 exit    node-a /usr/bin/curl cilium.io SIGKILL"),
    (kprobe("__x64_sys_write", {"file_arg": {"path": "/etc/passwd"}}, {"bytes_arg": ""},
            {"size_arg": "1234"}),
     "📝 write   node-a /usr/bin/curl /etc/passwd 1234 bytes"),
    (kprobe("__x64_sys_write"), "📝 write   node-a /usr/bin/curl  "),
    (kprobe("__x64_sys_read", {"int_arg": 3}, {"bytes_arg": ""}, {"size_arg": "9"}),
     "📚 read    node-a /usr/bin/curl  9 bytes"),
    (kprobe("fd_install", {"int_arg": 3}, {"file_arg": {"path": "/etc/shadow"}}),
     "📬 open    node-a /usr/bin/curl /etc/shadow"),
    (kprobe("__x64_sys_openat", {"int_arg": -100}, {"string_arg": "/etc/shadow"}),
     "📬\ufe0f openat  node-a /usr/bin/curl /etc/shadow"),
    (kprobe("__arm64_sys_open", {"int_arg": 0}, {"string_arg": "/tmp/x"}),
     "📬\ufe0f open    node-a /usr/bin/curl /tmp/x"),
    (kprobe("__x64_sys_close", {"file_arg": {"path": "/tmp/x"}}),
     "📪 close   node-a /usr/bin/curl /tmp/x"),
    (kprobe("__x64_sys_mount", {"string_arg": "/dev/sda1"}, {"string_arg": "/mnt"}),
     "💾 mount   node-a /usr/bin/curl /dev/sda1 /mnt"),
    (kprobe("__x64_sys_pivot_root", {"string_arg": "/new"}, {"string_arg": "/old"}),
     "💾 pivot_root node-a /usr/bin/curl /new /old"),
    (kprobe("__x64_sys_setuid", {"int_arg": 1000}), "🔑 setuid  node-a /usr/bin/curl 1000"),
    (kprobe("__x64_sys_clock_settime", {"int_arg": 0}), "⏰ clock_settime node-a /usr/bin/curl"),
    (kprobe("__x64_sys_setns", {"int_arg": 3}, {"int_arg": 0x40000000}),
     "🔧 setns   node-a /usr/bin/curl net"),
    (kprobe("tcp_connect", SOCK), "🔌 connect node-a /usr/bin/curl tcp 10.0.0.1:41234 -> 1.2.3.4:443"),
    (kprobe("tcp_close", SOCK), "🧹 close   node-a /usr/bin/curl tcp 10.0.0.1:41234 -> 1.2.3.4:443"),
    (kprobe("tcp_sendmsg", SOCK, {"int_arg": 517}),
     "📤 sendmsg node-a /usr/bin/curl tcp 10.0.0.1:41234 -> 1.2.3.4:443 bytes 517"),
    (kprobe("bpf_check", {"bpf_attr_arg": {"ProgType": "BPF_PROG_TYPE_KPROBE", "InsnCnt": 2048,
                                           "ProgName": "amazing"}}),
     "🐝 bpf_load node-a /usr/bin/curl BPF_PROG_TYPE_KPROBE amazing instruction count 2048"),
    (kprobe("security_perf_event_alloc", {"perf_event_arg": {"KprobeFunc": "commit_creds",
                                                             "Type": "PERF_TYPE_TRACEPOINT"}}),
     "🐝 perf_event_alloc node-a /usr/bin/curl PERF_TYPE_TRACEPOINT commit_creds"),
    (kprobe("security_bpf_map_alloc", {"bpf_map_arg": {"MapType": "BPF_MAP_TYPE_HASH", "MapName": "m",
                                                       "KeySize": 8, "ValueSize": 8, "MaxEntries": 1024}}),
     "🗺 bpf_map_create node-a /usr/bin/curl BPF_MAP_TYPE_HASH m key size 8 value size 8 max entries 1024"),
    (kprobe("security_file_permission", {"file_arg": {"path": "/etc/x"}}, {"int_arg": 2}),
     "📝 write   node-a /usr/bin/curl /etc/x"),
    (kprobe("security_file_permission", {"file_arg": {"path": "/etc/x"}}, {"int_arg": 4}),
     "📚 read    node-a /usr/bin/curl /etc/x"),
    (kprobe("security_file_permission", {"file_arg": {"path": "/etc/x"}}, {"int_arg": 8}),
     "❓ security_file_permission node-a /usr/bin/curl /etc/x"),
    (kprobe("security_mmap_file", {"file_arg": {"path": "/lib/x.so"}}, {"uint_arg": 5}, {"uint_arg": 1}),
     "📝 mmap-rx node-a /usr/bin/curl /lib/x.so"),
    (kprobe("security_mmap_file", {"file_arg": {"path": "/lib/x.so"}}, {"uint_arg": 0}),
     "📝 mmap-   node-a /usr/bin/curl /lib/x.so"),
    (kprobe("security_path_truncate", {"path_arg": {"path": "/var/log/x"}}),
     "📝 truncate node-a /usr/bin/curl /var/log/x"),
    (kprobe("security_file_truncate", {"file_arg": {"path": "/var/log/x"}}),
     "📝 truncate node-a /usr/bin/curl /var/log/x"),
    (kprobe("security_file_truncate"), "❓ security_file_truncate node-a /usr/bin/curl "),
    (kprobe("__x64_sys_unlinkat", {"string_arg": "/x"}), "❓ syscall node-a /usr/bin/curl __x64_sys_unlinkat"),
    ({"process_tracepoint": {"process": PROC, "subsys": "syscalls", "event": "sys_enter_lseek"},
      "node_name": NODE}, "⁉️ tracepoint node-a /usr/bin/curl syscalls sys_enter_lseek"),
    ({"process_tracepoint": {"process": PROC, "subsys": "raw_syscalls", "event": "sys_enter",
                             "args": [{"syscall_id": {"id": 257, "abi": "x64"}}]},
      "node_name": NODE}, "☎  syscall node-a /usr/bin/curl openat"),
    ({"process_tracepoint": {"process": PROC, "subsys": "raw_syscalls", "event": "sys_enter",
                             "args": [{"syscall_id": {"abi": "x64"}}]},
      "node_name": NODE}, "☎  syscall node-a /usr/bin/curl read"),
    ({"process_tracepoint": {"process": PROC, "subsys": "raw_syscalls", "event": "sys_enter",
                             "args": [{"long_arg": "99999"}]},
      "node_name": NODE}, "☎  syscall node-a /usr/bin/curl unknown"),
    ({"process_uprobe": {"process": PROC, "path": "/usr/bin/bash", "symbol": "readline"},
      "node_name": NODE}, "🕵️ uprobe  node-a /usr/bin/curl /usr/bin/bash readline"),
    ({"process_usdt": {"process": PROC, "path": "/usr/bin/python3", "provider": "python",
                       "name": "function__entry"}, "node_name": NODE},
     "🕵️ usdt    node-a /usr/bin/curl /usr/bin/python3 python function__entry"),
    ({"process_lsm": {"process": PROC, "function_name": "file_open",
                      "args": [{"file_arg": {"path": "/etc/shadow"}}]}, "node_name": NODE},
     "🔒 LSM     node-a /usr/bin/curl file_open"),
    ({"process_loader": {"process": PROC, "path": "/usr/lib/libc.so.6", "buildid": "3q2+7w=="},
      "node_name": NODE}, "🧬 loader  node-a /usr/bin/curl deadbeef /usr/lib/libc.so.6"),
    ({"process_loader": {"process": PROC, "path": "/usr/lib/libc.so.6"}, "node_name": NODE},
     "🧬 loader  node-a /usr/bin/curl /usr/lib/libc.so.6"),
    ({"process_throttle": {"type": "THROTTLE_START", "cgroup": "/sys/fs/cgroup/x"}, "node_name": NODE},
     "🧬 throttle START /sys/fs/cgroup/x"),
    ({"process_throttle": {"type": "THROTTLE_STOP", "cgroup": "/sys/fs/cgroup/x"}, "node_name": NODE},
     "🧬 throttle STOP  /sys/fs/cgroup/x"),
])
def test_lines_as_tetra_prints_them(record, text):
    assert compact.line(record) == text


@pytest.mark.parametrize("process,where", [
    ({}, "node-a"),
    ({"pod": {"namespace": "kube-system", "name": "tetragon", "container": {"name": "c"}}},
     "kube-system/tetragon"),
    ({"pod": {"container": {"id": "e7fe6efb952421eb2806", "name": "web-1"}}, "docker": "e7fe"}, "web-1"),
    ({"pod": {"container": {"id": "e7fe6efb952421eb2806"}}}, "e7fe6efb9524"),
    ({"docker": "e7fe6efb952421eb2806"}, "node-a"),              # Tetragon outside Kubernetes
    ({"pod": {"container": {"name": "evil\x1b[2Jname"}}}, '"evil\\x1b[2Jname"'),
])
def test_where_the_process_runs(process, where):
    assert compact.where(process, "node-a") == where


def test_capabilities_trailer_pads_the_line_to_120_columns():
    text = compact.line({"process_exec": {"process": {**PROC, "cap": {"effective": ["CAP_SYS_ADMIN"]}}},
                         "node_name": NODE})
    assert text.startswith("🚀 process node-a /usr/bin/curl cilium.io ") and text.endswith("🛑 CAP_SYS_ADMIN")
    # Go's arithmetic: the line's bytes up to 120, a space, the trailer right-aligned
    # in what is left (counted in characters: 🛑 is 4 bytes, 1 character)
    caps = "🛑 CAP_SYS_ADMIN"
    assert len(text.encode()) == 120 + 1 + len(caps.encode()) - len(caps)


def test_timestamps_have_nine_digits():
    record = {"process_exec": {"process": PROC}, "node_name": NODE, "time": "2023-11-14T22:13:20.120Z"}
    assert compact.line(record, timestamps=True).startswith("2023-11-14T22:13:20.120000000Z 🚀 process")
    record["time"] = "2023-11-14T22:13:20Z"
    assert compact.line(record, timestamps=True).startswith("2023-11-14T22:13:20.000000000Z 🚀")
    del record["time"]
    assert compact.line(record, timestamps=True).startswith("1970-01-01T00:00:00.000000000Z 🚀")


def test_records_that_are_not_events_have_no_line():
    assert compact.line({"rate_limit_info": {"number_of_dropped_process_events": "3"}}) is None
    assert compact.line({"node_name": "n"}) is None


def test_a_kind_tetra_does_not_know_still_names_the_process():
    assert compact.line({"process_future": {"process": PROC}, "node_name": NODE}) == \
        "❓ process_future node-a /usr/bin/curl"


# ---- quoting: Go's strconv.Quote for what is not plainly printable ----------------------

@pytest.mark.parametrize("text,shown", [
    ("/usr/bin/curl", "/usr/bin/curl"),
    ("é-ü-日本-🚀", "é-ü-日本-🚀"),
    ('say"hi"\\', 'say"hi"\\'),                          # printable, no space: as is
    ("a b", '"a b"'),
    ('-c "x y"', '"-c \\"x y\\""'),
    ("C:\\dir name", '"C:\\\\dir name"'),
    ("", ""),
    ("\x1b[31mred", '"\\x1b[31mred"'),
    ("line\n🚀 process forged", '"line\\n🚀 process forged"'),
    ("\a\b\f\r\t\v\x00\x7f", '"\\a\\b\\f\\r\\t\\v\\x00\\x7f"'),
    ("\x85\u2028\u202e\u00a0", '"\\u0085\\u2028\\u202e\\u00a0"'),    # C1, line sep, bidi, nbsp
    ("\U000e0001tag", '"\\U000e0001tag"'),
    ("bad\udcffbyte", '"bad\\xffbyte"'),                  # a non-UTF-8 byte (surrogateescape)
])
def test_maybe_quote_as_go_strconv(text, shown):
    assert maybe_quote(text) == shown


def test_quote_always_quotes():
    assert quote("x") == '"x"'


def test_no_line_carries_a_control_character():
    hostile = "\x1b]0;title\x07\x1b[2J\r\n🚀 process forged /bin/sh"
    for record in ({"process_exec": {"process": {**PROC, "arguments": hostile, "binary": hostile}},
                    "node_name": hostile},
                   kprobe("__x64_sys_openat", {"int_arg": 1}, {"string_arg": hostile}, binary=hostile),
                   kprobe(hostile, binary=hostile),
                   {"process_exit": {"process": PROC, "signal": hostile}, "node_name": NODE},
                   {"process_uprobe": {"process": PROC, "path": hostile, "symbol": hostile}},
                   {"process_throttle": {"cgroup": hostile}},
                   {"process_exec": {"process": {**PROC, "pod": {"namespace": hostile, "name": hostile}}}}):
        text = compact.line(record)
        assert text.isprintable(), text
