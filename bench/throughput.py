"""Throughput and memory: bastion against each peer on the same large files, in the same run.
Whole-process wall time and peak RSS, median of --runs runs (default 3).

    python bench/throughput.py [--runs 3]     # writes bench/out/throughput.json

Files (generated once under bench/out/throughput/):
  torch_1g.pt            ~1 GB PyTorch zip checkpoint (16 float32 tensors)
  model_1g.safetensors   the same tensors as safetensors
  ops_50m.pkl            ~52 MB pickle, 2 million tuples, ~12 million opcodes
  ops_50m_evil.pkl       the same with an os.system payload as the very last element
  joblib_1g.joblib       ~1 GB joblib file holding one float64 array
  joblib_1g_evil.joblib  the same with a payload stored after the array
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
from pathlib import Path

from common import OUT, TOOLS, ensure_peers, median, timed

MARK = "echo BASTION_POC"


class _Payload:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (MARK,))


def generate(folder: Path) -> dict[str, tuple[Path, bool]]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "torch_1g.pt": False,
        "model_1g.safetensors": False,
        "ops_50m.pkl": False,
        "ops_50m_evil.pkl": True,
        "joblib_1g.joblib": False,
        "joblib_1g_evil.joblib": True,
    }
    paths = {name: (folder / name, evil) for name, evil in files.items()}
    if all(p.exists() for p, _ in paths.values()):
        return paths
    import joblib
    import numpy as np
    import torch
    from safetensors.torch import save_file

    tensors = {f"layer{i}.weight": torch.full((4096, 4096), float(i)) for i in range(16)}
    torch.save(tensors, paths["torch_1g.pt"][0])
    save_file(tensors, str(paths["model_1g.safetensors"][0]))
    del tensors
    rows = [(i, float(i), f"s{i}") for i in range(2_000_000)]
    paths["ops_50m.pkl"][0].write_bytes(pickle.dumps(rows, protocol=4))
    paths["ops_50m_evil.pkl"][0].write_bytes(pickle.dumps([*rows, _Payload()], protocol=4))
    del rows
    array = np.arange(134_217_728, dtype=np.float64)
    joblib.dump({"weights": array}, paths["joblib_1g.joblib"][0])
    joblib.dump({"weights": array, "hook": _Payload()}, paths["joblib_1g_evil.joblib"][0])
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--tools", nargs="*", default=list(TOOLS))
    parser.add_argument("--files", nargs="*", help="Only these files (names as listed above).")
    parser.add_argument("--output", default=str(OUT / "throughput.json"))
    args = parser.parse_args()
    ensure_peers()
    paths = generate(OUT / "throughput")
    results = []
    for name, (path, evil) in paths.items():
        if args.files and name not in args.files:
            continue
        size_mb = path.stat().st_size / 2**20
        by_tool: dict[str, list] = {tool: [] for tool in args.tools}  # type: ignore[type-arg]
        for _ in range(args.runs):  # tools alternate, so machine noise falls on all of them
            for tool in args.tools:
                by_tool[tool].append(timed([*TOOLS[tool], str(path)], timeout=args.timeout))
        for tool, runs in by_tool.items():
            codes = sorted({r.exit_code for r in runs})
            row = {
                "file": name,
                "size_mb": round(size_mb, 1),
                "malicious": evil,
                "tool": tool,
                "wall_s": round(median([r.wall_s for r in runs]), 3),
                "peak_rss_mb": round(median([r.peak_rss_mb for r in runs]), 1),
                "exit_codes": codes,
                "timed_out": any(r.timed_out for r in runs),
                "correct": all((r.exit_code == 1) == evil and r.exit_code in (0, 1) for r in runs),
            }
            results.append(row)
            print(
                f"{name:24} {tool:11} {row['wall_s']:8.3f}s {row['peak_rss_mb']:8.1f}MB "
                f"exit={codes} correct={row['correct']}",
                file=sys.stderr,
            )
    Path(args.output).write_text(json.dumps(results, indent=1))
    print_table(results)
    return 0


def print_table(results: list[dict]) -> None:  # type: ignore[type-arg]
    print(
        "| file | tool | wall (median) | peak RSS | verdict correct | exit codes | "
        "time vs bastion |"
    )
    print("|---|---|---|---|---|---|---|")
    base = {r["file"]: r["wall_s"] for r in results if r["tool"] == "bastion"}
    for r in results:
        ratio = r["wall_s"] / base[r["file"]] if base.get(r["file"]) else float("nan")
        timeout = " (timeout)" if r["timed_out"] else ""
        print(
            f"| {r['file']} | {r['tool']} | {r['wall_s']:.2f} s{timeout} | "
            f"{r['peak_rss_mb']:.0f} MB | {'yes' if r['correct'] else 'no'} | "
            f"{r['exit_codes']} | {ratio:.1f}× |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
