"""The README's table of Tetragon policy features, held to the compiler.

Each row of the table between the feature-table markers has a policy here
that uses the feature. "yes" must compile and need nothing beyond what any
kernel with BTF and tracepoints has; "needs A, B" must compile and need
exactly A and B beyond that; "not yet" must be refused as not supported
yet. A row without a policy here, or a policy without a row, fails too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tetrad.abi import state
from tetrad.bpf.btf import ValueType
from tetrad.policy import workloads
from tetrad.policy.compile import KernelFacts, compile_policy, parse_tracepoint_format
from tetrad.policy.errors import PolicyError
from tetrad.policy.kernel import required_features
from tetrad.policy.schema import parse

README = Path(__file__).resolve().parents[2] / "README.md"
# What every kernel with BTF and tracepoints offers (this CI machine).
BASE = {"syscall_tracepoints", "tracepoints", "raw_syscalls", "raw_tracepoints", "uprobes", "btf",
        "proc_state", "send_signal"}

FORMAT = """name: {event}
ID: 1
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:long id;\toffset:8;\tsize:8;\tsigned:1;
\tfield:unsigned long args[6];\toffset:16;\tsize:48;\tsigned:0;

print fmt: "%ld", REC->id
"""
SOCK_FORMAT = FORMAT.replace("long id;\toffset:8;\tsize:8;\tsigned:1;", "const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;")


def tracepoint_format(subsys: str, event: str):
    return parse_tracepoint_format((SOCK_FORMAT if subsys == "sock" else FORMAT).format(event=event))


# sched_process_exec's TP_PROTO, as BTF gives it.
RAW_PARAMS = [ValueType("ptr", 8, False, "struct task_struct *"), ValueType("int", 4, True, "int"),
              ValueType("ptr", 8, False, "struct linux_binprm *")]
FACTS = KernelFacts(arch_prefix="__x64_", tracepoint_fields=tracepoint_format,
                    raw_tracepoint_args=lambda event: RAW_PARAMS,
                    host_ns=tuple(4026531830 + i for i in range(len(state.NAMESPACES))))


def syscall(selectors: str = "", args: str = "    - index: 1\n      type: long\n", call: str = "sys_lseek",
            extra: str = "") -> str:
    sel = f"    selectors:\n{selectors}" if selectors else ""
    return f"  kprobes:\n  - call: {call}\n    syscall: true\n{extra}    args:\n{args}{sel}"


def kernel_fn(args: str = "", selectors: str = "", call: str = "tcp_connect", extra: str = "") -> str:
    a = f"    args:\n{args}" if args else ""
    sel = f"    selectors:\n{selectors}" if selectors else ""
    return f"  kprobes:\n  - call: {call}\n{extra}{a}{sel}"


def lsm(selectors: str = "", args: str = "    - index: 0\n      type: file\n") -> str:
    sel = f"    selectors:\n{selectors}" if selectors else ""
    return f"  lsmhooks:\n  - hook: file_open\n    args:\n{args}{sel}"


def actions(*lines: str) -> str:
    return "    - matchActions:\n" + "".join(f"      {line}\n" for line in lines)


FEATURES = {
    "kprobes on syscalls (`syscall: true`)": syscall(),
    "kprobes on kernel functions": kernel_fn(),
    "return values of syscall hooks (`return`, `returnArg`, `matchReturnArgs`)": syscall(
        "    - matchReturnArgs:\n      - index: 0\n        operator: LessThan\n        values: [\"0\"]\n",
        extra="    return: true\n    returnArg:\n      index: 0\n      type: int\n"),
    "return probes on kernel functions": kernel_fn(
        extra="    return: true\n    returnArg:\n      index: 0\n      type: int\n"),
    "tracepoints": "  tracepoints:\n  - subsystem: raw_syscalls\n    event: sys_enter\n"
                   "    args:\n    - index: 4\n      type: long\n",
    "raw tracepoints (`raw: true`)": "  tracepoints:\n  - subsystem: sched\n    event: sched_process_exec\n"
                                     "    raw: true\n    args:\n    - index: 2\n      type: linux_binprm\n",
    "uprobes": "  uprobes:\n  - path: /usr/bin/bash\n    symbols: [readline]\n",
    "uprobe return probes (`return`, integer or string `returnArg`)":
        "  uprobes:\n  - path: /usr/bin/bash\n    symbols: [readline]\n"
        "    return: true\n    returnArg:\n      index: 0\n      type: string\n",
    "uprobe `offsets`, `addrs`, `refCtrOffsets`, `binaryDigests`":
        "  uprobes:\n  - path: /usr/bin/bash\n    offsets: [4096]\n    refCtrOffsets: [8192]\n"
        "    binaryDigests: [\"sha256:" + "0" * 64 + "\"]\n",
    "lsmhooks": lsm(),
    "usdts": "  usdts:\n  - path: /usr/bin/python3\n    provider: python\n    name: function__entry\n",
    "`loader` (process_loader events)": "  loader: true\n",
    "`lists` of syscalls, `call: list:NAME`, InMap values":
        "  lists:\n  - name: io\n    type: syscalls\n    values: [sys_read, sys_write]\n"
        "  kprobes:\n  - call: list:io\n    syscall: true\n",
    "`lists` of generated_syscalls":
        "  lists:\n  - name: all\n    type: generated_syscalls\n"
        "  kprobes:\n  - call: list:all\n    syscall: true\n",
    "`lists` of generated_ftrace (`pattern`)":
        "  lists:\n  - name: ksys\n    type: generated_ftrace\n    pattern: \"^ksys_read$\"\n"
        "  kprobes:\n  - call: list:ksys\n",
    "integer arguments (int, uint64, size_t, ...)": syscall(
        args="    - index: 0\n      type: int\n    - index: 1\n      type: uint64\n    - index: 2\n      type: size_t\n"),
    "string, char_buf (`sizeArgIndex`, `returnCopy`) on syscalls": syscall(
        call="sys_write", args="    - index: 1\n      type: char_buf\n      sizeArgIndex: 3\n"
                               "    - index: 2\n      type: size_t\n"),
    "fd (resolved to its path) on syscalls": syscall(call="sys_write", args="    - index: 0\n      type: fd\n"),
    "sockaddr on syscalls": syscall(call="sys_connect", args="    - index: 1\n      type: sockaddr\n"),
    "file, path on kernel functions": kernel_fn("    - index: 0\n      type: file\n", call="security_file_open"),
    "sock on kernel functions": kernel_fn("    - index: 0\n      type: sock\n"),
    "linux_binprm on LSM hooks": lsm(args="    - index: 0\n      type: linux_binprm\n").replace(
        "file_open", "bprm_check_security"),
    "skb, socket, net_device on kernel functions": kernel_fn(
        "    - index: 0\n      type: net_device\n    - index: 1\n      type: socket\n"
        "    - index: 2\n      type: skb\n",
        call="ip_output"),
    "sock, skb on tracepoints' pointer fields": "  tracepoints:\n  - subsystem: sock\n    event: inet_sock_set_state\n"
                                               "    args:\n    - index: 4\n      type: sock\n",
    "sockaddr_un on syscalls": syscall(call="sys_connect", args="    - index: 1\n      type: sockaddr_un\n"),
    "char_iovec on syscalls": syscall(
        call="sys_writev", args="    - index: 1\n      type: char_iovec\n      sizeArgIndex: 3\n"
                                "    - index: 2\n      type: int\n"),
    "bpf_attr on the bpf syscall (the caller's attr)": syscall(
        call="sys_bpf", args="    - index: 1\n      type: bpf_attr\n"),
    "cred, user_namespace, bpf_attr, bpf_prog, bpf_map, perf_event, module, load_info on kernel functions":
        kernel_fn("    - index: 0\n      type: cred\n", call="commit_creds"),
    "capability, kernel_cap_t, cap_inheritable, cap_permitted, cap_effective on kernel functions":
        kernel_fn("    - index: 2\n      type: capability\n", call="cap_capable"),
    "dentry, kiocb, iov_iter on kernel functions": kernel_fn(
        "    - index: 0\n      type: kiocb\n    - index: 1\n      type: iov_iter\n", call="ext4_file_write_iter"),
    "struct-typed arguments, `resolve`, `btfType` on tracepoints' pointer fields":
        "  tracepoints:\n  - subsystem: sock\n    event: inet_sock_set_state\n"
        "    args:\n    - index: 4\n      type: uint32\n      btfType: sock\n      resolve: sk_mark\n",
    "`resolve`, `btfType`, `btfTypeModule` on kernel functions": kernel_fn(
        "    - index: 0\n      type: int\n      resolve: f_path.dentry\n"
        "    - index: 0\n      type: uint32\n      btfType: nf_conn\n      btfTypeModule: nf_conntrack\n"
        "      resolve: mark\n", call="security_file_open"),
    "const_buf": syscall(call="sys_write", args="    - index: 1\n      type: const_buf\n"),
    "matchArgs string operators (Equal, Prefix, Postfix and Not*)": syscall(
        "    - matchArgs:\n      - index: 1\n        operator: NotPostfix\n        values: [\".so\"]\n",
        call="sys_openat", args="    - index: 1\n      type: string\n"),
    "matchArgs integer operators (Mask, GreaterThan, LessThan, InRange, ...)": syscall(
        "    - matchArgs:\n      - index: 1\n        operator: InRange\n        values: [\"1:9\"]\n"),
    "matchArgs on sock and skb (SAddr, DPort, SPortPriv, Protocol, State, ...)": kernel_fn(
        "    - index: 0\n      type: sock\n",
        "    - matchArgs:\n      - index: 0\n        operator: NotDPortPriv\n"
        "      - index: 0\n        operator: State\n        values: [TCP_SYN_SENT]\n"),
    "matchArgs address and port operators on sockaddr (SAddr, DPort, Family, ...)": syscall(
        "    - matchArgs:\n      - index: 1\n        operator: DPort\n        values: [\"443\"]\n",
        call="sys_connect", args="    - index: 1\n      type: sockaddr\n"),
    "matchPIDs (`followForks`, `isNamespacePID`)": syscall(
        "    - matchPIDs:\n      - operator: In\n        followForks: true\n        isNamespacePID: true\n"
        "        values: [1]\n"),
    "matchBinaries (In, NotIn, Prefix, Postfix)": syscall(
        "    - matchBinaries:\n      - operator: Postfix\n        values: [\"/sh\"]\n"),
    "matchBinaries `followChildren`, matchParentBinaries": syscall(
        "    - matchBinaries:\n      - operator: In\n        followChildren: true\n        values: [\"/bin/sh\"]\n"),
    "matchNamespaces, matchNamespaceChanges": syscall(
        "    - matchNamespaces:\n      - namespace: Mnt\n        operator: NotIn\n        values: [host_ns]\n"
        "      matchNamespaceChanges:\n      - operator: In\n        values: [Net]\n"),
    "matchCapabilities, matchCapabilityChanges": syscall(
        "    - matchCapabilities:\n      - type: Effective\n        operator: In\n        values: [CAP_SYS_ADMIN]\n"
        "      matchCapabilityChanges:\n      - type: Effective\n        operator: NotIn\n"
        "        isNamespaceCapability: true\n        values: [CAP_SETUID]\n"),
    "Post (`rateLimit`), NoPost": syscall(actions("- action: Post", "  rateLimit: 1m")),
    "Sigkill, Signal": syscall(actions("- action: Signal", "  argSig: 10")),
    "`userStackTrace` on kprobes and syscall hooks": syscall(
        actions("- action: Post", "  userStackTrace: true")),
    "`kernelStackTrace` on syscall hooks": syscall(actions("- action: Post", "  kernelStackTrace: true")),
    "Override on lsmhooks": lsm(actions("- action: Override", "  argError: -1")),
    "Override on kernel functions": kernel_fn(selectors=actions("- action: Override", "  argError: -1"),
                                              call="security_file_open"),
    "Override on syscall hooks": syscall(actions("- action: Override", "  argError: -1")),
    "NotifyEnforcer with `spec.enforcers`": "  enforcers:\n  - calls: [sys_dup]\n" + syscall(
        actions("- action: NotifyEnforcer", "  argError: -1")),
    "FollowFD, UnfollowFD": syscall(actions("- action: FollowFD", "  argFd: 0", "  argName: 1"),
                                    call="sys_openat", args="    - index: 0\n      type: int\n"
                                                            "    - index: 1\n      type: string\n"),
    "TrackSock, UntrackSock": kernel_fn("    - index: 0\n      type: sock\n",
                                        actions("- action: TrackSock", "  argSock: 0")),
    "GetUrl, DnsLookup": syscall(actions("- action: GetUrl", "  argUrl: http://127.0.0.1/")),
    "`imaHash`": lsm(actions("- action: Post", "  imaHash: true")),
    "containerSelector, hostSelector": "  hostSelector: {}\n" + syscall(),
    "podSelector, TracingPolicyNamespaced": "  podSelector:\n    matchLabels:\n      app: web\n" + syscall(),
    "`options`: policy-mode monitor": "  options:\n  - name: policy-mode\n    value: monitor\n" + syscall(
        actions("- action: Sigkill")),
    "`message`, `tags`": syscall(extra="    message: lseek seen\n    tags: [\"observability.test\"]\n"),
}


def readme_rows() -> dict[str, str]:
    text = README.read_text()
    block = text.split("<!-- feature-table -->", 1)[1].split("<!-- /feature-table -->", 1)[0]
    rows = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] not in ("feature", "---"):
            rows[cells[0]] = cells[1]
    return rows


def test_every_row_has_a_policy_and_every_policy_a_row():
    assert set(readme_rows()) == set(FEATURES)


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_the_row_is_true(feature):
    status = readme_rows()[feature]
    text = f'apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: "f"\nspec:\n{FEATURES[feature]}'
    if status == "not yet":
        with pytest.raises(PolicyError, match="not supported by tetrad yet"):
            compile_policy(parse(text, "f.yaml"), FACTS)
        return
    policy = parse(text, "f.yaml")
    compiled = compile_policy(policy, FACTS)
    needed = {name for ch in compiled for name, _ in required_features(ch)} - BASE
    if status == "yes":
        assert needed == set(), f"{feature} needs {needed}"
        assert not workloads.admission(False)(policy)
    elif status.startswith("needs tetrad-kubernetes"):
        assert needed == set() and workloads.admission(False)(policy)
        assert not workloads.admission(True)(policy)
    else:
        match = re.fullmatch(r"needs ([a-z_, ]+)", status)
        assert match, f"status {status!r}: yes, needs FEATURE[, FEATURE], or not yet"
        assert needed == {n.strip() for n in match.group(1).split(",")}
