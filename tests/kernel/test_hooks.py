"""Hook kinds on the real kernel, through the real `tetrad run`: raw
tracepoints, USDT probes, uprobes by symbols, offsets and addresses with
return values, semaphores and binary digests.

The probed program is tests/kernel/hooks_target.c, built here twice (-O0:
USDT arguments in memory; -O2: in registers) and copied under names unique
to this run. Each feature is checked by a pair of runs of which exactly one
must be reported, so a hook that reports everything fails too.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from tetrad.cli.policy import NOT_HERE, OK, check_file
from tetrad.elf import Binary
from tests.kernel.daemon_harness import DaemonProcess

pytestmark = pytest.mark.kernel

RUN = uuid.uuid4().hex[:8]
MARK = 5_000_000 + int(RUN, 16) % 1_000_000 * 4      # selected calls pass A = MARK
SOURCE = Path(__file__).with_name("hooks_target.c")
# Reported when the first argument is MARK; a uprobe reading just that.
MARKED = f"""    selectors:
    - matchArgs:
      - index: 0
        operator: Equal
        values: ["{MARK}"]
"""
FIRST_IS_MARK = "    args:\n    - index: 0\n      type: int64\n" + MARKED


def policy(name: str, body: str) -> str:
    return f'apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: "{name}"\nspec:\n{body}'


def symbol_address(binary: Path, name: str) -> int:
    with open(binary, "rb") as f:
        return next(s["st_value"] for s in ELFFile(f).get_section_by_name(".symtab").iter_symbols()
                    if s.name == name)


def file_offset(binary: Path, address: int) -> int:
    with Binary(str(binary)) as b:
        return b.file_offset(address)


def usdt_args_hook(binary: Path, extra: str = "") -> str:
    return f"""  - path: "{binary}"
    provider: tetrad
    name: args
    args:
    - index: 0
    - index: 1
      type: int32
    - index: 2
      type: string
    - index: 3
      type: int64
    - index: 4
{MARKED}{extra}"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    work = tmp_path_factory.mktemp("hooks")
    os.chmod(work, 0o755)
    built = {}
    for level in ("0", "2"):
        built[level] = work / f"hooks_target-O{level}"
        subprocess.run(["gcc", f"-O{level}", "-Wall", "-o", str(built[level]), str(SOURCE)], check=True)
    bins = {}
    for name, level in (("usdt0", "0"), ("usdt2", "2"), ("uprobe", "2"), ("byoffset", "0"),
                        ("digest", "2"), ("unprobed", "0"), ("allsys", "2"), ("greet", "2"),
                        ("ignore", "2"), ("loaded", "2")):
        bins[name] = work / f"{name}-{RUN}"
        shutil.copy(built[level], bins[name])
    for name in ("rawtp", "other"):
        bins[name] = work / f"{name}-{RUN}"
        shutil.copy(os.path.realpath("/bin/true"), bins[name])
    with Binary(str(bins["byoffset"])) as b:
        gated = next(p for p in b.usdt_probes() if p.name == "gated")
    add_at = symbol_address(bins["byoffset"], "tetrad_add")
    sub_offset = file_offset(bins["byoffset"], symbol_address(bins["byoffset"], "tetrad_sub"))
    sha256 = hashlib.sha256(bins["digest"].read_bytes()).hexdigest()
    policies = {
        "rawtp": policy("t-rawtp", f"""  tracepoints:
  - subsystem: sched
    event: sched_process_exec
    raw: true
    message: "raw exec"
    tags: ["raw-tp"]
    args:
    - index: 2
      type: linux_binprm
    - index: 1
    selectors:
    - matchArgs:
      - index: 2
        operator: Postfix
        values: ["/rawtp-{RUN}"]
"""),
        "usdt": policy("t-usdt", "  usdts:\n"
                       + usdt_args_hook(bins["usdt0"], '    message: "usdt seen"\n    tags: ["usdt-args"]\n')
                       + usdt_args_hook(bins["usdt2"])
                       + f"""  - path: "{bins['usdt2']}"
    provider: tetrad
    name: gated
    args:
    - index: 0
    - index: 1
"""),
        "uprobe": policy("t-uprobe", f"""  uprobes:
  - path: "{bins['uprobe']}"
    symbols: ["tetrad_add", "tetrad_sub"]
    return: true
    returnArg:
      index: 0
      type: int64
    args:
    - index: 0
      type: int64
    - index: 1
      type: int64
{MARKED}"""),
        # At the point of t-uprobe's return hook on tetrad_add, a hook
        # without a return: it acts at entry, and only then.
        "plain": policy("t-plain", f"""  uprobes:
  - path: "{bins['uprobe']}"
    symbols: ["tetrad_add"]
    args:
    - index: 1
      type: int64
    selectors:
    - matchArgs:
      - index: 1
        operator: Equal
        values: ["10"]
"""),
        "greet": policy("t-greet", f"""  uprobes:
  - path: "{bins['greet']}"
    symbols: ["tetrad_greet"]
    return: true
    returnArg:
      index: 0
      type: string
      label: greeting
    args:
    - index: 0
      type: string
    selectors:
    - matchReturnArgs:
      - index: 0
        operator: Prefix
        values: ["hello mark-{RUN}"]
"""),
        "offsets": policy("t-offsets", f"""  uprobes:
  - path: "{bins['byoffset']}"
    offsets: [{sub_offset}]
    refCtrOffsets: [{gated.semaphore}]
{FIRST_IS_MARK}  - path: "{bins['byoffset']}"
    addrs: [{add_at}]
{FIRST_IS_MARK}"""),
        "digest": policy("t-digest", f"""  uprobes:
  - path: "{bins['digest']}"
    symbols: ["tetrad_add"]
    binaryDigests: ["sha256:{sha256}"]
    args:
    - index: 0
      type: int64
  - path: "{bins['digest']}"
    symbols: ["tetrad_sub"]
    ignore:
      digestVerificationFailure: true
    binaryDigests: ["sha256:{'0' * 64}"]
    args:
    - index: 0
      type: int64
"""),
        "ignore": policy("t-ignore", f"""  kprobes:
  - call: "sys_no_such_call_{RUN}"
    syscall: true
    ignore:
      callNotFound: true
  - call: "sys_write"
    syscall: true
    args:
    - index: 0
      type: int
    selectors:
    - matchBinaries:
      - operator: In
        values: ["{bins['ignore']}"]
"""),
        "loader": policy("t-loader", "  loader: true\n"),
        "allsys": policy("t-allsys", f"""  lists:
  - name: every
    type: generated_syscalls
  kprobes:
  - call: "list:every"
    args:
    - index: 0
      type: int
    selectors:
    - matchBinaries:
      - operator: In
        values: ["{bins['allsys']}"]
"""),
    }
    paths = []
    for key, text in policies.items():
        path = work / f"{key}.yaml"
        path.write_text(text)
        paths.append(path)
    daemon = DaemonProcess(work, *[a for p in paths for a in ("--policy", str(p))])
    yield {"daemon": daemon, "bins": bins, "work": work, "paths": dict(zip(policies, paths)),
           "sub_offset": sub_offset, "add_offset": file_offset(bins["byoffset"], add_at),
           "semaphore": gated.semaphore}
    if daemon.proc.poll() is None:
        daemon.stop()


def run(binary: Path, a: int, b: int = -3, s: str = "hello") -> str:
    return subprocess.run([str(binary), str(a), str(b), s], check=True, capture_output=True,
                          text=True).stdout


def events(setup, kind: str, policy_name: str) -> list[dict]:
    return [e[kind] for e in setup["daemon"].sync() if kind in e and e[kind]["policy_name"] == policy_name]


def test_raw_tracepoint_reads_its_prototypes_arguments(setup):
    bins = setup["bins"]
    hit = subprocess.Popen([str(bins["rawtp"])])
    hit.wait()
    subprocess.run([str(bins["other"])], check=True)
    [ev] = events(setup, "process_tracepoint", "t-rawtp")
    assert (ev["subsys"], ev["event"]) == ("sched", "sched_process_exec")
    assert ev["args"] == [{"linux_binprm_arg": {"path": str(bins["rawtp"])}},
                          {"int_arg": hit.pid}]           # old_pid: the pid that exec'd
    assert ev["process"]["pid"] == hit.pid
    assert (ev["message"], ev["tags"]) == ("raw exec", ["raw-tp"])


@pytest.mark.parametrize("binary", ["usdt0", "usdt2"])
def test_usdt_arguments_from_memory_registers_and_constants(setup, binary):
    path = setup["bins"][binary]
    run(path, MARK, -3, f"s-{RUN}")
    run(path, MARK + 1, -3, "not-me")
    hits = [e for e in events(setup, "process_usdt", "t-usdt") if e["path"] == str(path)
            and e["name"] == "args"]
    assert len(hits) == 1, hits
    ev = hits[0]
    assert ev["provider"] == "tetrad"
    assert ev["args"] == [{"long_arg": str(MARK)}, {"int_arg": -3}, {"string_arg": f"s-{RUN}"},
                          {"long_arg": str(MARK - 3)}, {"int_arg": 42}]
    if binary == "usdt0":
        assert (ev["message"], ev["tags"]) == ("usdt seen", ["usdt-args"])


def test_usdt_semaphore_is_set_while_the_probe_is_attached(setup):
    """tetrad:gated fires only when its semaphore is non-zero: the kernel
    counts it up for the attached probe (the policy's copy of the program),
    not for a copy nothing probes."""
    bins = setup["bins"]
    assert run(bins["usdt2"], MARK + 2).startswith("gated=1")
    assert run(bins["unprobed"], MARK + 2).startswith("gated=0")
    short = ctypes.c_short((MARK + 2) * 3).value         # the probe's `short c`
    gated = [e for e in events(setup, "process_usdt", "t-usdt") if e["name"] == "gated"
             and e["args"][0] == {"int_arg": short}]
    assert len(gated) == 1 and gated[0]["args"][1] == {"int_arg": -7}


def test_uprobe_symbols_with_their_return_values(setup):
    path = setup["bins"]["uprobe"]
    run(path, MARK, 10)
    run(path, MARK + 1, 10)
    hits = events(setup, "process_uprobe", "t-uprobe")
    by_symbol = {e["symbol"]: e for e in hits}
    assert len(hits) == 2 and set(by_symbol) == {"tetrad_add", "tetrad_sub"}, hits
    # The return value is the last argument, as Tetragon merges it.
    assert by_symbol["tetrad_add"]["args"] == [{"long_arg": str(MARK)}, {"long_arg": "10"},
                                               {"long_arg": str(MARK + 10)}]
    assert by_symbol["tetrad_sub"]["args"][-1] == {"long_arg": str(MARK - 10)}
    assert all(e["path"] == str(path) and "offset" not in e for e in hits)
    plain = events(setup, "process_uprobe", "t-plain")
    assert [e["args"] for e in plain] == [[{"long_arg": "10"}]] * 2, plain     # once per run


def test_uprobes_by_offset_and_address_and_a_semaphore_by_refctroffset(setup):
    path = setup["bins"]["byoffset"]
    out = run(path, MARK, 1)
    assert out.startswith("gated=1"), out         # refCtrOffsets counted the semaphore up
    run(path, MARK + 1, 1)
    hits = events(setup, "process_uprobe", "t-offsets")
    assert sorted(int(e["offset"]) for e in hits) == sorted([setup["sub_offset"], setup["add_offset"]])
    assert all(e["args"] == [{"long_arg": str(MARK)}] for e in hits)
    by_offset = {int(e["offset"]): e for e in hits}
    assert by_offset[setup["sub_offset"]]["ref_ctr_offset"] == str(setup["semaphore"])
    assert "ref_ctr_offset" not in by_offset[setup["add_offset"]]


def test_binary_digests_attach_only_to_the_named_binary(setup):
    """The hook whose digest matches reports; the one whose digest does not
    is left out (ignore.digestVerificationFailure), the policy loaded."""
    run(setup["bins"]["digest"], MARK + 3)
    hits = events(setup, "process_uprobe", "t-digest")
    assert [e["symbol"] for e in hits if e["args"] == [{"long_arg": str(MARK + 3)}]] == ["tetrad_add"]


def test_a_digest_mismatch_refuses_the_policy_with_the_reason(setup, tmp_path):
    text = setup["paths"]["digest"].read_text().replace("    ignore:\n      digestVerificationFailure: true\n", "")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    status, line = check_file(str(bad), as_root=True)
    assert status == NOT_HERE, line
    assert "spec.uprobes[1]" in line and "matches none of the policy's binaryDigests" in line
    assert "sha256:" + hashlib.sha256(setup["bins"]["digest"].read_bytes()).hexdigest() in line
    status, line = check_file(str(setup["paths"]["digest"]), as_root=True)
    assert status == OK and "spec.uprobes[1] left out (as its ignore says)" in line, line


def test_a_generated_syscalls_list_hooks_every_syscall_each_named(setup):
    bins = setup["bins"]
    run(bins["allsys"], MARK)
    run(bins["unprobed"], MARK)
    hits = events(setup, "process_kprobe", "t-allsys")
    assert hits and all(e["process"]["binary"] == str(bins["allsys"]) for e in hits)
    prefix = {"x86_64": "__x64_", "aarch64": "__arm64_"}[os.uname().machine]
    names = [e["function_name"] for e in hits]
    # printf's write(1, ...) and the exit, each under its own name.
    writes = [e for e in hits if e["function_name"] == f"{prefix}sys_write"]
    assert writes and writes[0]["args"] == [{"int_arg": 1}], names
    assert names[-1] == f"{prefix}sys_exit_group", names


def test_a_usdt_probe_its_binary_lacks_is_not_loadable_here(setup, tmp_path):
    text = policy("t-nope", f"""  usdts:
  - path: "{setup['bins']['usdt0']}"
    provider: tetrad
    name: nope
    args:
    - index: 6
      type: int
""")
    (tmp_path / "nope.yaml").write_text(text)
    status, line = check_file(str(tmp_path / "nope.yaml"), as_root=True)
    assert status == NOT_HERE, line
    assert f"no USDT probe tetrad:nope in {setup['bins']['usdt0']} (it has tetrad:args, tetrad:gated)" in line
    (tmp_path / "many.yaml").write_text(text.replace("nope", "args"))
    status, line = check_file(str(tmp_path / "many.yaml"), as_root=True)
    assert line.startswith("ERROR") and "args[0].index" in line, line     # the note has 5 arguments


def test_a_uprobe_returning_a_string_selects_on_it(setup):
    """matchReturnArgs Prefix on the string a function returns (read at
    its return): the call whose result matches is reported, with the
    string as its last argument; the other is not."""
    path = setup["bins"]["greet"]
    run(path, MARK, 1, f"mark-{RUN}-yes")
    run(path, MARK, 1, f"other-{RUN}")
    hits = events(setup, "process_uprobe", "t-greet")
    assert [e["args"] for e in hits] == [[{"string_arg": f"mark-{RUN}-yes"},
                                          {"string_arg": f"hello mark-{RUN}-yes", "label": "greeting"}]]


def test_a_call_not_found_is_left_out_when_the_policy_says_to_ignore_it(setup):
    """ignore.callNotFound: the missing syscall's hook is left out (logged),
    the policy's other hook is in force."""
    run(setup["bins"]["ignore"], MARK)
    hits = events(setup, "process_kprobe", "t-ignore")
    assert [e["args"] for e in hits] == [[{"int_arg": 1}]], hits         # printf's write(1, ...)
    log = setup["daemon"].stderr_path.read_text()
    assert f"policy t-ignore: spec.kprobes[0] not attached: no tracepoint syscalls:sys_enter_no_such_call_{RUN}" in log
    status, line = check_file(str(setup["paths"]["ignore"]), as_root=True)
    assert status == OK and "spec.kprobes[0] left out (as its ignore says)" in line, line


def test_loader_reports_each_file_mapped_executable(setup):
    """spec.loader: libc, which the dynamic loader maps executable, once
    per process; not ld.so.cache, which it maps readable only."""
    path = setup["bins"]["loaded"]
    run(path, MARK)
    loads = [e["process_loader"] for e in setup["daemon"].sync() if "process_loader" in e]
    mine = [e["path"] for e in loads if e["process"].get("binary") == str(path)]
    libc = [p for p in mine if os.path.basename(p) == "libc.so.6"]
    assert len(libc) == 1 and os.path.isabs(libc[0]), mine
    assert not any("ld.so.cache" in p for p in mine), mine
