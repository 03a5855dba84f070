"""A small kernel in BTF for compile tests: the structs and prototypes that
struct-typed arguments and resolve paths walk, with offsets unlike any
real kernel's (so a test cannot pass by knowing a real layout).

`kernel()` returns the parsed Btf and `OFF`, the byte offsets the tests
expect, named as struct.member.
"""

from tetrad.bpf.btf import Btf
from tests.unit.btfgen import BtfBuilder

OFF = {
    "cred.uid": 8, "cred.securebits": 40, "cred.cap_inheritable": 48, "cred.user_ns": 96,
    "user_namespace.level": 20, "user_namespace.ns": 64, "ns_common.inum": 4,
    "task_struct.pid": 100, "task_struct.comm": 200, "task_struct.real_parent": 300,
    "task_struct.mm": 308, "task_struct.cred": 316, "mm_struct.owner": 24,
    "linux_binprm.file": 16, "linux_binprm.mm": 8, "file.f_path": 32, "path.dentry": 8,
    "kiocb.ki_filp": 0, "net_device.name": 112, "filename.name": 0,
    "bpf_attr.prog_type": 0, "bpf_attr.insn_cnt": 4, "bpf_attr.prog_name": 48,
    "bpf_map.map_type": 24, "bpf_map.name": 96, "perf_event.attr": 120,
    "perf_event_attr.type": 0, "perf_event_attr.config": 8, "perf_event_attr.kprobe_func": 56,
    "perf_event_attr.probe_offset": 64, "module.name": 24, "module.taints": 400,
    "load_info.name": 0, "load_info.mod": 8, "load_info.sig_ok": 72,
    "bpf_prog.type": 4, "bpf_prog.len": 8, "bpf_prog.aux": 16, "bpf_prog_aux.name": 40,
    "iov_iter.iter_type": 2, "iov_iter.kvec": 24, "iov_iter.count": 32,
}


def kernel(module_struct: bool = True) -> Btf:
    b = BtfBuilder()
    o = {k: v * 8 for k, v in OFF.items()}
    u8, u16 = b.int("unsigned char", 1), b.int("short unsigned int", 2)
    i32, u32 = b.int("int", 4), b.int("unsigned int", 4)
    u64 = b.int("long long unsigned int", 8)
    ulong = b.int("long unsigned int", 8)
    char = b.int("char", 1)
    boolean = b.int("_Bool", 1)
    kuid = b.typedef("kuid_t", b.struct("", 4, [("val", u32, 0)]))
    kgid = b.typedef("kgid_t", b.struct("", 4, [("val", u32, 0)]))
    cap_t = b.typedef("kernel_cap_t", b.struct("", 8, [("val", u64, 0)]))
    ns_common = b.struct("ns_common", 16, [("count", u32, 0), ("inum", u32, o["ns_common.inum"])])
    user_ns = b.struct("user_namespace", 128, [
        ("level", i32, o["user_namespace.level"]), ("owner", kuid, o["user_namespace.level"] + 32),
        ("group", kgid, o["user_namespace.level"] + 64), ("ns", ns_common, o["user_namespace.ns"])])
    ids = [(n, kuid if "u" in n else kgid, o["cred.uid"] + 32 * i)
           for i, n in enumerate(("uid", "gid", "suid", "sgid", "euid", "egid", "fsuid", "fsgid"))]
    cred = b.struct("cred", 160, [("usage", u64, 0), *ids,
                                  ("securebits", u32, o["cred.securebits"]),
                                  ("cap_inheritable", cap_t, o["cred.cap_inheritable"]),
                                  ("cap_permitted", cap_t, o["cred.cap_inheritable"] + 64),
                                  ("cap_effective", cap_t, o["cred.cap_inheritable"] + 128),
                                  ("user_ns", b.ptr(user_ns), o["cred.user_ns"])])
    b.fwd("task_struct")
    task_ptr = b.ptr(0)                 # patched below: pointer to task_struct
    mm = b.struct("mm_struct", 64, [("", b.struct("", 64, [("owner", task_ptr, o["mm_struct.owner"])]), 0)])
    task = b.struct("task_struct", 400, [
        ("pid", i32, o["task_struct.pid"]), ("comm", b.array(char, u32, 16), o["task_struct.comm"]),
        ("real_parent", task_ptr, o["task_struct.real_parent"]),
        ("mm", b.ptr(mm), o["task_struct.mm"]), ("cred", b.const(b.ptr(b.const(cred))), o["task_struct.cred"]),
        ("nums", b.array(u32, u32, 4), 0)])
    dentry = b.struct("dentry", 64, [("d_flags", u32, 0)])
    path = b.struct("path", 16, [("mnt", b.ptr(0), 0), ("dentry", b.ptr(dentry), o["path.dentry"])])
    file = b.struct("file", 64, [("f_path", path, o["file.f_path"])])
    binprm = b.struct("linux_binprm", 64, [("mm", b.ptr(mm), o["linux_binprm.mm"]),
                                           ("file", b.ptr(file), o["linux_binprm.file"])])
    kiocb = b.struct("kiocb", 48, [("ki_filp", b.ptr(file), o["kiocb.ki_filp"])])
    b.struct("net_device", 200, [("name", b.array(char, u32, 16), o["net_device.name"])])
    b.struct("filename", 32, [("name", b.const(b.ptr(b.const(char))), o["filename.name"])])
    prog_load = b.struct("", 64, [("prog_type", u32, o["bpf_attr.prog_type"]),
                                  ("insn_cnt", u32, o["bpf_attr.insn_cnt"]),
                                  ("prog_name", b.array(char, u32, 16), o["bpf_attr.prog_name"])])
    map_create = b.struct("", 16, [("map_type", u32, 0), ("key_size", u32, 32)])
    b.struct("bpf_attr", 144, [("", map_create, 0), ("", prog_load, 0)], kind="union")
    b.struct("bpf_map", 128, [("map_type", u32, o["bpf_map.map_type"]),
                              ("key_size", u32, o["bpf_map.map_type"] + 32),
                              ("value_size", u32, o["bpf_map.map_type"] + 64),
                              ("max_entries", u32, o["bpf_map.map_type"] + 96),
                              ("name", b.array(char, u32, 16), o["bpf_map.name"])])
    aux = b.struct("bpf_prog_aux", 64, [("name", b.array(char, u32, 16), o["bpf_prog_aux.name"])])
    b.struct("bpf_prog", 32, [("pages", u16, 0), ("type", u32, o["bpf_prog.type"]),
                              ("len", u32, o["bpf_prog.len"]), ("aux", b.ptr(aux), o["bpf_prog.aux"])])
    attr = b.struct("perf_event_attr", 128, [
        ("type", u32, 0), ("size", u32, 32), ("", b.struct("", 8, [("config", u64, 0)], kind="union"), 64),
        ("", b.struct("", 8, [("kprobe_func", u64, 0), ("config1", u64, 0)], kind="union"),
         o["perf_event_attr.kprobe_func"]),
        ("", b.struct("", 8, [("probe_offset", u64, 0), ("config2", u64, 0)], kind="union"),
         o["perf_event_attr.probe_offset"])])
    b.struct("perf_event", 256, [("attr", attr, o["perf_event.attr"])])
    module = b.struct("module", 512, [("name", b.array(char, u32, 56), o["module.name"]),
                                      ("taints", ulong, o["module.taints"])])
    if module_struct:
        b.struct("load_info", 96, [("name", b.const(b.ptr(b.const(char))), o["load_info.name"]),
                                   ("mod", b.ptr(module), o["load_info.mod"]),
                                   ("sig_ok", boolean, o["load_info.sig_ok"])])
    b.enum("iter_type", [("ITER_UBUF", 0), ("ITER_IOVEC", 1), ("ITER_BVEC", 2)])
    kvec = b.struct("kvec", 16, [("iov_base", b.ptr(0), 0), ("iov_len", ulong, 64)])
    vectors = b.struct("", 8, [("kvec", b.ptr(kvec), 0), ("ubuf", b.ptr(0), 0)], kind="union")
    inner = b.struct("", 16, [("", vectors, 0), ("count", ulong, 64)])
    iter_ = b.struct("iov_iter", 48, [("iter_type", u8, o["iov_iter.iter_type"]),
                                      ("", b.struct("", 16, [("", inner, 0)], kind="union"),
                                       o["iov_iter.kvec"])])
    b.func("tty_write", b.func_proto(i32, [("iocb", b.ptr(kiocb)), ("from", b.ptr(iter_))]))
    b.func("commit_creds", b.func_proto(i32, [("new", b.ptr(cred))]))
    b.func("cap_capable", b.func_proto(i32, [("cred", b.const(b.ptr(b.const(cred)))),
                                             ("targ_ns", b.ptr(user_ns)), ("cap", i32), ("opts", u32)]))
    b.func("security_inode_copy_up", b.func_proto(i32, [("src", b.ptr(dentry)),
                                                        ("new", b.ptr(b.ptr(cred)))]))
    b.func("bpf_lsm_bprm_check_security", b.func_proto(i32, [("bprm", b.ptr(binprm))]))
    b.func("vfs_something", b.func_proto(i32, [("p", b.ptr(0)), ("n", ulong), ("u", u8)]))
    void_ptr = b.ptr(0)
    b.typedef("btf_trace_sched_process_exec",
              b.ptr(b.func_proto(0, [("", void_ptr), ("", b.ptr(task)), ("", i32), ("", b.ptr(binprm))])))
    data = bytearray(b.build())
    # task_ptr was made before task_struct existed: point it there now.
    _retarget(data, task_ptr, task)
    return Btf.from_bytes(bytes(data))


def _retarget(data: bytearray, ptr_id: int, target: int) -> None:
    """Sets the type a pointer record refers to (ids are 1-based in file order)."""
    btf = Btf.from_bytes(bytes(data))
    _, pos, *_ = btf._record(ptr_id)
    data[pos + 8:pos + 12] = target.to_bytes(4, "little")
