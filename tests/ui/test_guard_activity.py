"""The guard page's reading of the audit log: outcomes, alerts, latency per hour, incremental
reads, a reset when the log is replaced, and unreadable records counted, never shown."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cryptography")

from bastion.guard.audit import AuditEvent, worker_log_path
from bastion.ui.guard_activity import outcome, read_activity
from tests.ui.audit_events import request_event
from tests.ui.ui_support import append_events

# the fields a request's admission and outcome share
_REQUEST: dict[str, Any] = {
    "key_id": "0123456789ab",
    "tenant": None,
    "route": "/v1/predict",
    "model_digest": "sha256:" + "ab" * 32,
    "input_digest": "sha256:" + "cd" * 32,
    "decisions": {"auth": "allow"},
}


def _write(folder: Path, worker: str, decisions: list[tuple[dict[str, str], int]]) -> None:
    moment = dt.datetime(2026, 11, 30, 10, tzinfo=dt.timezone.utc)
    append_events(
        worker_log_path(folder, worker),
        (
            request_event(i, moment + dt.timedelta(minutes=i), chosen, status, float(i))
            for i, (chosen, status) in enumerate(decisions)
        ),
    )


def test_outcomes() -> None:
    assert outcome(200, {"auth": "allow"}) == "allowed"
    assert outcome(200, {"monitor": "flag"}) == "flagged"
    assert outcome(200, {"pii": "redact"}) == "flagged"
    assert outcome(422, {"contract": "block"}) == "blocked"
    assert outcome(401, {"auth": "deny"}) == "refused"


def test_activity_is_read_incrementally(tmp_path: Path) -> None:
    folder = tmp_path / "audit"
    folder.mkdir()
    assert read_activity(None) is None
    assert read_activity(folder).problem  # no logs yet: said, not a crash
    plan = [({"auth": "allow"}, 200)] * 50 + [({"monitor": "flag"}, 200)] * 5
    plan += [({"pii": "block"}, 422)] * 3 + [({"auth": "deny"}, 401)] * 2
    _write(folder, "w1", plan)
    first = read_activity(folder)
    assert first is not None and first.problem is None
    assert first.outcomes == {"allowed": 50, "flagged": 5, "blocked": 3, "refused": 2}
    assert len(first.alerts) == 8 and all(a.outcome in ("flagged", "blocked") for a in first.alerts)
    assert first.detectors["pii"] == {"block": 3}
    assert first.recent[0].seq == 60  # newest first
    assert first.hours == ("2026-11-30T10:00Z",)  # 60 events a minute apart
    assert first.latency["p50"][0] is not None
    assert read_activity(folder) is first  # nothing changed: nothing read
    _write(folder, "w1", [({"auth": "allow"}, 200)] * 4)
    second = read_activity(folder)
    assert second is not None and second.events == 64 and second.outcomes["allowed"] == 54
    _write(folder, "w2", [({"ood": "flag"}, 200)])
    third = read_activity(folder)
    assert third is not None and third.events == 65 and "audit-w2.sqlite3" in third.files


def test_unreadable_records_are_counted(tmp_path: Path) -> None:
    folder = tmp_path / "audit"
    folder.mkdir()
    _write(folder, "w1", [({"auth": "allow"}, 200)] * 3)
    path = worker_log_path(folder, "w1")
    db = sqlite3.connect(path)
    db.execute("DROP TRIGGER events_no_update")
    db.execute("UPDATE events SET event = ? WHERE seq = 2", (b'{"at": "<script>"',))
    db.commit()
    db.close()
    activity = read_activity(folder)
    assert activity is not None and activity.unreadable == 1 and activity.events == 2
    assert all("<script>" not in e.at for e in activity.recent)


def test_admissions_and_alerts_are_not_requests_nor_unreadable(tmp_path: Path) -> None:
    """A request the model answered has an admission before its outcome, and monitor alerts
    share the chain: the page counts each request once (its outcome) and neither of the others
    as an unreadable record."""
    from bastion.guard.audit import AdmissionEvent, AlertEvent, utc_now

    folder = tmp_path / "audit"
    folder.mkdir()
    _write(folder, "w1", [({"auth": "allow"}, 200)] * 2)

    def more() -> Iterator[object]:
        yield AdmissionEvent(at=utc_now(), **_REQUEST)
        yield AlertEvent(at=utc_now(), alert="sweep", key_id="0123456789ab", score=1, threshold=0)

    append_events(worker_log_path(folder, "w1"), more())
    activity = read_activity(folder)
    assert activity is not None and activity.events == 2 and activity.unreadable == 0
    assert activity.unanswered == 1  # the admission has no outcome: said, not lost


def test_answered_requests_count_once_whole_or_partial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each answered request is an admission and an outcome: the page keeps MAX_EVENTS
    requests (not records), says `partial` only when requests were left out, and an
    incremental view agrees with a fresh one."""
    from bastion.guard.audit import AdmissionEvent
    from bastion.ui import guard_activity

    monkeypatch.setattr(guard_activity, "MAX_EVENTS", 10)
    monkeypatch.setattr(guard_activity, "MIN_EVENTS_PER_LOG", 1)
    folder = tmp_path / "audit"
    folder.mkdir()

    def answered(count: int) -> None:
        seqs: list[int] = []

        def events() -> Iterator[object]:
            for i in range(count):
                request = {**_REQUEST, "input_digest": "sha256:" + f"{i:064x}"}
                yield AdmissionEvent(at=utc_now(), **request)
                yield AuditEvent(
                    at=utc_now(),
                    status=200,
                    latency_ms=1.0,
                    admission=seqs[-1],  # the admission just written
                    **request,
                )

        append_events(worker_log_path(folder, "w1"), events(), seqs)

    from bastion.guard.audit import utc_now

    answered(8)  # 16 records, 8 requests: all of them, not partial
    whole = read_activity(folder)
    assert whole is not None and whole.events == 8 and not whole.partial
    answered(4)  # 12 requests: the newest 10, partial
    grown = read_activity(folder)
    assert grown is not None and grown.events == 10 and grown.partial
    guard_activity._CHAINS.clear()
    guard_activity._CACHE.clear()
    fresh = read_activity(folder)
    assert fresh is not None and (fresh.events, fresh.partial) == (10, True)
    assert whole.unanswered == grown.unanswered == fresh.unanswered == 0


def test_an_admission_without_its_outcome_is_counted_until_the_outcome_is_read(
    tmp_path: Path,
) -> None:
    """A guard killed while the model computed leaves an admission with no outcome: the page
    counts it (in flight, or the guard stopped), and no longer once the outcome that names it
    is appended, read incrementally; an outcome naming another admission does not clear it."""
    from bastion.guard.audit import AdmissionEvent, utc_now

    folder = tmp_path / "audit"
    folder.mkdir()
    request = dict(_REQUEST)

    def append(*events: object) -> list[int]:
        return append_events(worker_log_path(folder, "w1"), events)

    first, second = append(
        AdmissionEvent(at=utc_now(), **request), AdmissionEvent(at=utc_now(), **request)
    )
    before = read_activity(folder)
    assert before is not None and (before.unanswered, before.events) == (2, 0)
    append(AuditEvent(at=utc_now(), status=200, latency_ms=1.0, admission=second, **request))
    after = read_activity(folder)
    assert after is not None and (after.unanswered, after.events) == (1, 1)
    assert first < second


def test_records_an_editor_made_unreadable_are_counted_not_crashing(tmp_path: Path) -> None:
    """Whoever can write the audit folder can store text, a blob or infinity as a sequence
    number, and a recording time the page's hour arithmetic cannot use: each such record is
    counted unreadable, the page still renders, and the admission that was written properly
    is still counted as having no outcome (found by an attack review)."""
    import json

    from bastion.guard.audit import AdmissionEvent, utc_now

    folder = tmp_path / "audit"
    folder.mkdir()
    request = dict(_REQUEST)

    append_events(worker_log_path(folder, "w1"), [AdmissionEvent(at=utc_now(), **request)])
    db = sqlite3.connect(worker_log_path(folder, "w1"), isolation_level=None)
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        db.execute(f"DROP TRIGGER {name}")
    # a column without a type keeps whatever an editor stores in it
    db.executescript(
        "ALTER TABLE events RENAME TO old; "
        "CREATE TABLE events(seq, recorded_at, event, prev, hash); "
        "INSERT INTO events SELECT * FROM old; DROP TABLE old;"
    )
    outcome = {**request, "at": utc_now(), "status": 200, "latency_ms": 1.0, "admission": 1}
    admission = {**request, "at": utc_now()}
    edited = [
        ("x", admission),  # a text sequence number
        (float("inf"), admission),
        (b"99", outcome),  # a blob: sorts above every number, so it is MAX(seq)
        (100, {**outcome, "at": "garbage"}),
        (101, {**outcome, "at": "0001-01-01T00:00:00Z"}),
    ]
    for seq, event in edited:
        db.execute(
            "INSERT INTO events(seq, recorded_at, event, prev, hash) VALUES (?, ?, ?, ?, ?)",
            (seq, "x", json.dumps(event).encode(), "p", "h"),
        )
    db.close()
    activity = read_activity(folder)
    assert activity is not None and activity.problem is None
    assert (activity.events, activity.unreadable, activity.unanswered) == (0, 5, 1)


def _bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **bounds: int) -> Path:
    """An empty audit folder, the page's bounds at 20 requests (at least 5 a log) and `bounds`,
    and nothing read before."""
    from bastion.ui import guard_activity

    for name, value in {"MAX_EVENTS": 20, "MIN_EVENTS_PER_LOG": 5, **bounds}.items():
        monkeypatch.setattr(guard_activity, name, value)
    guard_activity._CHAINS.clear()
    guard_activity._CACHE.clear()
    folder = tmp_path / "audit"
    folder.mkdir()
    return folder


def test_many_logs_are_bounded_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """However many workers wrote logs, a view keeps MAX_EVENTS requests shared among them
    (at least MIN_EVENTS_PER_LOG each) from the MAX_LOGS most recently written, forgets logs
    that are gone, and says the view is partial."""
    import os

    from bastion.ui import guard_activity

    folder = _bounded(tmp_path, monkeypatch, MAX_LOGS=3)
    allowed = ({"auth": "allow"}, 200)

    _write(folder, "w0", [allowed] * 12)
    alone = read_activity(folder)
    assert alone is not None and (alone.events, alone.partial) == (12, False)

    for worker in ("w1", "w2", "w3"):
        _write(folder, worker, [allowed] * 12)
    for n, worker in enumerate(("w0", "w1", "w2", "w3")):  # w0 written first, w3 last
        path = worker_log_path(folder, worker)
        for part in (path, path.with_name(path.name + "-wal")):
            if part.exists():
                os.utime(part, ns=(1_700_000_000_000_000_000 + n * 10**9,) * 2)
    many = read_activity(folder)
    assert many is not None and many.partial
    assert many.files == ("audit-w1.sqlite3", "audit-w2.sqlite3", "audit-w3.sqlite3")
    assert many.events == 3 * 6  # 20 // 3 each, the newest of each log
    assert len(guard_activity._CHAINS) == 3  # w0's events, read before, are let go
    assert all(len(chain.events) <= 6 for chain in guard_activity._CHAINS.values())

    for worker in ("w2", "w3"):
        worker_log_path(folder, worker).unlink()
    fewer = read_activity(folder)
    assert fewer is not None
    assert fewer.files == ("audit-w0.sqlite3", "audit-w1.sqlite3")
    assert fewer.events == 10 + 10  # 20 // 2 each
    assert len(guard_activity._CHAINS) == 2


def test_a_log_read_alone_keeps_only_its_share_once_others_appear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _bounded(tmp_path, monkeypatch)
    _write(folder, "w0", [({"auth": "allow"}, 200)] * 15)
    first = read_activity(folder)
    assert first is not None and (first.events, first.partial) == (15, False)
    for worker in ("w1", "w2", "w3"):
        _write(folder, worker, [({"auth": "allow"}, 200)])
    shared = read_activity(folder)
    assert shared is not None and shared.partial
    assert shared.events == 5 + 3  # w0's newest 5 (20 // 4), one each from the others
    kept = [e.seq for e in shared.recent if e.worker == "w0"]
    assert sorted(kept) == [11, 12, 13, 14, 15]
