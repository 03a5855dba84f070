"""compile.py: where each hook attaches and how the kernel reads its arguments
(the tables built from them: test_policy_points.py)."""

from pathlib import Path

import pytest

from tetrad.abi import generic as enc
from tetrad.bpf.btf import ValueType
from tetrad.policy.compile import (KernelFacts, compile_policy, parse_tracepoint_format,
                                   syscall_name)
from tetrad.policy.points import ArgRead
from tetrad.policy.schema import PolicyError, parse

HEAD = 'apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: "t"\nspec:\n'
FACTS = KernelFacts(arch_prefix="__x64_")


def one(text: str):
    [ch] = compile_policy(parse(HEAD + text, "t.yaml"), FACTS)
    return ch


OPENAT = """  kprobes:
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
    - matchArgs:
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


def test_syscall_hook_target_and_reads():
    ch = one(OPENAT)
    assert (ch.target.kind, ch.target.name, ch.target.function_name) == \
        ("syscall", "openat", "__x64_sys_openat")
    assert ch.reads == (ArgRead(enc.GA["int"], 0, 4, True), ArgRead(enc.GA["ustr"], 1, opened=True),
                        ArgRead(enc.GA["int"], 2, 4, False))
    assert not ch.has_return and not ch.monitor and ch.unreadable_match


def test_network_reads():
    ch = one("""  kprobes:
  - call: sys_connect
    args:
    - index: 1
      type: sockaddr
    - index: 2
      type: int
""")
    assert [r.kind for r in ch.reads] == [enc.GA["usockaddr"], enc.GA["int"]]


def test_monitor_mode_and_no_selectors():
    ch = one("  options:\n  - name: policy-mode\n    value: monitor\n"
             "  kprobes:\n  - call: sys_close\n    args:\n    - index: 0\n      type: fd\n")
    assert ch.monitor and ch.hook.selectors == ()
    assert ch.reads[0].kind == enc.GA["fd"]


def test_unreadable_args_no_match_is_kept_with_the_hook():
    text = "  kprobes:\n  - call: sys_openat\n    args:\n    - index: 1\n      type: string\n"
    assert one(text).unreadable_match
    assert not one("  options:\n  - name: unreadable-args\n    value: no-match\n" + text).unreadable_match


@pytest.mark.parametrize("hook,retry", [
    # a string, a buffer, a socket address in user memory: read again at sys_exit
    ("  - call: sys_openat\n    args:\n    - index: 1\n      type: string\n", True),
    ("  - call: sys_write\n    args:\n    - index: 1\n      type: char_buf\n      sizeArgIndex: 3\n"
     "    - index: 2\n      type: size_t\n", True),
    ("  - call: sys_connect\n    args:\n    - index: 1\n      type: sockaddr\n", True),
    # integers and fds are not in user memory; a returnCopy buffer is read at return anyway
    ("  - call: sys_lseek\n    args:\n    - index: 1\n      type: long\n", False),
    ("  - call: sys_read\n    return: true\n    returnArg:\n      index: 0\n      type: int\n"
     "    args:\n    - index: 0\n      type: fd\n    - index: 1\n      type: char_buf\n"
     "      returnCopy: true\n", False),
    # after a successful exec the caller's memory is gone: decided at entry
    ("  - call: sys_execve\n    args:\n    - index: 0\n      type: string\n", False),
    ("  - call: sys_execveat\n    args:\n    - index: 1\n      type: string\n", False),
    # no exit to pair with: a kprobe without return
    ("  - call: security_bprm_check\n    syscall: false\n    args:\n    - index: 0\n"
     "      type: linux_binprm\n", False),
])
def test_syscall_hooks_with_user_memory_read_it_again_at_exit(hook, retry):
    assert one("  kprobes:\n" + hook).retry is retry


@pytest.mark.parametrize("call,index,opened", [
    ("sys_openat", 1, True), ("sys_open", 0, True), ("sys_creat", 0, True),
    ("sys_openat2", 1, True),
    ("sys_openat", 0, False),       # the directory descriptor, not the path
    ("sys_unlinkat", 1, False),     # no file comes back
    ("sys_mkdir", 0, False),
])
def test_an_open_familys_path_is_read_from_the_opened_file_when_deferred(call, index, opened):
    typ = "int" if (call, index) == ("sys_openat", 0) else "string"
    ch = one(f"  kprobes:\n  - call: {call}\n    args:\n    - index: {index}\n      type: {typ}\n")
    assert ch.reads[0].opened is opened


def test_return_values_and_buffers():
    ch = one("""  kprobes:
  - call: sys_read
    return: true
    returnArg:
      index: 0
      type: int
    args:
    - index: 0
      type: fd
    - index: 1
      type: char_buf
      returnCopy: true
    - index: 2
      type: size_t
    selectors:
    - matchReturnArgs:
      - index: 0
        operator: LessThan
        values: ["0"]
""")
    assert ch.has_return and ch.reads[1].retcopy and not ch.reads[1].user


def test_what_cannot_be_compiled_is_refused_with_the_path():
    with pytest.raises(PolicyError) as info:
        compile_policy(parse(HEAD + """  kprobes:
  - call: sys_openat
    args:
    - index: 0
      type: file
    selectors:
    - matchActions:
      - action: Override
        argError: -1
""", "t.yaml"), FACTS)
    got = dict(info.value.problems)
    assert "user-space" in got["spec.kprobes[0].args[0].type"]
    # Override on a syscall hook is made by the enforcer: not a problem here
    assert "spec.kprobes[0].selectors[0]" not in got


def test_override_on_a_uprobe_is_refused():
    with pytest.raises(PolicyError) as info:
        compile_policy(parse(HEAD + """  uprobes:
  - path: /usr/bin/true
    symbols: [main]
    selectors:
    - matchActions:
      - action: Override
        argError: -1
""", "t.yaml"), FACTS)
    assert "a uprobe cannot change what the call returns" in str(info.value)


def test_kernel_hooks_read_kernel_values():
    ch = one("  lsmhooks:\n  - hook: file_open\n    args:\n    - index: 0\n      type: file\n")
    assert (ch.target.kind, ch.target.name, ch.target.function_name) == \
        ("lsm", "file_open", "security_file_open")
    assert ch.reads[0].kind == enc.GA["file"]


FORMAT = """name: sys_enter_openat
ID: 782
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:__data_loc char[] name;\toffset:32;\tsize:4;\tsigned:0;
"""


def test_tracepoint_format_and_field_indexes():
    fields = parse_tracepoint_format(FORMAT)
    assert [f.name for f in fields] == ["common_type", "common_flags", "common_preempt_count",
                                        "common_pid", "__syscall_nr", "dfd", "filename", "name"]
    assert fields[6].pointer and fields[7].data_loc and fields[3].signed
    facts = KernelFacts(tracepoint_fields=lambda s, e: fields)
    [ch] = compile_policy(parse(HEAD + """  tracepoints:
  - subsystem: syscalls
    event: sys_enter_openat
    args:
    - index: 6
      type: string
    - index: 5
      type: int
    - index: 7
      type: string
""", "t.yaml"), facts)
    assert [(s.kind, s.src) for s in ch.reads] == [
        (enc.GA["ustr"], 24), (enc.GA["int"], 16), (enc.GA["dataloc"], 32)]


@pytest.mark.parametrize("call,name", [("sys_openat", "openat"), ("__x64_sys_write", "write"),
                                       ("__arm64_sys_read", "read")])
def test_syscall_names(call, name):
    assert syscall_name(call) == name


SHIPPED = sorted((Path(__file__).parents[2] / "etc").glob("*/*.yaml"))
COMMON = """\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;
"""
# The tracepoints the examples hook, as 6.1 and 6.18 describe them (their
# first fields, which the examples use, are the same on both).
FORMATS = {
    ("sock", "inet_sock_set_state"): COMMON + """\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:int newstate;\toffset:20;\tsize:4;\tsigned:1;
""",
    ("net", "net_dev_queue"): COMMON + """\tfield:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:unsigned int len;\toffset:16;\tsize:4;\tsigned:0;
\tfield:__data_loc char[] name;\toffset:20;\tsize:4;\tsigned:0;
""",
}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_policy_parses_and_compiles(path):
    """The policies installed by default and the examples in the docs."""
    policy = parse(path.read_bytes(), str(path))
    facts = KernelFacts(arch_prefix="__x64_",
                        tracepoint_fields=lambda s, e: parse_tracepoint_format(FORMATS[(s, e)]))
    assert compile_policy(policy, facts)


RAW_PARAMS = {"sched_process_exec": [ValueType("ptr", 8, False, "struct task_struct *"),
                                     ValueType("int", 4, True, "int"),
                                     ValueType("ptr", 8, False, "struct linux_binprm *")]}


def raw_facts() -> KernelFacts:
    def params(event):
        return RAW_PARAMS[event]             # KeyError: no such raw tracepoint
    return KernelFacts(raw_tracepoint_args=params)


def raw_tp(args: str, event: str = "sched_process_exec") -> str:
    return f"""  tracepoints:
  - subsystem: sched
    event: {event}
    raw: true
    args:
{args}"""


def test_raw_tracepoint_arguments_are_its_prototypes_typed_from_btf():
    [ch] = compile_policy(parse(HEAD + raw_tp("""    - index: 2
      type: linux_binprm
    - index: 1
    - index: 0
      type: uint64
"""), "t.yaml"), raw_facts())
    assert (ch.target.kind, ch.target.name) == ("rawtp", "sched/sched_process_exec")
    # Kernel values by argument index; `auto` takes the parameter's width and sign.
    # linux_binprm is walked to its file with BTF offsets (none here: tests/unit/
    # test_policy_args.py has the steps).
    assert ch.reads == (ArgRead(enc.GA["none"], 2), ArgRead(enc.GA["int"], 1, 4, True),
                        ArgRead(enc.GA["int"], 0, 8, False))
    assert ch.needs_btf


@pytest.mark.parametrize("args,event,problem", [
    ("    - index: 3\n      type: int\n", "sched_process_exec",
     "raw tracepoint sched/sched_process_exec has 3 arguments"),
    ("    - index: 0\n      type: linux_binprm\n", "sched_process_exec",
     "is struct task_struct *, not struct linux_binprm *"),
    ("    - index: 1\n      type: string\n", "sched_process_exec", "not a string"),
    ("    - index: 0\n      type: int\n", "no_such_event", "no raw tracepoint no_such_event"),
])
def test_raw_tracepoint_arguments_that_do_not_fit_are_refused(args, event, problem):
    with pytest.raises(PolicyError) as err:
        compile_policy(parse(HEAD + raw_tp(args, event), "t.yaml"), raw_facts())
    assert problem in str(err.value)


def test_raw_tracepoint_indexes_stop_at_5_as_in_tetragon():
    with pytest.raises(PolicyError, match=r"args\[0\].index: .*out of range 0..5"):
        parse(HEAD + raw_tp("    - index: 6\n      type: int\n"), "t.yaml")


GENERATED = """  lists:
  - name: every
    type: generated_syscalls
  - name: ksys
    type: generated_ftrace
    pattern: "^ksys_(read|write)$"
  kprobes:
  - call: "list:every"
  - call: "list:ksys"
"""


def test_generated_lists_expand_on_the_kernel_they_are_compiled_for():
    facts = KernelFacts(arch_prefix="__x64_",
                        ftrace_functions=lambda: ["ksys_read", "ksys_write", "ksys_readahead", "vfs_read"])
    compiled = compile_policy(parse(HEAD + GENERATED, "t.yaml"), facts)
    assert [(c.target.kind, c.target.name, c.target.function_name) for c in compiled] == [
        ("syscall", "*", "__x64_sys_*"),          # one point on raw_syscalls for every syscall
        ("kprobe", "ksys_read", "ksys_read"), ("kprobe", "ksys_write", "ksys_write")]
    assert not compiled[0].retry


def test_a_generated_ftrace_list_that_cannot_be_listed_stays_one_hook_needing_it():
    def unreadable():
        raise PermissionError(1, "Operation not permitted")
    compiled = compile_policy(parse(HEAD + GENERATED, "t.yaml"), KernelFacts(ftrace_functions=unreadable))
    assert [(c.target.kind, c.target.name, c.hook.generated) for c in compiled][1:] == [
        ("kprobe", "list:ksys", "ftrace")]
    with pytest.raises(PolicyError, match="no kernel function matches"):
        compile_policy(parse(HEAD + GENERATED, "t.yaml"), KernelFacts(ftrace_functions=lambda: ["vfs_read"]))
    many = [f"ksys_read{i}" for i in range(40)]
    with pytest.raises(PolicyError, match="matches 40 kernel functions"):
        compile_policy(parse(HEAD + GENERATED.replace("(read|write)$", "read"), "t.yaml"),
                       KernelFacts(ftrace_functions=lambda: many))


def test_a_uprobe_returning_a_string_reads_it_into_a_slot_after_its_arguments():
    text = """  uprobes:
  - path: /bin/bash
    symbols: [readline]
    return: true
    returnArg:
      index: 0
      type: string
    args:
    - index: 0
      type: string
    selectors:
    - matchReturnArgs:
      - index: 0
        operator: Prefix
        values: ["sudo"]
"""
    ch = one(text)
    assert ch.reads == (ArgRead(enc.GA["ustr"], 0), ArgRead(enc.GA["ustr"], enc.RET_SRC, retval=True))
    many = text.replace("    args:\n    - index: 0\n      type: string\n",
                        "    args:\n" + "".join(f"    - index: {i}\n      type: int\n" for i in range(5)))
    with pytest.raises(PolicyError, match="reads at most 4 arguments"):
        one(many)
    with pytest.raises(PolicyError, match="of type file is not supported"):
        one(text.replace("      type: string\n    args", "      type: file\n    args"))
