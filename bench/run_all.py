"""Run every benchmark in sequence (detection, throughput, bounds)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

for script in (
    "detection.py",
    "throughput.py",
    "startup.py",
    "fuzz_bounds.py",
    "code_detection.py",
    "signing.py",
):
    print(f"== {script}", flush=True)
    code = subprocess.call([sys.executable, str(HERE / script)])
    if code:
        sys.exit(code)
