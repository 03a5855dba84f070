"""The policy directory: make what is loaded follow what is on disk.

`PolicyDirectory.sync()` compares the directory with what it loaded last
time and acts per file:
  new file        validate, load
  changed file    validate, load the new version, then unload the old one
                  (both are briefly in force; never a moment with neither)
  removed file    unload
  bad file        report; the version loaded before stays in force
Unchanged files (same content hash) are left alone, so a sync after an
unrelated change costs a directory listing and a few reads.

Which files count: regular files named *.yaml, *.yml or *.json, not hidden
(editors' swap and backup files are `.name.swp`, `name~`, `#name#`). A
policy file can kill processes and read every file's path, so a file that
anyone but root could have written is refused: it must be owned by root and
not group- or world-writable, and so must the directory. Symlinks are not
followed (their target's permissions are what would matter).

Two files declaring the same policy name: the one loaded first keeps it and
the other is refused, as Tetragon refuses a duplicate name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tetrad.policy import schema
from tetrad.policy.schema import Policy, PolicyError

log = logging.getLogger(__name__)

SUFFIXES = (".yaml", ".yml", ".json")
MAX_POLICY_BYTES = 1 << 20


@dataclass
class Entry:
    """What this module knows about one file."""

    digest: str = ""               # content of the version in force ("" none)
    loaded: object = None          # the loader's handle of that version
    name: str = ""
    error: str = ""                # last problem, "" when the file is in force as is
    failed_digest: str = ""        # content that failed (not retried until it changes)


def unsafe_reason(st: os.stat_result, what: str) -> str:
    """Why a file or directory with this stat must not be trusted, or ""."""
    if st.st_uid != 0:
        return f"{what} is owned by uid {st.st_uid}, not root"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (f"{what} is group- or world-writable (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"fix with: chmod go-w")
    return ""


def wanted(name: str) -> bool:
    return name.endswith(SUFFIXES) and not name.startswith((".", "#"))


class PolicyDirectory:
    """Keeps the policies of one directory loaded through `load`/`unload`."""

    def __init__(self, directory: str, load: Callable[[Policy], object],
                 unload: Callable[[object], None], require_root: bool = True):
        self.directory = Path(directory)
        self._load = load
        self._unload = unload
        self._require_root = require_root
        self.entries: dict[str, Entry] = {}
        self.errors = 0

    def _fail(self, path: str, entry: Entry, message: str, digest: str = "") -> None:
        kept = f" (version loaded before stays in force: {entry.name})" if entry.loaded else ""
        if message != entry.error:
            log.error("policy %s%s", message, kept)
            self.errors += 1
        entry.error, entry.failed_digest = message, digest

    def _listing(self) -> dict[str, os.stat_result] | None:
        try:
            dst = os.stat(self.directory)
        except FileNotFoundError:
            return {}
        except OSError as err:
            log.error("policy directory %s: %s", self.directory, err.strerror)
            return None
        problem = unsafe_reason(dst, f"directory {self.directory}") if self._require_root else ""
        if problem:
            log.error("policy directory refused: %s; nothing in it is loaded or changed", problem)
            self.errors += 1
            return None
        files = {}
        for name in sorted(os.listdir(self.directory)):
            if wanted(name):
                path = str(self.directory / name)
                try:
                    files[path] = os.lstat(path)
                except FileNotFoundError:
                    continue
        return files

    def _read(self, path: str, st: os.stat_result) -> bytes | str:
        """The file's bytes, or why they cannot be trusted or read."""
        if not stat.S_ISREG(st.st_mode):
            return f"{path}: not a regular file (symlinks are not followed)"
        problem = unsafe_reason(st, path) if self._require_root else ""
        if problem:
            return problem
        if st.st_size > MAX_POLICY_BYTES:
            return f"{path}: larger than {MAX_POLICY_BYTES} bytes"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as err:
            return f"{path}: cannot open: {err.strerror}"
        with os.fdopen(fd, "rb") as f:
            again = os.fstat(f.fileno())      # the file opened is the file checked
            if (again.st_ino, again.st_dev) != (st.st_ino, st.st_dev):
                return f"{path}: replaced while being read; will retry"
            return f.read(MAX_POLICY_BYTES + 1)

    def sync(self, retry: bool = False) -> None:
        """Bring loaded policies in line with the directory. With `retry`
        (a reload), files that failed are tried again even if unchanged."""
        if retry:
            for entry in self.entries.values():
                entry.failed_digest = ""
        files = self._listing()
        if files is None:
            return
        for path in [p for p in self.entries if p not in files]:
            entry = self.entries.pop(path)
            if entry.loaded is not None:
                self._unload(entry.loaded)
                log.info("policy %s removed with %s", entry.name, path)
        for path, st in files.items():
            self._sync_file(path, st)

    def _sync_file(self, path: str, st: os.stat_result) -> None:
        entry = self.entries.setdefault(path, Entry())
        data = self._read(path, st)
        if isinstance(data, str):
            self._fail(path, entry, data)
            return
        digest = hashlib.sha256(data).hexdigest()
        if digest in (entry.digest, entry.failed_digest):
            if digest == entry.digest:
                entry.error = ""
            return
        try:
            policy = schema.parse(data.decode("utf-8", "replace"), path)
            owner = next((p for p, e in self.entries.items()
                          if p != path and e.loaded is not None and e.name == policy.name), None)
            if owner:
                raise PolicyError(path, [("metadata.name", f"policy {policy.name!r} is already "
                                          f"loaded from {owner}; names must be unique")])
            new = self._load(policy)
        except PolicyError as err:
            self._fail(path, entry, str(err), digest)
            return
        old = entry.loaded
        entry.loaded, entry.digest, entry.name, entry.error, entry.failed_digest = \
            new, digest, policy.name, "", ""
        if old is not None:
            self._unload(old)
            log.info("policy %s replaced by the new version in %s", policy.name, path)
