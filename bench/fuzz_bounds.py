"""Bounds: for every parser, N mutated inputs (default 10,000) through the real scanner entry
point under the scan workers' address-space limit. Counts uncaught exceptions (scanner errors),
records the slowest input and the peak RSS, and fails (exit 1) when an input escapes a scanner,
takes longer than --max-seconds (2) or the process's peak RSS passes --max-rss-mb (512): the
bounds issue #7 sets for every fuzzed input.

    python bench/fuzz_bounds.py [--inputs 10000]     # writes bench/out/fuzz_bounds.json
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import struct
import sys
import time

from common import OUT, ROOT

sys.path.insert(0, str(ROOT / "fuzz"))


def mutate(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 8)):
        choice = rng.random()
        if not data:
            data += rng.randbytes(rng.randint(1, 32))
        elif choice < 0.3:
            pos = rng.randrange(len(data))
            data[pos] = rng.randrange(256)
        elif choice < 0.45:
            del data[rng.randrange(len(data)) :]
        elif choice < 0.6:
            pos = rng.randrange(len(data) + 1)
            data[pos:pos] = rng.randbytes(rng.randint(1, 64))
        elif choice < 0.75 and len(data) >= 8:
            pos = rng.randrange(len(data) - 7)
            value = rng.choice(
                [0, 1, 2**31 - 1, 2**32 - 1, 2**63 - 1, 2**64 - 1, rng.randrange(2**64)]
            )
            data[pos : pos + 8] = struct.pack("<Q", value)
        elif choice < 0.9:
            start = rng.randrange(len(data))
            chunk = data[start : start + rng.randint(1, 256)]
            pos = rng.randrange(len(data) + 1)
            data[pos:pos] = chunk * rng.randint(1, 8)
        else:
            pos = rng.randrange(len(data))
            data[pos] ^= 1 << rng.randrange(8)
    return bytes(data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--parsers", nargs="*", help="Only these parsers [default: all].")
    parser.add_argument("--max-seconds", type=float, default=2.0)
    parser.add_argument("--max-rss-mb", type=float, default=512.0)
    args = parser.parse_args()
    limit = 3 * 1024**3
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from targets import TARGETS, ScannerCrash, run

    rng = random.Random(args.seed)
    report = {}
    for name, (fmt, filename, seeds) in sorted(TARGETS.items()):
        if args.parsers and name not in args.parsers:
            continue
        corpus = seeds()
        crashes: list[str] = []
        slowest = (0.0, b"")
        started = time.perf_counter()
        for _ in range(args.inputs):
            data = mutate(rng, rng.choice(corpus))
            began = time.perf_counter()
            try:
                run(fmt, filename, data)
            except ScannerCrash as exc:
                crashes.append(str(exc)[:200])
            except Exception as exc:  # escaped the scanner entirely
                crashes.append(f"uncaught {type(exc).__name__}: {exc}"[:200])
            took = time.perf_counter() - began
            if took > slowest[0]:
                slowest = (took, data)
        report[name] = {
            "inputs": args.inputs,
            "uncaught": len(crashes),
            "examples": crashes[:3],
            "slowest_s": round(slowest[0], 4),
            "slowest_size": len(slowest[1]),
            "slowest_head_hex": slowest[1][:48].hex(),
            "total_s": round(time.perf_counter() - started, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        print(
            f"{name:12} {args.inputs} inputs  uncaught={len(crashes)}  slowest="
            f"{slowest[0] * 1000:.1f} ms  peak RSS={report[name]['peak_rss_mb']} MB",
            file=sys.stderr,
        )
    OUT.mkdir(exist_ok=True)
    (OUT / "fuzz_bounds.json").write_text(json.dumps(report, indent=1))
    print("| parser | inputs | uncaught exceptions | slowest input | peak RSS (cumulative) |")
    print("|---|---|---|---|---|")
    for name, row in report.items():
        print(
            f"| {name} | {row['inputs']} | {row['uncaught']} | {row['slowest_s'] * 1000:.1f} ms"
            f" | {row['peak_rss_mb']} MB |"
        )
    over = [
        name
        for name, row in report.items()
        if row["uncaught"]
        or row["slowest_s"] > args.max_seconds
        or row["peak_rss_mb"] > args.max_rss_mb
    ]
    print(
        f"bounds: {args.max_seconds:g} s and {args.max_rss_mb:g} MB per input; "
        f"{'exceeded by ' + ', '.join(over) if over else 'all parsers within them'}",
        file=sys.stderr,
    )
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main())
