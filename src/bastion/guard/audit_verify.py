"""`bastion audit verify`: check an audit chain record by record and against its checkpoints.

What is checked, in one pass in sequence order (memory bounded by the checkpoint count):

- the file: SQLite's `integrity_check`, the format, the chain header, the append-only triggers;
- each record: its sequence number follows the previous one (a gap names the first missing
  record), its hash is the SHA-256 of its canonical bytes (an edited record is named), the hash
  before it is the previous record's (when both hash correctly but do not link, the earlier
  record was rewritten and its hash recomputed: it is the one named), recording times never go
  back, the event decodes as an AuditEvent;
- the checkpoints: each one's signature (with the public key given), chain and order; every
  checkpointed record must still have the checkpointed hash (a rewrite that recomputed the
  whole chain is caught here, between the previous checkpoint and this one), and a checkpoint
  past the end of the log means the log was truncated.

The first broken link is the problem with the lowest sequence number; all problems are listed
(up to a bound)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from bastion.findings import Confidence, Severity, Stage
from bastion.guard.audit import (
    FORMAT,
    MAX_EVENT_BYTES,
    TRIGGERS,
    checkpoint_path_for,
    decode_record,
    genesis_hash,
    record_hash,
    stored_bytes,
)
from bastion.guard.checkpoints import (
    AuditError,
    Checkpoint,
    load_verify_key,
    read_checkpoints,
    signature_ok,
)
from bastion.records import Record
from bastion.rules import Rule

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

CHAIN_BROKEN = Rule(
    id="GRD201",
    title="The audit trail was altered",
    severity=Severity.CRITICAL,
    confidence=Confidence.HIGH,
    stage=Stage.MONITORING,
    profile="runtime-audit",
    description="An audit chain does not verify: a record is missing, edited, rewritten with its "
    "hash recomputed, out of order, or the log ends before its last signed checkpoint; or the "
    "append-only triggers were removed, the file is damaged, or a checkpoint is not signed by "
    "the deployment's key. The guard never writes like this: someone with access to the files "
    "changed the record of what the model was asked and answered (EU AI Act Art. 12 "
    "record-keeping). The finding names the first broken link.",
    remediation="Treat it as an incident: preserve the files, find who had write access to the "
    "audit folder, and compare with the exported copy your SIEM holds. Keep checkpoints on "
    "another volume or a write-once store, and the checkpoint key away from the audit folder.",
)
UNAUTHENTICATED = Rule(
    id="GRD202",
    title="The audit trail's checkpoints are not signed or not checked",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.MONITORING,
    profile="runtime-audit",
    description="The audit chains verified, but without a checkpoint key: either the guard "
    "writes unsigned checkpoints ([audit] signing_key is empty) or the report was made without "
    "the public key. Then a rewrite of both a log and its checkpoint file would not be seen; "
    "the hash chain alone only proves the records agree with each other.",
    remediation="Make a key with `bastion audit keygen`, set [audit] signing_key in guard.toml, "
    "and pass the public key to `bastion guard report --key` and `bastion audit verify --key`.",
)
RULES: tuple[Rule, ...] = (CHAIN_BROKEN, UNAUTHENTICATED)
MAX_PROBLEMS = 50
_HEX = re.compile(r"^[0-9a-f]{64}\Z")
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\Z")


class Break(Record):
    """One problem. `seq` is the record it names (None for a problem with the file as a whole);
    for a rewrite caught only by a checkpoint, the rewritten record is somewhere in
    `first_possible`..`seq`."""

    kind: str
    message: str
    seq: int | None = None
    first_possible: int | None = None


class ChainCheck(Record):
    path: str
    chain: str | None = None
    worker: str | None = None
    records: int = 0
    last_seq: int = 0
    checkpoints: int = 0
    signed_checkpoints: int = 0  # checkpoints whose signature was checked and holds
    problems: tuple[Break, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_break(self) -> Break | None:
        """The broken link with the lowest sequence number (else the first file problem)."""
        named = [p for p in self.problems if p.seq is not None]
        if named:
            return min(named, key=lambda p: p.seq or 0)
        return self.problems[0] if self.problems else None


def audit_files(path: Path) -> list[Path]:
    """The audit logs at `path`: the file itself, or every `*.sqlite3` in a folder (several
    workers' chains)."""
    if path.is_dir():
        found = sorted(p for p in path.glob("*.sqlite3") if p.is_file())
        if not found:
            raise AuditError(f"no audit logs (*.sqlite3) in {path}")
        return found
    if not path.exists():
        raise AuditError(f"{path} does not exist")
    return [path]


def connect_read_only(path: Path) -> sqlite3.Connection:
    """Read an audit file without writing to it (a crashed writer's WAL is still read)."""
    uri = path.resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    conn.execute("PRAGMA trusted_schema = OFF")
    conn.execute("PRAGMA cell_size_check = ON")
    return conn


def verify_log(
    path: Path,
    *,
    public_key: Path | Ed25519PublicKey | None = None,
    checkpoint_path: Path | None = None,
) -> ChainCheck:
    key = load_verify_key(public_key) if isinstance(public_key, Path) else public_key
    state = _Verifier(path, key, Path(checkpoint_path or checkpoint_path_for(path)))
    return state.run()


class _Verifier:
    def __init__(self, path: Path, key: Ed25519PublicKey | None, checkpoints: Path) -> None:
        self.path = path
        self.key = key
        self.checkpoint_path = checkpoints
        self.problems: list[Break] = []
        self.warnings: list[str] = []
        self.chain: str | None = None
        self.worker: str | None = None
        self.records = 0
        self.last_seq = 0
        self.checkpoints: list[Checkpoint] = []
        self.signed = 0

    def problem(self, kind: str, message: str, seq: int | None = None, **extra: int) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Break(kind=kind, message=message, seq=seq, **extra))

    def result(self) -> ChainCheck:
        return ChainCheck(
            path=str(self.path),
            chain=self.chain,
            worker=self.worker,
            records=self.records,
            last_seq=self.last_seq,
            checkpoints=len(self.checkpoints),
            signed_checkpoints=self.signed,
            problems=tuple(self.problems),
            warnings=tuple(self.warnings),
        )

    def run(self) -> ChainCheck:
        try:
            conn = connect_read_only(self.path)
        except sqlite3.Error as exc:
            self.problem("unreadable", f"cannot open as SQLite: {exc}")
            return self.result()
        try:
            if self._file(conn):
                self._load_checkpoints()
                self._records(conn)
                self._after_records()
        except sqlite3.DatabaseError as exc:
            self.problem("unreadable", f"the database cannot be read: {exc}", None)
        finally:
            conn.close()
        return self.result()

    # -- the file -------------------------------------------------------------------------

    def _file(self, conn: sqlite3.Connection) -> bool:
        lines = [str(r[0]) for r in conn.execute("PRAGMA integrity_check(20)")]
        if lines != ["ok"]:
            self.problem("integrity", "SQLite integrity_check: " + "; ".join(lines[:5]))
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version != FORMAT:
            self.problem("format", f"not a bastion audit log (user_version {version})")
            return False
        try:
            rows = conn.execute("SELECT chain, worker FROM chain").fetchall()
        except sqlite3.DatabaseError as exc:
            self.problem("header", f"the chain header cannot be read: {exc}")
            return False
        if len(rows) != 1 or not all(isinstance(v, str) for v in rows[0]):
            self.problem("header", f"the chain header has {len(rows)} rows instead of one")
            return False
        self.chain, self.worker = rows[0]
        if "\n" in self.chain or "\n" in self.worker:
            self.problem("header", "the chain header holds a line break")
            return False
        names = {
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        }
        if TRIGGERS - names:
            self.problem(
                "triggers",
                "the append-only triggers were removed: "
                + ", ".join(sorted(TRIGGERS - names))
                + " (someone wrote to the file outside the guard)",
            )
        return True

    # -- checkpoints ----------------------------------------------------------------------

    def _load_checkpoints(self) -> None:
        try:
            found = read_checkpoints(self.checkpoint_path)
        except AuditError as exc:
            self.problem("checkpoints", exc.message)
            return
        for line in found.bad_lines[:5]:
            self.problem("checkpoints", f"{self.checkpoint_path} line {line} is not a checkpoint")
        if found.torn_tail:
            self.warnings.append("the checkpoint file ends in a partial line (a crash)")
        previous: Checkpoint | None = None
        for checkpoint in found.checkpoints:
            if checkpoint.chain != self.chain or checkpoint.worker != self.worker:
                self.problem(
                    "checkpoint",
                    f"a checkpoint of another chain ({checkpoint.worker}) is in the file",
                    checkpoint.seq,
                )
                continue
            if self.key is not None:
                if signature_ok(checkpoint, self.key):
                    self.signed += 1
                else:
                    self.problem(
                        "checkpoint-signature",
                        f"the checkpoint of record {checkpoint.seq} ({checkpoint.at}) is not "
                        "signed by the given key",
                        checkpoint.seq,
                    )
                    continue
            if previous is not None and checkpoint.seq < previous.seq:
                self.problem(
                    "checkpoint",
                    f"checkpoints go back from record {previous.seq} to {checkpoint.seq}",
                    checkpoint.seq,
                )
            self.checkpoints.append(checkpoint)
            previous = checkpoint
        if not self.checkpoints:
            self.problem("checkpoints", f"{self.checkpoint_path} holds no usable checkpoint")
        if self.key is None:
            self.warnings.append(
                "checkpoint signatures not checked (no --key): a rewrite of both the log and "
                "its checkpoints would not be seen"
            )

    # -- records --------------------------------------------------------------------------

    def _rows(self, conn: sqlite3.Connection) -> Iterator[tuple[object, ...]]:
        cursor = conn.execute("SELECT seq, recorded_at, event, prev, hash FROM events ORDER BY seq")
        while batch := cursor.fetchmany(2048):
            yield from batch

    def _records(self, conn: sqlite3.Connection) -> None:
        assert self.chain is not None and self.worker is not None
        at_seq = {c.seq: c for c in self.checkpoints}
        if 0 in at_seq and at_seq[0].head != genesis_hash(self.chain):
            self.problem("checkpoint", "the genesis checkpoint does not match the chain", 0)
        expected = 1
        prev_hash = genesis_hash(self.chain)
        prev_ok = True  # whether the previous record hashed correctly
        prev_at = ""
        last_checkpoint = 0
        for seq, at, raw, prev, stored in self._rows(conn):
            self.records += 1
            if not isinstance(seq, int):
                self.problem("malformed", f"a record has sequence number {seq!r}")
                continue
            data = stored_bytes(raw)
            fields_ok = (
                isinstance(at, str)
                and _TIME.match(at) is not None
                and isinstance(prev, str)
                and _HEX.match(prev) is not None
                and isinstance(stored, str)
                and _HEX.match(stored) is not None
            )
            gap = seq != expected
            if seq < expected:
                self.problem("order", f"record {seq} comes after record {expected - 1}", seq)
            elif gap:
                missing = f"{expected}" if seq == expected + 1 else f"{expected} to {seq - 1}"
                self.problem("missing", f"record {missing} missing (deleted)", expected)
            own_ok = fields_ok and (
                record_hash(self.chain, self.worker, seq, str(prev), str(at), data) == stored
            )
            if not own_ok:
                self.problem(
                    "edited",
                    f"record {seq} does not match its hash (its content, time, link or "
                    "number was changed)",
                    seq,
                )
            elif not gap and prev != prev_hash and prev_ok:
                self.problem(
                    "rewritten",
                    f"record {seq - 1} was rewritten: record {seq} is chained to another "
                    f"record {seq - 1} (hash {str(prev)[:16]}..., now {prev_hash[:16]}...)",
                    seq - 1,
                )
            if own_ok and isinstance(at, str) and at < prev_at:
                self.problem("order", f"record {seq} was recorded before record {seq - 1}", seq)
            if own_ok and not self._event_ok(data):
                self.problem("invalid-event", f"record {seq} does not hold an audit event", seq)
            checkpoint = at_seq.get(seq)
            if checkpoint is not None:
                if checkpoint.head != stored:
                    self.problem(
                        "rewritten",
                        f"record {seq} differs from its signed checkpoint of {checkpoint.at}: "
                        f"the log was rewritten after record {last_checkpoint}, at or before "
                        f"record {seq}",
                        seq,
                        first_possible=last_checkpoint + 1,
                    )
                last_checkpoint = seq
            prev_hash = str(stored)
            prev_ok = own_ok
            prev_at = str(at) if own_ok else prev_at
            expected = max(expected, seq + 1)
            self.last_seq = max(self.last_seq, seq)

    def _event_ok(self, data: bytes) -> bool:
        if len(data) > MAX_EVENT_BYTES:
            return False
        try:
            decode_record(data)
        except ValueError:
            return False
        return True

    def _after_records(self) -> None:
        if not self.checkpoints:
            return
        last = max(self.checkpoints, key=lambda c: c.seq)
        if last.seq > self.last_seq:
            self.problem(
                "truncated",
                f"the log ends at record {self.last_seq} but record {last.seq} was "
                f"checkpointed at {last.at}: records {self.last_seq + 1} to {last.seq} are gone",
                self.last_seq + 1,
            )
        if self.last_seq > last.seq:
            self.warnings.append(
                f"records {last.seq + 1} to {self.last_seq} are after the last checkpoint: "
                "their truncation could not be seen"
            )


def verify_path(path: Path, *, public_key: Path | None = None) -> list[ChainCheck]:
    """Verify every chain at `path` (a log, or a folder of several workers' logs)."""
    key = load_verify_key(public_key) if public_key is not None else None
    return [verify_log(file, public_key=key) for file in audit_files(path)]
