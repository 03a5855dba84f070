"""Where tetrad finds its non-Python files, in a checkout and when installed.

A checkout keeps BPF C sources in `bpf/` and shipped configuration in `etc/`
next to the package; the Debian and rpm packages install them under
`/usr/share/tetrad/`. `TETRAD_BPF_DIR` overrides the BPF location (tests).
"""

import os
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent
_INSTALLED = Path("/usr/share/tetrad")


def _first_existing(*candidates: Path) -> Path:
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[-1]


def bpf_dir() -> Path:
    """Directory holding `*.c`/`*.h` BPF sources."""
    override = os.environ.get("TETRAD_BPF_DIR")
    if override:
        return Path(override)
    return _first_existing(_CHECKOUT / "bpf", _INSTALLED / "bpf")


def shipped_etc_dir() -> Path:
    """Directory holding the packaged default config and example policies."""
    return _first_existing(_CHECKOUT / "etc", _INSTALLED / "etc")
