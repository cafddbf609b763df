"""The audit log: durable group commit, the hash chain, append-only triggers, checkpoints, and
every way it can fail (full disk, read-only file, corrupt database, missing or wrong key)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from bastion.guard.audit import (
    NOT_RECORDED,
    AuditError,
    AuditEvent,
    AuditLog,
    AuditUnavailable,
    checkpoint_path_for,
    input_digest,
    record_hash,
    utc_now,
    worker_log_path,
)
from bastion.guard.checkpoints import (
    generate_key,
    load_verify_key,
    read_checkpoints,
    signature_ok,
)
from bastion.records import RecordError

MODEL = "sha256:" + "ab" * 32


def event(n: int = 0, *, status: int = 200, key: str | None = "k1") -> AuditEvent:
    return AuditEvent(
        at=utc_now(),
        key_id=key,
        tenant="acme",
        route="/v1/predict",
        model_digest=MODEL,
        input_digest=input_digest(f"row {n}".encode()),
        decisions={"auth": "allow", "contract": "allow", "pii": "redact"},
        status=status,
        latency_ms=0.8,
    )


@pytest.fixture
def key(tmp_path: Path) -> Path:
    private, _public = generate_key(tmp_path / "audit.key")
    return private


def rows(path: Path) -> list[tuple[int, str, bytes, str, str]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT seq, recorded_at, event, prev, hash FROM events").fetchall()


async def append_many(log: AuditLog, count: int) -> list[int]:
    return list(await asyncio.gather(*(log.append(event(i)) for i in range(count))))


def test_appends_resolve_in_order_once_durable_and_chain(tmp_path: Path, key: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    with AuditLog(path, signing_key=key) as log:
        seqs = asyncio.run(append_many(log, 300))
        assert seqs == list(range(1, 301))
        status = log.status()
        assert status.ready and status.appended == 300 and status.failed == 0
        # group commit: far fewer transactions than events
        assert status.batches < 300
        # durable means visible to another connection before close
        assert len(rows(path)) == 300
    with sqlite3.connect(path) as conn:
        chain, worker = conn.execute("SELECT chain, worker FROM chain").fetchone()
    prev = None
    for seq, at, data, prev_hash, digest in rows(path):
        assert digest == record_hash(chain, worker, seq, prev_hash, at, data)
        if prev is not None:
            assert prev_hash == prev
        prev = digest
        assert b"row " not in data  # digests only
    assert worker == "audit"


def test_submit_from_threads(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "a.sqlite3") as log:
        futures = [log.submit(event(i)) for i in range(50)]
        assert sorted(f.result(timeout=10) for f in futures) == list(range(1, 51))


def test_triggers_refuse_update_delete_and_out_of_order(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    with AuditLog(path) as log:
        asyncio.run(append_many(log, 3))
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in (
        "UPDATE events SET status = 1",
        "UPDATE events SET event = x'00' WHERE seq = 2",
        "DELETE FROM events WHERE seq = 3",
        "DELETE FROM chain",
        "UPDATE chain SET worker = 'x'",
        "INSERT INTO events VALUES (7, 'x', x'00', 'p', 'h')",
    ):
        with pytest.raises(sqlite3.DatabaseError):
            conn.execute(statement)
    conn.close()
    assert [r[0] for r in rows(path)] == [1, 2, 3]


def test_reopen_continues_the_chain(tmp_path: Path, key: Path) -> None:
    path = tmp_path / "a.sqlite3"
    with AuditLog(path, signing_key=key) as log:
        asyncio.run(append_many(log, 5))
    with AuditLog(path, signing_key=key) as log:
        assert asyncio.run(append_many(log, 2)) == [6, 7]
    stored = rows(path)
    assert stored[5][3] == stored[4][4]  # record 6 links to record 5


def test_checkpoints_are_signed_and_outside_the_database(tmp_path: Path, key: Path) -> None:
    path = tmp_path / "a.sqlite3"
    with AuditLog(path, signing_key=key, checkpoint_every=10) as log:
        for _ in range(3):
            asyncio.run(append_many(log, 10))
    found = read_checkpoints(checkpoint_path_for(path))
    public = load_verify_key(key.with_name("audit.key.pub"))
    assert found.checkpoints[0].seq == 0  # genesis, before any event
    assert found.checkpoints[-1].seq == 30
    assert found.checkpoints[-1].head == rows(path)[-1][4]
    assert all(signature_ok(c, public) for c in found.checkpoints)
    forged = found.checkpoints[-1].model_copy({"seq": 31})
    assert not signature_ok(forged, public)


def test_idle_log_checkpoints_on_a_timer(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    log = AuditLog(path, checkpoint_seconds=0.05)
    try:
        asyncio.run(append_many(log, 4))
        for _ in range(100):
            if read_checkpoints(checkpoint_path_for(path)).checkpoints[-1].seq == 4:
                break
            asyncio.run(asyncio.sleep(0.02))
        assert read_checkpoints(checkpoint_path_for(path)).checkpoints[-1].seq == 4
    finally:
        log.close()


def test_workers_keep_their_own_chains(tmp_path: Path) -> None:
    paths = [worker_log_path(tmp_path, name) for name in ("w1", "w2")]
    logs = [AuditLog(p, worker=n) for p, n in zip(paths, ("w1", "w2"), strict=True)]
    for log in logs:
        asyncio.run(append_many(log, 3))
        log.close()
    chains = set()
    for path, name in zip(paths, ("w1", "w2"), strict=True):
        with sqlite3.connect(path) as conn:
            chain, worker = conn.execute("SELECT chain, worker FROM chain").fetchone()
        assert worker == name
        chains.add(chain)
    assert len(chains) == 2
    with pytest.raises(AuditError, match="not w9"):
        AuditLog(paths[0], worker="w9")
    with pytest.raises(AuditError):
        worker_log_path(tmp_path, "../etc")


# -- events carry no raw data -------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("input_digest", "jane.doe@example.com"),
        ("model_digest", "model.pkl"),
        ("key_id", "bst_abc_secret with spaces"),
        ("route", "/v1/predict?ssn=123-45-6789"),
        ("decisions", {"pii": "found jane@example.com"}),
        ("status", 42),
        ("latency_ms", float("nan")),
        ("at", "yesterday"),
    ],
)
def test_events_refuse_free_text(field: str, value: object) -> None:
    with pytest.raises(RecordError) as error:
        event().model_copy({field: value})
    assert error.value.path == field


def test_keyed_digest_differs_and_is_stable() -> None:
    assert input_digest(b"x", key=b"k") == input_digest(b"x", key=b"k")
    assert input_digest(b"x", key=b"k") != input_digest(b"x", key=b"j")
    assert input_digest(b"x").startswith("sha256:")


# -- failure paths ------------------------------------------------------------------------


def test_full_disk_strict_refuses_and_recovers_nothing_silently(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    log = AuditLog(path, max_bytes=64 * 1024)
    try:
        outcomes: list[int | str] = []
        for i in range(2000):
            try:
                outcomes.append(log.submit(event(i)).result(timeout=10))
            except AuditUnavailable as exc:
                outcomes.append(str(exc))
                break
        assert isinstance(outcomes[-1], str) and "full" in outcomes[-1]
        acknowledged = [o for o in outcomes if isinstance(o, int)]
        status = log.status()
        assert not status.ready and status.failed == 1 and "full" in (status.last_error or "")
    finally:
        log.close()
    # every acknowledged event is there, nothing else
    assert [r[0] for r in rows(path)] == acknowledged


def test_full_disk_non_strict_says_not_recorded(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.sqlite3", max_bytes=64 * 1024, strict=False)
    try:
        results = [log.submit(event(i)).result(timeout=10) for i in range(1500)]
    finally:
        log.close()
    assert NOT_RECORDED in results
    assert log.status().failed == results.count(NOT_RECORDED)


def test_closed_log_refuses(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.sqlite3")
    log.close()
    log.close()
    with pytest.raises(AuditUnavailable, match="closed"):
        asyncio.run(log.append(event()))


def test_full_queue_is_backpressure_not_memory(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.sqlite3", max_pending=1)
    try:
        futures = [log.submit(event(i)) for i in range(200)]
        errors = [f.exception(timeout=10) for f in futures]
    finally:
        log.close()
    refused = [e for e in errors if e is not None]
    assert all(isinstance(e, AuditUnavailable) and "queue is full" in str(e) for e in refused)
    assert len(rows(tmp_path / "a.sqlite3")) == 200 - len(refused)


def test_corrupt_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    with pytest.raises(AuditError, match="cannot use the audit log"):
        AuditLog(path)


def test_other_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(AuditError, match="not a bastion audit log"):
        AuditLog(path)


def test_read_only_file_fails_at_open(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    with AuditLog(path) as log:
        asyncio.run(append_many(log, 2))
    # the WAL was checkpointed into the file on close: only the database file is left
    if os.geteuid() == 0:  # root writes 0444 files anyway; the immutable flag stops it too
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr")
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
            pytest.skip("the file system has no immutable flag")
    else:
        path.chmod(0o444)
    try:
        with pytest.raises(AuditError, match=r"readonly|read-only") as error:
            AuditLog(path)
        assert "permissions" in (error.value.hint or "")
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    assert [r[0] for r in rows(path)] == [1, 2]


def test_missing_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="does not exist") as error:
        AuditLog(tmp_path / "a.sqlite3", signing_key=tmp_path / "nope.key")
    assert "keygen" in (error.value.hint or "")


def test_key_readable_by_others_is_refused(tmp_path: Path, key: Path) -> None:
    key.chmod(0o644)
    with pytest.raises(AuditError, match="readable by other users"):
        AuditLog(tmp_path / "a.sqlite3", signing_key=key)


def test_not_a_key_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.key"
    bogus.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    bogus.chmod(0o600)
    with pytest.raises(AuditError, match="not an unencrypted PEM private key"):
        AuditLog(tmp_path / "a.sqlite3", signing_key=bogus)


def test_other_key_than_the_checkpoints_is_refused(tmp_path: Path, key: Path) -> None:
    path = tmp_path / "a.sqlite3"
    with AuditLog(path, signing_key=key) as log:
        asyncio.run(append_many(log, 2))
    other, _ = generate_key(tmp_path / "other.key")
    with pytest.raises(AuditError, match="not signed by this key"):
        AuditLog(path, signing_key=other)


def test_missing_checkpoint_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    with AuditLog(path) as log:
        asyncio.run(append_many(log, 2))
    checkpoint_path_for(path).unlink()
    with pytest.raises(AuditError, match=r"checkpoint file .* is missing"):
        AuditLog(path)


def test_truncated_log_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    with AuditLog(path) as log:
        asyncio.run(append_many(log, 5))
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("DROP TRIGGER events_no_delete")
        conn.execute("DELETE FROM events WHERE seq > 3")
        conn.execute(
            "CREATE TRIGGER events_no_delete BEFORE DELETE ON events "
            "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
        )
    with pytest.raises(AuditError, match="truncated"):
        AuditLog(path)


def test_edited_tail_and_dropped_triggers_are_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    with AuditLog(path) as log:
        asyncio.run(append_many(log, 3))
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute(
            "UPDATE events SET event = CAST(replace(CAST(event AS TEXT), '200', '201') AS BLOB)"
            " WHERE seq = 3"
        )
    with pytest.raises(AuditError, match="append-only triggers"):
        AuditLog(path)
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute(
            "CREATE TRIGGER events_no_update BEFORE UPDATE ON events "
            "BEGIN SELECT RAISE(ABORT, 'x'); END"
        )
    with pytest.raises(AuditError, match="does not match its hash"):
        AuditLog(path)


def test_checkpoint_lines_survive_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    with AuditLog(path) as log:
        asyncio.run(append_many(log, 3))
    checkpoints = checkpoint_path_for(path)
    with checkpoints.open("ab") as handle:
        handle.write(b'{"chain":"ab')  # a crash in the middle of an append
    found = read_checkpoints(checkpoints)
    assert found.torn_tail and not found.bad_lines and found.checkpoints[-1].seq == 3
    with AuditLog(path) as log:  # a torn last line is a crash, not a reason to stop
        assert asyncio.run(append_many(log, 1)) == [4]
    assert json.loads(checkpoints.read_bytes().splitlines()[-1])["seq"] == 4
