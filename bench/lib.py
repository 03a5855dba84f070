"""Shared bench plumbing: build load generators, run tetrad, summarize.

Every figure is a ratio against a baseline measured in the same run, with
repetitions interleaved (baseline, monitored, baseline, ...) so that a noisy
machine moves both sides alike. Reports min and median.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GEN = REPO / "bench" / "gen"
BUILD = Path(os.environ.get("TETRAD_BENCH_BUILD", "/var/tmp/tetrad-bench"))


def progress(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ensure_cc() -> str:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        return cc
    progress("installing gcc to build the load generators")
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "gcc", "libc6-dev"],
                   check=True, stdout=subprocess.DEVNULL, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return shutil.which("cc") or "gcc"


def build(name: str) -> Path:
    """Compile bench/gen/<name>.c (once per source change)."""
    src = GEN / f"{name}.c"
    BUILD.mkdir(parents=True, exist_ok=True)
    out = BUILD / name
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        subprocess.run([ensure_cc(), "-O2", "-Wall", "-o", str(out), str(src)], check=True)
    return out


class Tetrad:
    """`tetrad run` as a subprocess writing JSON lines to a file."""

    def __init__(self, workdir: Path, *args: str, journald: bool = False, socket: str = "",
                 repo: Path = REPO):
        """With journald, events go to the journal instead of the file; with
        a socket path, the local API listens there. `repo`: the checkout whose
        tetrad runs (another version, to compare)."""
        self.export = workdir / "events.json"
        self.log = workdir / "tetrad.log"
        if self.export.exists():
            self.export.unlink()
        self._log = open(self.log, "w")
        sink = ["--export-file", ""] if journald else [
            "--no-journald", "--export-file", str(self.export), "--export-file-max-size-mb", "100000"]
        self.proc = subprocess.Popen(
            # Only the bench's own config: no /etc/tetragon or API.
            [sys.executable, "-m", "tetrad", "run", "--quiet", "--config-dir", str(workdir),
             "--policy-dir", "", "--socket", socket, *sink, *args],
            cwd=repo, stdout=subprocess.DEVNULL, stderr=self._log)
        deadline = time.monotonic() + 120
        while ": ready in " not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tetrad did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> dict[str, int]:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)
        self._log.close()
        final = [l for l in self.log.read_text().splitlines() if "stopped" in l]
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", final[-1])} if final else {}

    def count_policy(self, policy_name: str) -> int:
        with open(self.export) as f:
            return sum(1 for line in f if f'"policy_name":"{policy_name}"' in line)

    def count(self, kind: str, arguments: str) -> int:
        n = 0
        with open(self.export) as f:
            for line in f:
                if arguments in line:
                    ev = json.loads(line)
                    body = ev.get(kind)
                    if body and body["process"].get("arguments") == arguments:
                        n += 1
        return n


def summary(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values)}


def write_results(name: str, results: dict) -> Path:
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path
