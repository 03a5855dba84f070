"""The shipped rsyslog configurations (etc/examples/rsyslog/) pass rsyslog's
own check, each alone and both installed together. (What they do, with
journald and tetrad's rotation: tests/guest/test_shippers_guest.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "etc" / "examples" / "rsyslog"
SHIPPED = sorted(EXAMPLES.glob("*.conf"))


@pytest.mark.parametrize("files", [[p] for p in SHIPPED] + [SHIPPED],
                         ids=[p.name for p in SHIPPED] + ["both"])
def test_rsyslogd_accepts_them(tmp_path, files):
    assert len(SHIPPED) == 2
    main = tmp_path / "rsyslog.conf"
    main.write_text(f'global(workDirectory="{tmp_path}")\n'
                    + "".join(f'include(file="{p}")\n' for p in files))
    out = subprocess.run(["rsyslogd", "-N1", "-f", str(main)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "error" not in out.stderr.lower(), out.stderr
