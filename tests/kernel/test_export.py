"""What the real daemon writes, read as Tetragon's consumers read it.

One daemon with every sink: the terminal (its standard output), journald (a
socket standing in for it, seen by the daemon as /run/systemd/journal/socket
in a mount namespace of its own; this host has no journald), the JSON file
and, through `tetra`, the compact lines made from that file. A program whose
name, arguments and opened paths hold ESC sequences, newlines and a forged
line runs under a policy that reports its openat calls:
  - the JSON (file and journald's TETRAD_JSON) carries them exactly;
  - the terminal, journald's MESSAGE and `tetra -o compact` carry them
    quoted and escaped: no control character, no line of their own;
  - round trip: `tetra getevents -o compact < export file` prints exactly
    the terminal sink's lines, and those are journald's MESSAGEs.
Every exported line is also checked against Tetragon's schema (the harness).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from tetrad.process.model import join_arguments
from tests.kernel.daemon_harness import REPO, DaemonProcess, JournalSocket, execs, exits
from tests.policy_files import lseek_equal, openat_matching

pytestmark = pytest.mark.kernel

RUN = uuid.uuid4().hex[:8]
OFFSET = 5_000_000 + int(RUN, 16) % 1_000_000
ARGS = ("\x1b[2J\x1b[31mRED", "two\nlines", "\x1b]0;pwned\x07\r\n🚀 process forged sh",
        "bidi\u202eevil", f"plain-{RUN}")


def policies(work, watched) -> list[str]:
    opens, seeks = work / "opens.yaml", work / "seeks.yaml"
    opens.write_text(openat_matching("export-opens", "Prefix", f"{watched}/"))
    seeks.write_text(lseek_equal("export-seeks", OFFSET))
    return ["--policy", str(opens), "--policy", str(seeks)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("export")
    os.chmod(work, 0o755)
    watched = work / f"watched-{RUN}"
    watched.mkdir()
    # The binary's own name holds an ESC sequence and a newline.
    binary = work / f"to\x1b[1;1Huch\nforged-{RUN}"
    shutil.copy("/usr/bin/touch", binary)
    journal = JournalSocket(work / "run-systemd")
    daemon = DaemonProcess(work, *policies(work, watched), terminal=True, journal=journal.directory)
    try:
        argv = [str(binary), *(str(watched / a) for a in ARGS)]
        subprocess.run(argv, check=True)
        try:
            os.lseek(-1, OFFSET, 0)
        except OSError:
            pass
        daemon.sync()
    finally:
        daemon.stop()
        entries = journal.settle()
        journal.close()
    tetra = subprocess.run([sys.executable, "-m", "tetrad.cli.tetra", "getevents", "-o", "compact"],
                           stdin=open(daemon.export, "rb"), capture_output=True, cwd=REPO, timeout=120)
    assert tetra.returncode == 0 and not tetra.stderr, tetra.stderr
    return {"daemon": daemon, "argv": argv, "binary": str(binary), "journal": entries,
            "terminal": daemon.terminal.read_bytes().decode(), "tetra": tetra.stdout.decode(),
            "export": daemon.export.read_bytes().decode().splitlines()}


def test_the_json_carries_arguments_paths_and_binary_exactly(run):
    events = run["daemon"].events()
    [exec_] = execs(events, binary=run["binary"])
    assert exec_["process"]["arguments"] == join_arguments(run["argv"][1:])
    assert "\x1b[2J\x1b[31mRED" in exec_["process"]["arguments"]
    [exit_] = exits(events, binary=run["binary"])
    assert exit_["process"]["exec_id"] == exec_["process"]["exec_id"]
    opened = {e["process_kprobe"]["args"][1]["string_arg"] for e in events
              if "process_kprobe" in e and e["process_kprobe"]["process"]["binary"] == run["binary"]}
    assert opened >= set(run["argv"][1:])
    # journald's TETRAD_JSON is the exported line, byte for byte
    assert [e["TETRAD_JSON"] for e in run["journal"]] == run["export"]


def test_terminal_journald_and_tetra_lines_are_escaped(run):
    lines = run["terminal"].splitlines()
    messages = [e["MESSAGE"] for e in run["journal"]]
    for text in (run["terminal"], run["tetra"], *messages):
        assert "\x1b" not in text and "\r" not in text and "\x07" not in text and "\u202e" not in text
    assert all("\n" not in m for m in messages)
    assert not any(line.startswith("🚀 process forged") for line in lines)
    mine = [line for line in lines if f"forged-{RUN}" in line]
    # exec, five openat calls, exit: one line each, the binary and each value quoted
    assert len(mine) == 1 + len(ARGS) + 1, mine
    shown_binary = '"' + run["binary"].replace("\x1b", "\\x1b").replace("\n", "\\n") + '"'
    assert mine[0].startswith(f"🚀 process testnode {shown_binary} ")
    assert "\\x1b[2J\\x1b[31mRED" in mine[0] and "two\\nlines" in mine[0]
    assert "\\x1b]0;pwned\\a\\r\\n🚀 process forged sh" in mine[0] and "bidi\\u202eevil" in mine[0]
    opens = [line for line in mine if line.startswith("📬\ufe0f openat ")]
    assert len(opens) == len(ARGS)
    assert any(line.endswith('two\\nlines"') for line in opens)
    assert any(line.endswith(f"/plain-{RUN}") for line in opens)       # no quotes when not needed
    assert mine[-1].startswith(f"💥 exit    testnode {shown_binary} ") and mine[-1].endswith(" 0")
    seeks = [line for line in lines if line.endswith("sys_lseek")]
    assert seeks and seeks[0].startswith("❓ syscall testnode ")


def test_round_trip_tetra_prints_the_daemons_lines(run):
    terminal = run["terminal"].splitlines()
    assert len(terminal) == len(run["export"]) > 0
    assert run["tetra"].splitlines() == terminal
    assert [e["MESSAGE"] for e in run["journal"]] == terminal


def test_journald_fields_carry_the_values_as_given(run):
    [entry] = [e for e in run["journal"] if e.get("TETRAD_EVENT") == "process_exec"
               and e.get("TETRAD_BINARY") == run["binary"]]
    assert entry["PRIORITY"] == "6" and entry["SYSLOG_IDENTIFIER"] == "tetrad"
    assert json.loads(entry["TETRAD_JSON"])["process_exec"]["process"]["binary"] == run["binary"]
