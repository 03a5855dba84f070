"""Syscall numbers from the headers' unistd tables: x86-64's plain table,
asm-generic's __NR3264_ aliases (aarch64), and the syscalls bcc's frozen
table lacked (openat2, clone3, io_uring_*), from this machine's headers."""

from __future__ import annotations

import os

import pytest

from tetrad.bpf import unistd

X86 = """
#ifndef _ASM_UNISTD_64_H
#define _ASM_UNISTD_64_H
#define __NR_read 0
#define __NR_openat 257
#define __NR_io_uring_setup 425
#define __NR_clone3 435
#define __NR_openat2 437
#endif
"""

GENERIC = """
#define __NR3264_fcntl 25
#define __NR_fcntl __NR3264_fcntl
#define __NR_openat 56
#define __NR3264_lseek 62
#define __NR_lseek __NR3264_lseek
#define __NR_syscalls 463
#define __NR_broken __NR_nowhere
"""


def test_plain_defines():
    assert unistd.parse(X86) == {"read": 0, "openat": 257, "io_uring_setup": 425,
                                 "clone3": 435, "openat2": 437}


def test_asm_generic_aliases_resolve_and_dangling_ones_are_left_out():
    table = unistd.parse(GENERIC)
    assert (table["fcntl"], table["lseek"], table["openat"]) == (25, 62, 56)
    assert "broken" not in table


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86-64 numbers")
def test_this_machines_headers_know_the_syscalls_bccs_table_lacked():
    assert [unistd.number(n) for n in ("openat", "openat2", "clone3", "io_uring_setup")] == \
        [257, 437, 435, 425]
    assert unistd.names()[257] == "openat"


def test_an_unknown_syscall_is_named_with_what_to_do():
    with pytest.raises(unistd.UnknownSyscall, match="'no_such_call' is not in .*install newer kernel headers"):
        unistd.number("no_such_call")
