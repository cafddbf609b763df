"""The payloads-as-data search of the pickle scanner on large string columns: bastion before and
after the bulk pre-filter (scan/embedded_filter.py), interleaved, medians of -n runs.

    python bench/embedded_scan.py [--rows 1000000] [-n 5] [--before 88f0b50^]

Files (written once under bench/out/embedded_scan/, pickle protocol 5, pandas 3):

- arrow_str: pd.DataFrame({"s": pd.array([f"value {i}" ...], dtype="str")}), an Arrow string
  column (20 MB at 1M rows): its values reach the search through arrow_layout;
- object_str: the same values as an object column: they reach it through the data walk;
- arrow_uuid: UUIDs as an Arrow string column (values of the base64 class, 36 characters: the
  text pattern, not the length, has to leave them out);
- arrow_planted: arrow_str with a base64 pickle that runs `posix.system` at row --row (the
  detection must survive: both versions report it, the new one names the row).

Measured, each in a fresh child process (python -c, bastion imported from the tree under test,
import time not counted): the scan of the file (scan_source, as `bastion scan` runs it), wall and
CPU seconds and the child's peak RSS (VmHWM); runs alternate between the two trees so that the
machine's load (it is shared) falls on both alike. Then, in this process, the search alone on
the 1M values of arrow_str (bytes, as arrow_layout cuts them): the per-value path
(worth_decoding, then payloads_in on what passes) against payload_candidates and the same
per-value path on the candidates. The "before" tree is `git archive <rev> src` of this repository.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import pickle
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out" / "embedded_scan"
PYTHON = ROOT / ".venv" / "bin" / "python"

WORKER = r"""
import json, sys, time
from pathlib import Path
from bastion.config import Limits
from bastion.scan.engine import scan_source
from bastion.scan.source import bytes_source
data = Path(sys.argv[1]).read_bytes()
wall, cpu = time.perf_counter(), time.process_time()
result = scan_source(bytes_source(data, "frame.pkl"), Limits())
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
print(json.dumps({
    "wall": wall, "cpu": cpu,
    # VmHWM: this process's own peak (ru_maxrss would carry the parent's over fork + exec)
    "rss_mb": int(next(line for line in open("/proc/self/status")
                       if line.startswith("VmHWM")).split()[1]) / 1024,
    "findings": sorted({f"{f.rule_id} {f.evidence} {f.location.members[-1:]}"
                        for f in result.findings}),
    "incomplete": result.incomplete,
}))
"""


def build(rows: int, planted_row: int) -> dict[str, Path]:
    import pandas as pd

    sys.path.insert(0, str(ROOT / "tests"))
    from corpus import opcodes as op

    OUT.mkdir(parents=True, exist_ok=True)
    values = [f"value {i}" for i in range(rows)]
    planted = list(values)
    planted[planted_row] = base64.b64encode(op.system_call("echo bastion")).decode()
    import uuid

    frames: dict[str, Any] = {
        "arrow_str": lambda: pd.DataFrame({"s": pd.array(values, dtype="str")}),
        "object_str": lambda: pd.DataFrame({"s": pd.array(values, dtype=object)}),
        "arrow_uuid": lambda: pd.DataFrame(
            {"s": pd.array([str(uuid.UUID(int=i * 7919)) for i in range(rows)], dtype="str")}
        ),
        "arrow_planted": lambda: pd.DataFrame({"s": pd.array(planted, dtype="str")}),
    }
    paths = {}
    for name, make in frames.items():
        path = OUT / f"{name}_{rows}.pkl"
        if not path.exists():
            path.write_bytes(pickle.dumps(make(), protocol=5))
        paths[name] = path
    return paths


def before_tree(rev: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def run(src: Path, path: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [str(PYTHON), "-c", WORKER, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def search_alone(path: Path, n: int) -> dict[str, list[float]]:
    """CPU seconds of the search on the Arrow column's values, per-value path vs bulk."""
    import array

    import pyarrow as pa

    from bastion.scan.embedded import payloads_in, worth_decoding
    from bastion.scan.embedded_filter import payload_candidates

    frame = pickle.loads(path.read_bytes())
    column = pa.array(frame["s"].array).cast(pa.large_binary())
    offsets = column.buffers()[1].to_pybytes()
    data = column.buffers()[2].to_pybytes()

    bounds = array.array("q", offsets).tolist()
    limit = 1 << 30

    def per_value() -> int:
        found = 0
        for i in range(len(bounds) - 1):
            if bounds[i + 1] - bounds[i] >= 12:
                value = data[bounds[i] : bounds[i + 1]]
                if worth_decoding(value) and payloads_in(value, limit):
                    found += 1
        return found

    def bulk() -> int:
        values = [data[a:b] for a, b in itertools.pairwise(bounds)]
        return sum(
            1
            for i in payload_candidates(values)
            if worth_decoding(values[i]) and payloads_in(values[i], limit)
        )

    times: dict[str, list[float]] = {"per-value": [], "bulk": []}
    for _ in range(n):
        for name, fn in (("per-value", per_value), ("bulk", bulk)):
            started = time.process_time()
            fn()
            times[name].append(time.process_time() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--row", type=int, default=123_456, help="row of the planted payload")
    parser.add_argument("-n", type=int, default=5)
    parser.add_argument("--before", default="88f0b50^", help="git revision before the filter")
    parser.add_argument("--files", default="arrow_str,object_str,arrow_uuid,arrow_planted")
    args = parser.parse_args()
    paths = build(args.rows, min(args.row, args.rows - 1))
    print(f"load average {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"before": before_tree(args.before, Path(tmp)), "after": ROOT / "src"}
        for name in args.files.split(","):
            runs: dict[str, list[dict[str, Any]]] = {tree: [] for tree in trees}
            for _ in range(args.n):
                for tree, src in trees.items():
                    runs[tree].append(run(src, paths[name]))
            for tree, results in runs.items():
                wall = statistics.median(r["wall"] for r in results)
                cpu = statistics.median(r["cpu"] for r in results)
                rss = max(r["rss_mb"] for r in results)
                print(
                    f"{name:14} {tree:6} scan median wall {wall:6.2f} s, CPU {cpu:6.2f} s "
                    f"(wall min {min(r['wall'] for r in results):.2f}, "
                    f"max {max(r['wall'] for r in results):.2f}; n={len(results)}), "
                    f"peak RSS {rss:.0f} MB, findings {results[0]['findings']}"
                    + (", incomplete" if results[0]["incomplete"] else "")
                )
    times = search_alone(paths["arrow_str"], args.n)
    for name, values in times.items():
        print(
            f"search alone, {args.rows} Arrow values, {name:9}: median CPU "
            f"{statistics.median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f})"
        )
    print(f"load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
