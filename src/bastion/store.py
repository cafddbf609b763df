"""Run history in SQLite (stdlib sqlite3, WAL). Schema migrations are numbered by
PRAGMA user_version; a newer database than this bastion knows is refused, not altered."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from bastion.errors import StoreError
from bastion.findings import Report, Severity
from bastion.policy import Status, Verdict
from bastion.records import Record, field

MIGRATIONS = (
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at TEXT NOT NULL,
        command TEXT NOT NULL,
        targets TEXT NOT NULL,
        status TEXT NOT NULL,
        exit_code INTEGER NOT NULL,
        findings INTEGER NOT NULL,
        counts TEXT NOT NULL,
        report TEXT NOT NULL,
        verdict TEXT NOT NULL
    );
    CREATE INDEX runs_started ON runs (started_at);
    """,
    """
    CREATE TABLE datasets (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        recorded_at TEXT NOT NULL,
        name TEXT NOT NULL,
        format TEXT NOT NULL,
        rows INTEGER NOT NULL,
        columns INTEGER NOT NULL,
        fingerprint TEXT NOT NULL,
        sha256 TEXT,
        manifest TEXT NOT NULL
    );
    CREATE INDEX datasets_name ON datasets (name, id);
    """,
    # 3: evidence and lineage (bastion.lineage writes and reads these; the dashboard reads them)
    # - artifacts: everything known by content digest ("sha256:<hex>" of a file,
    #   "tree-sha256:<hex>" of a folder, "git:<commit>", "mlflow:<run id>", ...)
    # - run_artifacts: the digests each run saw, and in which role (subject: what it judged;
    #   input: data it read; policy; key: a key it verified with; signature)
    # - links: lineage edges between digests (trained-on, signs, contains, serves, ...)
    # - findings: one row per finding of a run, for queries at scale (the report JSON stays
    #   the full record); severity is Severity.rank; gate is what the run's verdict did with
    #   it (failing, waived, baselined, below); taxonomy filters go through the rule ids
    #   (tags are per rule, bastion.catalogue), so no tag column
    """
    CREATE INDEX runs_command ON runs (command, id);
    CREATE TABLE artifacts (
        digest TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX artifacts_kind ON artifacts (kind, last_seen);
    CREATE TABLE run_artifacts (
        run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        digest TEXT NOT NULL,
        role TEXT NOT NULL,
        path TEXT NOT NULL,
        PRIMARY KEY (run_id, role, path, digest)
    ) WITHOUT ROWID;
    CREATE INDEX run_artifacts_digest ON run_artifacts (digest, run_id);
    CREATE TABLE links (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        recorded_at TEXT NOT NULL,
        upstream TEXT NOT NULL,
        downstream TEXT NOT NULL,
        relation TEXT NOT NULL,
        run_id INTEGER REFERENCES runs (id) ON DELETE SET NULL,
        attributes TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX links_upstream ON links (upstream, relation);
    CREATE INDEX links_downstream ON links (downstream, relation);
    CREATE TABLE findings (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        rule_id TEXT NOT NULL,
        severity INTEGER NOT NULL,
        stage TEXT NOT NULL,
        path TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        gate TEXT NOT NULL,
        message TEXT NOT NULL,
        digest TEXT
    );
    CREATE INDEX findings_run ON findings (run_id);
    CREATE INDEX findings_rule ON findings (rule_id, run_id);
    CREATE INDEX findings_severity ON findings (severity, run_id);
    CREATE INDEX findings_digest ON findings (digest, run_id);
    INSERT INTO findings (run_id, rule_id, severity, stage, path, fingerprint, gate, message)
    SELECT runs.id,
           json_extract(f.value, '$.rule_id'),
           CASE json_extract(f.value, '$.severity')
               WHEN 'critical' THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2
               WHEN 'low' THEN 1 ELSE 0 END,
           json_extract(f.value, '$.stage'),
           json_extract(f.value, '$.location.path'),
           json_extract(f.value, '$.fingerprint'),
           CASE
               WHEN json_extract(f.value, '$.fingerprint') IN
                   (SELECT value FROM json_each(runs.verdict, '$.failing')) THEN 'failing'
               WHEN json_extract(f.value, '$.fingerprint') IN
                   (SELECT value FROM json_each(runs.verdict, '$.waived')) THEN 'waived'
               WHEN json_extract(f.value, '$.fingerprint') IN
                   (SELECT value FROM json_each(runs.verdict, '$.baselined')) THEN 'baselined'
               ELSE 'below' END,
           json_extract(f.value, '$.message')
    FROM runs, json_each(runs.report, '$.results') AS r, json_each(r.value, '$.findings') AS f
    ORDER BY runs.id;
    """,
    # 4: what the dashboard (bastion.ui) pages and charts need at scale: findings by stage in
    # index order, and per-run counts by day, stage and severity (trends without a pass over
    # the findings table); the covering indexes keep a year of trends off the table rows
    # (a run's row holds its whole report)
    """
    CREATE INDEX findings_stage ON findings (stage, run_id);
    CREATE INDEX findings_stage_severity ON findings (stage, severity, run_id);
    CREATE TABLE run_counts (
        run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        day TEXT NOT NULL,
        stage TEXT NOT NULL,
        severity INTEGER NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (run_id, stage, severity)
    ) WITHOUT ROWID;
    CREATE INDEX run_counts_day ON run_counts (day, stage, severity, n);
    CREATE INDEX runs_day_status ON runs (started_at, status);
    INSERT INTO run_counts (run_id, day, stage, severity, n)
    SELECT findings.run_id, substr(runs.started_at, 1, 10), findings.stage, findings.severity,
           COUNT(*)
    FROM findings JOIN runs ON runs.id = findings.run_id
    GROUP BY findings.run_id, findings.stage, findings.severity;
    """,
)


def default_path() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("bastion", appauthor=False)) / "history.sqlite3"


class RunSummary(Record):
    id: int
    started_at: str
    command: str
    targets: str
    status: str
    exit_code: int
    findings: int
    counts: dict[str, int]


class DatasetVersion(NamedTuple):
    """One dataset as a manifest recorded it."""

    id: int
    recorded_at: str
    name: str
    format: str
    rows: int
    columns: int
    fingerprint: str
    sha256: str | None
    manifest: str  # where the manifest was written


class Seen(Record):
    """One digest a run saw: what it is (kind: model, dataset, code, policy, key, signature,
    manifest, deployment, file, reference), in which role (subject: what the run judged;
    input: what it read; policy; key; signature) and under which path or name."""

    digest: str
    kind: str
    role: str
    path: str


class Artifact(Record):
    """Something known by its content digest, with the name it was last seen under."""

    digest: str
    kind: str
    name: str
    first_seen: str
    last_seen: str


class Link(Record):
    """A lineage edge: `upstream` flows into `downstream` (a dataset a model was trained on, a
    model a signature signs, a file a folder contains, a model a deployment serves)."""

    id: int = 0
    recorded_at: str
    upstream: str
    downstream: str
    relation: str
    run_id: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


class RunEvidence(Record):
    """A run that saw a digest: the run's summary, when it started, its verdict, and the role
    and path under which it saw the digest."""

    run_id: int
    started_at: str
    command: str
    status: str
    exit_code: int
    role: str
    path: str


class StoredFinding(Record):
    """One row of the findings table (the full finding is in the run's report)."""

    id: int
    run_id: int
    rule_id: str
    severity: Severity
    stage: str
    path: str
    fingerprint: str
    gate: str  # failing | waived | baselined | below (the run's verdict on it)
    message: str
    digest: str | None = None


class RuleEvidence(Record):
    """How often a rule fired across the history, and the latest run it fired in."""

    rule_id: str
    findings: int
    runs: int
    latest_run: int
    latest_at: str


_RANK_SEVERITY = {s.rank: s for s in Severity}


class Store:
    """The history database (default: in the user data folder). Use it as a context manager:
    the connection is closed on the way out."""

    def __init__(self, path: Path | None = None) -> None:
        path = path or default_path()
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"cannot use history store {path}: {exc}", hint="pass --store PATH or --no-store"
            ) from exc
        except OSError as exc:
            raise StoreError(
                f"cannot create history store {path}: {exc.strerror}",
                hint="pass --store PATH or --no-store",
            ) from exc

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > len(MIGRATIONS):
            raise StoreError(
                f"history store {self.path} was written by a newer bastion (schema {version})"
            )
        for number in range(version, len(MIGRATIONS)):
            with self._db:
                self._db.executescript(MIGRATIONS[number])
                self._db.execute(f"PRAGMA user_version = {number + 1}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def record(self, report: Report, verdict: Verdict, seen: Sequence[Seen] = ()) -> int:
        """One run: its report and verdict, one row per finding, and the digests it saw
        (bastion.lineage.record_run computes them), in one transaction."""
        started_at = str(report.metadata.get("started_at", ""))
        with self._db:
            cursor = self._db.execute(
                "INSERT INTO runs (started_at, command, targets, status, exit_code, findings, "
                "counts, report, verdict) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    started_at,
                    report.command,
                    ", ".join(report.targets),
                    verdict.status.value,
                    verdict.exit_code,
                    len(report.findings),
                    json.dumps(report.severity_counts()),
                    report.model_dump_json(),
                    verdict.model_dump_json(),
                ),
            )
            run_id = int(cursor.lastrowid or 0)
            self._record_findings(run_id, report, verdict, seen)
            self._record_counts(run_id, started_at, report)
            self._record_seen(run_id, started_at, seen)
        return run_id

    def _record_counts(self, run_id: int, started_at: str, report: Report) -> None:
        """The run's findings counted by stage and severity, under its day (trends)."""
        counts: dict[tuple[str, int], int] = {}
        for result in report.results:
            for f in result.findings:
                key = (f.stage.value, f.severity.rank)
                counts[key] = counts.get(key, 0) + 1
        self._db.executemany(
            "INSERT INTO run_counts (run_id, day, stage, severity, n) VALUES (?, ?, ?, ?, ?)",
            [(run_id, started_at[:10], st, sev, n) for (st, sev), n in sorted(counts.items())],
        )

    def _record_findings(
        self, run_id: int, report: Report, verdict: Verdict, seen: Sequence[Seen]
    ) -> None:
        subjects = {s.path: s.digest for s in seen if s.role == "subject"}
        gates = {fp: "baselined" for fp in verdict.baselined}
        gates.update({fp: "waived" for fp in verdict.waived})
        gates.update({fp: "failing" for fp in verdict.failing})
        self._db.executemany(
            "INSERT INTO findings (run_id, rule_id, severity, stage, path, fingerprint, gate, "
            "message, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    run_id,
                    f.rule_id,
                    f.severity.rank,
                    f.stage.value,
                    f.location.path,
                    f.fingerprint,
                    gates.get(f.fingerprint, "below"),
                    f.message,
                    subjects.get(f.location.path),
                )
                for result in report.results
                for f in result.findings
            ),
        )

    def _record_seen(self, run_id: int, when: str, seen: Iterable[Seen]) -> None:
        for item in seen:
            self._touch(item.digest, item.kind, item.path, when)
            self._db.execute(
                "INSERT OR IGNORE INTO run_artifacts (run_id, digest, role, path) "
                "VALUES (?, ?, ?, ?)",
                (run_id, item.digest, item.role, item.path),
            )

    def _touch(self, digest: str, kind: str, name: str, when: str) -> None:
        """Insert an artifact or refresh its name and last sighting. A kind learnt from
        content ('model', 'dataset') is never replaced by the generic 'file'."""
        self._db.execute(
            "INSERT INTO artifacts (digest, kind, name, first_seen, last_seen) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (digest) DO UPDATE SET "
            "name = excluded.name, last_seen = max(last_seen, excluded.last_seen), "
            "kind = CASE WHEN excluded.kind = 'file' THEN kind ELSE excluded.kind END",
            (digest, kind, name, when, when),
        )

    def add_artifacts(self, artifacts: Iterable[Seen], when: str) -> None:
        """Make digests known without a run (e.g. the datasets of a lineage record)."""
        with self._db:
            for item in artifacts:
                self._touch(item.digest, item.kind, item.path, when)

    def add_links(self, links: Iterable[Link]) -> list[int]:
        """Record lineage edges; an edge already recorded (same ends, relation and
        attributes) is not repeated."""
        ids = []
        with self._db:
            for link in links:
                attributes = json.dumps(link.attributes, sort_keys=True)
                row = self._db.execute(
                    "SELECT id FROM links WHERE upstream = ? AND downstream = ? AND "
                    "relation = ? AND attributes = ?",
                    (link.upstream, link.downstream, link.relation, attributes),
                ).fetchone()
                if row is not None:
                    ids.append(int(row[0]))
                    continue
                cursor = self._db.execute(
                    "INSERT INTO links (recorded_at, upstream, downstream, relation, run_id, "
                    "attributes) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        link.recorded_at,
                        link.upstream,
                        link.downstream,
                        link.relation,
                        link.run_id,
                        attributes,
                    ),
                )
                ids.append(int(cursor.lastrowid or 0))
        return ids

    def artifact(self, digest: str) -> Artifact | None:
        row = self._db.execute(
            "SELECT digest, kind, name, first_seen, last_seen FROM artifacts WHERE digest = ?",
            (digest,),
        ).fetchone()
        return None if row is None else _artifact(row)

    def artifacts(
        self, kind: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Artifact]:
        """Known artifacts, most recently seen first (the inventory)."""
        query = "SELECT digest, kind, name, first_seen, last_seen FROM artifacts"
        parameters: tuple[Any, ...] = ()
        if kind is not None:
            query += " WHERE kind = ?"
            parameters = (kind,)
        query += " ORDER BY last_seen DESC, digest LIMIT ? OFFSET ?"
        rows = self._db.execute(query, (*parameters, limit, offset)).fetchall()
        return [_artifact(r) for r in rows]

    def artifacts_named(self, name: str, limit: int = 20) -> list[Artifact]:
        """Artifacts last seen under a name or path, newest first (a model file's earlier
        digests)."""
        rows = self._db.execute(
            "SELECT digest, kind, name, first_seen, last_seen FROM artifacts WHERE name = ? "
            "ORDER BY last_seen DESC LIMIT ?",
            (name, limit),
        ).fetchall()
        return [_artifact(r) for r in rows]

    def evidence(
        self,
        digest: str,
        command: str | None = None,
        role: str | None = None,
        limit: int = 50,
    ) -> list[RunEvidence]:
        """Runs that saw a digest, newest first; optionally of one command or in one role."""
        query = (
            "SELECT ra.run_id, runs.started_at, runs.command, runs.status, runs.exit_code, "
            "ra.role, ra.path FROM run_artifacts AS ra JOIN runs ON runs.id = ra.run_id "
            "WHERE ra.digest = ?"
        )
        parameters: list[Any] = [digest]
        if command is not None:
            query += " AND runs.command = ?"
            parameters.append(command)
        if role is not None:
            query += " AND ra.role = ?"
            parameters.append(role)
        query += " ORDER BY ra.run_id DESC LIMIT ?"
        rows = self._db.execute(query, (*parameters, limit)).fetchall()
        names = RunEvidence.__struct_fields__
        return [RunEvidence.model_validate(dict(zip(names, r, strict=True))) for r in rows]

    def seen_by(self, run_id: int) -> list[Seen]:
        """The digests one run saw."""
        rows = self._db.execute(
            "SELECT ra.digest, COALESCE(a.kind, 'file'), ra.role, ra.path FROM run_artifacts "
            "AS ra LEFT JOIN artifacts AS a ON a.digest = ra.digest WHERE ra.run_id = ? "
            "ORDER BY ra.role, ra.path",
            (run_id,),
        ).fetchall()
        return [Seen(digest=r[0], kind=r[1], role=r[2], path=r[3]) for r in rows]

    def links(
        self, digest: str, direction: str = "both", relation: str | None = None
    ) -> list[Link]:
        """Edges touching a digest: 'upstream' (edges into it), 'downstream' (edges out of
        it) or both; oldest first."""
        clauses = []
        if direction in ("upstream", "both"):
            clauses.append("downstream = ?")
        if direction in ("downstream", "both"):
            clauses.append("upstream = ?")
        if not clauses:
            raise ValueError(f"direction {direction!r}")
        query = (
            "SELECT id, recorded_at, upstream, downstream, relation, run_id, attributes "
            f"FROM links WHERE ({' OR '.join(clauses)})"
        )
        parameters: list[Any] = [digest] * len(clauses)
        if relation is not None:
            query += " AND relation = ?"
            parameters.append(relation)
        rows = self._db.execute(query + " ORDER BY id", parameters).fetchall()
        return [
            Link(
                id=r[0],
                recorded_at=r[1],
                upstream=r[2],
                downstream=r[3],
                relation=r[4],
                run_id=r[5],
                attributes=json.loads(r[6]),
            )
            for r in rows
        ]

    def findings(
        self,
        *,
        run_id: int | None = None,
        rule_ids: Sequence[str] | None = None,
        min_severity: Severity | None = None,
        stage: str | None = None,
        digest: str | None = None,
        gate: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[StoredFinding]:
        """Findings newest run first, filtered; page with `before_id` (the last id of the
        previous page). Taxonomy filters pass the ids of the rules carrying the tag."""
        clauses: list[str] = []
        parameters: list[Any] = []
        for column, value in (
            ("run_id", run_id),
            ("stage", stage),
            ("digest", digest),
            ("gate", gate),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                parameters.append(value)
        if rule_ids is not None:
            clauses.append(f"rule_id IN ({', '.join('?' * len(rule_ids)) or 'NULL'})")
            parameters.extend(rule_ids)
        if min_severity is not None:
            clauses.append("severity >= ?")
            parameters.append(min_severity.rank)
        if before_id is not None:
            # keyset on (run_id, id): the order of every (column, run_id) index
            clauses.append("(run_id, id) < ((SELECT run_id FROM findings WHERE id = ?), ?)")
            parameters.extend((before_id, before_id))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(
            "SELECT id, run_id, rule_id, severity, stage, path, fingerprint, gate, message, "
            f"digest FROM findings{where} ORDER BY run_id DESC, id DESC LIMIT ?",
            (*parameters, limit),
        ).fetchall()
        names = StoredFinding.__struct_fields__
        return [
            StoredFinding.model_validate(
                {**dict(zip(names, r, strict=True)), "severity": _RANK_SEVERITY[r[3]]}
            )
            for r in rows
        ]

    def rule_evidence(self) -> dict[str, RuleEvidence]:
        """Per rule id: findings and runs across the history, and the latest run it fired in."""
        rows = self._db.execute(
            "SELECT f.rule_id, f.n, f.runs, f.latest, runs.started_at FROM (SELECT rule_id, "
            "COUNT(*) AS n, COUNT(DISTINCT run_id) AS runs, MAX(run_id) AS latest "
            "FROM findings GROUP BY rule_id) AS f JOIN runs ON runs.id = f.latest"
        ).fetchall()
        return {
            r[0]: RuleEvidence(
                rule_id=r[0], findings=r[1], runs=r[2], latest_run=r[3], latest_at=r[4]
            )
            for r in rows
        }

    def latest_runs_by_command(self) -> dict[str, RunSummary]:
        """The newest run of each command."""
        rows = self._db.execute(
            "SELECT id, started_at, command, targets, status, exit_code, findings, counts "
            "FROM runs WHERE id IN (SELECT MAX(id) FROM runs GROUP BY command)"
        ).fetchall()
        return {r[2]: _summary(r) for r in rows}

    def run_summary(self, run_id: int) -> RunSummary | None:
        row = self._db.execute(
            "SELECT id, started_at, command, targets, status, exit_code, findings, counts "
            "FROM runs WHERE id = ?",
            (run_id,),
        ).fetchone()
        return None if row is None else _summary(row)

    def counts(self) -> dict[str, int]:
        """How many runs, findings, artifacts and links the store holds."""
        out = {}
        for table in ("runs", "findings", "artifacts", "links"):
            (out[table],) = self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
        return out

    def runs(self, limit: int = 20) -> list[RunSummary]:
        rows = self._db.execute(
            "SELECT id, started_at, command, targets, status, exit_code, findings, counts "
            "FROM runs ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [_summary(r) for r in rows]

    def load(self, run_id: int) -> tuple[Report, Verdict]:
        row = self._db.execute(
            "SELECT report, verdict FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise StoreError(
                f"no run {run_id} in {self.path}", hint="`bastion history` lists the runs"
            )
        return Report.model_validate_json(row[0]), Verdict.model_validate_json(row[1])

    def record_manifest(self, manifest: Any, written_to: str) -> list[int]:
        """One row per dataset of a data manifest (datacheck/manifest.py): the versions
        `bastion history --datasets` lists."""
        recorded_at = str(manifest.metadata.get("created_at", ""))
        ids = []
        with self._db:
            for entry in manifest.datasets:
                cursor = self._db.execute(
                    "INSERT INTO datasets (recorded_at, name, format, rows, columns, "
                    "fingerprint, sha256, manifest) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        recorded_at,
                        entry.name,
                        entry.format,
                        entry.rows,
                        len(entry.columns),
                        entry.fingerprint,
                        entry.file.sha256 if entry.file is not None else None,
                        written_to,
                    ),
                )
                ids.append(int(cursor.lastrowid or 0))
                if entry.file is not None:  # known by its file digest, as lineage names it
                    self._touch("sha256:" + entry.file.sha256, "dataset", entry.name, recorded_at)
        return ids

    def dataset_versions(self, name: str | None = None, limit: int = 20) -> list[DatasetVersion]:
        """Recorded dataset versions, newest first; a dataset's earlier versions are told apart
        by their row fingerprint."""
        query = (
            "SELECT id, recorded_at, name, format, rows, columns, fingerprint, sha256, manifest "
            "FROM datasets"
        )
        parameters: tuple[Any, ...] = ()
        if name is not None:
            query += " WHERE name = ?"
            parameters = (name,)
        rows = self._db.execute(query + " ORDER BY id DESC LIMIT ?", (*parameters, limit))
        return [DatasetVersion._make(r) for r in rows.fetchall()]

    def latest_id(self) -> int | None:
        row = self._db.execute("SELECT MAX(id) FROM runs").fetchone()
        return int(row[0]) if row and row[0] is not None else None


def _summary(row: Sequence[Any]) -> RunSummary:
    names = RunSummary.__struct_fields__
    return RunSummary.model_validate(
        {**dict(zip(names[:7], row[:7], strict=True)), "counts": json.loads(row[7])}
    )


def _artifact(row: Sequence[Any]) -> Artifact:
    return Artifact(digest=row[0], kind=row[1], name=row[2], first_seen=row[3], last_seen=row[4])


__all__ = [
    "Artifact",
    "DatasetVersion",
    "Link",
    "RuleEvidence",
    "RunEvidence",
    "RunSummary",
    "Seen",
    "Status",
    "Store",
    "StoredFinding",
]
