"""Cluster backend: files/s and per-file overhead of `--executor ray` (a local Ray instance on
loopback, 2 CPUs) against the local worker pool, on the same folder in the same run.

    python bench/cluster.py [--files 400] [--runs 3]     # writes bench/out/cluster.json

The folder holds small pickles (a checkpoint-like dict, 1 kB each) so the figure is the
backend's overhead, not parsing. Ray's own start-up is timed separately: a CLI run that starts a
local instance pays it once; a long-lived cluster does not."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import OUT, ROOT

sys.path.insert(0, str(ROOT / "src"))

from bastion.config import Settings
from bastion.scan.engine import run_scan


def build(folder: Path, count: int) -> None:
    for index in range(count):
        payload = {"epoch": index, "weights": [float(i) for i in range(100)]}
        (folder / f"model{index:04d}.pkl").write_bytes(pickle.dumps(payload))


def timed(settings: Settings, folder: Path) -> float:
    started = time.perf_counter()
    report = run_scan([folder], settings)
    elapsed = time.perf_counter() - started
    assert not report.errors and len(report.results) > 0
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    ray_start = time.perf_counter() - started
    local_s: list[float] = []
    ray_s: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build(folder, args.files)
        timed(Settings(executor="ray"), folder)  # warm: Ray's worker processes start once
        for _ in range(args.runs):  # alternate, so drift on a noisy machine hits both
            local_s.append(timed(Settings(workers=2), folder))
            ray_s.append(timed(Settings(executor="ray"), folder))
    ray.shutdown()
    local, clustered = statistics.median(local_s), statistics.median(ray_s)
    result = {
        "files": args.files,
        "runs": args.runs,
        "ray_start_s": round(ray_start, 2),
        "local_s": round(local, 3),
        "ray_s": round(clustered, 3),
        "local_files_per_s": round(args.files / local, 1),
        "ray_files_per_s": round(args.files / clustered, 1),
        "ray_overhead_ms_per_file": round((clustered - local) / args.files * 1000, 2),
        "ratio_ray_to_local": round(clustered / local, 2),
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "cluster.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
