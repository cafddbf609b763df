"""The dashboard's reads of the history store: paged, filtered and aggregated through indexes,
so that each page costs the same on 10,000 runs and 1,000,000 findings as on ten.

The store is opened read-only (`mode=ro`, `query_only`), one connection per worker thread.
Lists page by keyset (`(run_id, id)` of the last row shown), never by OFFSET. A findings list
is driven by one indexed filter — the one with the fewest rows, counted on its covering index —
walked in index order per value and merged (so "high and above" or "every rule tagged
AML.T0010" never sorts the table); the other filters are checked row by row. Every query runs
under a time budget (`QueryTooSlow`), which the page reports instead of hanging."""

from __future__ import annotations

import heapq
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bastion.errors import StoreError
from bastion.findings import Severity, Stage, Tags
from bastion.records import Record, field

PAGE = 50
QUERY_BUDGET_S = 2.0
EXACT_COUNT_LIMIT = 20_000  # counted exactly below this; above it the page says 'more than'
RANK_CAP = 2_000  # filters are ranked by their counts up to this
SEVERITIES = tuple(s.value for s in Severity)  # by rank
STAGES = tuple(s.value for s in Stage)
GATES = ("failing", "waived", "baselined", "below")
STATUSES = ("passed", "failed", "undecided")
DRIFT_RULES = ("DRF001", "DRF002", "DRF003", "DRF004")
_RULE_ID = re.compile(r"^[A-Z][A-Z0-9]{1,9}[0-9]{3}\Z")
_COMMAND = re.compile(r"^[a-z][a-z_ -]{0,31}\Z")
_DIGEST = re.compile(r"^[a-z][a-z0-9-]{1,15}:[^\x00-\x1f\s]{1,512}\Z")
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.()/: -]{0,63}\Z")


class QueryTooSlow(StoreError):
    """A query ran past its time budget (the filters match too little of what they scan)."""


class FindingFilter(Record):
    """The findings list's filters, as the query string gives them (invalid values are
    dropped by `parse`, never passed to SQL)."""

    stage: str | None = None
    severity: str | None = None  # the minimum severity
    rule: str | None = None
    taxonomy: str | None = None
    gate: str | None = None
    run: int | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, params: Any) -> FindingFilter:
        def pick(name: str, allowed: Iterable[str] | None = None, pattern: Any = None) -> Any:
            value = params.get(name)
            if not value or len(value) > 600:
                return None
            if allowed is not None and value not in allowed:
                return None
            if pattern is not None and not pattern.match(value):
                return None
            return value

        run = params.get("run")
        return cls(
            stage=pick("stage", STAGES),
            severity=pick("severity", SEVERITIES),
            rule=pick("rule", pattern=_RULE_ID),
            taxonomy=pick("taxonomy", pattern=_TAG),
            gate=pick("gate", GATES),
            run=int(run) if run and run.isdigit() and len(run) < 12 else None,
            digest=pick("digest", pattern=_DIGEST),
        )

    def query(self) -> dict[str, str]:
        """The filters as query parameters (for links that keep them)."""
        return {k: str(v) for k, v in self.model_dump().items() if v is not None}

    @property
    def active(self) -> bool:
        return any(v is not None for v in self.model_dump().values())


class FindingRow(Record):
    id: int
    run_id: int
    rule_id: str
    severity: str
    stage: str
    path: str
    gate: str
    message: str
    digest: str | None
    started_at: str = ""


class FindingPage(Record):
    rows: tuple[FindingRow, ...]
    next_cursor: str | None
    total: int | None  # None: more than could be counted cheaply...
    at_least: int = 0  # ...and at least this many (0: not known)
    too_slow: bool = False


class RunRow(Record):
    id: int
    started_at: str
    command: str
    targets: str
    status: str
    exit_code: int
    findings: int
    counts: dict[str, int] = field(default_factory=dict)


class RunPage(Record):
    rows: tuple[RunRow, ...]
    next_cursor: str | None


class Posture(Record):
    """One model's evidence at a glance: per aspect, the latest run's status (or None)."""

    digest: str
    name: str
    last_seen: str
    aspects: dict[str, tuple[str, int] | None]  # aspect -> (status, run id)
    attention: int  # sort key: higher needs attention first


class ArtifactRow(Record):
    digest: str
    kind: str
    name: str
    first_seen: str
    last_seen: str
    versions: int
    signature: tuple[str, int] | None
    owner: str | None


class LineageNode(Record):
    digest: str
    kind: str
    name: str
    depth: int  # < 0 upstream of the focus, > 0 downstream
    latest: tuple[tuple[str, str, int], ...] = ()  # (command, status, run id)


class LineageEdge(Record):
    upstream: str
    downstream: str
    relation: str


class Lineage(Record):
    focus: str
    nodes: tuple[LineageNode, ...]
    edges: tuple[LineageEdge, ...]
    truncated: bool


ASPECTS = ("scan", "signature", "data", "probe", "guard")
_ASPECT_COMMANDS = {
    "scan": ("scan",),
    "signature": ("verify", "sign"),
    "probe": ("probe",),
    "guard": ("guard",),
}
_ATTENTION = {"failed": 3, "undecided": 2, None: 1, "passed": 0}


def _cursor(text: str | None) -> tuple[int, int] | None:
    if not text or len(text) > 40:
        return None
    parts = text.split("-")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


class History:
    """Read-only access to a store file (see the module docstring)."""

    def __init__(self, path: Path, budget_s: float = QUERY_BUDGET_S) -> None:
        self.path = Path(path)
        self.budget_s = budget_s
        self._local = threading.local()
        self._rule_tags: dict[str, frozenset[str]] | None = None

    # -- connections ---------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            uri = self.path.resolve().as_uri() + "?mode=ro"
            try:
                conn = sqlite3.connect(uri, uri=True, check_same_thread=True)
                conn.execute("PRAGMA query_only = ON")
                conn.execute("PRAGMA trusted_schema = OFF")
                conn.execute("PRAGMA cache_size = -16384")  # 16 MiB per worker thread
                conn.execute("PRAGMA mmap_size = 268435456")
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"cannot read history store {self.path}: {exc}") from exc
            self._local.conn = conn
        return conn

    def _run(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        conn = self._db()
        deadline = time.monotonic() + self.budget_s
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        try:
            return conn.execute(sql, parameters).fetchall()
        except sqlite3.OperationalError as exc:
            if "interrupted" in str(exc):
                raise QueryTooSlow(
                    "the query ran past its time budget", hint="narrow the filters"
                ) from None
            raise StoreError(f"cannot read history store {self.path}: {exc}") from exc
        finally:
            conn.set_progress_handler(None, 0)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- totals --------------------------------------------------------------------------------

    def totals(self) -> dict[str, int]:
        out = {}
        for table in ("runs", "artifacts", "links", "datasets"):
            out[table] = int(self._run(f"SELECT COUNT(*) FROM {table}")[0][0])
        out["findings"] = int(self._run("SELECT COALESCE(MAX(id), 0) FROM findings")[0][0])
        return out

    # -- runs ----------------------------------------------------------------------------------

    def runs(
        self,
        command: str | None = None,
        status: str | None = None,
        cursor: str | None = None,
        limit: int = PAGE,
    ) -> RunPage:
        clauses: list[str] = []
        parameters: list[Any] = []
        if command and _COMMAND.match(command):
            clauses.append("command = ?")
            parameters.append(command)
        if status in STATUSES:
            clauses.append("status = ?")
            parameters.append(status)
        after = _cursor(cursor)
        if after is not None:
            clauses.append("id < ?")
            parameters.append(after[0])
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._run(
            "SELECT id, started_at, command, targets, status, exit_code, findings, counts "
            f"FROM runs{where} ORDER BY id DESC LIMIT ?",
            (*parameters, limit + 1),
        )
        items = [_run_row(r) for r in rows[:limit]]
        more = len(rows) > limit
        return RunPage(rows=tuple(items), next_cursor=f"{items[-1].id}-0" if more else None)

    def run(self, run_id: int) -> tuple[RunRow, dict[str, Any], dict[str, Any]] | None:
        """A run's summary, its report's metadata and its verdict (as plain data)."""
        rows = self._run(
            "SELECT id, started_at, command, targets, status, exit_code, findings, counts, "
            "json_extract(report, '$.metadata'), verdict FROM runs WHERE id = ?",
            (run_id,),
        )
        if not rows:
            return None
        row = rows[0]
        return _run_row(row[:8]), json.loads(row[8] or "{}"), json.loads(row[9])

    def commands(self) -> list[str]:
        return [r[0] for r in self._run("SELECT DISTINCT command FROM runs ORDER BY command")]

    def seen_by(self, run_id: int) -> list[tuple[str, str, str, str]]:
        """(digest, kind, role, path) of what a run saw."""
        return [
            (r[0], r[1], r[2], r[3])
            for r in self._run(
                "SELECT ra.digest, COALESCE(a.kind, 'file'), ra.role, ra.path FROM run_artifacts "
                "AS ra LEFT JOIN artifacts AS a ON a.digest = ra.digest WHERE ra.run_id = ? "
                "ORDER BY ra.role, ra.path LIMIT 500",
                (run_id,),
            )
        ]

    # -- findings ------------------------------------------------------------------------------

    def rule_tags(self) -> dict[str, frozenset[str]]:
        """rule id -> its taxonomy ids (from the rule catalogue: tags are per rule)."""
        if self._rule_tags is None:
            from bastion.catalogue import rules_by_id

            found = {}
            for rule in rules_by_id().values():
                found[rule.id] = frozenset(
                    tag for name in Tags.__struct_fields__ for tag in getattr(rule.tags, name)
                )
            self._rule_tags = found
        return self._rule_tags

    def taxonomy_ids(self) -> list[str]:
        return sorted({tag for tags in self.rule_tags().values() for tag in tags})

    def rule_ids(self) -> list[str]:
        return [r[0] for r in self._run("SELECT DISTINCT rule_id FROM findings")]

    def _drivers(self, flt: FindingFilter) -> list[tuple[str, list[Any]]]:
        """The indexed filters of `flt` as (columns, values): one column and its values, or
        "stage, severity" and (stage, severity) pairs."""
        drivers: list[tuple[str, list[Any]]] = []
        if flt.run is not None:
            drivers.append(("run_id", [flt.run]))
        if flt.digest is not None:
            drivers.append(("digest", [flt.digest]))
        ranks = None
        if flt.severity is not None:
            ranks = list(range(Severity(flt.severity).rank, len(SEVERITIES)))
        if flt.stage is not None and ranks is not None:
            # one seek per severity on (stage, severity, run_id), never a row-by-row check
            drivers.append(("stage, severity", [(flt.stage, rank) for rank in ranks]))
        elif flt.stage is not None:
            drivers.append(("stage", [flt.stage]))
        elif ranks is not None:
            drivers.append(("severity", ranks))
        rules: set[str] | None = None
        if flt.rule is not None:
            rules = {flt.rule}
        if flt.taxonomy is not None:
            from bastion.lineage.compliance import covers

            # AML.T0010 takes its sub-techniques, MEASURE 2 its subcategories, as compliance does
            tagged = {
                r
                for r, tags in self.rule_tags().items()
                if any(covers(flt.taxonomy, tag) for tag in tags)
            }
            rules = tagged if rules is None else rules & tagged
        if rules is not None:
            drivers.append(("rule_id", sorted(rules)))
        return drivers

    def _count(self, column: str, values: list[Any], cap: int = EXACT_COUNT_LIMIT) -> int:
        """Rows matching `column IN values`, counted on the column's index up to `cap` (a
        count past the cap stops there: it only has to rank the filters)."""
        total = 0
        for value in values:
            total += int(
                self._run(
                    f"SELECT COUNT(*) FROM (SELECT 1 FROM findings WHERE {_equal(column)} LIMIT ?)",
                    (*_tuple(value), cap - total),
                )[0][0]
            )
            if total >= cap:
                break
        return total

    def _stage_severity_total(self, flt: FindingFilter) -> int:
        """The exact count of a stage and/or minimum-severity filter, from the per-run counts
        (a few rows per run instead of every finding)."""
        clauses: list[str] = []
        parameters: list[Any] = []
        if flt.stage is not None:
            clauses.append("stage = ?")
            parameters.append(flt.stage)
        if flt.severity is not None:
            clauses.append("severity >= ?")
            parameters.append(Severity(flt.severity).rank)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return int(
            self._run(f"SELECT COALESCE(SUM(n), 0) FROM run_counts{where}", parameters)[0][0]
        )

    def findings(
        self, flt: FindingFilter, cursor: str | None = None, limit: int = PAGE
    ) -> FindingPage:
        drivers = self._drivers(flt)
        after = _cursor(cursor)
        gate_clause = ("gate = ?", [flt.gate]) if flt.gate else None
        try:
            if not drivers:
                clauses: list[str] = []
                parameters: list[Any] = []
                if gate_clause:
                    clauses.append(gate_clause[0])
                    parameters += gate_clause[1]
                if after:
                    clauses.append("id < ?")
                    parameters.append(after[1])
                where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
                rows = self._run(
                    f"{_FINDING_SELECT}{where} ORDER BY id DESC LIMIT ?", (*parameters, limit + 1)
                )
                total = None if gate_clause else self.totals_findings()
                at_least = 0
            else:
                sized = sorted(
                    ((self._count(c, v, RANK_CAP), c, v) for c, v in drivers), key=lambda d: d[0]
                )
                size, column, values = sized[0]
                rest = [(c, v) for _, c, v in sized[1:]]
                rows = self._driven(column, values, rest, gate_clause, after, limit + 1)
                total = None
                at_least = RANK_CAP
                only = {part for _, c, _ in sized for part in c.split(", ")}
                if not gate_clause and only <= {"stage", "severity"}:
                    total = self._stage_severity_total(flt)
                elif not rest and not gate_clause:
                    size = size if size < RANK_CAP else self._count(column, values)
                    total = size if size < EXACT_COUNT_LIMIT else None
                    at_least = EXACT_COUNT_LIMIT
                elif size < RANK_CAP:
                    total = self._filtered_count(column, values, rest, gate_clause)
        except QueryTooSlow:
            return FindingPage(rows=(), next_cursor=None, total=None, too_slow=True)
        items = [_finding_row(r) for r in rows[:limit]]
        more = len(rows) > limit
        last = items[-1] if items else None
        return FindingPage(
            rows=tuple(items),
            next_cursor=f"{last.run_id}-{last.id}" if more and last else None,
            total=total,
            at_least=at_least if total is None else 0,
        )

    def totals_findings(self) -> int:
        return int(self._run("SELECT COUNT(*) FROM findings")[0][0])

    @staticmethod
    def _other_clauses(
        rest: list[tuple[str, list[Any]]], gate_clause: tuple[str, list[Any]] | None
    ) -> tuple[list[str], list[Any]]:
        clauses, parameters = [], []
        for column, values in rest:
            # unary + keeps SQLite on the driving index: these are checked row by row
            clauses.append(f"+{column} IN ({', '.join('?' * len(values)) or 'NULL'})")
            parameters += values
        if gate_clause:
            clauses.append("+" + gate_clause[0])
            parameters += gate_clause[1]
        return clauses, parameters

    def _driven(
        self,
        column: str,
        values: list[Any],
        rest: list[tuple[str, list[Any]]],
        gate_clause: tuple[str, list[Any]] | None,
        after: tuple[int, int] | None,
        limit: int,
    ) -> list[Any]:
        clauses, parameters = self._other_clauses(rest, gate_clause)
        if after:
            clauses.append("(run_id, id) < (?, ?)")
            parameters += list(after)
        extra = "".join(f" AND {c}" for c in clauses)
        order = "id DESC" if column == "run_id" else "run_id DESC, id DESC"
        streams = [
            self._run(
                f"{_FINDING_SELECT} WHERE {_equal(column)}{extra} ORDER BY {order} LIMIT ?",
                (*_tuple(value), *parameters, limit),
            )
            for value in values
        ]
        merged = heapq.merge(*streams, key=lambda r: (-r[1], -r[0]))
        return [row for _, row in zip(range(limit), merged, strict=False)]

    def _filtered_count(
        self,
        column: str,
        values: list[Any],
        rest: list[tuple[str, list[Any]]],
        gate_clause: tuple[str, list[Any]] | None,
    ) -> int:
        clauses, parameters = self._other_clauses(rest, gate_clause)
        extra = "".join(f" AND {c}" for c in clauses)
        return sum(
            int(
                self._run(
                    f"SELECT COUNT(*) FROM findings WHERE {_equal(column)}{extra}",
                    (*_tuple(value), *parameters),
                )[0][0]
            )
            for value in values
        )

    def finding(
        self, finding_id: int
    ) -> tuple[FindingRow, dict[str, Any] | None, dict[str, Any]] | None:
        """A finding's row, the full finding from its run's report, and the run's verdict."""
        rows = self._run(f"{_FINDING_SELECT} WHERE findings.id = ?", (finding_id,))
        if not rows:
            return None
        row = _finding_row(rows[0])
        found = self._run(
            "SELECT f.value FROM runs, json_each(runs.report, '$.results') AS r, "
            "json_each(r.value, '$.findings') AS f WHERE runs.id = ? AND "
            "json_extract(f.value, '$.fingerprint') = ? LIMIT 1",
            (row.run_id, rows[0][-1]),
        )
        verdict = self._run("SELECT verdict FROM runs WHERE id = ?", (row.run_id,))
        full = json.loads(found[0][0]) if found else None
        return row, full, json.loads(verdict[0][0]) if verdict else {}

    # -- trends --------------------------------------------------------------------------------

    def trend_days(self, days: int) -> list[str]:
        rows = self._run("SELECT MAX(day) FROM run_counts")
        if not rows or rows[0][0] is None:
            return []
        import datetime as dt

        try:
            end = dt.date.fromisoformat(rows[0][0])
        except ValueError:
            return []
        return [(end - dt.timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]

    def finding_trends(self, days: int) -> dict[str, Any]:
        """Findings per day by severity and by stage over the last `days` days of history."""
        axis = self.trend_days(days)
        if not axis:
            return {"days": [], "severity": {}, "stage": {}}
        index = {d: i for i, d in enumerate(axis)}
        by_severity = {s: [0] * len(axis) for s in SEVERITIES}
        by_stage = {s: [0] * len(axis) for s in STAGES}
        rows = self._run(
            "SELECT day, stage, severity, SUM(n) FROM run_counts WHERE day >= ? "
            "GROUP BY day, stage, severity",
            (axis[0],),
        )
        for day, stage, severity, n in rows:
            i = index.get(day)
            if i is None:
                continue
            if 0 <= severity < len(SEVERITIES):
                by_severity[SEVERITIES[severity]][i] += n
            if stage in by_stage:
                by_stage[stage][i] += n
        return {"days": axis, "severity": by_severity, "stage": by_stage}

    def drift_trend(self, days: list[str]) -> dict[str, list[int]]:
        """Drift findings per day and rule over the given days: counted per run on the
        (rule_id, run_id) index, and runs put on their day through (started_at, status) —
        neither touches a table row (a run's row holds its whole report)."""
        out = {rule: [0] * len(days) for rule in DRIFT_RULES}
        if not days:
            return out
        index = {d: i for i, d in enumerate(days)}
        day_of = {
            run_id: index.get(started[:10])
            for started, run_id in self._run(
                "SELECT started_at, id FROM runs WHERE started_at >= ?", (days[0],)
            )
        }
        if not day_of:
            return out
        first = min(day_of)
        for rule in DRIFT_RULES:
            for run_id, n in self._run(
                "SELECT run_id, COUNT(*) FROM findings WHERE rule_id = ? AND run_id >= ? "
                "GROUP BY run_id",
                (rule, first),
            ):
                i = day_of.get(run_id)
                if i is not None:
                    out[rule][i] += n
        return out

    def run_statuses(self, days: list[str]) -> dict[str, list[int]]:
        out = {s: [0] * len(days) for s in STATUSES}
        if not days:
            return out
        index = {d: i for i, d in enumerate(days)}
        rows = self._run(
            "SELECT substr(started_at, 1, 10), status, COUNT(*) FROM runs WHERE started_at >= ? "
            "GROUP BY 1, 2",
            (days[0],),
        )
        for day, status, n in rows:
            if day in index and status in out:
                out[status][index[day]] += n
        return out

    # -- models, datasets, lineage -------------------------------------------------------------

    def posture(self, limit: int = 200) -> list[Posture]:
        """Each model's latest evidence per aspect, what needs attention first."""
        models = self._run(
            "SELECT digest, name, last_seen FROM artifacts WHERE kind = 'model' "
            "ORDER BY last_seen DESC LIMIT ?",
            (limit,),
        )
        if not models:
            return []
        digests = [m[0] for m in models]
        marks = ", ".join("?" * len(digests))
        latest: dict[tuple[str, str], int] = {}
        for digest, command, run_id in self._run(
            "SELECT ra.digest, runs.command, MAX(ra.run_id) FROM run_artifacts AS ra JOIN runs "
            f"ON runs.id = ra.run_id WHERE ra.digest IN ({marks}) AND ra.role = 'subject' "
            "GROUP BY ra.digest, runs.command",
            digests,
        ):
            latest[digest, command] = run_id
        datasets: dict[str, list[str]] = {}
        for upstream, downstream in self._run(
            f"SELECT upstream, downstream FROM links WHERE downstream IN ({marks}) "
            "AND relation = 'trained-on'",
            digests,
        ):
            datasets.setdefault(downstream, []).append(upstream)
        for digest, command, run_id in self._run(
            "SELECT ra.digest, runs.command, MAX(ra.run_id) FROM run_artifacts AS ra JOIN runs "
            "ON runs.id = ra.run_id WHERE ra.digest IN (SELECT upstream FROM links WHERE "
            f"downstream IN ({marks}) AND relation = 'trained-on') GROUP BY ra.digest, "
            "runs.command",
            digests,
        ):
            latest[digest, command] = run_id
        run_ids = sorted(set(latest.values()))
        status = {}
        for start in range(0, len(run_ids), 500):
            chunk = run_ids[start : start + 500]
            for run_id, run_status in self._run(
                f"SELECT id, status FROM runs WHERE id IN ({', '.join('?' * len(chunk))})",
                chunk,
            ):
                status[run_id] = run_status
        out = []
        for digest, name, last_seen in models:
            aspects: dict[str, tuple[str, int] | None] = {}
            for aspect, commands in _ASPECT_COMMANDS.items():
                found = [latest[digest, c] for c in commands if (digest, c) in latest]
                aspects[aspect] = (status[max(found)], max(found)) if found else None
            data_runs = [
                latest[d, c]
                for d in datasets.get(digest, ())
                for c in ("data",)
                if (d, c) in latest
            ]
            aspects["data"] = (status[max(data_runs)], max(data_runs)) if data_runs else None
            attention = sum(
                _ATTENTION[a[0] if a and a[0] in _ATTENTION else None] for a in aspects.values()
            )
            out.append(
                Posture(
                    digest=digest,
                    name=name,
                    last_seen=last_seen,
                    aspects={a: aspects[a] for a in ASPECTS},
                    attention=attention,
                )
            )
        out.sort(key=lambda p: (-p.attention, p.name))
        return out

    def inventory(
        self, kind: str, cursor: str | None = None, limit: int = PAGE
    ) -> tuple[list[ArtifactRow], str | None]:
        """Models or datasets by content digest, most recently seen first."""
        clauses, parameters = ["kind = ?"], [kind]
        if cursor and len(cursor) < 600 and "|" in cursor:
            seen, digest = cursor.split("|", 1)
            clauses.append("(last_seen, digest) < (?, ?)")
            parameters += [seen, digest]
        rows = self._run(
            "SELECT digest, kind, name, first_seen, last_seen FROM artifacts WHERE "
            f"{' AND '.join(clauses)} ORDER BY last_seen DESC, digest DESC LIMIT ?",
            (*parameters, limit + 1),
        )
        more = len(rows) > limit
        rows = rows[:limit]
        out = []
        for digest, kind_, name, first, last in rows:
            versions = int(
                self._run("SELECT COUNT(*) FROM artifacts WHERE name = ?", (name,))[0][0]
            )
            signature = self._run(
                "SELECT runs.status, runs.id FROM run_artifacts AS ra JOIN runs ON runs.id = "
                "ra.run_id WHERE ra.digest = ? AND runs.command IN ('verify', 'sign') "
                "ORDER BY ra.run_id DESC LIMIT 1",
                (digest,),
            )
            owner = self._run(
                "SELECT json_extract(attributes, '$.owner') FROM links WHERE (downstream = ? "
                "OR upstream = ?) AND json_extract(attributes, '$.owner') IS NOT NULL "
                "ORDER BY id DESC LIMIT 1",
                (digest, digest),
            )
            out.append(
                ArtifactRow(
                    digest=digest,
                    kind=kind_,
                    name=name,
                    first_seen=first,
                    last_seen=last,
                    versions=versions,
                    signature=(signature[0][0], signature[0][1]) if signature else None,
                    owner=str(owner[0][0])[:200] if owner else None,
                )
            )
        next_cursor = f"{rows[-1][4]}|{rows[-1][0]}" if more and rows else None
        return out, next_cursor

    def dataset_versions(self, limit: int = PAGE) -> list[tuple[Any, ...]]:
        """The datasets table (manifests recorded by `bastion data manifest`)."""
        return self._run(
            "SELECT id, recorded_at, name, format, rows, columns, fingerprint, sha256 "
            "FROM datasets ORDER BY id DESC LIMIT ?",
            (limit,),
        )

    def lineage(self, focus: str, depth: int = 3, max_nodes: int = 150) -> Lineage:
        """The graph around a digest: `depth` steps upstream and downstream."""
        depths = {focus: 0}
        edges: dict[tuple[str, str, str], None] = {}
        truncated = False
        for direction in (-1, 1):
            frontier = [focus]
            for step in range(1, depth + 1):
                if not frontier:
                    break
                marks = ", ".join("?" * len(frontier))
                near, far = (
                    ("downstream", "upstream") if direction < 0 else ("upstream", "downstream")
                )
                rows = self._run(
                    f"SELECT upstream, downstream, relation FROM links WHERE {near} IN ({marks}) "
                    "LIMIT 1000",
                    frontier,
                )
                frontier = []
                for upstream, downstream, relation in rows:
                    other = upstream if far == "upstream" else downstream
                    if other not in depths:
                        if len(depths) >= max_nodes:
                            truncated = True
                            continue
                        depths[other] = direction * step
                        frontier.append(other)
                    edges[upstream, downstream, relation] = None
        marks = ", ".join("?" * len(depths))
        known = {
            r[0]: (r[1], r[2])
            for r in self._run(
                f"SELECT digest, kind, name FROM artifacts WHERE digest IN ({marks})",
                list(depths),
            )
        }
        latest: dict[str, list[tuple[str, str, int]]] = {}
        for digest, command, run_id, status in self._run(
            "SELECT ra.digest, runs.command, MAX(ra.run_id), runs.status FROM run_artifacts AS ra "
            f"JOIN runs ON runs.id = ra.run_id WHERE ra.digest IN ({marks}) "
            "GROUP BY ra.digest, runs.command",
            list(depths),
        ):
            latest.setdefault(digest, []).append((command, status, run_id))
        nodes = tuple(
            LineageNode(
                digest=d,
                kind=known.get(d, ("unknown", d))[0],
                name=known.get(d, ("unknown", d))[1],
                depth=level,
                latest=tuple(sorted(latest.get(d, []))),
            )
            for d, level in sorted(depths.items(), key=lambda item: (item[1], item[0]))
        )
        return Lineage(
            focus=focus,
            nodes=nodes,
            edges=tuple(LineageEdge(upstream=u, downstream=d, relation=r) for u, d, r in edges),
            truncated=truncated,
        )

    def recent_models(self, limit: int = 20) -> list[tuple[str, str, str]]:
        return [
            (r[0], r[1], r[2])
            for r in self._run(
                "SELECT digest, kind, name FROM artifacts WHERE digest IN (SELECT upstream FROM "
                "links UNION SELECT downstream FROM links) ORDER BY (kind = 'model') DESC, "
                "last_seen DESC LIMIT ?",
                (limit,),
            )
        ]

    def rule_firing(self, rule_id: str, cap: int) -> tuple[int, int, str] | None:
        """(findings, capped at `cap`; the latest run with one; its start) for a rule, or
        None if it never fired: an index seek and a bounded index range."""
        latest = self._run("SELECT MAX(run_id) FROM findings WHERE rule_id = ?", (rule_id,))
        if not latest or latest[0][0] is None:
            return None
        count = self._run(
            "SELECT COUNT(*) FROM (SELECT 1 FROM findings WHERE rule_id = ? LIMIT ?)",
            (rule_id, cap),
        )[0][0]
        started = self._run("SELECT started_at FROM runs WHERE id = ?", (latest[0][0],))
        return int(count), int(latest[0][0]), started[0][0] if started else ""

    def latest_runs_by_command(self) -> dict[str, tuple[int, str, str]]:
        """command -> (its newest run, when it started, its verdict)."""
        out = {}
        for command in self.commands():
            rows = self._run(
                "SELECT id, started_at, status FROM runs WHERE command = ? "
                "ORDER BY id DESC LIMIT 1",
                (command,),
            )
            if rows:
                out[command] = (int(rows[0][0]), str(rows[0][1]), str(rows[0][2]))
        return out


def _equal(columns: str) -> str:
    """`a = ? AND b = ?` for a driver's columns ("a, b")."""
    return " AND ".join(f"{c} = ?" for c in columns.split(", "))


def _tuple(value: Any) -> tuple[Any, ...]:
    return value if isinstance(value, tuple) else (value,)


_FINDING_SELECT = (
    "SELECT findings.id, findings.run_id, rule_id, severity, stage, path, gate, message, digest, "
    "fingerprint FROM findings"
)


def _finding_row(row: Sequence[Any]) -> FindingRow:
    rank = row[3] if isinstance(row[3], int) and 0 <= row[3] < len(SEVERITIES) else 0
    return FindingRow(
        id=row[0],
        run_id=row[1],
        rule_id=row[2],
        severity=SEVERITIES[rank],
        stage=row[4],
        path=row[5],
        gate=row[6],
        message=row[7],
        digest=row[8],
    )


def _run_row(row: Sequence[Any]) -> RunRow:
    try:
        counts = {k: int(v) for k, v in json.loads(row[7]).items()}
    except (ValueError, TypeError, AttributeError):
        counts = {}
    return RunRow(
        id=row[0],
        started_at=row[1],
        command=row[2],
        targets=row[3],
        status=row[4],
        exit_code=row[5],
        findings=row[6],
        counts=counts,
    )
