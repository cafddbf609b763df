"""Run every atheris harness: a fixed, seeded number of inputs (CI: reproducible, so a run
that passes here passes there) or a time budget (`make fuzz`, exploratory).

Seeds: each target's own, plus every file of the test suite's labelled corpus
(tests/corpus: malicious and benign samples built by the real libraries) that identifies as the
target's format. With --corpus DIR, what the fuzzer finds is kept in DIR/<target> and fed back
next time (`make fuzz` keeps .fuzz-corpus/); CI runs without it, so its runs stay reproducible.
Exit status is non-zero if any harness found a crash."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent


MAX_SEED_BYTES = 256 * 1024


def corpus_seeds(root: Path, formats: set[str]) -> dict[str, Path]:
    """Folders of test-corpus files by identified format ("" = every file)."""
    sys.path.insert(0, str(HERE.parent))
    from bastion.scan.identify import identify
    from tests.corpus import build_benign, build_malicious

    built = root / "built"
    built.mkdir()
    for builder in (build_malicious, build_benign):
        try:
            builder(built)
        except Exception as exc:  # a sample needing a missing extra: seed with the rest
            print(f"fuzz: test corpus partly built ({type(exc).__name__}: {exc})", file=sys.stderr)
    folders = {fmt: root / (fmt or "all") for fmt in formats}
    for folder in folders.values():
        folder.mkdir()
    for index, path in enumerate(sorted(p for p in built.rglob("*") if p.is_file())):
        data = path.read_bytes()
        if len(data) > MAX_SEED_BYTES:
            continue
        fmt = identify(data[:1024], len(data))
        for wanted in (fmt, ""):
            if wanted in folders:
                (folders[wanted] / f"corpus{index}").write_bytes(data)
    return folders


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=0, help="time budget per parser")
    parser.add_argument("--runs", type=int, default=0, help="inputs per parser (seeded)")
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument(
        "--corpus",
        type=Path,
        help="persistent corpus folder (kept between runs, one sub-folder per target)",
    )
    parser.add_argument("targets", nargs="*", help="parsers to fuzz (default: all)")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from targets import RUNS_CAP, TARGETS

    names = args.targets or sorted(TARGETS)
    seeds_root = Path(tempfile.mkdtemp(prefix="bastion-fuzz-corpus-"))
    test_seeds = corpus_seeds(seeds_root, {TARGETS[name][0] for name in names})
    failed = []
    for name in names:
        budget = (
            [f"-runs={min(args.runs, RUNS_CAP.get(name, args.runs))}", f"-seed={args.seed}"]
            if args.runs
            else [f"-max_total_time={args.seconds or 20}"]
        )
        folders = [str(test_seeds[TARGETS[name][0]])]
        if args.corpus:
            kept = args.corpus / name
            kept.mkdir(parents=True, exist_ok=True)
            folders.insert(0, str(kept))
        cmd = [
            sys.executable,
            str(HERE / "fuzz_one.py"),
            name,
            *budget,
            "-rss_limit_mb=3072",
            "-timeout=20",
            "-print_final_stats=1",
            f"-artifact_prefix={HERE}/crash-{name}-",
            *folders,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        runs = next(
            (
                line.split(":")[-1].strip()
                for line in proc.stderr.splitlines()
                if "stat::number_of_executed_units" in line
            ),
            "?",
        )
        status = "ok" if proc.returncode == 0 else f"CRASH (exit {proc.returncode})"
        print(f"fuzz {name:12} {runs:>8} inputs  {status}", file=sys.stderr)
        if proc.returncode != 0:
            failed.append(name)
            print(proc.stderr[-4000:], file=sys.stderr)
    print(f"fuzz: {len(names) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
