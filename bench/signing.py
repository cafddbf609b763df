"""Signing benchmarks, in one run:

1. tamper rejection: N generated tamper cases (default 2,000) over a signed folder, every kind in
   tests/supplychain/tamper.py; each must be rejected. Plus copies/moves that must verify.
2. hashing throughput on a folder of several GB: bastion's signing (`bastion sign`) and the
   model_signing CLI (`model_signing sign key`), whole process, median of --runs, against this
   machine's limit (cores x single-core SHA-256 speed measured here).

    python bench/signing.py [--cases 2000] [--gib 4] [--runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import OUT, ROOT

sys.path.insert(0, str(ROOT / "tests"))


def tamper_rejection(cases: int, workdir: Path) -> dict[str, object]:
    from supplychain.keys import write_key_pair
    from supplychain.tamper import TAMPERS

    from bastion.supplychain.signing import Credentials, sign, verify

    workdir.mkdir(parents=True, exist_ok=True)
    private, public = write_key_pair(workdir)
    model = workdir / "model"
    (model / "sub").mkdir(parents=True)
    rng = random.Random(1)
    for index in range(6):
        (model / f"shard-{index}.bin").write_bytes(rng.randbytes(rng.randint(1, 64_000)))
    (model / "config.json").write_text('{"layers": 4}')
    (model / "sub" / "tokenizer.json").write_text('{"vocab": ["a"]}')
    sign(model, Credentials(key=private))
    kinds = sorted(TAMPERS)
    accepted: list[str] = []
    per_kind = {kind: 0 for kind in kinds}
    started = time.perf_counter()
    for case in range(cases):
        kind = kinds[case % len(kinds)]
        copy = workdir / "case" / "model"
        shutil.rmtree(copy.parent, ignore_errors=True)
        shutil.copytree(model, copy, symlinks=True)
        what = TAMPERS[kind](copy, copy / "model.sig", random.Random(case))
        per_kind[kind] += 1
        if verify(copy, Credentials(key=public)).ok:
            accepted.append(f"{kind}: {what}")
    controls = 0
    for case in range(100):
        target = workdir / "controls" / f"copy{case}" / "model"
        shutil.copytree(model, target)
        if case % 2:
            moved = target.parent / "moved"
            target.rename(moved)
            target = moved
        controls += verify(target, Credentials(key=public)).ok
    return {
        "cases": cases,
        "rejected": cases - len(accepted),
        "accepted": accepted[:10],
        "per_kind": per_kind,
        "move_copy_controls": 100,
        "controls_verified": controls,
        "seconds": round(time.perf_counter() - started, 1),
    }


def single_core_sha256() -> float:
    buffer = os.urandom(256 * 1024 * 1024)
    best = 0.0
    for _ in range(3):
        began = time.perf_counter()
        hashlib.sha256(buffer).digest()
        best = max(best, len(buffer) / (time.perf_counter() - began))
    return best


def hashing_throughput(gib: int, runs: int, workdir: Path) -> dict[str, object]:
    from supplychain.keys import write_key_pair

    workdir.mkdir(parents=True, exist_ok=True)
    private, _public = write_key_pair(workdir, "bench")
    folder = workdir / "big"
    folder.mkdir()
    block = os.urandom(64 * 1024 * 1024)
    for index in range(gib):
        with (folder / f"part-{index}.bin").open("wb") as handle:
            for _ in range(16):
                handle.write(block)
    total = sum(p.stat().st_size for p in folder.iterdir())
    for path in folder.iterdir():  # warm the page cache: measure hashing, not the disk
        with path.open("rb") as handle:
            while handle.read(1 << 24):
                pass
    bin_dir = Path(sys.executable).parent
    commands = {
        "bastion sign": [
            str(bin_dir / "bastion"),
            "sign",
            str(folder),
            "--key",
            str(private),
            "--signature",
            str(workdir / "b.sig"),
        ],
        "bastion sign --shards": [
            str(bin_dir / "bastion"),
            "sign",
            str(folder),
            "--key",
            str(private),
            "--signature",
            str(workdir / "s.sig"),
            "--shards",
        ],
        "model_signing sign key": [
            str(bin_dir / "model_signing"),
            "sign",
            "key",
            str(folder),
            "--private_key",
            str(private),
            "--signature",
            str(workdir / "m.sig"),
        ],
    }
    core = single_core_sha256()
    cores = os.cpu_count() or 1
    limit = core * cores
    import model_signing

    from bastion.supplychain.signing import _hashing

    hashing = {}
    for name, work in (
        (
            "bastion hashing (in process)",
            lambda: _hashing(folder, folder / "model.sig").hash(folder),
        ),
        ("model_signing hashing (in process)", lambda: model_signing.hashing.Config().hash(folder)),
    ):
        times = []
        for _ in range(runs):
            began = time.perf_counter()
            work()
            times.append(time.perf_counter() - began)
        seconds = statistics.median(times)
        hashing[name] = {
            "seconds": round(seconds, 2),
            "mb_s": round(total / seconds / 1e6, 1),
            "of_limit": round(total / seconds / limit, 3),
        }
    rows = dict(hashing)
    for name, command in commands.items():
        times = []
        for _ in range(runs):
            began = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times.append(time.perf_counter() - began)
        seconds = statistics.median(times)
        rows[name] = {
            "seconds": round(seconds, 2),
            "mb_s": round(total / seconds / 1e6, 1),
            "of_limit": round(total / seconds / limit, 3),
        }
    return {
        "bytes": total,
        "cores": cores,
        "single_core_mb_s": round(core / 1e6, 1),
        "limit_mb_s": round(limit / 1e6, 1),
        "tools": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--gib", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=OUT if OUT.exists() else None) as tmp:
        work = Path(tmp)
        tamper = tamper_rejection(args.cases, work / "tamper")
        print(
            f"tamper: {tamper['rejected']}/{tamper['cases']} rejected; move/copy controls "
            f"{tamper['controls_verified']}/100 verified",
            file=sys.stderr,
        )
        hashing = hashing_throughput(args.gib, args.runs, work / "hash")
    result = {"tamper": tamper, "hashing": hashing}
    OUT.mkdir(exist_ok=True)
    (OUT / "signing.json").write_text(json.dumps(result, indent=1))
    print(
        f"| case | result |\n|---|---|\n| tamper cases rejected | {tamper['rejected']}/"
        f"{tamper['cases']} |\n| move/copy controls verified | "
        f"{tamper['controls_verified']}/100 |"
    )
    print(
        f"\n{hashing['bytes'] / 2**30:.1f} GiB, {hashing['cores']} cores, single-core "
        f"SHA-256 {hashing['single_core_mb_s']} MB/s, limit {hashing['limit_mb_s']} MB/s\n"
    )
    print("| what | median time | throughput | share of the machine limit |")
    print("|---|---|---|---|")
    for name, row in hashing["tools"].items():  # type: ignore[attr-defined]
        print(f"| {name} | {row['seconds']} s | {row['mb_s']} MB/s | {row['of_limit']:.0%} |")
    return 0 if tamper["rejected"] == tamper["cases"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
