"""The guard's decisions as the dashboard shows them, read from its audit log (one SQLite file
per worker, `bastion.guard.audit`): counts of allowed, flagged and blocked requests, alerts
(a detector that flagged or blocked), latency percentiles over time, and the latest events.

The files are opened read-only and only the newest requests of each are kept: `MAX_EVENTS`
shared among the logs read (at least `MIN_EVENTS_PER_LOG` each), their outcome events read
from at most three records each, newest first by the primary key; at most `MAX_LOGS` logs,
the most recently written. So however long-lived the logs and however many workers wrote
them, a page view holds a bounded number of events, and reads only what was appended since
the last one; the page says when it shows only part of the logs.
Each event is decoded (msgspec, typed) into the fields the page needs; a record an editor of
the file made unreadable is counted as such, never shown raw. Verifying the chain is
`bastion audit verify`'s job, not a page view's. The summary is kept until a log changes
(size or modification time of a log or its WAL)."""

from __future__ import annotations

import collections
import datetime as dt
import math
import re
import sqlite3
from pathlib import Path
from typing import Any

import msgspec

from bastion.records import Record

MAX_EVENTS = 20_000  # requests kept over all the logs read
MIN_EVENTS_PER_LOG = 500  # each log's share of them, at least
MAX_LOGS = 64  # logs read, the most recently written (one per worker)
# records read per request kept: a request the model answered has two (its admission, then
# its outcome, the event shown), and monitor alerts share the chain
RECORDS_PER_EVENT = 3
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
    partial: bool  # requests or logs were left out (see the bounds above)
    unreadable: int
    unanswered: int  # admitted to the model, no outcome on record (the guard stopped, or in flight)
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


class _Stored(msgspec.Struct, frozen=True):
    """(A plain msgspec struct, not a Record: it must ignore the event's other fields.) The
    fields of a stored audit event the page reads, decoded without `AuditEvent`'s
    per-field checks (the writer made them; a page view reads thousands of them). A
    record whose fields do not have these types counts as unreadable."""

    at: str
    route: str = ""
    status: int = 0  # 0: not a request's outcome (an admission or a monitor alert): skipped
    latency_ms: float = 0.0
    key_id: str | None = None
    decisions: dict[str, str] = {}
    input_digest: str = ""  # set on a request's records: with status 0, an admission
    admission: int | None = None  # on an outcome: its admission's sequence number


_DECODER = msgspec.json.Decoder(_Stored)
_CACHE: dict[tuple[Any, ...], GuardActivity] = {}


class _Chain:
    """The newest `limit` requests of one worker's log, read incrementally: a page view after
    the guard answered a few more requests decodes only those (by sequence number). A log
    whose chain id changed, or that holds fewer events than were read, is read afresh."""

    def __init__(self, limit: int) -> None:
        self.limit = limit  # requests kept
        self.chain: str | None = None
        self.last_seq = 0
        self.events: collections.deque[tuple[str, int, _Stored]] = collections.deque(maxlen=limit)
        self.unreadable = 0
        self.partial = False  # older events were left unread or dropped
        # admissions whose outcome is not read yet (seq), at most `limit` of the newest
        self.admitted: collections.OrderedDict[int, None] = collections.OrderedDict()

    def bound(self, limit: int) -> None:
        """Keep at most `limit` requests from now on: the newest when it shrinks; read afresh
        when it grows after requests were left out (fewer logs share the bound)."""
        if limit == self.limit:
            return
        if limit > self.limit and self.partial:
            self.__init__(limit)  # type: ignore[misc]
            return
        if len(self.events) > limit:
            self.partial = True
        self.limit = limit
        self.events = collections.deque(self.events, maxlen=limit)
        while len(self.admitted) > limit:
            self.admitted.popitem(last=False)

    def refresh(self, conn: sqlite3.Connection) -> None:
        limit, records = self.limit, self.limit * RECORDS_PER_EVENT
        head = conn.execute("SELECT chain FROM chain").fetchone()
        chain = str(head[0]) if head else None
        try:
            newest = _sequence(
                conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
            )
        except ValueError:  # an edited table: read the newest records by their key anyway
            newest = self.last_seq + records
        if chain != self.chain or newest < self.last_seq:
            self.__init__(limit)  # type: ignore[misc]
            self.chain = chain
        rows = conn.execute(
            "SELECT seq, event FROM events WHERE seq > ? ORDER BY seq DESC LIMIT ?",
            (self.last_seq, records),
        ).fetchall()
        if newest - self.last_seq > records:
            self.partial = True
        for seq, blob in reversed(rows):
            try:
                stored = _DECODER.decode(blob if isinstance(blob, bytes) else str(blob).encode())
                number = _sequence(seq)
                if not _AT.match(stored.at):  # the page's hours are read from it
                    raise ValueError("not a recording time")
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
                self.unreadable += 1
                continue
            if stored.status:  # a request's outcome (not an admission or an alert)
                if len(self.events) == limit:
                    self.partial = True
                self.events.append((stored.at, number, stored))
                if stored.admission is not None:
                    self.admitted.pop(stored.admission, None)
            elif stored.input_digest:  # an admission: its outcome follows, unless the guard stopped
                self.admitted[number] = None
                if len(self.admitted) > limit:
                    self.admitted.popitem(last=False)
                    self.partial = True
        self.last_seq = max(self.last_seq, newest)


_CHAINS: dict[str, _Chain] = {}
# what the writer records (bastion.guard.audit): a UTC time from 1970 on; an editor's text or
# a year the page's hour arithmetic cannot reach counts as unreadable
_AT = re.compile(r"^(19[7-9]\d|2\d{3})-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z\Z")


def _sequence(value: Any) -> int:
    """A record's sequence number as SQLite returned it: an integer, else ValueError (an
    editor may store text, a blob or a float in the column)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError("not a sequence number")


def _written(path: Path) -> int:
    """When a log (or its WAL) was last written, in ns; 0 when it cannot be read."""
    newest = 0
    for part in (path, path.with_name(path.name + "-wal")):
        try:
            newest = max(newest, part.stat().st_mtime_ns)
        except OSError:
            pass
    return newest


def _state(files: list[Path]) -> tuple[Any, ...]:
    """What changes when any worker appends: each log's and WAL's size and mtime."""
    state: list[Any] = []
    for path in files:
        for part in (path, path.with_name(path.name + "-wal")):
            try:
                stat = part.stat()
            except OSError:
                stat = None
            if stat is None or stat.st_size == 0:  # reading may leave an empty WAL behind
                state.append((str(part), 0, None))
            else:
                state.append((str(part), stat.st_size, stat.st_mtime_ns))
    return tuple(state)


def read_activity(folder: Path | None) -> GuardActivity | None:
    """What the guard page shows, or None when no audit folder was given. Nothing is read
    when no log changed since the last view; otherwise only the events appended since."""
    if folder is None:
        return None
    from bastion.guard.audit_verify import audit_files, connect_read_only
    from bastion.guard.checkpoints import AuditError

    try:
        files = audit_files(folder)
    except AuditError as exc:
        return _empty(exc.message)
    partial = len(files) > MAX_LOGS
    if partial:
        files = sorted(sorted(files, key=_written, reverse=True)[:MAX_LOGS])
    cached = _CACHE.get(_state(files))
    if cached is not None:
        return cached
    events: list[tuple[str, str, int, _Stored]] = []
    unreadable = 0
    unanswered = 0
    limit = max(MIN_EVENTS_PER_LOG, MAX_EVENTS // len(files))
    keys = [str(path.resolve()) for path in files]
    for gone in set(_CHAINS) - set(keys):  # a log deleted, or no longer among those read
        del _CHAINS[gone]
    for path, key in zip(files, keys, strict=True):
        worker = path.stem.removeprefix("audit-")
        chain = _CHAINS.get(key)
        if chain is None:
            chain = _CHAINS[key] = _Chain(limit)
        chain.bound(limit)
        try:
            conn = connect_read_only(path)
            try:
                chain.refresh(conn)
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            _CHAINS.pop(key, None)
            return _empty(f"cannot read the audit log {path.name}: {exc}")
        partial = partial or chain.partial
        unreadable += chain.unreadable
        unanswered += len(chain.admitted)
        events.extend((at, worker, seq, stored) for at, seq, stored in chain.events)
    events.sort(key=lambda e: (e[0], e[1], e[2]), reverse=True)
    activity = _summarise(tuple(p.name for p in files), events, partial, unreadable, unanswered)
    _CACHE.clear()
    _CACHE[_state(files)] = activity  # as the files stand after reading them
    return activity


def _event(worker: str, seq: int, stored: _Stored) -> GuardEvent:
    return GuardEvent(
        worker=worker,
        seq=seq,
        at=stored.at,
        key_id=stored.key_id,
        route=stored.route,
        status=stored.status,
        latency_ms=stored.latency_ms,
        outcome=outcome(stored.status, stored.decisions),
        decisions=dict(stored.decisions),
    )


def _empty(problem: str) -> GuardActivity:
    return GuardActivity(
        files=(),
        events=0,
        partial=False,
        unreadable=0,
        unanswered=0,
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
    files: tuple[str, ...],
    events: list[tuple[str, str, int, _Stored]],
    partial: bool,
    unreadable: int,
    unanswered: int,
) -> GuardActivity:
    outcomes = {"allowed": 0, "flagged": 0, "blocked": 0, "refused": 0}
    detectors: dict[str, dict[str, int]] = {}
    hours: list[str] = []
    if events:
        newest = _hour(events[0][0])
        oldest = max(_hour(events[-1][0]), newest - dt.timedelta(hours=167))
        count = int((newest - oldest).total_seconds() // 3600) + 1
        hours = [(oldest + dt.timedelta(hours=n)).strftime("%Y-%m-%dT%H:00Z") for n in range(count)]
    index = {h[:13]: i for i, h in enumerate(hours)}
    by_hour = {name: [0] * len(hours) for name in outcomes}
    latencies: list[list[float]] = [[] for _ in hours]
    alerts: list[GuardEvent] = []
    for at, worker, seq, stored in events:
        result = outcome(stored.status, stored.decisions)
        outcomes[result] += 1
        for detector, action in stored.decisions.items():
            actions = detectors.setdefault(detector, {})
            actions[action] = actions.get(action, 0) + 1
        i = index.get(at[:13])
        if i is not None:
            by_hour[result][i] += 1
            latencies[i].append(stored.latency_ms)
        if result in ("flagged", "blocked") and len(alerts) < RECENT:
            alerts.append(_event(worker, seq, stored))
    latency = {
        name: tuple(_percentile(values, q) for values in latencies)
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
    }
    return GuardActivity(
        files=files,
        events=len(events),
        partial=partial,
        unreadable=unreadable,
        unanswered=unanswered,
        outcomes=outcomes,
        hours=tuple(hours),
        by_hour={k: tuple(v) for k, v in by_hour.items()},
        latency=latency,
        alerts=tuple(alerts),
        recent=tuple(_event(w, q, e) for _, w, q, e in events[:RECENT]),
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
