"""What uprobe and USDT hooks need to know about a user binary: its USDT
probes, file offsets of virtual addresses, its build id and digests.

Read with pyelftools (Debian's python3-pyelftools), which parses the ELF
container: headers, sections, program headers and notes. Its 0.29 does not
decode SystemTap's `.note.stapsdt` descriptors (it names their type 3 as a
GNU build id), so the few fields of a descriptor are unpacked here from the
note's raw bytes:

    pc, base, semaphore     three addresses of the ELF's word size
    provider\\0 name\\0 args\\0  the probe's provider, name and argument specs

Per SystemTap's spec, when the binary was prelinked the addresses are
moved by the difference between `.stapsdt.base`'s address and `base`.
The kernel takes uprobe places and semaphores (ref_ctr_offset) as offsets
in the file, so addresses become offsets through the PT_LOAD segment that
holds them.

Argument specs ("-4@-12(%rbp) 8@%rax -4@$5", see `parse_arg`) become data
(`UsdtArg`): the kernel reads every probe's arguments with the same code
(bpf/generic_hook.c usdt_fetch). Register operands are x86-64's.

Anyone may import this; it reads files, never the kernel. Input is a file
anyone could have written: every failure is a ValueError or OSError with a
message naming the binary.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

# x86-64 registers by every name an operand may use -> struct pt_regs member.
_X86_REGS = {}
for _full, _names in {"ax": ("rax", "eax", "ax", "al"), "bx": ("rbx", "ebx", "bx", "bl"),
                      "cx": ("rcx", "ecx", "cx", "cl"), "dx": ("rdx", "edx", "dx", "dl"),
                      "si": ("rsi", "esi", "si", "sil"), "di": ("rdi", "edi", "di", "dil"),
                      "bp": ("rbp", "ebp", "bp", "bpl"), "sp": ("rsp", "esp", "sp", "spl"),
                      "ip": ("rip",)}.items():
    for _name in _names:
        _X86_REGS[_name] = _full
for _n in range(8, 16):
    for _suffix in ("", "d", "w", "b"):
        _X86_REGS[f"r{_n}{_suffix}"] = f"r{_n}"

_ARG = re.compile(r"(?:(-?)(\d+)@)?(.+)")
_DEREF = re.compile(r"(-?(?:0x[0-9a-fA-F]+|\d+))?\(%(\w+)(?:,%(\w+)(?:,(\d+))?)?\)")
STAPSDT_TYPE = 3
MAX_ARGS = 12                   # what sys/sdt.h writes at most


@dataclass(frozen=True)
class UsdtArg:
    """One argument of a USDT probe: where its value is at the probe.

    kind   const   the value is `value`
           reg     the value is register `reg`
           deref   the value is in user memory at `reg` + `value`
           sib     ... at `reg` + `index` * `scale` + `value`
    size, signed: the value's width in bytes and whether it is signed (the
    spec's "-4@" is a signed 4-byte value)."""

    kind: str
    size: int
    signed: bool
    reg: str = ""               # struct pt_regs member: ax, di, r8, ...
    index: str = ""
    scale: int = 1
    value: int = 0
    spec: str = ""              # as the note wrote it


@dataclass(frozen=True)
class UsdtProbe:
    """One place of a USDT probe in a binary (a probe may have several)."""

    provider: str
    name: str
    offset: int                 # file offset of the probe's instruction
    semaphore: int              # file offset of its semaphore, 0 without one
    args: tuple[UsdtArg, ...]
    problem: str = ""           # why its arguments cannot be read (then args is ())


def parse_arg(spec: str) -> UsdtArg:
    """One x86-64 argument spec of a stapsdt note, or ValueError.
    Forms: `[-]N@$imm`, `[-]N@%reg`, `[-]N@disp(%reg)`,
    `[-]N@disp(%base,%index,scale)`; a missing size is 8 unsigned bytes."""
    m = _ARG.fullmatch(spec)
    if not m:
        raise ValueError(f"USDT argument {spec!r} is not SIZE@OPERAND")
    signed, size, operand = m.group(1) == "-", int(m.group(2) or 8), m.group(3)
    if size not in (1, 2, 4, 8):
        raise ValueError(f"USDT argument {spec!r}: size {size} is not 1, 2, 4 or 8")
    if operand.startswith("$"):
        try:
            return UsdtArg("const", size, signed, value=int(operand[1:], 0), spec=spec)
        except ValueError:
            raise ValueError(f"USDT argument {spec!r}: {operand!r} is not a number") from None
    if operand.startswith("%"):
        return UsdtArg("reg", size, signed, reg=_register(operand[1:], spec), spec=spec)
    d = _DEREF.fullmatch(operand)
    if not d:
        raise ValueError(f"USDT argument {spec!r}: operand {operand!r} is not a register, a constant "
                         "or a register-based memory operand (symbols and %rip are not read)")
    base = _register(d.group(2), spec)
    if base == "ip":
        raise ValueError(f"USDT argument {spec!r}: %rip-relative operands are not read")
    disp = int(d.group(1), 0) if d.group(1) else 0
    if d.group(3) is None:
        return UsdtArg("deref", size, signed, reg=base, value=disp, spec=spec)
    scale = int(d.group(4) or 1)
    if scale not in (1, 2, 4, 8):
        raise ValueError(f"USDT argument {spec!r}: scale {scale} is not 1, 2, 4 or 8")
    return UsdtArg("sib", size, signed, reg=base, index=_register(d.group(3), spec), scale=scale,
                   value=disp, spec=spec)


def _register(name: str, spec: str) -> str:
    reg = _X86_REGS.get(name)
    if reg is None:
        raise ValueError(f"USDT argument {spec!r}: %{name} is not a register tetrad reads "
                         "(x86-64 general purpose registers only)")
    return reg


class Binary:
    """An ELF file opened for reading; use as a context manager. A binary
    that is not ELF, or is damaged, raises ValueError naming the file."""

    def __init__(self, path: str, fileobj=None):
        self.path = path
        self._file = fileobj if fileobj is not None else open(path, "rb")
        self._owned = fileobj is None
        try:
            self.elf = ELFFile(self._file)
            self._loads = [s for s in self.elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        except ELFError as err:
            self.close()
            raise ValueError(f"{path} is not an ELF file tetrad can read ({err})") from None
        except Exception as err:     # pyelftools' errors on bad input are of many types
            self.close()
            raise ValueError(f"{path} is a damaged ELF file ({type(err).__name__}: {err})") from None

    def __enter__(self) -> "Binary":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            self._file.close()

    def file_offset(self, address: int) -> int:
        """The file offset of a virtual address, through the PT_LOAD
        segment that maps it; ValueError when none does."""
        for seg in self._loads:
            if seg["p_vaddr"] <= address < seg["p_vaddr"] + seg["p_filesz"]:
                return address - seg["p_vaddr"] + seg["p_offset"]
        raise ValueError(f"address {address:#x} is in no loaded segment of {self.path}")

    def build_id(self) -> str:
        """The GNU build id as hex, "" without one."""
        return _parsing(self.path, self._build_id)

    def _build_id(self) -> str:
        for section in self.elf.iter_sections():
            if section["sh_type"] != "SHT_NOTE":
                continue
            for note in section.iter_notes():
                if note["n_name"] == "GNU" and note["n_type"] == "NT_GNU_BUILD_ID":
                    return note["n_desc"]
        return ""

    def usdt_probes(self) -> list[UsdtProbe]:
        """Every place of every USDT probe, in note order."""
        return _parsing(self.path, self._usdt_probes)

    def _usdt_probes(self) -> list[UsdtProbe]:
        section = self.elf.get_section_by_name(".note.stapsdt")
        if section is None:
            return []
        base_section = self.elf.get_section_by_name(".stapsdt.base")
        word = 8 if self.elf.elfclass == 64 else 4
        fmt = ("<" if self.elf.little_endian else ">") + ("QQQ" if word == 8 else "III")
        probes = []
        for note in section.iter_notes():
            desc = note["n_descdata"]
            if note["n_name"] != "stapsdt" or len(desc) < 3 * word:
                continue
            pc, base, semaphore = struct.unpack_from(fmt, desc)
            parts = desc[3 * word:].split(b"\0")
            if len(parts) < 3:
                raise ValueError(f"{self.path}: a stapsdt note without provider, name and arguments")
            provider, name, args_text = (p.decode("utf-8", "replace") for p in parts[:3])
            if base_section is not None and base:
                delta = base_section["sh_addr"] - base
                pc += delta
                semaphore = semaphore + delta if semaphore else 0
            args, problem = (), ""
            try:
                specs = args_text.split()
                if len(specs) > MAX_ARGS:
                    raise ValueError(f"{len(specs)} arguments; sys/sdt.h writes at most {MAX_ARGS}")
                args = tuple(parse_arg(s) for s in specs)
            except ValueError as err:
                problem = str(err)
            probes.append(UsdtProbe(provider, name, self.file_offset(pc),
                                    self.file_offset(semaphore) if semaphore else 0, args, problem))
        return probes


def _parsing(path: str, parse):
    """parse(), with whatever a damaged or hostile ELF file makes
    pyelftools raise turned into the ValueError callers expect."""
    try:
        return parse()
    except ValueError:
        raise
    except Exception as err:     # pyelftools' errors on bad input are of many types
        raise ValueError(f"{path} is a damaged ELF file ({type(err).__name__}: {err})") from None


def digest(fileobj, algorithm: str) -> str:
    """The hex digest of a file's content (an open binary file, read from
    its start): sha1, sha256, sha384, sha512, or build-id from its notes."""
    fileobj.seek(0)
    if algorithm == "build-id":
        return Binary("the binary", fileobj).build_id()
    h = hashlib.new(algorithm)
    for chunk in iter(lambda: fileobj.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()
