"""`bastion guard report`: audit chains and monitor alerts become a normal bastion Report that
the policy gate, the store and every renderer handle."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from bastion.config import Settings
from bastion.guard.audit import (
    AlertEvent,
    AuditEvent,
    AuditLog,
    input_digest,
    utc_now,
    worker_log_path,
)
from bastion.guard.checkpoints import generate_key
from bastion.guard.monitor import QueryMonitor, TrainingProfile
from bastion.guard.report import guard_report
from bastion.policy import evaluate

MODEL = "sha256:" + "cd" * 32


def request(n: int, *, key: str | None = "k1", status: int = 200, **decisions: str) -> AuditEvent:
    return AuditEvent(
        at=utc_now(),
        key_id=key,
        tenant=None,
        route="/v1/predict",
        model_digest=MODEL,
        input_digest=input_digest(f"{n}".encode()),
        decisions={"auth": "allow", "contract": "allow", **decisions},
        status=status,
        latency_ms=0.5 + n % 7,
    )


def sweep_alerts() -> list[AlertEvent]:
    """Real monitor alerts: a key sweeping one feature (a sweep: GRD104; the swept feature is
    an ordered window, left out of PRADA's distances), and a key sending training rows each
    followed by three small perturbations of it (synthetic queries in the manner of JbDA:
    PRADA's GRD101, and GRD102 for the recombined records)."""
    rng = np.random.default_rng(0)
    train = rng.normal(size=(500, 4))
    monitor = QueryMonitor(TrainingProfile.fit(train))
    rows = np.repeat(train[:1], 120, axis=0)
    rows[:, 2] = np.linspace(-3, 3, 120)
    alerts = []
    for i in range(len(rows)):
        alerts += monitor.observe("k-sweeper", rows[i : i + 1])
    assert [a.kind for a in alerts] == ["sweep"]
    synthetic = []
    for seed in train[rng.choice(len(train), 60, replace=False)]:
        synthetic.append(seed)
        synthetic += [seed + rng.choice([-0.05, 0.05], size=4) for _ in range(3)]
    for row in synthetic:
        alerts += monitor.observe("k-jbda", np.asarray(row)[None, :])
    assert {a.kind for a in alerts} >= {"sweep", "extraction"}
    return [AlertEvent.from_alert(a) for a in alerts]


@pytest.fixture
def evidence(tmp_path: Path) -> tuple[Path, Path]:
    """Two workers' chains: ordinary traffic, refusals, a redaction, and monitor alerts."""
    key, public = generate_key(tmp_path / "audit.key")
    folder = tmp_path / "audit"
    folder.mkdir()

    async def write(log: AuditLog, events: list[AuditEvent | AlertEvent]) -> None:
        for event in events:
            await log.append(event)

    one: list[AuditEvent | AlertEvent] = [request(i) for i in range(30)]
    one += [request(100 + i, key=None, status=401, auth="missing") for i in range(4)]
    one += [request(200 + i, key="k9", status=401, auth="revoked") for i in range(2)]
    two: list[AuditEvent | AlertEvent] = [request(300 + i, key="k2") for i in range(20)]
    two += [request(400, key="k2", sensitive="redact")]
    two += [request(401 + i, key="k3", status=429, key_limit="block") for i in range(3)]
    two += sweep_alerts()
    for worker, events in (("w1", one), ("w2", two)):
        with AuditLog(worker_log_path(folder, worker), signing_key=key) as log:
            asyncio.run(write(log, events))
    return folder, public


def by_rule(report: object) -> dict[str, list[object]]:
    found: dict[str, list[object]] = {}
    for finding in report.findings:  # type: ignore[attr-defined]
        found.setdefault(finding.rule_id, []).append(finding)
    return found


def test_report_from_audit_and_alerts(evidence: tuple[Path, Path]) -> None:
    folder, public = evidence
    report = guard_report(folder, Settings(), since="1h", public_key=public)
    assert report.command == "guard"
    assert [r.path for r in report.results] == ["audit-w1.sqlite3", "audit-w2.sqlite3"]
    rules = by_rule(report)
    assert set(rules) == {"GRD001", "GRD002", "GRD004", "GRD101", "GRD102", "GRD104"}
    auth = rules["GRD001"][0]
    assert "6 request(s)" in auth.message and "missing 4" in auth.message  # type: ignore[attr-defined]
    assert "revoked 2" in auth.message and "k9 (2)" in auth.message  # type: ignore[attr-defined]
    sweep = rules["GRD104"][0]
    assert sweep.location.pointer == "key k-sweeper"  # type: ignore[attr-defined]
    assert "fired" in sweep.message and sweep.severity.value == "medium"  # type: ignore[attr-defined]
    traffic = report.metadata["traffic"]
    assert traffic["requests"] == 60
    assert traffic["statuses"] == {"2xx": 51, "4xx": 9}
    assert traffic["workers"] == {"w1": 36, "w2": 24}
    assert set(traffic["latency_ms"]) == {"p50", "p90", "p99"}
    chains = report.metadata["audit"]["chains"]
    assert all(c["verified"] and c["signed_checkpoints"] > 0 for c in chains)
    # the policy gate works on it like on any report
    verdict = evaluate(report, Settings())
    assert verdict.exit_code == 1


def test_broken_or_unsigned_chain_is_a_finding(evidence: tuple[Path, Path]) -> None:
    folder, public = evidence
    unsigned = guard_report(folder, Settings(), since="1h")
    assert {f.rule_id for f in unsigned.findings} >= {"GRD202"}
    path = worker_log_path(folder, "w2")
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("DROP TRIGGER events_no_delete")
        conn.execute("DELETE FROM events WHERE seq = 5")
    report = guard_report(folder, Settings(), since="1h", public_key=public)
    broken = [f for f in report.findings if f.rule_id == "GRD201"]
    assert len(broken) == 1 and broken[0].severity.value == "critical"
    assert broken[0].location.path == "audit-w2.sqlite3"
    assert broken[0].location.pointer == "record 5"
    assert "record 5 missing" in broken[0].message


def test_since_limits_the_period(evidence: tuple[Path, Path]) -> None:
    folder, public = evidence
    later = __import__("datetime").datetime.now(__import__("datetime").timezone.utc).isoformat()
    report = guard_report(folder, Settings(), since=later, public_key=public)
    assert report.metadata["traffic"]["requests"] == 0
    assert not [f for f in report.findings if f.rule_id != "GRD202"]


def test_cli_renders_judges_and_stores(
    evidence: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bastion.cli.main import main

    folder, public = evidence
    store = tmp_path / "history.sqlite3"
    sarif = tmp_path / "guard.sarif"
    code = main(
        [
            "guard",
            "report",
            "--audit",
            str(folder),
            "--key",
            str(public),
            "--since",
            "24h",
            "-f",
            "sarif",
            "-o",
            str(sarif),
            "--store",
            str(store),
        ]
    )
    assert code == 1
    document = json.loads(sarif.read_text())
    results = document["runs"][0]["results"]
    assert {r["ruleId"] for r in results} == {
        "GRD001",
        "GRD002",
        "GRD004",
        "GRD101",
        "GRD102",
        "GRD104",
    }
    rule_ids = {r["id"] for r in document["runs"][0]["tool"]["driver"]["rules"]}
    assert {"GRD001", "GRD104"} <= rule_ids
    assert "FAIL" in capsys.readouterr().err
    with sqlite3.connect(store) as conn:
        assert conn.execute("SELECT command FROM runs").fetchall() == [("guard",)]
    assert (
        main(
            [
                "guard",
                "report",
                "--audit",
                str(folder),
                "--since",
                "all",
                "-f",
                "json",
                "--no-store",
            ]
        )
        == 1
    )
    payload = json.loads(capsys.readouterr().out)
    assert payload["command"] == "guard"
    assert main(["guard", "report", "--audit", str(folder), "--since", "soon"]) == 2
    assert "neither a duration" in capsys.readouterr().err


def test_quiet_period_passes(tmp_path: Path) -> None:
    key, public = generate_key(tmp_path / "k")
    with AuditLog(tmp_path / "audit-w1.sqlite3", signing_key=key) as log:
        for i in range(5):
            log.submit(request(i)).result(timeout=10)
    report = guard_report(tmp_path / "audit-w1.sqlite3", Settings(), public_key=public)
    assert report.findings == []
    assert evaluate(report, Settings()).exit_code == 0


def test_an_answered_request_counts_once_and_an_admission_alone_is_named(tmp_path: Path) -> None:
    """A request the model answered has an admission and an outcome that repeats its verdicts:
    the report counts it once. An admission with no outcome (the guard was killed while the
    model computed) is counted from its own verdicts and in `admitted_without_outcome`."""
    from bastion.guard.audit import AdmissionEvent

    def admitted(n: int, **decisions: str) -> AdmissionEvent:
        whole = request(n, **decisions)
        return AdmissionEvent(
            at=whole.at,
            key_id=whole.key_id,
            tenant=None,
            route=whole.route,
            model_digest=MODEL,
            input_digest=whole.input_digest,
            decisions=dict(whole.decisions),
        )

    path = tmp_path / "audit-w1.sqlite3"
    with AuditLog(path) as log:
        for i in range(3):  # answered: admission, then the outcome naming it
            seq = log.submit(admitted(i, ood="flag")).result(timeout=10)
            log.submit(request(i, ood="flag").model_copy({"admission": seq})).result(timeout=10)
        log.submit(admitted(9, ood="flag")).result(timeout=10)  # the guard died here
    report = guard_report(path, Settings())
    traffic = report.metadata["traffic"]
    assert traffic["requests"] == 3 and traffic["statuses"] == {"2xx": 3}
    assert traffic["admitted_without_outcome"] == 1
    ood = [f for f in report.findings if "ood" in f.message]
    assert len(ood) == 1 and "4 request(s)" in ood[0].message


def test_admissions_pair_with_outcomes_within_their_own_chain(tmp_path: Path) -> None:
    """A folder holding a worker's archived chain beside its current one (same worker name,
    same sequence numbers): each outcome pairs with the admission of its own chain, so the old
    chain's orphans stay orphans."""
    from bastion.guard.audit import AdmissionEvent

    def admitted(n: int) -> AdmissionEvent:
        whole = request(n, ood="flag")
        fields = {f: getattr(whole, f) for f in AdmissionEvent.__struct_fields__}
        return AdmissionEvent(**fields)

    with AuditLog(tmp_path / "audit-g.sqlite3", worker="g") as log:
        for i in range(3):  # in flight when that guard was killed
            log.submit(admitted(i)).result(timeout=10)
    for name in ("audit-g.sqlite3", "audit-g.sqlite3.checkpoints"):
        (tmp_path / name).rename(tmp_path / name.replace("audit-g", "audit-g-archived"))
    with AuditLog(tmp_path / "audit-g.sqlite3", worker="g") as log:
        for i in range(10, 12):  # the new chain: two answered requests, seq 1-4
            seq = log.submit(admitted(i)).result(timeout=10)
            outcome = request(i, ood="flag").model_copy({"admission": seq})
            log.submit(outcome).result(timeout=10)
    traffic = guard_report(tmp_path, Settings()).metadata["traffic"]
    assert traffic["requests"] == 2 and traffic["admitted_without_outcome"] == 3
