"""Reading a policy file: the one way, for `tetrad policy check` and the daemon.

A policy file decides what is killed and what is watched, so reading one
trusts nothing about it:
- opened with O_NOFOLLOW (a symlink is refused, not followed), O_NONBLOCK
  (a FIFO does not hang the reader) and O_CLOEXEC;
- the descriptor opened is the one checked (fstat): only a regular file,
  with one hard link (a hard link to /etc/shadow would otherwise load, or
  put its lines in an error message), at most limits.FILE_BYTES long; at
  most that much plus one byte is ever read, so /dev/zero or a file that
  grows while read cannot exhaust memory;
- the content must be UTF-8 (refused, not replaced with U+FFFD).
Errors name the file and the problem, never its content.

The daemon's ownership rule (root-owned, not group- or world-writable) is
`trust_problem`; `read(path)` applies it, `read_file(path)` reports it, so
`tetrad policy check` run by a user can check a file it can read and still
say the daemon would refuse it.

    data = source.read(path)                # bytes, or PolicyError
    digest = hashlib.sha256(data).hexdigest()
    policy = schema.parse(data, path)       # decodes as source.text() does

Pure file handling: imports only the limits and the error type.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from tetrad.policy import limits
from tetrad.policy.errors import PolicyError

OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class PolicyFile:
    path: str
    data: bytes
    stat: os.stat_result             # of the descriptor the data came from
    trust_problem: str               # why the daemon would refuse it; "" when it would not


def trust_problem(st: os.stat_result, what: str) -> str:
    """Why a file or directory with this stat must not be trusted, or "".
    A policy file can kill processes and read every file's path: anyone but
    root who could have written it could take the host over."""
    if st.st_uid != 0:
        return f"{what} is owned by uid {st.st_uid}, not root; fix with: chown root"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (f"{what} is group- or world-writable (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"fix with: chmod go-w")
    return ""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _refuse(path: str, reason: str) -> PolicyError:
    return PolicyError(path, [("", reason)])


def read_file(path: str, size_limit: int = limits.FILE_BYTES) -> PolicyFile:
    """The bytes of a policy file and whether the daemon would trust it;
    PolicyError when it cannot be read safely."""
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise _refuse(path, "is a symbolic link; policy files are read without following "
                                "links (name the file itself)") from None
        raise _refuse(path, f"cannot open: {err.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, f"is {_kind(st.st_mode)}; a policy must be a regular file")
        if st.st_nlink != 1:
            raise _refuse(path, f"has {st.st_nlink} hard links; a policy file must have exactly "
                                "one (a link to another file would load that file)")
        if st.st_size > size_limit:
            raise _refuse(path, f"is {st.st_size} bytes, more than the {size_limit} a policy "
                                "may have")
        chunks, total = [], 0
        while total <= size_limit:
            try:
                chunk = os.read(fd, size_limit + 1 - total)
            except OSError as err:
                raise _refuse(path, f"cannot read: {err.strerror}") from None
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > size_limit:
            raise _refuse(path, f"grew beyond {size_limit} bytes while being read")
    finally:
        os.close(fd)
    return PolicyFile(path, b"".join(chunks), st, trust_problem(st, "the file"))


def read(path: str, size_limit: int = limits.FILE_BYTES) -> bytes:
    """The daemon's read: `read_file`, and a file the daemon must not trust
    is refused too."""
    f = read_file(path, size_limit)
    if f.trust_problem:
        raise _refuse(path, f.trust_problem)
    return f.data


def text(data: bytes, source: str) -> str:
    """Policy bytes as text: strict UTF-8; the position of the first bad
    byte is named, not the byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise _refuse(source, f"not UTF-8 (line {line}, byte offset {err.start}); save the file "
                              "as UTF-8") from None
