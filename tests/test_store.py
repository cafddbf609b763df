"""The SQLite history: record, list, reload, migrations, and refusing a newer schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bastion.config import Settings
from bastion.errors import StoreError
from bastion.findings import Report, ToolInfo
from bastion.policy import evaluate
from bastion.store import MIGRATIONS, Store


def test_record_list_and_load(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.db")
    report = Report(tool=ToolInfo(version="0"), targets=("a",))
    verdict = evaluate(report, Settings())
    first = store.record(report, verdict)
    second = store.record(report, verdict)
    assert [r.id for r in store.runs()] == [second, first]
    loaded, loaded_verdict = store.load(first)
    assert loaded == report and loaded_verdict == verdict
    with pytest.raises(StoreError):
        store.load(999)
    store.close()
    with sqlite3.connect(tmp_path / "h.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "h.db") as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    with pytest.raises(StoreError, match="newer"):
        Store(tmp_path / "h.db")


def test_garbage_file_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "h.db").write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError):
        Store(tmp_path / "h.db")
