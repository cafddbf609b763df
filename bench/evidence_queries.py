"""Evidence queries on a history store at scale: compliance report generation per framework,
the release gate, lineage, and the store's own queries, with the store's size.

    python bench/store_scale.py --runs 10000 --findings 1000000 --out PATH   # the store
    python bench/evidence_queries.py --store PATH [--repeat 5]

Each figure is the median (and max) of --repeat runs in this process, after one warm-up run
(SQLite's page cache warm, as in a long-running dashboard; the first run is printed apart)."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bastion.config import Settings  # noqa: E402
from bastion.findings import Severity  # noqa: E402
from bastion.lineage import compliance  # noqa: E402
from bastion.lineage.gate import decide  # noqa: E402
from bastion.lineage.graph import lineage  # noqa: E402
from bastion.store import Store  # noqa: E402


def timed(work: Callable[[], object], repeat: int) -> tuple[float, float, float]:
    """(first, median, max) in milliseconds."""
    began = time.perf_counter()
    work()
    first = (time.perf_counter() - began) * 1000
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        work()
        times.append((time.perf_counter() - began) * 1000)
    return first, statistics.median(times), max(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--store", type=Path, default=ROOT / "bench" / "out" / "store_scale" / "history.sqlite3"
    )
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    if not args.store.is_file():
        sys.exit(f"no store at {args.store}: run bench/store_scale.py first")
    size = sum(p.stat().st_size for p in args.store.parent.glob(args.store.name + "*"))
    rows: list[tuple[str, tuple[float, float, float]]] = []
    with Store(args.store) as store:
        counts = store.counts()
        model = store.artifacts(kind="model", limit=1)[0].digest
        out = Path(tempfile.mkdtemp())
        for key in compliance.FRAMEWORKS:

            def report(key: str = key) -> None:
                built = compliance.build(store, key)
                (out / f"{key}.html").write_text(compliance.render_html(built), "utf-8")

            rows.append((f"compliance report {key} (build + HTML)", timed(report, args.repeat)))
        rows.append(
            ("rule evidence (GROUP BY rule over findings)", timed(store.rule_evidence, args.repeat))
        )
        rows.append(
            (
                "findings page: severity >= high, newest 50",
                timed(lambda: store.findings(min_severity=Severity.HIGH, limit=50), args.repeat),
            )
        )
        rows.append(
            (
                "findings page: one rule, newest 50",
                timed(lambda: store.findings(rule_ids=["PKL001"], limit=50), args.repeat),
            )
        )
        rows.append(
            (
                "findings page: stage data, 20 pages deep",
                timed(
                    lambda: _deep(store),
                    args.repeat,
                ),
            )
        )
        rows.append(
            ("evidence of one model digest", timed(lambda: store.evidence(model), args.repeat))
        )
        rows.append(
            ("lineage graph of one model", timed(lambda: lineage(store, model), args.repeat))
        )
        settings = Settings()
        rows.append(
            (
                "release gate of one model",
                timed(lambda: decide(store, model, settings), args.repeat),
            )
        )
    print(
        f"store {args.store}: {counts['runs']:,} runs, {counts['findings']:,} findings, "
        f"{counts['artifacts']:,} artifacts, {counts['links']:,} links; {size / 1e6:,.0f} MB"
    )
    print(f"{'query':52} {'first ms':>9} {'median ms':>10} {'max ms':>8}")
    for name, (first, median, worst) in rows:
        print(f"{name:52} {first:9.1f} {median:10.1f} {worst:8.1f}")
    return 0


def _deep(store: Store) -> None:
    before = None
    for _ in range(20):
        page = store.findings(stage="data", limit=50, before_id=before)
        if not page:
            return
        before = page[-1].id


if __name__ == "__main__":
    raise SystemExit(main())
