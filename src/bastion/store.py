"""Run history in SQLite (stdlib sqlite3, WAL). Schema migrations are numbered by
PRAGMA user_version; a newer database than this bastion knows is refused, not altered."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, NamedTuple

from bastion.errors import StoreError
from bastion.findings import Report
from bastion.policy import Status, Verdict
from bastion.records import Record

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

    def record(self, report: Report, verdict: Verdict) -> int:
        with self._db:
            cursor = self._db.execute(
                "INSERT INTO runs (started_at, command, targets, status, exit_code, findings, "
                "counts, report, verdict) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    str(report.metadata.get("started_at", "")),
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
        return int(cursor.lastrowid or 0)

    def runs(self, limit: int = 20) -> list[RunSummary]:
        rows = self._db.execute(
            "SELECT id, started_at, command, targets, status, exit_code, findings, counts "
            "FROM runs ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        names = RunSummary.__struct_fields__
        return [
            RunSummary.model_validate(
                {**dict(zip(names[:7], r[:7], strict=True)), "counts": json.loads(r[7])}
            )
            for r in rows
        ]

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


__all__ = ["DatasetVersion", "RunSummary", "Status", "Store"]
