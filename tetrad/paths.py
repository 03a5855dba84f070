"""Where tetrad finds its non-Python files: the package's data directory.

`tetrad/data/` holds the BPF C sources (`bpf/*.c`, `*.h`, compiled by bcc at
start) and the shipped default configuration (`etc/tetrad.toml`), found with
importlib.resources wherever the package is:
- in the tree, `tetrad/data/bpf` and `tetrad/data/etc` are links to the
  top-level `bpf/` and `etc/`;
- a wheel (pyproject.toml's package data) holds copies;
- the .deb and rpm install the files under /usr/share/tetrad/ and make
  `tetrad/data` a link to it.
bcc compiles from files, so the data must be a directory on disk (not in a
zip). `TETRAD_BPF_DIR` overrides the BPF location (tests).
"""

import os
from importlib import resources
from pathlib import Path


def _data(name: str) -> Path:
    found = resources.files("tetrad") / "data" / name
    if not isinstance(found, Path) or not found.is_dir():
        raise FileNotFoundError(f"tetrad's data directory {found} is missing: the package is "
                                "installed incompletely (reinstall it)")
    return found


def bpf_dir() -> Path:
    """Directory holding `*.c`/`*.h` BPF sources."""
    override = os.environ.get("TETRAD_BPF_DIR")
    if override:
        return Path(override)
    return _data("bpf")


def shipped_etc_dir() -> Path:
    """Directory holding the packaged default config (`tetrad.toml`)."""
    return _data("etc")
