"""args.py through compile_policy: how struct-typed and resolved arguments
are read, on a kernel written in BTF (tests/unit/kernelbtf.py), and what is
refused (invalid anywhere) or unmet (valid, not on this kernel)."""

import pytest

from tetrad.abi import generic as enc
from tetrad.abi.argstructs import LAYOUTS
from tetrad.policy.args import arg_read
from tetrad.policy.btfwalk import Step
from tetrad.policy.compile import KernelFacts, TracepointField, compile_policy
from tetrad.policy.kernel import missing_features
from tetrad.policy.points import PointFull, PointTables
from tetrad.policy.schema import PolicyError, parse
from tests.unit.kernelbtf import OFF, kernel

HEAD = 'apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: "t"\nspec:\n'
BTF = kernel()
CAP_FIELDS = [TracepointField("common_type", "unsigned short", 0, 2, False, False, False),
              TracepointField("cred", "const struct cred *", 8, 8, False, False, True),
              TracepointField("target_ns", "struct user_namespace *", 16, 8, False, False, True),
              TracepointField("cap", "int", 32, 4, True, False, False),
              TracepointField("opaque", "void *", 40, 8, False, False, True)]


def btf_of(module: str):
    if module:
        raise FileNotFoundError(2, "No such file or directory")
    return BTF


FACTS = KernelFacts(arch_prefix="__x64_", btf=btf_of, tracepoint_fields=lambda s, e: CAP_FIELDS)


def compiled(text: str, facts: KernelFacts = FACTS):
    [ch] = compile_policy(parse(HEAD + text, "t.yaml"), facts)
    return ch


def kprobe(call: str, args: str, selectors: str = "") -> str:
    return f"  kprobes:\n  - call: {call}\n    syscall: false\n    args:\n{args}{selectors}"


def arg(index: int, type_: str, extra: str = "") -> str:
    return f"    - index: {index}\n      type: {type_}\n{extra}"


def test_a_cred_argument_gathers_its_fields_with_the_kernels_offsets():
    ch = compiled(kprobe("commit_creds", arg(0, "cred")))
    [read] = ch.reads
    assert read.kind == enc.GA["gather"] and read.size == LAYOUTS["cred"].size
    assert read.nwalk == 0 and read.steps[0] == Step(enc.GO_COPY, OFF["cred.uid"], 64, 0)
    assert ch.needs_btf and not ch.unmet


@pytest.mark.parametrize("type_, kind, first", [
    ("linux_binprm", "file", Step(enc.GO_LOAD, OFF["linux_binprm.file"], 8)),
    ("kiocb", "file", Step(enc.GO_LOAD, OFF["kiocb.ki_filp"], 8)),
    ("filename", "kstr", Step(enc.GO_LOAD, OFF["filename.name"], 8)),
])
def test_structs_read_through_one_member(type_, kind, first):
    [read] = compiled(kprobe("vfs_something", arg(0, type_))).reads
    assert (read.kind, read.steps, read.nwalk) == (enc.GA[kind], (first,), 1)


def test_capabilities_are_integers_and_capability_sets_are_read_through_their_pointer():
    ch = compiled(kprobe("vfs_something", arg(0, "kernel_cap_t") + arg(1, "cap_effective")
                         + arg(2, "capability")))
    assert [(r.kind, r.size, r.signed, r.steps) for r in ch.reads] == [
        (enc.GA["int"], 8, False, (Step(enc.GO_LOAD, 0, 8),)),
        (enc.GA["int"], 8, False, (Step(enc.GO_LOAD, 0, 8),)),
        (enc.GA["int"], 4, True, ())]
    assert not ch.needs_btf


def test_resolve_walks_from_the_hooks_prototype():
    ch = compiled("  lsmhooks:\n  - hook: bprm_check_security\n    args:\n"
                  + arg(0, "string", '      resolve: "mm.owner.real_parent.comm"\n')
                  + arg(0, "int", '      resolve: "mm.owner.pid"\n')
                  + arg(0, "path", '      resolve: "file.f_path"\n'))
    walk = (Step(enc.GO_DEREF, OFF["linux_binprm.mm"], 8), Step(enc.GO_DEREF, OFF["mm_struct.owner"], 8, 0, 1))
    comm, pid, path = ch.reads
    assert comm.kind == enc.GA["kstr"] and comm.steps == walk + (
        Step(enc.GO_DEREF, OFF["task_struct.real_parent"], 8, 0, 2), Step(enc.GO_ADD, OFF["task_struct.comm"]))
    assert pid.kind == enc.GA["int"] and pid.size == 4 and pid.signed and \
        pid.steps == walk + (Step(enc.GO_LOAD, OFF["task_struct.pid"], 4),)
    assert path.kind == enc.GA["path"] and path.steps[-1] == Step(enc.GO_ADD, OFF["file.f_path"])


def test_resolve_then_a_struct_type_gathers_after_the_walk():
    [read] = compiled(kprobe("vfs_something", arg(0, "user_namespace",
                                                  "      btfType: cred\n      resolve: user_ns\n"))).reads
    assert read.kind == enc.GA["gather"] and read.nwalk == 1
    assert read.steps[0] == Step(enc.GO_LOAD, OFF["cred.user_ns"], 8)
    assert read.steps[1] == Step(enc.GO_COPY, OFF["user_namespace.level"], 12, 0)


def test_pointer_fields_of_tracepoints_are_kernel_values():
    ch = compiled("  tracepoints:\n  - subsystem: capability\n    event: cap_capable\n    args:\n"
                  + arg(1, "cred") + arg(2, "user_namespace") + arg(3, "capability")
                  + arg(1, "int", "      resolve: euid.val\n") + arg(4, "file", "      btfType: file\n"))
    assert [(r.kind, r.src) for r in ch.reads] == [
        (enc.GA["gather"], 8), (enc.GA["gather"], 16), (enc.GA["int"], 32), (enc.GA["int"], 8),
        (enc.GA["file"], 40)]
    assert ch.reads[3].steps == (Step(enc.GO_LOAD, OFF["cred.uid"] + 16, 4),)      # euid


def test_bpf_attr_on_a_syscall_is_read_from_user_memory():
    [read] = compiled("  kprobes:\n  - call: sys_bpf\n    args:\n" + arg(1, "bpf_attr")).reads
    assert read.kind == enc.GA["gather"] and all(s.code & enc.GO_USER for s in read.steps)


@pytest.mark.parametrize("text, reason", [
    # the argument's BTF type is another struct
    (kprobe("commit_creds", arg(0, "user_namespace")), "struct cred *, not struct user_namespace *"),
    (kprobe("vfs_something", arg(0, "int", "      btfType: user_namespace\n      resolve: ns\n")),
     "not an integer"),
    (kprobe("commit_creds", arg(0, "string", "      resolve: uid\n")), "not a string"),
    (kprobe("commit_creds", arg(0, "int", "      resolve: nope\n")), "struct cred has no member 'nope'"),
    (kprobe("commit_creds", arg(0, "int", "      btfType: nope\n      resolve: a\n")),
     "no struct or union nope in the BTF of this kernel"),
    (kprobe("commit_creds", arg(0, "int", "      btfType: sockaddr_alg_new\n      btfTypeModule: af_alg\n"
                                          "      resolve: salg_family\n")),
     "btfTypeModule af_alg: no BTF for that module on this kernel (/sys/kernel/btf/af_alg: "
     "No such file or directory"),
    (kprobe("unknown_function", arg(0, "int", "      resolve: x\n")), "not in this kernel's BTF"),
    (kprobe("commit_creds", arg(3, "cred")), "commit_creds has 1 arguments in this kernel's BTF"),
])
def test_what_this_kernels_btf_cannot_serve_is_valid_but_unmet(text, reason):
    ch = compiled(text)
    [(path, why)] = ch.unmet
    assert path == "spec.kprobes[0]" and reason in why, why
    assert ch.reads[0].kind == enc.GA["none"]
    assert (path, why) in missing_features([ch])


def test_load_info_on_a_kernel_without_modules_says_so():
    facts = KernelFacts(btf=lambda m: kernel(module_struct=False))
    ch = compiled(kprobe("find_module_sections", arg(0, "nop") + arg(1, "load_info")), facts)
    [(_, why)] = ch.unmet
    assert why.startswith("spec.kprobes[0].args[1]: ") and "no struct or union load_info" in why


def test_without_btf_the_feature_is_what_is_missing():
    ch = compiled(kprobe("commit_creds", arg(0, "cred")), KernelFacts())
    assert ch.needs_btf and not ch.unmet and ch.reads[0].kind == enc.GA["none"]


@pytest.mark.parametrize("text, path, reason", [
    ("  kprobes:\n  - call: sys_connect\n    args:\n" + arg(1, "sockaddr", "      resolve: sa_family\n"),
     "spec.kprobes[0].args[0]", "user-space value"),
    ("  kprobes:\n  - call: sys_openat\n    args:\n" + arg(1, "cred"),
     "spec.kprobes[0].args[0].type", "not supported on syscall arguments"),
    ("  tracepoints:\n  - subsystem: capability\n    event: cap_capable\n    args:\n" + arg(3, "cred"),
     "spec.tracepoints[0].args[0].type", "field cap is int, not a pointer"),
    ("  tracepoints:\n  - subsystem: capability\n    event: cap_capable\n    args:\n"
     + arg(4, "char_buf", "      sizeArgIndex: 4\n") + arg(3, "int"),
     "spec.tracepoints[0].args[0].type", "not supported on tracepoints"),
    (kprobe("vfs_something", arg(0, "char_iovec", "      sizeArgIndex: 2\n") + arg(1, "int")),
     "spec.kprobes[0].args[0].type", "not supported on kernel hooks"),
    ("  kprobes:\n  - call: sys_writev\n    args:\n" + arg(1, "char_iovec"),
     "spec.kprobes[0].args[0]", "char_iovec needs sizeArgIndex"),
])
def test_what_no_kernel_could_serve_is_refused(text, path, reason):
    with pytest.raises(PolicyError) as info:
        compiled(text)
    got = dict(info.value.problems)
    assert reason in got[path], got


def test_duplicate_indexes_read_each_member_and_match_args_names_them():
    ch = compiled(kprobe("commit_creds", arg(0, "int", "      resolve: uid.val\n")
                         + arg(0, "int", "      resolve: euid.val\n"),
                         "    selectors:\n    - matchArgs:\n      - index: 0\n        operator: Equal\n"
                         "        values: ['0']\n      - args: [1]\n        operator: Equal\n"
                         "        values: ['1000']\n"))
    assert [r.steps for r in ch.reads] == [(Step(enc.GO_LOAD, OFF["cred.uid"], 4),),
                                           (Step(enc.GO_LOAD, OFF["cred.uid"] + 16, 4),)]
    first, second = ch.hook.selectors[0].match_args
    assert (first.pos, first.values) == (0, ("0",)) and (second.pos, second.values) == (1, ("1000",))
    tables = PointTables(1)
    tables.add(0, ch)
    point = enc.Point.from_buffer_copy(tables.tables().point)
    assert [(point.pred[i].slot, list(point.pred[i].vals[:1])) for i in range(point.npreds)] == \
        [(0, [0]), (1, [1000])]


def test_steps_are_laid_out_per_slot_in_the_point():
    ch = compiled(kprobe("commit_creds", arg(0, "int", "      resolve: uid.val\n") + arg(0, "cred")))
    tables = PointTables(1)
    tables.add(0, ch)
    point = enc.Point.from_buffer_copy(tables.tables().point)
    walk, gather = point.slot[0], point.slot[1]
    assert (walk.op_at, walk.nwalk, walk.ngather) == (0, 1, 0)
    assert (gather.op_at, gather.nwalk, gather.ngather) == (1, 0, len(ch.reads[1].steps))
    assert (point.ops[0].code, point.ops[0].off, point.ops[0].size) == (enc.GO_LOAD, OFF["cred.uid"], 4)
    assert (point.ops[1].code, point.ops[1].size, point.ops[1].dst) == (enc.GO_COPY, 64, 0)
    assert gather.size == LAYOUTS["cred"].size


def test_a_point_holds_a_bounded_number_of_steps():
    def walks(depths, leaf):
        return kprobe("vfs_something", "".join(
            arg(0, "int" if leaf == "pid" else "string",
                f"      btfType: task_struct\n      resolve: {'real_parent.' * d}{leaf}\n") for d in depths))
    first = compiled(walks((9, 8, 7, 6, 5), "pid"))
    second = compiled(walks((9, 8, 7), "comm"))
    assert sum(len(r.steps) for r in first.reads + second.reads) > enc.MAX_OPS
    tables = PointTables(1)
    tables.add(0, first)
    with pytest.raises(PointFull, match=f"take 67 struct walk steps; a point holds {enc.MAX_OPS}"):
        tables.add(1, second)
    assert tables.hook_ids == [0]
    point = enc.Point.from_buffer_copy(tables.tables().point)
    assert point.nslots == 5 and point.slot[4].op_at + point.slot[4].nwalk == 40


def test_raw_tracepoint_arguments_start_from_the_tracepoints_prototype():
    hook = parse(HEAD + "  tracepoints:\n  - subsystem: sched\n    event: sched_process_exec\n    args:\n"
                 + arg(0, "int", "      resolve: pid\n") + arg(2, "linux_binprm"), "t.yaml").hooks[0]
    btf = btf_of("")
    params = [btf.value_type(p.type_id)
              for p in btf.params(btf.find("btf_trace_sched_process_exec", "typedef"))[1:]]
    pid, binprm = (arg_read(hook, a, "rawtp", None, btf_of, params) for a in hook.args)
    assert pid.read.steps == (Step(enc.GO_LOAD, OFF["task_struct.pid"], 4),) and not pid.unmet
    assert binprm.read.kind == enc.GA["file"] and not binprm.unmet


def test_an_iov_iter_gathers_its_kind_count_and_vector_with_the_kernels_enum():
    """Tetragon's tty example: kiocb's file and the written buffer."""
    ch = compiled(kprobe("tty_write", arg(0, "kiocb") + arg(1, "iov_iter", "      maxData: true\n")))
    kiocb, it = ch.reads
    assert kiocb.kind == enc.GA["file"]
    assert (it.kind, it.size, it.sizesrc) == (enc.GA["iter"], 1, 0)       # ITER_IOVEC, ITER_UBUF
    assert it.steps == (Step(enc.GO_COPY, OFF["iov_iter.iter_type"], 1, 0),
                        Step(enc.GO_COPY, OFF["iov_iter.count"], 8, 8),
                        Step(enc.GO_COPY, OFF["iov_iter.kvec"], 8, 16))
    assert ch.hook.args[1].max_data
