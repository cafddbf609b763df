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
    AdmissionEvent,
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


# -- verify: every kind of tampering is found, and the first bad record is named ----------

from bastion.guard.audit_export import as_ocsf, merged, parse_since  # noqa: E402
from bastion.guard.audit_verify import verify_log  # noqa: E402


def make_log(tmp_path: Path, key: Path | None, count: int = 40, **options: int) -> Path:
    path = tmp_path / "audit-w1.sqlite3"
    with AuditLog(path, signing_key=key, **options) as log:  # type: ignore[arg-type]
        for _ in range(count // 10):
            asyncio.run(append_many(log, 10))
    return path


def attack(path: Path, *statements: str) -> None:
    """Write as an attacker would: drop the triggers, change rows, put the triggers back."""
    with sqlite3.connect(path, isolation_level=None) as conn:
        triggers = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
        ).fetchall()
        for name, _sql in triggers:
            conn.execute(f"DROP TRIGGER {name}")
        for statement in statements:
            conn.execute(statement)
        for _name, sql in triggers:
            conn.execute(sql)


def public(key: Path) -> Path:
    return key.with_name(key.name + ".pub")


def test_intact_log_verifies_with_signatures(tmp_path: Path, key: Path) -> None:
    path = make_log(tmp_path, key, checkpoint_every=10)
    check = verify_log(path, public_key=public(key))
    assert check.ok, check.problems
    assert check.records == 40 and check.last_seq == 40
    assert check.signed_checkpoints == check.checkpoints >= 5
    assert check.first_break is None and not check.warnings


@pytest.mark.parametrize(
    ("statements", "seq", "kind"),
    [
        (
            [
                "UPDATE events SET event = CAST(replace(CAST(event AS TEXT), '200', '403') AS BLOB)"
                " WHERE seq = 17"
            ],
            17,
            "edited",
        ),
        (["DELETE FROM events WHERE seq = 23"], 23, "missing"),
        (["DELETE FROM events WHERE seq BETWEEN 5 AND 9"], 5, "missing"),
        (
            [
                "DELETE FROM events WHERE seq = 12",
                "UPDATE events SET seq = -seq WHERE seq > 12",
                "UPDATE events SET seq = -seq - 1 WHERE seq < 0",
            ],
            12,
            "edited",
        ),  # delete + renumber
        (
            [
                "UPDATE events SET seq = -seq WHERE seq >= 30",
                "UPDATE events SET seq = 1 - seq WHERE seq < 0",
                "INSERT INTO events SELECT 30, recorded_at, event, prev, hash FROM events "
                "WHERE seq = 29",
            ],
            30,
            "edited",
        ),  # insert a copy in the middle
        (
            [
                "UPDATE events SET event = (SELECT event FROM events WHERE seq = 33)"
                " WHERE seq = 11",
            ],
            11,
            "edited",
        ),  # swap-like: another record's content
        (
            ["UPDATE events SET recorded_at = '2001-01-01T00:00:00.000000Z' WHERE seq = 8"],
            8,
            "edited",
        ),
        (["UPDATE events SET prev = hash WHERE seq = 3"], 3, "edited"),
    ],
)
def test_tampering_is_named(
    tmp_path: Path, key: Path, statements: list[str], seq: int, kind: str
) -> None:
    path = make_log(tmp_path, key)
    attack(path, *statements)
    check = verify_log(path, public_key=public(key))
    assert not check.ok
    first = check.first_break
    assert first is not None and (first.seq, first.kind) == (seq, kind), check.problems


def rehash_from(path: Path, start: int) -> None:
    """The careful attacker: recompute every hash from `start` on so the chain links again."""
    with sqlite3.connect(path, isolation_level=None) as conn:
        chain, worker = conn.execute("SELECT chain, worker FROM chain").fetchone()
        prev = conn.execute("SELECT hash FROM events WHERE seq = ?", (start - 1,)).fetchone()[0]
        rows = conn.execute(
            "SELECT seq, recorded_at, event FROM events WHERE seq >= ? ORDER BY seq", (start,)
        ).fetchall()
    updates = []
    for seq, at, data in rows:
        digest = record_hash(chain, worker, seq, prev, at, bytes(data))
        updates.append(f"UPDATE events SET prev = '{prev}', hash = '{digest}' WHERE seq = {seq}")
        prev = digest
    attack(path, *updates)


def test_rewrite_of_one_record_with_its_hash_is_named(tmp_path: Path, key: Path) -> None:
    path = make_log(tmp_path, key)
    attack(
        path,
        "UPDATE events SET event = CAST(replace(CAST(event AS TEXT), 'allow', 'block')"
        " AS BLOB) WHERE seq = 14",
    )
    with sqlite3.connect(path) as conn:
        chain, worker = conn.execute("SELECT chain, worker FROM chain").fetchone()
        seq, at, data, prev = conn.execute(
            "SELECT seq, recorded_at, event, prev FROM events WHERE seq = 14"
        ).fetchone()
    digest = record_hash(chain, worker, seq, prev, at, bytes(data))
    attack(path, f"UPDATE events SET hash = '{digest}' WHERE seq = 14")
    first = verify_log(path, public_key=public(key)).first_break
    assert first is not None and (first.seq, first.kind) == (14, "rewritten")


def test_rewrite_of_the_whole_tail_is_caught_by_the_signed_checkpoint(
    tmp_path: Path, key: Path
) -> None:
    path = make_log(tmp_path, key, checkpoint_every=10)
    attack(
        path,
        "UPDATE events SET event = CAST(replace(CAST(event AS TEXT), 'allow', 'block')"
        " AS BLOB) WHERE seq = 14",
    )
    rehash_from(path, 14)
    check = verify_log(path, public_key=public(key))
    first = check.first_break
    assert first is not None and first.kind == "rewritten"
    assert first.first_possible == 11 and first.seq == 20  # between checkpoints 10 and 20


def test_truncation_is_caught_by_the_checkpoint(tmp_path: Path, key: Path) -> None:
    path = make_log(tmp_path, key)
    attack(path, "DELETE FROM events WHERE seq > 31")
    first = verify_log(path, public_key=public(key)).first_break
    assert first is not None and (first.seq, first.kind) == (32, "truncated")


def test_forged_or_foreign_checkpoints_are_found(tmp_path: Path, key: Path) -> None:
    path = make_log(tmp_path, key)
    other, _ = generate_key(tmp_path / "other.key")
    check = verify_log(path, public_key=public(other))
    kinds = {p.kind for p in check.problems}
    assert not check.ok and kinds == {"checkpoint-signature", "checkpoints"}
    lines = checkpoint_path_for(path).read_text().splitlines()
    forged = json.loads(lines[-1]) | {"seq": 99}
    checkpoint_path_for(path).write_text("\n".join([*lines, json.dumps(forged)]) + "\n")
    first = verify_log(path, public_key=public(key)).first_break
    assert first is not None and (first.seq, first.kind) == (99, "checkpoint-signature")


def test_missing_checkpoints_and_no_key(tmp_path: Path, key: Path) -> None:
    path = make_log(tmp_path, key)
    unsigned = verify_log(path)
    assert unsigned.ok and unsigned.signed_checkpoints == 0
    assert any("signatures not checked" in w for w in unsigned.warnings)
    checkpoint_path_for(path).unlink()
    check = verify_log(path, public_key=public(key))
    assert not check.ok and check.first_break is not None
    assert "does not exist" in check.first_break.message


def test_corrupt_file_and_other_files_are_problems_not_crashes(tmp_path: Path, key: Path) -> None:
    path = make_log(tmp_path, key, count=400)
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 20 * page
    data[10 * page : 12 * page] = bytes(range(256)) * (2 * page // 256)  # two damaged pages
    path.write_bytes(bytes(data))
    check = verify_log(path, public_key=public(key))
    assert not check.ok
    assert check.problems[0].kind in {"integrity", "unreadable", "edited"}
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"not a database at all" * 100)
    assert verify_log(garbage).problems[0].kind in {"unreadable", "integrity"}
    plain = tmp_path / "plain.sqlite3"
    with sqlite3.connect(plain) as conn:
        conn.execute("CREATE TABLE t (x)")
    assert verify_log(plain).problems[0].kind == "format"


def test_verify_survives_a_crashed_writer(tmp_path: Path) -> None:
    """A writer killed mid-run leaves its WAL; verify reads it without the writer."""
    path = tmp_path / "audit-w1.sqlite3"
    script = (
        "import asyncio, os, sys\n"
        "from pathlib import Path\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from test_audit import append_many\n"
        "from bastion.guard.audit import AuditLog\n"
        "log = AuditLog(Path(sys.argv[1]))\n"
        "asyncio.run(append_many(log, 50))\n"
        "os._exit(0)\n"  # no close: the WAL stays, no final checkpoint
    )
    import sys

    subprocess.run(
        [sys.executable, "-c", script, str(path), str(Path(__file__).parent)],
        check=True,
        timeout=60,
    )
    assert Path(str(path) + "-wal").exists()
    check = verify_log(path)
    assert check.ok and check.last_seq == 50
    assert any("after the last checkpoint" in w for w in check.warnings)
    with AuditLog(path) as log:  # and the next writer carries on
        assert asyncio.run(append_many(log, 1)) == [51]


# -- export ---------------------------------------------------------------------------------


def test_export_merges_workers_in_time_order(tmp_path: Path) -> None:
    logs = [AuditLog(worker_log_path(tmp_path, w), worker=w) for w in ("a", "b", "c")]
    try:
        for round_ in range(4):
            for log in logs:
                asyncio.run(append_many(log, round_ + 1))
    finally:
        for log in logs:
            log.close()
    records = list(merged(tmp_path))
    assert len(records) == 3 * (1 + 2 + 3 + 4)
    keys = [(r.recorded_at, r.worker, r.seq) for r in records]
    assert keys == sorted(keys)
    for worker in "abc":
        assert [r.seq for r in records if r.worker == worker] == list(range(1, 11))
    workers_in_order = [r.worker for r in records]
    assert workers_in_order[:2] == ["a", "b"]  # interleaved, not one chain after the other
    later = parse_since(records[-1].recorded_at)
    recent = [(r.worker, r.seq) for r in merged(tmp_path, since=later)]
    assert recent == [(r.worker, r.seq) for r in records if r.recorded_at >= later]
    assert 1 <= len(recent) <= 4  # the last batch, recorded together


def test_export_refuses_a_broken_chain(tmp_path: Path, key: Path) -> None:
    path = make_log(tmp_path, key)
    attack(path, "DELETE FROM events WHERE seq = 2")
    with pytest.raises(AuditError, match="does not verify: record 2 missing"):
        list(merged(path))
    assert len(list(merged(path, verify=False))) == 39


def test_ocsf_mapping() -> None:
    from bastion.guard.audit_export import AuditRecord

    blocked = event(status=403).model_copy({"decisions": {"auth": "allow", "pii": "block"}})
    record = AuditRecord(
        worker="w1", chain="c" * 32, seq=7, recorded_at=utc_now(), hash="h" * 64, event=blocked
    )
    ocsf = as_ocsf(record)
    assert (ocsf["class_uid"], ocsf["category_uid"], ocsf["type_uid"]) == (6003, 6, 600399)
    assert ocsf["severity_id"] == 4 and ocsf["status_id"] == 2
    assert ocsf["actor"]["user"] == {"uid": "k1", "org": {"uid": "acme"}}
    assert ocsf["api"]["operation"] == "/v1/predict" and ocsf["http_response"]["code"] == 403
    assert ocsf["metadata"]["sequence"] == 7 and ocsf["metadata"]["log_name"] == "w1"
    assert ocsf["unmapped"]["input_digest"] == blocked.input_digest
    assert isinstance(ocsf["time"], int) and ocsf["time"] > 1_600_000_000_000
    anonymous = as_ocsf(record.model_copy({"event": event(key=None)}))
    assert anonymous["severity_id"] == 1
    assert anonymous["actor"]["user"] == {"type": "Unknown", "org": {"uid": "acme"}}


def test_parse_since() -> None:
    import datetime as dt

    now = dt.datetime(2025, 3, 1, 12, tzinfo=dt.timezone.utc)
    assert parse_since("24h", now=now) == "2025-02-28T12:00:00.000000Z"
    assert parse_since("2025-01-31", now=now) == "2025-01-31T00:00:00.000000Z"
    assert parse_since("2025-01-31T10:00:00+02:00") == "2025-01-31T08:00:00.000000Z"
    with pytest.raises(AuditError, match="neither a duration"):
        parse_since("yesterday")


# -- the CLI --------------------------------------------------------------------------------


def test_cli_verify_export_keygen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bastion.cli.main import main

    assert main(["audit", "keygen", str(tmp_path / "k.key")]) == 0
    assert (tmp_path / "k.key").stat().st_mode & 0o777 == 0o600
    assert main(["audit", "keygen", str(tmp_path / "k.key")]) == 2  # never overwritten
    logs = tmp_path / "logs"
    logs.mkdir()
    for worker in ("w1", "w2"):
        with AuditLog(worker_log_path(logs, worker), signing_key=tmp_path / "k.key") as log:
            asyncio.run(append_many(log, 5))
    capsys.readouterr()
    assert main(["audit", "verify", str(logs), "--key", str(tmp_path / "k.key.pub")]) == 0
    assert capsys.readouterr().out.count("OK: the chain is intact") == 2
    assert main(["audit", "export", str(logs), "--format", "ocsf", "--since", "1h"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10 and all(json.loads(x)["class_uid"] == 6003 for x in lines)
    out = tmp_path / "export.jsonl"
    assert main(["audit", "export", str(logs), "-o", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 10
    attack(worker_log_path(logs, "w2"), "DELETE FROM events WHERE seq = 4")
    assert main(["audit", "verify", str(logs), "--format", "json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert [c["ok"] for c in document] == [True, False]
    assert document[1]["first_break"]["seq"] == 4
    assert main(["audit", "export", str(logs)]) == 2
    assert "record 4 missing" in capsys.readouterr().err
    assert main(["audit", "verify", str(tmp_path / "nothing-here")]) == 2


def admission(n: int = 0) -> AdmissionEvent:
    return AdmissionEvent(
        at=utc_now(),
        key_id="k1",
        tenant="acme",
        route="/v1/predict",
        model_digest=MODEL,
        input_digest=input_digest(f"row {n}".encode()),
        decisions={"auth": "allow", "contract": "allow"},
    )


def test_a_request_s_two_records_decode_as_themselves_and_export_linked(tmp_path: Path) -> None:
    """An admission (the decision to serve, before the model answers) and the outcome that names
    it: each decodes as its own type, JSON Lines says which is which, OCSF gives the admission
    an Unknown status (no HTTP code, no duration) and the outcome the admission's sequence."""
    from bastion.guard.audit import decode_record, encode_event
    from bastion.guard.audit_export import as_jsonl

    path = tmp_path / "audit.sqlite3"
    with AuditLog(path) as log:

        async def both() -> tuple[int, int]:
            first = await log.append(admission())
            second = await log.append(event().model_copy({"admission": first}))
            return first, second

        first, second = asyncio.run(both())
    assert (first, second) == (1, 2)
    records = list(merged(path))
    assert isinstance(records[0].event, AdmissionEvent)
    assert isinstance(records[1].event, AuditEvent) and records[1].event.admission == 1
    assert [as_jsonl(r)["type"] for r in records] == ["admission", "request"]
    admitted, answered = (as_ocsf(r) for r in records)
    assert admitted["status_id"] == 0 and admitted["status"] == "Unknown"
    assert not {"status_code", "duration", "http_response"} & set(admitted)
    assert admitted["unmapped"]["input_digest"] == records[0].event.input_digest
    assert answered["status_id"] == 1 and answered["unmapped"]["admission"] == 1
    # one reading fits each: an admission is not an outcome without a status, nor an alert
    for record in (admission(), event()):
        assert type(decode_record(encode_event(record))) is type(record)
    with pytest.raises(ValueError):
        decode_record(b'{"at": "2026-01-01T00:00:00Z", "route": "/x"}')


@pytest.mark.parametrize(
    ("field", "value"),
    [("route", "/v1/<script>"), ("key_id", "a b"), ("input_digest", "md5:00")],
)
def test_admissions_refuse_free_text(field: str, value: object) -> None:
    with pytest.raises(RecordError):
        admission().model_copy({field: value})


def test_an_outcome_names_a_real_sequence_number() -> None:
    with pytest.raises(RecordError, match="admission"):
        event().model_copy({"admission": 0})
