"""The evidence tables (store migration 3): findings rows, the digests a run saw, links, and
the backfill of runs recorded before the migration."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from bastion.config import Settings, WaiverSpec
from bastion.findings import Location, Report, Severity, TargetResult, ToolInfo
from bastion.policy import evaluate
from bastion.runs import LIMIT_HIT
from bastion.store import MIGRATIONS, Link, Seen, Store


def _report(*paths: str, severity: Severity = Severity.HIGH) -> Report:
    results = tuple(
        TargetResult(
            path=p,
            findings=(
                LIMIT_HIT.finding(Location(path=p), f"limit in {p}", evidence=p, severity=severity),
            ),
        )
        for p in paths
    )
    return Report(
        tool=ToolInfo(version="0"),
        targets=paths,
        results=results,
        metadata={"started_at": "2026-01-02T03:04:05+00:00"},
    )


def test_findings_rows_carry_the_verdict_and_the_digest(tmp_path: Path) -> None:
    report = _report("a.pkl", "b.pkl")
    waiver = WaiverSpec(rule="LIM001", path="b.pkl", reason="known", expires=dt.date(2999, 1, 1))
    verdict = evaluate(report, Settings(waivers=(waiver,)))
    seen = [Seen(digest="sha256:" + "a" * 64, kind="model", role="subject", path="a.pkl")]
    with Store(tmp_path / "h.db") as store:
        run = store.record(report, verdict, seen)
        rows = {f.path: f for f in store.findings(run_id=run)}
        assert rows["a.pkl"].gate == "failing" and rows["a.pkl"].digest == seen[0].digest
        assert rows["b.pkl"].gate == "waived" and rows["b.pkl"].digest is None
        assert rows["a.pkl"].severity is Severity.HIGH
        assert [e.run_id for e in store.evidence(seen[0].digest)] == [run]
        assert store.evidence(seen[0].digest, command="verify") == []
        assert store.seen_by(run) == seen
        assert store.artifact(seen[0].digest).kind == "model"  # type: ignore[union-attr]
        assert store.rule_evidence()["LIM001"].findings == 2


def test_findings_page_and_filter(tmp_path: Path) -> None:
    with Store(tmp_path / "h.db") as store:
        for i in range(5):
            report = _report(f"m{i}.pkl", severity=Severity.LOW if i % 2 else Severity.HIGH)
            store.record(report, evaluate(report, Settings()))
        high = store.findings(min_severity=Severity.HIGH)
        assert [f.path for f in high] == ["m4.pkl", "m2.pkl", "m0.pkl"]
        page = store.findings(limit=2)
        rest = store.findings(limit=10, before_id=page[-1].id)
        assert [f.path for f in page + rest] == [f"m{i}.pkl" for i in range(4, -1, -1)]
        assert store.findings(rule_ids=[]) == []
        assert len(store.findings(rule_ids=["LIM001"], stage="artifact")) == 5


def test_links_are_not_repeated_and_read_both_ways(tmp_path: Path) -> None:
    a, b = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    link = Link(recorded_at="2026-01-01T00:00:00+00:00", upstream=a, downstream=b, relation="x")
    with Store(tmp_path / "h.db") as store:
        first = store.add_links([link])
        assert store.add_links([link]) == first
        assert store.links(b, "upstream")[0].upstream == a
        assert store.links(a, "upstream") == []
        assert store.links(a, "downstream")[0].downstream == b


def test_migration_backfills_findings_of_older_runs(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    report = _report("old.pkl")
    verdict = evaluate(report, Settings())
    with sqlite3.connect(path) as db:  # a store written by a bastion with two migrations
        for script in MIGRATIONS[:2]:
            db.executescript(script)
        db.execute("PRAGMA user_version = 2")
        db.execute(
            "INSERT INTO runs (started_at, command, targets, status, exit_code, findings, "
            "counts, report, verdict) VALUES ('t', 'scan', 'old.pkl', 'failed', 1, 1, '{}', ?, ?)",
            (report.model_dump_json(), verdict.model_dump_json()),
        )
    with Store(path) as store:
        (row,) = store.findings()
        assert (row.rule_id, row.path, row.gate, row.severity) == (
            "LIM001",
            "old.pkl",
            "failing",
            Severity.HIGH,
        )
        assert row.fingerprint == report.findings[0].fingerprint
