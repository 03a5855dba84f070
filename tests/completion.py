"""Runs the shipped bash completion (packaging/bash-completion/tetrad) the
way bash does at a TAB, for tests: bash-completion's own library loaded,
COMP_* set for a command line, the completion function called."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "packaging" / "bash-completion" / "tetrad"
LIBRARY = "/usr/share/bash-completion/bash_completion"

_DRIVER = r"""
source "$LIBRARY" && source "$SCRIPT" || exit 99
COMP_LINE=$1
COMP_POINT=${#COMP_LINE}
read -ra COMP_WORDS <<< "$COMP_LINE"
[[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
"$(complete -p "${COMP_WORDS[0]}" | sed 's/.*-F \([^ ]*\) .*/\1/')"
printf '%s\n' "${COMPREPLY[@]}"
"""


def tetra_on_path(directory: Path) -> Path:
    """A `tetra` command that runs this tree's, for the completion to ask."""
    tetra = directory / "tetra"
    tetra.write_text(f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m tetrad.cli.tetra "$@"\n')
    tetra.chmod(0o755)
    return directory


def complete(line: str, path: Path | None = None, cwd: Path | None = None) -> list[str]:
    """What a TAB at the end of `line` offers."""
    env = {**os.environ, "LIBRARY": LIBRARY, "SCRIPT": str(SCRIPT)}
    if path is not None:
        env["PATH"] = f"{path}:{env['PATH']}"
    out = subprocess.run(["bash", "-c", _DRIVER, "complete", line], capture_output=True, text=True,
                         timeout=60, env=env, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return [w for w in out.stdout.splitlines() if w]
