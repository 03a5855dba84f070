"""tetrad/elf.py: USDT argument specs as sys/sdt.h writes them (x86-64).
The notes of a real binary are read in tests/kernel/test_hooks.py."""

import os
import random

import pytest

from tetrad.elf import Binary, UsdtArg, parse_arg


@pytest.mark.parametrize("spec,want", [
    ("-4@$42", UsdtArg("const", 4, True, value=42, spec="-4@$42")),
    ("-4@$-7", UsdtArg("const", 4, True, value=-7, spec="-4@$-7")),
    ("8@$0x10", UsdtArg("const", 8, False, value=16, spec="8@$0x10")),
    ("-8@%rax", UsdtArg("reg", 8, True, reg="ax", spec="-8@%rax")),
    ("-4@%edx", UsdtArg("reg", 4, True, reg="dx", spec="-4@%edx")),
    ("-2@%bx", UsdtArg("reg", 2, True, reg="bx", spec="-2@%bx")),
    ("1@%sil", UsdtArg("reg", 1, False, reg="si", spec="1@%sil")),
    ("4@%r12d", UsdtArg("reg", 4, False, reg="r12", spec="4@%r12d")),
    ("-8@-8(%rbp)", UsdtArg("deref", 8, True, reg="bp", value=-8, spec="-8@-8(%rbp)")),
    ("8@24(%rbp)", UsdtArg("deref", 8, False, reg="bp", value=24, spec="8@24(%rbp)")),
    ("4@(%rdi)", UsdtArg("deref", 4, False, reg="di", spec="4@(%rdi)")),
    ("-4@8(%rax,%rcx,4)", UsdtArg("sib", 4, True, reg="ax", index="cx", scale=4, value=8,
                                  spec="-4@8(%rax,%rcx,4)")),
    ("%rsi", UsdtArg("reg", 8, False, reg="si", spec="%rsi")),      # no size: 8 unsigned bytes
])
def test_argument_specs(spec, want):
    assert parse_arg(spec) == want


@pytest.mark.parametrize("spec,problem", [
    ("3@%rax", "size 3"),
    ("8@var(%rip)", "not a register, a constant"),
    ("8@16(%rip)", "%rip-relative"),
    ("-4@%ah", "%ah is not a register tetrad reads"),
    ("8@$x", "is not a number"),
    ("4@8(%rax,%rcx,3)", "scale 3"),
])
def test_specs_tetrad_does_not_read_are_refused_by_name(spec, problem):
    with pytest.raises(ValueError, match=problem.replace("$", r"\$").replace("%", "%")) as err:
        parse_arg(spec)
    assert spec in str(err.value)


def test_damaged_or_foreign_files_are_value_errors_naming_the_file(tmp_path):
    """A binary is input anyone could have written: whatever pyelftools
    makes of a damaged one, callers get a ValueError naming it."""
    real = open(os.path.realpath("/bin/true"), "rb").read()
    with Binary(os.path.realpath("/bin/true")) as b:
        assert b.usdt_probes() == [] and len(b.build_id()) in (0, 40)
    rng = random.Random(16)
    cases = [b"#!/bin/sh\necho hi\n", real[:200]]
    for _ in range(200):
        d = bytearray(real)
        for _ in range(rng.choice([5, 50])):
            d[rng.randrange(len(d))] = rng.randrange(256)
        cases.append(bytes(d))
    path = tmp_path / "damaged"
    for data in cases:
        path.write_bytes(data)
        try:
            with Binary(str(path)) as b:
                b.usdt_probes()
                b.build_id()
        except ValueError as err:
            assert str(path) in str(err)
