"""Policy programs compiled once, cached, and loaded by descriptor (bcc side).

bcc compiles bpf/generic_hook.c in a child process (tetrad/sensors/
compiler.py): its instructions refer to maps by the descriptor numbers the
child had. Here the daemon makes maps of the same shapes — or, for the
maps it shares with the process sensor (bpf/shared_maps.h), takes the
sensor's — rewrites every map reference in the instructions to its own
descriptors (`patch`), and loads the programs with libbcc's loader. So:

- the policy programs compile while the process sensor compiles, in
  parallel (one clang per process: two in one process crash libbcc);
- a compiled result is kept in the cache directory, keyed by the sources,
  the compiler flags (which carry the running kernel's struct offsets), the
  kernel and bcc: a restart loads it without compiling. Without a cache, or
  when the cache is unusable, the daemon compiles as before;
- each attach point that the kernel cannot name at run time (a kprobe,
  uprobe, tracepoint, LSM hook or raw tracepoint) gets its own copy of an
  entry program with the point's number in place of POINT_MAGIC, a 64-bit
  immediate the C code loads: a verifier pass, never a compile.

The cache holds only what the daemon wrote itself (root-owned, mode 0600 in
a 0700 directory, checked before use); anything else there is ignored.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import json
import logging
import os
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import bcc
from bcc.libbcc import lib
from bcc.utils import get_possible_cpus

from tetrad.bpf import syscall as bpf_syscall
from tetrad.paths import bpf_dir

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
POINT_MAGIC = 0x7E7A5E0F7E7A5E0F
LD_IMM64 = 0x18
PSEUDO_MAP_FD = 1
INSN = struct.Struct("<BBhi")
LOG_SIZE = 1 << 20
COMPILE_TIMEOUT_S = 600                 # clang under software emulation is slow
PERCPU_TYPES = {5, 6, 10}               # percpu hash, percpu array, lru percpu hash
# Entries kept: a few program types on a kernel or two. Older ones (another
# tetrad version, a kernel since replaced) are removed as new ones come.
CACHE_ENTRIES = 12

lib.bcc_prog_load.restype = ctypes.c_int
lib.bcc_prog_load.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int,
                              ctypes.c_char_p, ctypes.c_uint, ctypes.c_int, ctypes.c_char_p,
                              ctypes.c_uint]


class CompileError(Exception):
    """The programs did not compile or could not be loaded; says why."""


# ---- compiled -------------------------------------------------------------------

@dataclass(frozen=True)
class MapSpec:
    name: str
    fd: int                     # the descriptor the instructions refer to it by
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int


@dataclass(frozen=True)
class Compiled:
    maps: tuple[MapSpec, ...]
    functions: dict[str, bytes]
    license: str
    kern_version: int

    @classmethod
    def from_json(cls, data: dict) -> "Compiled":
        return cls(tuple(MapSpec(**m) for m in data["maps"]),
                   {name: base64.b64decode(code) for name, code in data["functions"].items()},
                   data["license"], int(data["kern_version"]))

    def to_json(self) -> dict:
        return {"maps": [vars(m) for m in self.maps],
                "functions": {n: base64.b64encode(c).decode() for n, c in self.functions.items()},
                "license": self.license, "kern_version": self.kern_version}


def cache_key(source: Path, cflags: list[str]) -> str:
    """What a compiled result depends on: the C sources (the file and every
    header beside it), the flags (struct offsets from the running kernel's
    BTF among them), the kernel, bcc."""
    h = hashlib.sha256()
    uts = os.uname()
    h.update(json.dumps([CACHE_FORMAT, bcc.__version__, uts.release, uts.version, uts.machine,
                         sorted(cflags), source.name]).encode())
    for path in sorted(source.parent.glob("*.[ch]")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


class Cache:
    """Compiled results on disk, one file per key, the newest CACHE_ENTRIES
    kept; "" disables it."""

    def __init__(self, directory: str):
        self.dir = Path(directory) if directory else None
        self._warned = False

    def _usable(self, create: bool) -> bool:
        if self.dir is None:
            return False
        try:
            if create:
                self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = self.dir.stat()
        except OSError:
            return False
        if st.st_uid != 0 or st.st_mode & 0o077 or not stat.S_ISDIR(st.st_mode):
            if not self._warned:
                log.warning("BPF cache %s not used: it must be a directory owned by root with mode "
                            "0700 (fix it or set bpf_cache = \"\")", self.dir)
                self._warned = True
            return False
        return True

    def get(self, key: str) -> Compiled | None:
        if not self._usable(create=False):
            return None
        path = self.dir / f"{key}.json"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if st.st_uid != 0 or st.st_mode & 0o077 or not stat.S_ISREG(st.st_mode):
                return None
            with os.fdopen(fd, "rb") as f:
                fd = -1
                return Compiled.from_json(json.loads(f.read()))
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("BPF cache entry %s unreadable (%s): compiling instead", path.name, err)
            return None
        finally:
            if fd >= 0:
                os.close(fd)

    def put(self, key: str, compiled: Compiled) -> None:
        if not self._usable(create=True):
            return
        try:
            with tempfile.NamedTemporaryFile("w", dir=self.dir, prefix=".tmp-", delete=False) as f:
                json.dump(compiled.to_json(), f)
            os.chmod(f.name, 0o600)
            os.rename(f.name, self.dir / f"{key}.json")
            self._prune()
        except OSError as err:
            log.warning("BPF cache %s: cannot write (%s)", self.dir, err)

    def _prune(self) -> None:
        entries = sorted(self.dir.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[CACHE_ENTRIES:]:
            old.unlink(missing_ok=True)


class Compilation:
    """A compile of `source` under way in a child process (a thread of ours
    reads its answer, so it never waits on us, and caches it), or its result
    from the cache. `result()` waits for it. Without `use_cached` it
    compiles even when the cache has an entry (one that did not load), and
    replaces that entry."""

    def __init__(self, source: Path, cflags: list[str], cache: Cache, use_cached: bool = True):
        self.source, self.cflags, self._cache = source, cflags, cache
        self.key = cache_key(source, cflags)
        self.started = time.monotonic()
        self.cached = cache.get(self.key) if use_cached else None
        self.from_cache = self.cached is not None
        self._error: CompileError | None = None
        self._child = None
        self._thread = None
        if self.cached is None:
            self._child = subprocess.Popen(
                [sys.executable, "-m", "tetrad.sensors.compiler"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(Path(__file__).parents[2]))
            self._thread = threading.Thread(target=self._collect, name="bpf-compile", daemon=True)
            self._thread.start()

    def _collect(self) -> None:
        request = json.dumps({"source": str(self.source), "cflags": self.cflags}).encode()
        try:
            out, err = self._child.communicate(request, timeout=COMPILE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.communicate()
            self._error = CompileError(f"compiling {self.source.name} took more than {COMPILE_TIMEOUT_S}s")
            return
        if self._child.returncode != 0:
            lines = [ln for ln in err.decode(errors="replace").splitlines() if ln.strip()]
            self._error = CompileError(f"{self.source.name} did not compile: " + "; ".join(lines[-3:]))
            return
        try:
            self.cached = Compiled.from_json(json.loads(out))
        except (ValueError, KeyError, TypeError) as e:
            self._error = CompileError(f"the compiler's answer for {self.source.name} is malformed: {e}")
            return
        self._cache.put(self.key, self.cached)

    def cancel(self) -> None:
        """Stop a compile nobody waits for any more."""
        if self._child is not None and self._child.poll() is None:
            self._child.kill()
        if self._thread is not None:
            self._thread.join()

    def result(self) -> Compiled:
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        return self.cached


# ---- instructions -------------------------------------------------------------------

def patch(insns: bytes, maps: dict[int, int], point: int | None = None) -> bytes:
    """The instructions with every map descriptor replaced as `maps` says
    (old fd -> new fd; all must be known) and, when `point` is given,
    POINT_MAGIC replaced by it. Pure."""
    out = bytearray(insns)
    found = 0
    i = 0
    while i + 16 <= len(out):
        code, regs, _, imm = INSN.unpack_from(out, i)
        if code != LD_IMM64:
            i += 8
            continue
        src = regs >> 4
        imm_hi = INSN.unpack_from(out, i + 8)[3]
        value = (imm & 0xFFFFFFFF) | (imm_hi & 0xFFFFFFFF) << 32
        if src == PSEUDO_MAP_FD:
            if imm not in maps:
                raise CompileError(f"instruction {i // 8} refers to map descriptor {imm}, "
                                   "which the compiled object does not describe")
            struct.pack_into("<i", out, i + 4, maps[imm])
        elif src == 0 and point is not None and value == POINT_MAGIC:
            struct.pack_into("<i", out, i + 4, point)
            struct.pack_into("<i", out, i + 12, 0)
            found += 1
        i += 16
    if point is not None and not found:
        raise CompileError("the program has no point number to patch")
    return bytes(out)


# ---- loaded -----------------------------------------------------------------------------

class Loaded:
    """A compiled object's maps made (or borrowed) and its programs loadable,
    all by descriptor. Closed with `close()`."""

    def __init__(self, compiled: Compiled, prog_type: int, shared: dict[str, int]):
        self.compiled = compiled
        self.prog_type = prog_type
        self.fds: dict[str, int] = {}
        self._own: list[int] = []
        self.specs = {m.name: m for m in compiled.maps}
        self._reloc: dict[int, int] = {}
        try:
            for spec in compiled.maps:
                if spec.name in shared:
                    fd = shared[spec.name]
                else:
                    fd = bpf_syscall.map_create(spec.type, spec.key_size, spec.value_size,
                                                spec.max_entries, spec.flags, spec.name).fd
                    self._own.append(fd)
                self.fds[spec.name] = fd
                self._reloc[spec.fd] = fd
        except OSError as err:
            self.close()
            raise CompileError(f"cannot create the policy programs' maps: {err.strerror}") from None
        self.ncpus = len(get_possible_cpus())

    def load(self, function: str, *, point: int | None = None, maps: dict[str, int] | None = None,
             name: str | None = None, prog_type: int | None = None) -> int:
        """Load one function (with its point patched in, and maps replaced by
        name); returns the program's descriptor, which the caller owns.
        `name` is what the kernel is told; for an LSM program lsm__<hook>
        says which hook it is for (libbcc's loader reads it). `prog_type`:
        another type than the object's, for an object whose functions
        attach to different kinds of hooks."""
        reloc = dict(self._reloc)
        for map_name, fd in (maps or {}).items():
            reloc[self.specs[map_name].fd] = fd
        code = patch(self.compiled.functions[function], reloc, point)
        buf = ctypes.create_string_buffer(code, len(code))
        kname = (name or function).encode()
        license_ = self.compiled.license.encode()
        prog_type = self.prog_type if prog_type is None else prog_type
        fd = lib.bcc_prog_load(prog_type, kname, buf, len(code), license_,
                               self.compiled.kern_version, 0, None, 0)
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        log_buf = ctypes.create_string_buffer(LOG_SIZE)
        again = lib.bcc_prog_load(prog_type, kname, buf, len(code), license_,
                                  self.compiled.kern_version, 1, log_buf, LOG_SIZE)
        if again >= 0:
            os.close(again)
        lines = [ln for ln in log_buf.value.decode(errors="replace").splitlines() if ln.strip()]
        reason = "; ".join(lines[-2:]) if lines else os.strerror(err)
        raise CompileError(f"the kernel refused program {function}: {reason}")

    # ---- maps, by name, as bytes ----

    def update(self, map_name: str, key: bytes, value: bytes, flags: int = 0) -> None:
        """OSError with the kernel's errno on failure (E2BIG, ENOMEM: full;
        EEXIST with BPF_NOEXIST)."""
        k = ctypes.create_string_buffer(key, len(key))
        v = ctypes.create_string_buffer(value, len(value))
        if lib.bpf_update_elem(self.fds[map_name], k, v, flags) < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    def delete(self, map_name: str, key: bytes) -> None:
        k = ctypes.create_string_buffer(key, len(key))
        lib.bpf_delete_elem(self.fds[map_name], k)

    def lookup(self, map_name: str, key: bytes) -> bytes | None:
        k = ctypes.create_string_buffer(key, len(key))
        v = ctypes.create_string_buffer(self.specs[map_name].value_size)
        if lib.bpf_lookup_elem(self.fds[map_name], k, v) < 0:
            return None
        return v.raw

    def lookup_percpu(self, map_name: str, key: bytes) -> list[bytes]:
        """One value per possible CPU."""
        spec = self.specs[map_name]
        size = (spec.value_size + 7) // 8 * 8
        k = ctypes.create_string_buffer(key, len(key))
        v = ctypes.create_string_buffer(size * self.ncpus)
        if lib.bpf_lookup_elem(self.fds[map_name], k, v) < 0:
            return []
        raw = v.raw
        return [raw[i * size:i * size + spec.value_size] for i in range(self.ncpus)]

    def close(self) -> None:
        for fd in self._own:
            os.close(fd)
        self._own.clear()


def source() -> Path:
    return bpf_dir() / "generic_hook.c"
