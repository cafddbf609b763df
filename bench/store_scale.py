"""A history store at scale, written through bastion's own recording path, for the dashboard's
and the evidence queries' benchmarks: 10,000 runs holding 1,000,000 findings by default.

    python bench/store_scale.py [--runs 10000] [--findings 1000000] [--out FILE]

(default FILE: bench/out/store_scale/history.sqlite3)

Deterministic (random.Random(20261202)). Runs are spread over the last 365 days and the
commands a real history holds (scan, code, deps, data, verify, probe, guard); each run judges
one of 2,000 models (or 600 datasets for data runs) by content digest, so lineage and posture
queries have real work; 2,000 `trained-on` links join models to datasets. Findings use the real
rule catalogue (ids, stages, severities, taxonomy tags); one finding in a thousand carries the
markup the dashboard's tests plant (a `<script>` global, an `onerror` file name, a
`javascript:` URL). Every run goes through `Store.record` with a real `Report` and the
policy's `Verdict` (findings rows, per-run counts, digests seen), then the links through
`Store.add_links`: nothing is inserted behind the store's back. Prints the time taken, the
file size, and the row counts."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bastion.catalogue import all_rules  # noqa: E402
from bastion.config import Settings  # noqa: E402
from bastion.findings import (  # noqa: E402
    Finding,
    Location,
    Report,
    TargetResult,
    ToolInfo,
)
from bastion.policy import evaluate  # noqa: E402
from bastion.store import Link, Seen, Store  # noqa: E402
from bastion.version import __version__  # noqa: E402

SEED = 20261202
MODELS = 2_000
DATASETS = 600
COMMANDS = (
    ("scan", 0.45),
    ("code", 0.08),
    ("deps", 0.07),
    ("data", 0.15),
    ("verify", 0.10),
    ("probe", 0.08),
    ("guard", 0.07),
)
STAGES_OF = {
    "scan": ("artifact",),
    "code": ("code",),
    "deps": ("code",),
    "data": ("data",),
    "verify": ("artifact",),
    "probe": ("testing",),
    "guard": ("deployment", "monitoring"),
}
PLANTED = (
    "<script>window.bastion_xss_marker=1</script>",
    '<img src=x onerror="window.bastion_xss_marker=2">.pkl',
    "javascript:window.bastion_xss_marker=3",
)


def digest(kind: str, number: int) -> str:
    return "sha256:" + hashlib.sha256(f"{kind}-{number}".encode()).hexdigest()


def build(path: Path, runs: int, findings: int) -> dict[str, float]:
    rng = random.Random(SEED)
    rules = all_rules()
    by_stage: dict[str, list] = {}
    for rule in rules:
        by_stage.setdefault(rule.stage.value, []).append(rule)
    commands = [c for c, _ in COMMANDS]
    weights = [w for _, w in COMMANDS]
    settings = Settings()
    end = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
    per_run = findings / runs
    started = time.perf_counter()
    written = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    with Store(path) as store:
        for number in range(runs):
            command = rng.choices(commands, weights)[0]
            moment = end - dt.timedelta(seconds=(runs - number) * 365 * 86400 / runs)
            if command == "data":
                subject = digest("dataset", rng.randrange(DATASETS))
                kind, name = "dataset", f"data/train-{int(subject[7:11], 16) % DATASETS}.csv"
            else:
                subject = digest("model", rng.randrange(MODELS))
                kind, name = "model", f"models/model-{int(subject[7:11], 16) % MODELS}.pkl"
            # findings per run vary (most runs few, some many), totalling --findings
            remaining_runs = runs - number
            target = round((findings - written) / remaining_runs) if remaining_runs else 0
            count = max(0, min(findings - written, int(rng.expovariate(1 / max(target, 1)))))
            if number == runs - 1:
                count = findings - written
            stages = STAGES_OF[command]
            found = []
            for i in range(count):
                rule = rng.choice(by_stage.get(rng.choice(stages), rules))
                planted = PLANTED[i % 3] if rng.random() < 0.001 else ""
                found.append(
                    Finding(
                        rule_id=rule.id,
                        severity=rule.severity,
                        confidence=rule.confidence,
                        stage=rule.stage,
                        message=f"{rule.title} {planted}".strip(),
                        location=Location(path=name, pointer=f"offset {i}"),
                        evidence=f"{planted or 'value'} #{rng.randrange(10**6)}",
                        remediation="See the rule's page.",
                        tags=rule.tags,
                    )
                )
            written += count
            report = Report(
                tool=ToolInfo(version=__version__),
                command=command,
                targets=(name,),
                metadata={"started_at": moment.isoformat(timespec="seconds"), "policy": "bench"},
                results=(TargetResult(path=name, format="pickle", findings=tuple(found)),),
            )
            verdict = evaluate(report, settings)
            store.record(
                report, verdict, [Seen(digest=subject, kind=kind, role="subject", path=name)]
            )
            if number % 1000 == 999:
                print(
                    f"  {number + 1:,} runs, {written:,} findings, "
                    f"{time.perf_counter() - started:.0f} s",
                    file=sys.stderr,
                )
        when = end.isoformat(timespec="seconds")
        store.add_links(
            Link(
                recorded_at=when,
                upstream=digest("dataset", rng.randrange(DATASETS)),
                downstream=digest("model", m),
                relation="trained-on",
                attributes={"owner": f"team-{m % 7}"},
            )
            for m in range(MODELS)
        )
        counts = store.counts()
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 1),
        "bytes": path.stat().st_size,
        **{k: float(v) for k, v in counts.items()},
        "per_run": per_run,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--findings", type=int, default=1_000_000)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "out" / "store_scale" / "history.sqlite3"
    )
    args = parser.parse_args(argv)
    figures = build(args.out, args.runs, args.findings)
    print(
        f"store {args.out}: {int(figures['runs']):,} runs, {int(figures['findings']):,} "
        f"findings, {int(figures['artifacts']):,} artifacts, {int(figures['links']):,} links; "
        f"{figures['bytes'] / 1e6:,.0f} MB; written in {figures['seconds']} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
