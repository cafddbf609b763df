"""Latency of one audit append at a time (`AuditLog.append`, the default fsync durability), on
the disk that holds this checkout: back to back, or paced like requests (`--pace-ms`).

    python bench/guard_append_latency.py [--events 2000] [--pace-ms 0] [--durability fsync]

Run it once per checkout to compare two versions of guard/audit.py in alternating runs:
`PYTHONPATH=<other checkout>/src python bench/guard_append_latency.py`."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    from bastion.guard.audit import AuditEvent, AuditLog, utc_now

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--pace-ms", type=float, default=0.0, help="pause between appends")
    parser.add_argument("--durability", choices=("fsync", "process"), default="fsync")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(dir=ROOT / "bench"))
    took: list[float] = []
    try:
        log = AuditLog(folder / "audit.sqlite3", durability=args.durability)

        async def run() -> None:
            for _ in range(args.events):
                event = AuditEvent(
                    at=utc_now(),
                    key_id="abcdef123456",
                    tenant=None,
                    route="/v1/predict",
                    model_digest="sha256:" + "a" * 64,
                    input_digest="sha256:" + "b" * 64,
                    decisions={"auth": "allow", "model": "allow"},
                    status=200,
                    latency_ms=1.0,
                )
                started = time.perf_counter()
                await log.append(event)
                took.append(time.perf_counter() - started)
                if args.pace_ms:
                    await asyncio.sleep(args.pace_ms / 1000)

        try:
            asyncio.run(run())
        finally:
            log.close()
    finally:
        shutil.rmtree(folder)
    took.sort()
    n = len(took)
    print(
        f"{args.durability}, {n} appends, pace {args.pace_ms} ms: "
        f"p50 {took[n // 2] * 1e3:.3f} ms  p90 {took[int(n * 0.9)] * 1e3:.3f} ms  "
        f"p99 {took[int(n * 0.99)] * 1e3:.3f} ms  max {took[-1] * 1e3:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
