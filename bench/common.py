"""Shared helpers for the benchmarks: where the peers live, how to time a whole process."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
PEER_BIN = Path(os.environ.get("BASTION_PEERS_BIN", HERE / ".venv-peers" / "bin"))
# BASTION_CMD lets a benchmark run a frozen copy of bastion while the tree changes
BASTION = os.environ.get("BASTION_CMD", str(ROOT / ".venv" / "bin" / "bastion")).split()

# tool -> command prefix; the file path is appended
TOOLS: dict[str, list[str]] = {
    "bastion": [*BASTION, "scan", "--no-store", "-q", "-f", "json", "-o", os.devnull],
    "modelscan": [str(PEER_BIN / "modelscan"), "-p"],
    "picklescan": [str(PEER_BIN / "picklescan"), "-p"],
    "fickling": [str(PEER_BIN / "fickling"), "--check-safety"],
    "modelaudit": [str(PEER_BIN / "modelaudit"), "scan"],
}


def ensure_peers() -> None:
    missing = [t for t, cmd in TOOLS.items() if not Path(cmd[0]).exists()]
    if missing:
        sys.exit(
            f"missing tools {missing}: run `make bench-peers` (python -m venv "
            f"{PEER_BIN.parent} && {PEER_BIN}/pip install modelscan picklescan fickling "
            "modelaudit)"
        )
    precompile_bastion()


def precompile_bastion() -> None:
    """Write bastion's .pyc files, as `pip install` did for the peers. An editable install
    under PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module on every run."""
    first = Path(BASTION[0])
    python = first if first.name.startswith("python") else first.parent / "python"
    code = (
        "import bastion, compileall, os; "
        "compileall.compile_dir(os.path.dirname(bastion.__file__), quiet=1)"
    )
    subprocess.run(
        [str(python), "-c", code], check=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""}
    )


@dataclass
class Run:
    exit_code: int
    wall_s: float
    peak_rss_mb: float
    timed_out: bool = False


def timed(cmd: list[str], timeout: float = 600) -> Run:
    """Whole-process wall time and peak RSS (of the process tree) of one command."""
    wrapped = ["/usr/bin/time", "-f", "%M", *cmd] if Path("/usr/bin/time").exists() else cmd
    started = time.perf_counter()
    try:
        proc = subprocess.run(wrapped, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Run(-1, timeout, float("nan"), timed_out=True)
    wall = time.perf_counter() - started
    rss = float("nan")
    if wrapped is not cmd:
        last = proc.stderr.strip().splitlines()[-1:] or ["nan"]
        try:
            rss = int(last[0]) / 1024
        except ValueError:
            pass
    return Run(proc.returncode, wall, rss)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
