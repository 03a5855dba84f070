"""The policy directory: what its files hold now, as a desired set.

`PolicyDirectory.scan()` reads the directory and returns one `Desired` per
policy file: its content hash and the parsed policy, or why there is none.
It loads nothing: the registry (tetrad/policy/registry.py) compares the set
with what is in force and acts (new file: load; changed: load the new
version, then unload the old; removed: unload; bad: the old version stays).
Files whose content did not change are not parsed again, so a scan after an
unrelated change costs a directory listing and a few reads.

Which files count: regular files named *.yaml, *.yml or *.json, not hidden
(editors' swap and backup files are `.name.swp`, `name~`, `#name#`). A
policy file can kill processes and read every file's path, so a file that
anyone but root could have written is refused: it must be owned by root and
not group- or world-writable, and so must the directory. Symlinks are not
followed (their target's permissions are what would matter).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from tetrad.policy import schema, source
from tetrad.policy.registry import Desired
from tetrad.policy.schema import PolicyError

log = logging.getLogger(__name__)

SUFFIXES = (".yaml", ".yml", ".json")


def wanted(name: str) -> bool:
    return name.endswith(SUFFIXES) and not name.startswith((".", "#"))


class _Scanner:
    """Reads policy files into `Desired` entries, parsing only what changed."""

    def __init__(self, require_root: bool):
        self._require_root = require_root
        self._parsed: dict[str, Desired] = {}       # path -> last result, by digest
        self.errors = 0                             # the directory itself refused

    def _listing(self) -> dict[str, os.stat_result] | None:
        raise NotImplementedError

    def _read(self, path: str, st: os.stat_result) -> bytes | str:
        """The file's bytes, read as `tetrad policy check` reads them
        (tetrad/policy/source.py), or why they cannot be trusted or read."""
        try:
            f = source.read_file(path)
        except PolicyError as err:
            return str(err)
        if self._require_root and f.trust_problem:
            return source.trust_problem(f.stat, path)
        if (f.stat.st_ino, f.stat.st_dev) != (st.st_ino, st.st_dev):
            return f"{path}: replaced while being read; will retry"
        return f.data

    def scan(self) -> list[Desired] | None:
        """What every policy file holds now; None when the directory could
        not be read or trusted (the registry then changes nothing)."""
        files = self._listing()
        if files is None:
            return None
        self._parsed = {p: d for p, d in self._parsed.items() if p in files}
        return [self._scan_file(path, st) for path, st in files.items()]

    def _scan_file(self, path: str, st: os.stat_result | None) -> Desired:
        data = self._read(path, st) if st is not None else f"{path}: no such file"
        if isinstance(data, str):
            return Desired(path, "", error=data)
        digest = hashlib.sha256(data).hexdigest()
        known = self._parsed.get(path)
        if known is not None and known.digest == digest:
            return known
        try:
            desired = Desired(path, digest, schema.parse(data, path))
        except PolicyError as err:
            desired = Desired(path, digest, error=str(err))
        except Exception as err:                # a parser bug is this file's error
            log.warning("parsing %s failed", path, exc_info=True)
            desired = Desired(path, digest, error=f"{path}: internal error while parsing: {err!r}")
        self._parsed[path] = desired
        return desired


class PolicyDirectory(_Scanner):
    """Scans one directory of policy files into a desired set."""

    def __init__(self, directory: str, require_root: bool = True):
        super().__init__(require_root)
        self.directory = Path(directory)

    def _listing(self) -> dict[str, os.stat_result] | None:
        """The policy files and their lstat, or None when the directory
        itself cannot be trusted or read (then nothing may change)."""
        try:
            dst = os.stat(self.directory)
        except FileNotFoundError:
            return {}
        except OSError as err:
            log.error("policy directory %s: %s", self.directory, err.strerror)
            return None
        problem = source.trust_problem(dst, f"directory {self.directory}") if self._require_root else ""
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


class PolicyFiles(_Scanner):
    """Policy files named one by one (`tetrad run --policy FILE`): the same
    reading and parsing as the directory's, without its ownership rule
    (root named them on the command line). A symlink named there is
    resolved once, here."""

    def __init__(self, paths: tuple[str, ...]):
        super().__init__(require_root=False)
        self._paths = tuple(os.path.realpath(p) for p in paths)

    def _listing(self) -> dict[str, os.stat_result | None]:
        out: dict[str, os.stat_result | None] = {}
        for path in self._paths:
            try:
                out[path] = os.lstat(path)
            except OSError:
                out[path] = None
        return out
