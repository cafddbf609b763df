"""Interleaved start-up comparison on one file: bastion and one peer alternately, N runs each,
whole-process wall time, medians. (Alternating spreads machine noise evenly over both.)

    python bench/startup.py [--file bench/out/throughput/torch_1g.pt] [--peer picklescan] [-n 9]
"""

from __future__ import annotations

import argparse
import statistics

from common import OUT, TOOLS, ensure_peers, timed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--file", default=str(OUT / "throughput" / "torch_1g.pt"))
    parser.add_argument(
        "--peer", default="picklescan", choices=[t for t in TOOLS if t != "bastion"]
    )
    parser.add_argument("-n", type=int, default=9)
    args = parser.parse_args()
    ensure_peers()
    times: dict[str, list[float]] = {"bastion": [], args.peer: []}
    for _ in range(args.n):
        for tool in times:
            times[tool].append(timed([*TOOLS[tool], args.file]).wall_s)
    for tool, values in times.items():
        print(
            f"{tool:12} median {statistics.median(values):.3f} s  "
            f"(min {min(values):.3f}, max {max(values):.3f}, n={len(values)})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
