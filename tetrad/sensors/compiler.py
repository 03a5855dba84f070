"""Compiling BPF C with bcc, in a process of its own (bcc side).

`python3 -m tetrad.sensors.compiler` reads a request from standard input
({"source": path, "cflags": [...]}) and writes the compiled result to
standard output as JSON: every function's instructions (base64), every
map's shape and the descriptor number its instructions refer to it by, the
license and kernel version. The maps it created die with it: the daemon
makes its own and relocates the instructions (tetrad/sensors/bpfobject.py).

Run in a child so that the daemon compiles its policy programs while it
compiles the process sensor (two clang runs in one process crash libbcc),
and so that the result can be cached across restarts.
"""

from __future__ import annotations

import base64
import ctypes
import json
import sys

from bcc import BPF
from bcc.libbcc import lib

lib.bpf_num_tables.restype = ctypes.c_size_t
lib.bpf_num_tables.argtypes = [ctypes.c_void_p]
lib.bpf_table_name.restype = ctypes.c_char_p
lib.bpf_table_name.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
for _name in ("bpf_table_fd_id", "bpf_table_type_id", "bpf_table_max_entries_id", "bpf_table_flags_id"):
    getattr(lib, _name).restype = ctypes.c_int
    getattr(lib, _name).argtypes = [ctypes.c_void_p, ctypes.c_size_t]
for _name in ("bpf_table_key_size_id", "bpf_table_leaf_size_id"):
    getattr(lib, _name).restype = ctypes.c_size_t
    getattr(lib, _name).argtypes = [ctypes.c_void_p, ctypes.c_size_t]


class _CompileOnly(BPF):
    """bcc's BPF without the attaching its constructor does for functions
    named like TRACEPOINT_PROBEs (bpf/process.c's): here they must only be
    compiled, not run beside the daemon's own copies while this child lives."""

    def _trace_autoload(self):
        pass


def compile_source(source: str, cflags: list[str]) -> dict:
    b = _CompileOnly(src_file=source.encode(), cflags=cflags)
    m = b.module
    maps = []
    for i in range(lib.bpf_num_tables(m)):
        maps.append({"name": lib.bpf_table_name(m, i).decode(), "fd": lib.bpf_table_fd_id(m, i),
                     "type": lib.bpf_table_type_id(m, i), "key_size": lib.bpf_table_key_size_id(m, i),
                     "value_size": lib.bpf_table_leaf_size_id(m, i),
                     "max_entries": lib.bpf_table_max_entries_id(m, i),
                     "flags": lib.bpf_table_flags_id(m, i)})
    functions = {}
    for i in range(lib.bpf_num_functions(m)):
        name = lib.bpf_function_name(m, i)
        code = ctypes.string_at(lib.bpf_function_start(m, name), lib.bpf_function_size(m, name))
        functions[name.decode()] = base64.b64encode(code).decode()
    return {"maps": maps, "functions": functions,
            "license": lib.bpf_module_license(m).decode(),
            "kern_version": lib.bpf_module_kern_version(m)}


def main() -> int:
    request = json.load(sys.stdin)
    try:
        result = compile_source(request["source"], request["cflags"])
    except Exception as err:  # bcc raises plain Exception; clang's messages went to stderr
        print(f"compile failed: {err}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
