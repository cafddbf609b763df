"""The guard's decisions as the dashboard shows them, read from its audit log (one SQLite file
per worker, `bastion.guard.audit`): counts of allowed, flagged and blocked requests, alerts
(a detector that flagged or blocked), latency percentiles over time, and the latest events.

The files are opened read-only and only the newest `MAX_EVENTS` events of each are read (by
the primary key, newest first), so a long-lived log costs the page a bounded amount; the page
says when it shows only part of the log. Events are decoded as `AuditEvent`s: a record an
editor of the file made unreadable is counted as unreadable, never shown raw. Verifying the
chain is `bastion audit verify`'s job, not a page view's."""

from __future__ import annotations

import datetime as dt
import math
import sqlite3
from pathlib import Path
from typing import Any

from bastion.records import Record

MAX_EVENTS = 20_000
RECENT = 50
BLOCKING = frozenset({"block"})
FLAGGING = frozenset({"flag", "redact"})


class GuardEvent(Record):
    worker: str
    seq: int
    at: str
    key_id: str | None
    route: str
    status: int
    latency_ms: float
    outcome: str  # allowed | flagged | blocked | refused
    decisions: dict[str, str]


class GuardActivity(Record):
    files: tuple[str, ...]
    events: int  # read
    partial: bool  # a file held more than MAX_EVENTS
    unreadable: int
    outcomes: dict[str, int]
    hours: tuple[str, ...]
    by_hour: dict[str, tuple[int, ...]]  # outcome -> count per hour
    latency: dict[str, tuple[float | None, ...]]  # p50/p95/p99 per hour
    alerts: tuple[GuardEvent, ...]
    recent: tuple[GuardEvent, ...]
    detectors: dict[str, dict[str, int]]  # detector -> action -> count
    problem: str | None = None


def outcome(status: int, decisions: dict[str, str]) -> str:
    actions = set(decisions.values())
    if actions & BLOCKING:
        return "blocked"
    if status >= 400:
        return "refused"
    if actions & FLAGGING:
        return "flagged"
    return "allowed"


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    rank = max(0, min(len(values) - 1, math.ceil(q * len(values)) - 1))
    return round(values[rank], 2)


def read_activity(folder: Path | None) -> GuardActivity | None:
    """What the guard page shows, or None when no audit folder was given."""
    if folder is None:
        return None
    import msgspec

    from bastion.guard.audit import AuditEvent
    from bastion.guard.audit_verify import audit_files, connect_read_only
    from bastion.guard.checkpoints import AuditError

    try:
        files = audit_files(folder)
    except AuditError as exc:
        return _empty(str(exc.message if hasattr(exc, "message") else exc))
    decoder = msgspec.json.Decoder(AuditEvent)
    events: list[GuardEvent] = []
    unreadable = 0
    partial = False
    for path in files:
        worker = path.stem.removeprefix("audit-")
        try:
            conn = connect_read_only(path)
            try:
                rows = conn.execute(
                    "SELECT seq, event FROM events ORDER BY seq DESC LIMIT ?", (MAX_EVENTS + 1,)
                ).fetchall()
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            return _empty(f"cannot read the audit log {path.name}: {exc}")
        if len(rows) > MAX_EVENTS:
            partial = True
            rows = rows[:MAX_EVENTS]
        for seq, blob in rows:
            try:
                event = decoder.decode(blob if isinstance(blob, bytes) else str(blob).encode())
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
                unreadable += 1
                continue
            events.append(
                GuardEvent(
                    worker=worker,
                    seq=int(seq),
                    at=event.at,
                    key_id=event.key_id,
                    route=event.route,
                    status=event.status,
                    latency_ms=event.latency_ms,
                    outcome=outcome(event.status, event.decisions),
                    decisions=dict(event.decisions),
                )
            )
    events.sort(key=lambda e: (e.at, e.worker, e.seq), reverse=True)
    return _summarise(tuple(p.name for p in files), events, partial, unreadable)


def _empty(problem: str) -> GuardActivity:
    return GuardActivity(
        files=(),
        events=0,
        partial=False,
        unreadable=0,
        outcomes={},
        hours=(),
        by_hour={},
        latency={},
        alerts=(),
        recent=(),
        detectors={},
        problem=problem,
    )


def _summarise(
    files: tuple[str, ...], events: list[GuardEvent], partial: bool, unreadable: int
) -> GuardActivity:
    outcomes = {"allowed": 0, "flagged": 0, "blocked": 0, "refused": 0}
    detectors: dict[str, dict[str, int]] = {}
    hours: list[str] = []
    if events:
        newest = _hour(events[0].at)
        oldest = max(_hour(events[-1].at), newest - dt.timedelta(hours=167))
        count = int((newest - oldest).total_seconds() // 3600) + 1
        hours = [(oldest + dt.timedelta(hours=n)).strftime("%Y-%m-%dT%H:00Z") for n in range(count)]
    index = {h: i for i, h in enumerate(hours)}
    by_hour = {name: [0] * len(hours) for name in outcomes}
    latencies: list[list[float]] = [[] for _ in hours]
    for event in events:
        outcomes[event.outcome] += 1
        for detector, action in event.decisions.items():
            actions = detectors.setdefault(detector, {})
            actions[action] = actions.get(action, 0) + 1
        i = index.get(_hour(event.at).strftime("%Y-%m-%dT%H:00Z"))
        if i is not None:
            by_hour[event.outcome][i] += 1
            latencies[i].append(event.latency_ms)
    latency = {
        name: tuple(_percentile(values, q) for values in latencies)
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
    }
    alerts = tuple(e for e in events if e.outcome in ("flagged", "blocked"))[:RECENT]
    return GuardActivity(
        files=files,
        events=len(events),
        partial=partial,
        unreadable=unreadable,
        outcomes=outcomes,
        hours=tuple(hours),
        by_hour={k: tuple(v) for k, v in by_hour.items()},
        latency=latency,
        alerts=alerts,
        recent=tuple(events[:RECENT]),
        detectors=dict(sorted(detectors.items())),
    )


def _hour(at: str) -> dt.datetime:
    moment = dt.datetime.strptime(at[:13], "%Y-%m-%dT%H")
    return moment.replace(tzinfo=dt.timezone.utc)


def chart_payload(activity: GuardActivity) -> dict[str, Any]:
    return {
        "hours": list(activity.hours),
        "outcomes": {k: list(v) for k, v in activity.by_hour.items()},
        "latency": {k: list(v) for k, v in activity.latency.items()},
    }
