"""Run every atheris harness: a fixed, seeded number of inputs (CI: reproducible, so a run
that passes here passes there) or a time budget (`make fuzz`, exploratory).
Exit status is non-zero if any harness found a crash."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=0, help="time budget per parser")
    parser.add_argument("--runs", type=int, default=0, help="inputs per parser (seeded)")
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("targets", nargs="*", help="parsers to fuzz (default: all)")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from targets import TARGETS

    names = args.targets or sorted(TARGETS)
    failed = []
    for name in names:
        budget = [f"-runs={args.runs}", f"-seed={args.seed}"] if args.runs else \
            [f"-max_total_time={args.seconds or 20}"]
        cmd = [sys.executable, str(HERE / "fuzz_one.py"), name, *budget, "-rss_limit_mb=3072",
               "-timeout=20", "-print_final_stats=1", f"-artifact_prefix={HERE}/crash-{name}-"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        runs = next((line.split(":")[-1].strip() for line in proc.stderr.splitlines()
                     if "stat::number_of_executed_units" in line), "?")
        status = "ok" if proc.returncode == 0 else f"CRASH (exit {proc.returncode})"
        print(f"fuzz {name:12} {runs:>8} inputs  {status}", file=sys.stderr)
        if proc.returncode != 0:
            failed.append(name)
            print(proc.stderr[-4000:], file=sys.stderr)
    print(f"fuzz: {len(names) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
