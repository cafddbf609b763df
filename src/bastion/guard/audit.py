"""The guard's audit trail: an append-only, hash-chained SQLite log with group commit.

Every decision the guard takes is an `AuditEvent` (who, when, which model, a digest of the
input, each detector's verdict, the status returned, the latency; never raw request data).
How far an event is written before `AuditLog.append` returns is the log's `durability`:

- `"fsync"` (the default): `append` hands the event to one writer thread, which takes every
  event waiting and writes them in a single transaction (group commit) with `synchronous=FULL`
  in WAL mode, so the commit is on disk when it returns; only then does `append` resolve, with
  the event's sequence number. The event survives the guard being killed, an OS crash and a
  power cut.
- `"process"`: `append` commits the event itself, in the caller's thread, with
  `synchronous=NORMAL` in WAL mode: the commit has handed the record to the operating system
  (a write() to the WAL file) when it returns, without waiting for the disk. The event
  survives the guard being killed (kill -9, a crash) but not an OS crash or a power cut, which
  can take the commits since the last WAL checkpoint (at most `checkpoint_every` events or
  `checkpoint_seconds`; the database stays consistent, WAL commits being atomic, and the chain
  then simply ends earlier). No thread handoff and no fsync on the request path: a background
  thread runs the WAL checkpoint (fsync) and then signs a checkpoint of the head as it stood
  before it, so a signed checkpoint never names a record a power cut could take.

Either way a request is answered only after its event is recorded to that level. In strict
mode (the default) an event that cannot be written makes `append` raise `AuditUnavailable`: the
guard answers 503, never an unaudited 2xx.

Each record carries the SHA-256 of the record before it and its own, computed over fixed
canonical bytes (`record_hash`), so an edited, deleted, inserted or reordered record breaks
the chain where it happened. Triggers refuse UPDATE and DELETE and any insert that is not the
next sequence number. Someone who can write the file can drop the triggers and recompute the
hashes; signed checkpoints (`checkpoints.py`), written outside the database every
`checkpoint_every` events or `checkpoint_seconds`, make that visible too.

Several guard workers each keep their own chain, in their own file (`worker_log_path`); the
chain id and worker name are in every record's hash, so records cannot be moved between chains.
`bastion audit verify` checks a chain (`audit_verify.py`); `bastion audit export` merges chains
(`audit_export.py`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import hashlib
import hmac
import math
import os
import queue
import re
import secrets
import sqlite3
import stat
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from bastion.guard.checkpoints import (
    AuditError,
    Checkpoint,
    CheckpointFile,
    append_checkpoint,
    drop_torn_tail,
    load_signing_key,
    read_checkpoints,
    sign,
    signature_ok,
)
from bastion.guard.digests import sha256_hex
from bastion.guard.files import Made, create_new, remove_made
from bastion.records import Checked, Record, RecordError, field

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "DURABILITY",
    "NOT_RECORDED",
    "AlertEvent",
    "AuditError",
    "AuditEvent",
    "AuditLog",
    "AuditStatus",
    "AuditUnavailable",
    "admission_made",
    "checkpoint_path_for",
    "input_digest",
    "outcome_made",
    "record_hash",
    "utc_now",
    "worker_log_path",
]

FORMAT = 1
DURABILITY = ("fsync", "process")  # see the module docstring
# fsync mode commits in the appending thread while commits (their fsync included) average
# under this; a thread handoff there and back costs about as much on a loaded machine
FAST_COMMIT_SECONDS = 0.0003
# `append_here` commits in the caller's thread (an event loop's) only while timed commits
# average under this: a disk that stalls holds the loop for one commit at most, not each one
IN_PLACE_LIMIT_SECONDS = 0.02
# fsync mode: the WAL file is grown to this size once, at open, and checkpointed (by the
# writer thread) every WAL_CHECKPOINT_COMMITS transactions, so that commits overwrite blocks
# the file already has: an fsync that also has to journal a larger file size took 0.37 ms at
# the median and 4 ms at p90 on this project's disk, one that overwrites 0.20 and 0.26 ms.
# A one-event transaction writes about 5 WAL frames (pages): 256 of them fill 5.3 MB.
WAL_RESERVE_BYTES = 8 * 1024 * 1024
WAL_CHECKPOINT_COMMITS = 256
NOT_RECORDED = 0  # what a non-strict log's append returns for an event it could not write
MAX_EVENT_BYTES = 16 * 1024  # an event is a few hundred bytes; more is not an event
MAX_DECISIONS = 32
_DIGEST_RULE = "must be sha256:<64 hex> or hmac-sha256:<64 hex>"
_HEX = "0123456789abcdef"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}\Z")
_ROUTE = re.compile(r"^/[A-Za-z0-9_.~/-]{0,255}\Z")
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z\Z")
_WORKER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_SPACE_HINT = (
    "check the file's permissions and free space; `bastion audit verify` tells whether it is "
    "damaged"
)
# decision names already matched against _NAME (every event repeats the same few), bounded
_NAMES_SEEN: set[str] = set()
MAX_NAMES_SEEN = 512

SCHEMA = f"""
CREATE TABLE chain (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    chain TEXT NOT NULL,
    worker TEXT NOT NULL,
    created_at TEXT NOT NULL,
    format INTEGER NOT NULL
);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    recorded_at TEXT NOT NULL,
    event BLOB NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX events_time ON events (recorded_at);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER events_in_order BEFORE INSERT ON events
    WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM events)
    BEGIN SELECT RAISE(ABORT, 'audit records are appended in sequence'); END;
CREATE TRIGGER chain_no_update BEFORE UPDATE ON chain
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER chain_no_delete BEFORE DELETE ON chain
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
PRAGMA user_version = {FORMAT};
"""
TRIGGERS = frozenset(
    {
        "events_no_update",
        "events_no_delete",
        "events_in_order",
        "chain_no_update",
        "chain_no_delete",
    }
)


class AuditUnavailable(AuditError):
    """An event could not be made durable (disk full, I/O error, queue full, log closed or
    failed). In strict mode the request it describes must not be answered with a 2xx."""


def utc_now() -> str:
    """The current time as audit events write it (UTC, microseconds, `Z`)."""
    return _format_time(time.time())


_second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text


def _format_time(seconds: float) -> str:
    """`seconds` as 2025-01-31T12:00:00.000000Z; the date and time of day are formatted once per
    second (strftime was most of an event's construction)."""
    global _second
    whole, fraction = divmod(round(seconds * 1_000_000), 1_000_000)
    cached = _second  # one read of an immutable pair: threads replace it whole
    if cached[0] != whole:
        moment = dt.datetime.fromtimestamp(whole, tz=dt.timezone.utc)
        cached = _second = (whole, moment.strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{fraction:06d}Z"


def input_digest(data: bytes, *, key: bytes | None = None) -> str:
    """The digest an event carries instead of the input. With a key (a deployment secret) it is
    an HMAC, which an auditor holding the key can match against a disputed request but which
    nobody else can reverse by guessing: a plain hash of a phone number or a birth date is
    found by trying them all."""
    if key is not None:
        return "hmac-sha256:" + hmac.digest(key, data, "sha256").hex()  # OpenSSL, one call
    return "sha256:" + sha256_hex(data)


class RequestRecord(Checked):
    """What a request's records share: who (`key_id`, the API key's id, never its secret;
    `tenant`), when, which route and model, the digest of its input, and each detector's
    verdict. Only identifiers, digests and verdicts: free text is refused so that no request
    content can reach the log."""

    at: str
    key_id: str | None
    tenant: str | None
    route: str
    model_digest: str
    input_digest: str
    decisions: dict[str, str] = field(default_factory=dict)

    def _validate(self) -> None:
        _check_request(self)


class AdmissionEvent(RequestRecord):
    """A request admitted to the model, with every detector's verdict so far. The pipeline
    commits it while the model computes and sends no answer before it is durable; the
    request's `AuditEvent` (its outcome: status, latency, the answer's checks) follows it in
    the chain and names it. So a decision to serve is on record before its answer, and the
    fsync that makes it durable runs while the model computes."""


class AuditEvent(RequestRecord):
    """One decision of the guard: a request refused on the way, or the outcome of one the
    model answered. `input_digest` and `model_digest` are `sha256:<hex>` (or
    `hmac-sha256:<hex>`), `decisions` maps a detector to its action (allow, flag, block,
    redact, ...). `admission` is the sequence number, in the same chain, of the request's
    `AdmissionEvent` when it reached the model (None for a request refused before it)."""

    status: int
    latency_ms: float
    admission: int | None = None

    def _validate(self) -> None:
        _check_request(self)
        _check_outcome(self)


def _check_request(event: RequestRecord) -> None:
    """The checks a request's two records share: time, identifiers, route, digests, verdicts."""
    if not _TIME.match(event.at):
        raise RecordError("at", "must be a UTC time like 2025-01-31T12:00:00.000000Z")
    _check_identity(event)
    _check_input(event)


def _check_identity(event: RequestRecord) -> None:
    """Key id, tenant, route and model digest: what every request of a key repeats."""
    for name in ("key_id", "tenant"):
        value = getattr(event, name)
        if value is not None and not (isinstance(value, str) and _NAME.match(value)):
            raise RecordError(name, "must be an identifier (letters, digits, _.:@/-)")
    if not (isinstance(event.route, str) and _ROUTE.match(event.route)):
        raise RecordError("route", "must be a path (letters, digits, _.~/-)")
    if not _digest_ok(event.model_digest):
        raise RecordError("model_digest", _DIGEST_RULE)


def _check_input(event: RequestRecord) -> None:
    """The input digest and the verdicts: what each request has of its own."""
    if not _digest_ok(event.input_digest):
        raise RecordError("input_digest", _DIGEST_RULE)
    decisions = event.decisions
    if type(decisions) is not dict:
        raise RecordError("decisions", "expected a table")
    if len(decisions) > MAX_DECISIONS:
        raise RecordError("decisions", f"at most {MAX_DECISIONS} detectors")
    known = _NAMES_SEEN
    for detector, action in decisions.items():
        if type(detector) is str and type(action) is str and detector in known and action in known:
            continue
        if not (
            isinstance(detector, str)
            and isinstance(action, str)
            and _NAME.match(detector)
            and _NAME.match(action)
        ):
            raise RecordError("decisions", "detector and action must be identifiers")
        if len(known) < MAX_NAMES_SEEN:  # the pipeline's vocabulary: a few dozen words
            known.update((detector, action))


def _check_outcome(event: AuditEvent) -> None:
    status, latency, admission = event.status, event.latency_ms, event.admission
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise RecordError("status", "must be an HTTP status (100-599)")
    if (
        not isinstance(latency, (int, float))
        or isinstance(latency, bool)
        or not (math.isfinite(latency) and latency >= 0)
    ):
        raise RecordError("latency_ms", "must be a finite number >= 0")
    if admission is not None and (
        not isinstance(admission, int) or isinstance(admission, bool) or admission < 1
    ):
        raise RecordError("admission", "must be a sequence number (>= 1)")


def _digest_ok(value: object) -> bool:
    """sha256:<64 hex> or hmac-sha256:<64 hex>, read with string operations (per request)."""
    if type(value) is not str:
        return False
    kind, colon, hexadecimal = value.partition(":")
    return (
        bool(colon)
        and kind in ("sha256", "hmac-sha256")
        and len(hexadecimal) == 64
        and not hexadecimal.strip(_HEX)
    )


# (key_id, tenant, route, model_digest) of pipeline-made records that passed the checks of
# `_check_request`: every request of a key repeats the same few, bounded
_IDENTITIES_SEEN: set[tuple[Any, ...]] = set()
MAX_IDENTITIES_SEEN = 4096


class _MadeAdmission(AdmissionEvent):
    """An AdmissionEvent the pipeline built (`admission_made`): the same record, encoded to
    the same bytes, checked by `_check_made` instead of the generic walk."""

    def __post_init__(self) -> None:
        _check_made(self)


class _MadeOutcome(AuditEvent):
    """An AuditEvent the pipeline built (`outcome_made`); see `_MadeAdmission`."""

    def __post_init__(self) -> None:
        _check_made(self)
        _check_outcome(self)


def admission_made(
    *,
    key_id: str | None,
    tenant: str | None,
    route: str,
    model_digest: str,
    input_digest: str,
    decisions: dict[str, str],
) -> AdmissionEvent:
    """The pipeline's AdmissionEvent, recorded now. Its time is made here (`utc_now`) and is
    not re-checked; every other field is held to the record's rules (`_check_made`)."""
    return _MadeAdmission(
        at=utc_now(),
        key_id=key_id,
        tenant=tenant,
        route=route,
        model_digest=model_digest,
        input_digest=input_digest,
        decisions=decisions,
    )


def outcome_made(
    *,
    key_id: str | None,
    tenant: str | None,
    route: str,
    model_digest: str,
    input_digest: str,
    decisions: dict[str, str],
    status: int,
    latency_ms: float,
    admission: int | None,
) -> AuditEvent:
    """The pipeline's AuditEvent (a request's outcome), recorded now; see `admission_made`."""
    return _MadeOutcome(
        at=utc_now(),
        key_id=key_id,
        tenant=tenant,
        route=route,
        model_digest=model_digest,
        input_digest=input_digest,
        decisions=decisions,
        status=status,
        latency_ms=latency_ms,
        admission=admission,
    )


def _check_made(event: RequestRecord) -> None:
    """`_check_request` for a record the pipeline built, at a fraction of the cost (this runs
    on every request's path): the identity, which every request of a key repeats, is checked
    once per combination (remembered, bounded); `at` comes from `utc_now`."""
    identity = (event.key_id, event.tenant, event.route, event.model_digest)
    if identity not in _IDENTITIES_SEEN:
        _check_identity(event)
        if len(_IDENTITIES_SEEN) >= MAX_IDENTITIES_SEEN:
            _IDENTITIES_SEEN.clear()
        _IDENTITIES_SEEN.add(identity)
    _check_input(event)


_KEY = re.compile(r"^(\*|[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127})\Z")
MAX_ALERT_TEXT = 1000


class AlertEvent(Checked):
    """A query-monitor alert, kept in the same chain as the requests (`from_alert`). The
    message and feature name are the monitor's own text (feature names come from the training
    profile, never from a request); both are bounded and printable."""

    at: str
    alert: str  # the alert's kind: extraction, recombination, boundary-hugging, sweep, ...
    key_id: str  # "*" for alerts about all traffic (drift, prediction shift)
    score: float
    threshold: float
    queries: int = 0
    feature: str | None = None
    message: str = ""

    @classmethod
    def from_alert(cls, alert: Any, *, at: str | None = None) -> AlertEvent:
        """From a `bastion.guard.monitor.Alert`."""
        return cls(
            at=at or utc_now(),
            alert=alert.kind,
            key_id=alert.key_id,
            score=float(alert.score),
            threshold=float(alert.threshold),
            queries=int(alert.queries),
            feature=None if alert.feature is None else str(alert.feature)[:128],
            message=str(alert.message)[:MAX_ALERT_TEXT],
        )

    def _validate(self) -> None:
        if not _TIME.match(self.at):
            raise RecordError("at", "must be a UTC time like 2025-01-31T12:00:00.000000Z")
        if not _NAME.match(self.alert):
            raise RecordError("alert", "must be an identifier")
        if not _KEY.match(self.key_id):
            raise RecordError("key_id", "must be an identifier or *")
        for name in ("score", "threshold"):
            if not math.isfinite(getattr(self, name)):
                raise RecordError(name, "must be a finite number")
        if self.queries < 0:
            raise RecordError("queries", "must be >= 0")
        for name, bound in (("feature", 128), ("message", MAX_ALERT_TEXT)):
            value = getattr(self, name)
            if value is not None and (len(value) > bound or not value.isprintable()):
                raise RecordError(name, f"must be printable text of at most {bound} characters")


Recorded = AuditEvent | AlertEvent | AdmissionEvent
_ENCODER = msgspec.json.Encoder(order="sorted")


def encode_event(event: Recorded) -> bytes:
    return _ENCODER.encode(event)


def decode_record(data: bytes) -> Recorded:
    """A stored record's event: a request's AuditEvent or AdmissionEvent, or a monitor's
    AlertEvent (their fields differ, and unknown fields are refused, so one reading fits; an
    admission lacks the outcome's status). ValueError if none."""
    try:
        return AuditEvent.model_validate_json(data)
    except ValueError:
        pass
    try:
        return AdmissionEvent.model_validate_json(data)
    except ValueError:
        return AlertEvent.model_validate_json(data)


def genesis_hash(chain: str) -> str:
    return hashlib.sha256(b"bastion-audit/1 genesis\n" + chain.encode("ascii")).hexdigest()


def record_hash(
    chain: str, worker: str, seq: int, prev: str, recorded_at: str, event: bytes
) -> str:
    """SHA-256 over a record's canonical bytes: a fixed prefix, then chain id, worker, sequence
    number, previous hash and recording time one a line (none can hold a newline), then the
    event's bytes exactly as stored."""
    head = f"bastion-audit/1\n{chain}\n{worker}\n{seq}\n{prev}\n{recorded_at}\n"
    return sha256_hex(head.encode("utf-8") + event)


def stored_bytes(value: object) -> bytes:
    """A stored event as bytes, whatever type an editor of the file left in the column (a TEXT
    value hashes as its UTF-8, so a changed type is a changed record)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return repr(value).encode("ascii", "backslashreplace")


def worker_log_path(folder: Path, worker: str) -> Path:
    """Where worker `worker` keeps its chain in a folder shared by several workers."""
    if not _WORKER.match(worker):
        raise AuditError(f"worker name {worker!r} must be letters, digits, _ . -")
    return folder / f"audit-{worker}.sqlite3"


def checkpoint_path_for(path: Path) -> Path:
    """The default checkpoint file of a log: beside it, `<log>.checkpoints`."""
    return path.with_name(path.name + ".checkpoints")


class AuditStatus(Record):
    """What /readyz and /metrics need: whether appends currently succeed, and counters."""

    ready: bool
    appended: int
    batches: int
    failed: int
    pending: int
    last_seq: int
    last_checkpoint_seq: int
    last_error: str | None = None


class _Pending:
    """An event waiting for the writer thread, and who to tell: a concurrent Future (`submit`)
    or an asyncio future of `loop` (`append`)."""

    __slots__ = ("data", "future", "loop")

    def __init__(self, data: bytes, future: Any, loop: asyncio.AbstractEventLoop | None) -> None:
        self.data = data
        self.future = future
        self.loop = loop


_STOP = object()


def _settle(outcomes: list[tuple[Any, Any]]) -> None:
    """In an event loop: resolve its futures of one batch (a cancelled waiter is skipped)."""
    for future, outcome in outcomes:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class AuditLog:
    """One worker's chain. `await log.append(event)` returns the event's sequence number once
    it is recorded to the log's `durability` (module docstring); `log.submit(event)` is the same
    for threads (a concurrent Future).

    Opening an existing log checks that its last record still hashes to itself and that it
    agrees with its last checkpoint (a log that does not is refused: run `bastion audit
    verify`). `max_bytes` caps the database (appends past it fail like a full disk);
    `max_pending` bounds the events waiting for the writer. `signing_key` is the checkpoint
    key's PEM file, or the key itself."""

    def __init__(
        self,
        path: Path,
        *,
        signing_key: Path | Ed25519PrivateKey | None = None,
        strict: bool = True,
        worker: str | None = None,
        checkpoint_path: Path | None = None,
        checkpoint_every: int = 1000,
        checkpoint_seconds: float = 10.0,
        max_batch: int = 1024,
        max_pending: int = 65536,
        max_bytes: int | None = None,
        durability: str = "fsync",
    ) -> None:
        if durability not in DURABILITY:
            raise AuditError(
                f"audit durability {durability!r} is not one of {', '.join(DURABILITY)}"
            )
        self.path = Path(path)
        self.strict = strict
        self.durability = durability
        self._inline = durability == "process"  # committed in the caller's thread
        self.checkpoint_path = Path(checkpoint_path or checkpoint_path_for(self.path))
        self.checkpoint_every = max(1, checkpoint_every)
        self.checkpoint_seconds = max(0.01, checkpoint_seconds)
        self.max_batch = max(1, max_batch)
        self.max_pending = max(1, max_pending)
        self._key: Ed25519PrivateKey | None = (
            load_signing_key(Path(signing_key))
            if isinstance(signing_key, (str, os.PathLike))
            else signing_key
        )
        # the writer's queue (fsync); in process mode it carries only wake-ups for checkpoints
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()  # counters and the chain's head
        self._write_lock = threading.Lock()  # process mode: one committer at a time
        self._closed = False
        self._failed_writer: str | None = None
        self._appended = self._batches = self._failed = 0
        self._last_error: str | None = None
        self._checkpoint_error: str | None = None
        self._since_checkpoint = 0
        self._since_wal = 0  # transactions committed since the last WAL checkpoint
        self._made: Made | None = None  # (device, inode) of the log file this call created
        self._conn, found = self._open(worker, max_bytes)
        self._checkpoint_due = time.monotonic() + self.checkpoint_seconds
        self._poked = False  # a checkpoint wake-up is already queued
        # fsync mode: a moving average of commit times (fsync included); under
        # FAST_COMMIT_SECONDS an append commits in its own thread when the writer is idle
        self._commit_seconds = 1.0
        self._fast_disk = False
        self._thread = threading.Thread(
            target=self._run, name=f"bastion-audit-{self.worker}", daemon=True
        )
        try:
            if not self._inline:
                self._reserve_wal()
            self._thread.start()
            # last: the only step that writes beside an existing log
            self._last_checkpoint = self._start_checkpoints(found)
        except BaseException as exc:  # refused: closed, and a log this call created removed
            self._disown_if_used(self._conn)
            self.close()
            self._remove_made()
            if isinstance(exc, (OSError, sqlite3.Error)):
                raise AuditError(
                    f"cannot use the audit log {self.path}: {exc}", hint=_SPACE_HINT
                ) from None
            raise

    # -- opening --------------------------------------------------------------------------

    def _open(
        self, worker: str | None, max_bytes: int | None
    ) -> tuple[sqlite3.Connection, CheckpointFile | None]:
        """The connection, and the checkpoint file as read (None: there is none). A log that is
        refused is closed, and removed if this call created it; an existing one is refused
        before anything is written to it."""
        if not os.path.lexists(self.path) and os.path.lexists(f"{self.path}-wal"):
            # SQLite would delete it beside a new, empty database: a crashed guard's records
            raise AuditError(
                f"{self.path}-wal is there without its audit log {self.path}",
                hint="the log was deleted after a crash (its last records are in the -wal): "
                "restore the log, or move the -wal away to start a new chain",
            )
        try:
            self._made = create_new(self.path, 0o644)  # SQLite's own mode for a new database
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=5.0
            )
        except (OSError, sqlite3.Error) as exc:
            self._remove_made()
            raise AuditError(f"cannot open the audit log {self.path}: {exc}") from None
        try:
            return conn, self._prepare(conn, worker, max_bytes)
        except BaseException as exc:
            self._disown_if_used(conn)
            conn.close()
            self._remove_made()
            if isinstance(exc, sqlite3.DatabaseError):
                raise AuditError(
                    f"cannot use the audit log {self.path}: {exc}", hint=_SPACE_HINT
                ) from None
            raise

    def _disown_if_used(self, conn: sqlite3.Connection) -> None:
        """A refused open, before its connection is closed: a log this call created is no longer
        its to remove once it holds a record (another guard opened it meanwhile), or when it
        cannot tell."""
        if self._made is None:
            return
        try:
            used = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'events'"
            ).fetchone() is not None and (
                conn.execute("SELECT 1 FROM events LIMIT 1").fetchone() is not None
            )
        except sqlite3.Error:
            used = True
        if used:
            self._made = None

    def _remove_made(self) -> None:
        """A refused open, once the connection is closed: remove the log if this call created
        it and no other connection has it open (SQLite removed the -wal and -shm with ours)."""
        remove_made(self.path, self._made, f"{self.path}-wal", f"{self.path}-shm")

    def _prepare(
        self, conn: sqlite3.Connection, worker: str | None, max_bytes: int | None
    ) -> CheckpointFile | None:
        conn.execute("PRAGMA trusted_schema = OFF")
        # read before anything is written: a database that is not this worker's audit log, or
        # does not agree with its checkpoints, is refused as it was (not switched to WAL mode),
        # and so is a new log whose checkpoint file holds another chain's checkpoints
        new = self._is_new(conn)
        if new:
            found = self._read_checkpoints()
            if found is not None and found.checkpoints:
                raise AuditError(
                    f"{self.checkpoint_path} belongs to another chain",
                    hint=f"{self.path} is a new log; restore the log those checkpoints are "
                    "of, or move the checkpoint file away to start a new chain",
                )
        else:
            found = self._check_log(conn, worker)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise AuditError(f"the audit log {self.path} cannot use WAL mode (got {mode})")
        if self._inline:
            # commits reach the OS, not the disk; WAL checkpoints (which fsync) are left to the
            # background thread, so no request waits for one
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        else:
            # WAL checkpoints run on the writer thread's own connection (`_checkpoint_wal`),
            # not inside the commit that crosses a threshold
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        if max_bytes is not None:
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {max(2, int(max_bytes) // int(page))}")
        # a new log's schema is written holding the write lock (BEGIN IMMEDIATE)
        conn.execute("BEGIN IMMEDIATE")
        try:
            if self._is_new(conn):  # checked again: another process may have made it since
                chain = secrets.token_hex(16)
                name = worker or _worker_from(self.path)
                for statement in _statements(SCHEMA):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO chain (id, chain, worker, created_at, format) "
                    "VALUES (1, ?, ?, ?, ?)",
                    (chain, name, utc_now(), FORMAT),
                )
                conn.execute("COMMIT")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        if new:  # made now, by this call or by another process meanwhile
            found = self._check_log(conn, worker)
        # a write that changes nothing, rolled back (the file is left as it was): SQLite opens
        # a file it cannot write read-only, silently, and BEGIN IMMEDIATE does not notice; a
        # read-only file fails here, not at the first request
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(f"PRAGMA user_version = {FORMAT}")
        finally:
            conn.execute("ROLLBACK")
        return found

    def _check_log(self, conn: sqlite3.Connection, worker: str | None) -> CheckpointFile | None:
        """An audit log's chain header, worker, triggers, last record and checkpoints (see
        `_check_checkpoints`). Reads only."""
        row = conn.execute("SELECT chain, worker FROM chain WHERE id = 1").fetchone()
        if row is None:
            raise AuditError(f"{self.path} has lost its chain header")
        self.chain, self.worker = str(row[0]), str(row[1])
        if worker is not None and worker != self.worker:
            raise AuditError(f"{self.path} is worker {self.worker}'s chain, not {worker}'s")
        missing = TRIGGERS - {
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        }
        if missing:
            raise AuditError(
                f"the audit log {self.path} has lost its append-only triggers "
                f"({', '.join(sorted(missing))})",
                hint="someone altered the file: run `bastion audit verify`",
            )
        self._seq, self._head, self._last_at = self._tail(conn)
        return self._check_checkpoints(conn)

    def _is_new(self, conn: sqlite3.Connection) -> bool:
        """Whether the database is empty (a new log); AuditError if it holds something that is
        not an audit log of this format. Reads only. A file this call created that is not empty
        is no longer its to remove: another process made a database in it meanwhile."""
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0 and conn.execute("SELECT 1 FROM sqlite_master").fetchone() is None:
            return True
        self._made = None
        if version != FORMAT:
            raise AuditError(
                f"{self.path} is not a bastion audit log of format {FORMAT} "
                f"(user_version {version})"
            )
        return False

    def _tail(self, conn: sqlite3.Connection) -> tuple[int, str, str]:
        row = conn.execute(
            "SELECT seq, recorded_at, event, prev, hash FROM events ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return 0, genesis_hash(self.chain), ""
        seq, at, data, prev, stored = (
            int(row[0]),
            str(row[1]),
            stored_bytes(row[2]),
            str(row[3]),
            row[4],
        )
        if record_hash(self.chain, self.worker, seq, prev, at, data) != stored:
            raise AuditError(
                f"the last record ({seq}) of {self.path} does not match its hash",
                hint="the log was altered: run `bastion audit verify`",
            )
        return seq, str(stored), at

    def _read_checkpoints(self) -> CheckpointFile | None:
        """The checkpoint file (None: there is none); AuditError if it has unreadable lines."""
        if not self.checkpoint_path.exists():
            return None
        found = read_checkpoints(self.checkpoint_path)
        if found.bad_lines:
            raise AuditError(f"{self.checkpoint_path} has unreadable lines {found.bad_lines[:5]}")
        return found

    def _check_checkpoints(self, conn: sqlite3.Connection) -> CheckpointFile | None:
        """The last checkpoint must be signed by our key (when we have one), belong to this
        chain and agree with the database. Reads only: `_start_checkpoints` writes."""
        found = self._read_checkpoints()
        if found is None or not found.checkpoints:
            if self._seq > 0:
                raise AuditError(
                    f"the checkpoint file {self.checkpoint_path} of {self.path} "
                    + ("is missing" if found is None else "holds no checkpoint"),
                    hint="restore it; without it truncation of the log cannot be detected",
                )
            return found
        last = found.checkpoints[-1]
        if last.chain != self.chain:
            raise AuditError(f"{self.checkpoint_path} belongs to another chain")
        if self._key is not None and not signature_ok(last, self._key.public_key()):
            raise AuditError(
                f"the last checkpoint in {self.checkpoint_path} is not signed by this key"
            )
        if last.seq > self._seq:
            raise AuditError(
                f"{self.path} ends at record {self._seq} but was checkpointed at {last.seq}",
                hint="the log was truncated: run `bastion audit verify`",
            )
        if last.seq > 0:
            row = conn.execute("SELECT hash FROM events WHERE seq = ?", (last.seq,)).fetchone()
            if row is None or row[0] != last.head:
                raise AuditError(
                    f"record {last.seq} of {self.path} does not match its checkpoint",
                    hint="the log was rewritten: run `bastion audit verify`",
                )
        return found

    def _start_checkpoints(self, found: CheckpointFile | None) -> int:
        """Once the log is accepted: cut a torn last line (a crash while appending) and give a
        chain without a checkpoint its genesis one; the last checkpoint's sequence number."""
        if found is not None and found.torn_tail:
            drop_torn_tail(self.checkpoint_path)
        if found is None or not found.checkpoints:
            self._write_checkpoint()
            return 0
        return found.checkpoints[-1].seq

    # -- appending ------------------------------------------------------------------------

    def submit(self, event: Recorded) -> concurrent.futures.Future[int]:
        """Queue `event` (or, in process mode, commit it now); the future resolves to its
        sequence number once it is recorded (or to NOT_RECORDED in a non-strict log that could
        not write it) and fails with AuditUnavailable in a strict one."""
        future: concurrent.futures.Future[int] = concurrent.futures.Future()
        if self._inline:
            try:
                future.set_result(self._commit_now(event))
            except AuditUnavailable as exc:
                future.set_exception(exc)
            return future
        problem = self._enqueue(event, future, None)
        if problem is not None:
            self._fail(future, problem)
        return future

    async def append(self, event: Recorded) -> int:
        """The event's sequence number, once it is recorded (see `submit`)."""
        if self._inline:  # no thread, no future: the commit is a write() to the OS
            return self._commit_now(event)
        if self._fast_disk:
            seq = self._commit_here(event)
            if seq is not None:
                return seq
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        problem = self._enqueue(event, future, loop)
        if problem is not None:
            return self._failed_now(problem)
        return int(await future)

    def append_here(self, event: Recorded) -> int | None:
        """Commit `event` in this thread, now, if the writer is idle: its sequence number (or
        NOT_RECORDED / AuditUnavailable, as `append`); None when it must go through `append`
        (the writer is busy or events wait for it, or the log refuses appends, which `append`
        reports). For a caller whose other work is running in another thread meanwhile (the
        model, while its request's admission is recorded): SQLite releases the GIL for the
        whole commit, fsync included, so that thread computes during it, whatever the disk's
        speed; a handoff to the writer thread would wait for the GIL that a computing model
        holds (up to the interpreter's 5 ms switch interval). Its time is not taken into the
        average that picks where `append` commits (the wait for the GIL after it would be
        counted as disk time). Declined while timed commits average over
        IN_PLACE_LIMIT_SECONDS (a slow or stalled disk, where holding the caller's thread for
        the fsync would hold its event loop); also before any commit was timed."""
        if self._inline:
            return self._commit_now(event)
        if self._commit_seconds >= IN_PLACE_LIMIT_SECONDS:
            return None
        return self._commit_here(event, timed=False)

    def _enqueue(
        self, event: Recorded, future: Any, loop: asyncio.AbstractEventLoop | None
    ) -> str | None:
        """Hand `event` to the writer thread; the reason when it cannot be."""
        problem = self._refusal()
        if problem is not None:
            return problem
        data = encode_event(event)
        if len(data) > MAX_EVENT_BYTES:
            return f"an audit event of {len(data)} bytes is over the bound"
        if self._queue.qsize() >= self.max_pending:
            return "the audit queue is full"
        self._queue.put(_Pending(data, future, loop))
        return None

    def _commit_now(self, event: Recorded) -> int:
        """Process mode: write `event` in this thread (one transaction) and return its sequence
        number; NOT_RECORDED or AuditUnavailable (strict) when it cannot be written."""
        problem = self._refusal()
        if problem is None:
            data = encode_event(event)
            if len(data) > MAX_EVENT_BYTES:
                problem = f"an audit event of {len(data)} bytes is over the bound"
            else:
                with self._write_lock:
                    if self._closed:
                        problem = "the audit log is closed"
                    else:
                        try:
                            seq = self._commit([data])
                        except sqlite3.Error as exc:
                            problem = f"{type(exc).__name__}: {exc}"
                        else:
                            if self._since_checkpoint >= self.checkpoint_every:
                                self._poke()
                            return seq
        return self._failed_now(problem)

    def _commit_here(self, event: Recorded, *, timed: bool = True) -> int | None:
        """Fsync mode on fast storage: commit `event` (with its fsync) in this thread when
        nothing is waiting for the writer and it is not writing; None to queue it instead.
        A thread handoff there and back costs more than a commit that fsyncs in well under a
        millisecond (tmpfs, an NVMe drive with power-loss protection); a slower commit moves
        `_fast_disk` back to the writer thread's group commit."""
        if self._queue.qsize() or not self._write_lock.acquire(blocking=False):
            return None
        try:
            if self._queue.qsize() or self._refusal() is not None:
                return None  # the writer's path queues it, or refuses it as it always did
            data = encode_event(event)
            if len(data) > MAX_EVENT_BYTES:
                return None
            try:
                seq = self._commit_timed([data]) if timed else self._commit([data])
            except sqlite3.Error as exc:
                return self._failed_now(f"{type(exc).__name__}: {exc}")
        finally:
            self._write_lock.release()
        if (
            self._since_checkpoint >= self.checkpoint_every
            or self._since_wal >= WAL_CHECKPOINT_COMMITS
        ):
            self._poke()
        return seq

    def _commit_timed(self, datas: list[bytes]) -> int:
        """`_commit`, and how long it took into the moving average that picks where fsync
        mode commits (under the write lock)."""
        started = time.perf_counter()
        try:
            return self._commit(datas)
        finally:
            took = time.perf_counter() - started
            self._commit_seconds = 0.8 * self._commit_seconds + 0.2 * took
            self._fast_disk = self._commit_seconds < FAST_COMMIT_SECONDS

    def _failed_now(self, problem: str) -> int:
        outcome = self._outcome_of_failure(problem)
        if isinstance(outcome, BaseException):
            raise outcome
        return int(outcome)

    def _poke(self) -> None:
        """Process mode: wake the background thread for a checkpoint (once until it runs)."""
        if not self._poked:
            self._poked = True
            self._queue.put(None)

    def _refusal(self) -> str | None:
        if self._closed:
            return "the audit log is closed"
        if self._failed_writer is not None:
            return f"the audit writer stopped: {self._failed_writer}"
        if self.strict and self._checkpoint_error is not None:
            return f"cannot write checkpoints: {self._checkpoint_error}"
        return None

    def _fail(self, future: concurrent.futures.Future[int], problem: str) -> None:
        outcome = self._outcome_of_failure(problem)
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def _resolve(self, outcomes: list[tuple[_Pending, Any]]) -> None:
        """Tell each waiter of a batch its outcome (a sequence number or an exception): a
        thread's Future at once, an event loop's futures in one call per loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any]]] = {}
        for pending, outcome in outcomes:
            if pending.loop is None:
                if isinstance(outcome, BaseException):
                    pending.future.set_exception(outcome)
                else:
                    pending.future.set_result(outcome)
            else:
                by_loop.setdefault(pending.loop, []).append((pending.future, outcome))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, items)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    def _outcome_of_failure(self, problem: str) -> Any:
        """Count a failure; what a waiter gets: AuditUnavailable in strict mode (no answer
        without a durable event), else NOT_RECORDED."""
        with self._lock:
            self._failed += 1
            self._last_error = problem
        if self.strict:
            return AuditUnavailable(f"event not recorded: {problem}")
        return NOT_RECORDED

    def status(self) -> AuditStatus:
        with self._lock:
            return AuditStatus(
                ready=self._refusal() is None and self._last_error is None,
                appended=self._appended,
                batches=self._batches,
                failed=self._failed,
                pending=0 if self._inline else self._queue.qsize(),
                last_seq=self._seq,
                last_checkpoint_seq=self._last_checkpoint,
                last_error=self._last_error or self._checkpoint_error,
            )

    @property
    def ready(self) -> bool:
        return self.status().ready

    def close(self) -> None:
        """Write what is queued, a final checkpoint, and close. Idempotent."""
        with self._write_lock:  # process mode: no commit is half done past this point
            if self._closed:
                return
            self._closed = True
        if self._thread.ident is not None:  # started (an open refused may not have)
            self._queue.put(_STOP)
            self._thread.join()
        # an append that passed the closed check as close() began, queued behind the stop
        late = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Pending):
                late.append((item, self._outcome_of_failure("the audit log is closed")))
        self._resolve(late)
        self._conn.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            if self._inline:
                self._checkpointer()
            else:
                self._loop()
        except BaseException as exc:  # pragma: no cover - a bug; fail every waiter
            self._failed_writer = f"{type(exc).__name__}: {exc}"
            outcomes = []
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Pending):
                    outcomes.append((item, self._outcome_of_failure(self._failed_writer)))
            self._resolve(outcomes)

    def _loop(self) -> None:
        """fsync mode's writer: group commits of the queued events, signed checkpoints, and
        WAL checkpoints on a connection of its own (PASSIVE: commits go on meanwhile)."""
        wal: sqlite3.Connection | None = None
        try:
            stopping = False
            while not stopping:
                timeout = max(0.0, self._checkpoint_due - time.monotonic())
                try:
                    item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    self._maybe_checkpoint(idle=True)
                    wal = self._maybe_checkpoint_wal(wal)
                    continue
                batch: list[_Pending] = []
                while True:
                    if item is _STOP:
                        stopping = True
                        break
                    if item is None:  # _poke: a checkpoint is due after commits made elsewhere
                        self._poked = False
                    else:
                        batch.append(item)
                    if len(batch) >= self.max_batch:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self._write(batch)
                self._maybe_checkpoint(idle=False)
                wal = self._maybe_checkpoint_wal(wal)
            if self._since_checkpoint:
                self._checkpoint_now()
        finally:
            if wal is not None:
                wal.close()

    def _checkpointer(self) -> None:
        """Process mode's background thread: every `checkpoint_every` events (woken by `_poke`)
        or `checkpoint_seconds`, a WAL checkpoint on a connection of its own (PASSIVE: it never
        blocks the committing thread; it fsyncs the WAL, which makes every commit so far
        durable, and copies it into the database), then a signed checkpoint of the head as it
        stood before it. A signed checkpoint therefore never names a record a power cut could
        take away: what one can take is the commits since the last WAL checkpoint."""
        wal: sqlite3.Connection | None = None
        try:
            stopping = False
            while not stopping:
                timeout = max(0.0, self._checkpoint_due - time.monotonic())
                try:
                    item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    item = None
                stopping = item is _STOP
                self._poked = False
                if stopping:
                    break
                if self._since_checkpoint >= self.checkpoint_every or (
                    time.monotonic() >= self._checkpoint_due
                ):
                    if self._since_checkpoint or self._checkpoint_error is not None:
                        head = self._head_now()
                        wal = self._checkpoint_wal(wal)
                        self._checkpoint_now(head)
                    self._checkpoint_due = time.monotonic() + self.checkpoint_seconds
            head = self._head_now()
            wal = self._checkpoint_wal(wal)
            if self._since_checkpoint:
                self._checkpoint_now(head)
        finally:
            if wal is not None:
                wal.close()

    def _checkpoint_wal(self, wal: sqlite3.Connection | None) -> sqlite3.Connection | None:
        """Copy the WAL's committed pages into the database (PASSIVE: skips what a writer
        holds), fsyncing both, so the WAL does not grow without bound (both modes turn
        SQLite's own checkpoint inside a commit off)."""
        try:
            if wal is None:
                wal = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                wal.execute("PRAGMA synchronous = NORMAL")
            wal.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:  # not a durability failure: the records are in the WAL
            pass
        return wal

    def _commit(self, datas: list[bytes]) -> int:
        """Write `datas` as the chain's next records in one transaction; the first one's
        sequence number. sqlite3.Error when it cannot (nothing is written then)."""
        seq, prev, last_at = self._seq, self._head, self._last_at
        rows = []
        now = _format_time(time.time())
        at = max(now, last_at)  # the chain's recording times never go back
        for data in datas:
            seq += 1
            digest = record_hash(self.chain, self.worker, seq, prev, at, data)
            rows.append((seq, at, data, prev, digest))
            prev = digest
        conn = self._conn
        if len(rows) == 1:  # one statement is its own transaction: two round trips fewer
            conn.execute(_INSERT, rows[0])
        else:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_INSERT, rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        with self._lock:
            self._seq, self._head, self._last_at = seq, prev, at
            self._appended += len(datas)
            self._batches += 1
            self._last_error = None
            self._since_checkpoint += len(datas)
            self._since_wal += 1  # transactions: a batch writes few more pages than one event
        return seq - len(datas) + 1

    def _write(self, batch: list[_Pending]) -> None:
        try:
            with self._write_lock:  # an append may commit in its own thread (_commit_here)
                first = self._commit_timed([pending.data for pending in batch])
        except sqlite3.Error as exc:
            failure = self._outcome_of_failure(f"{type(exc).__name__}: {exc}")
            self._resolve([(pending, failure) for pending in batch])
            return
        except BaseException as exc:  # a bug: `_run` stops the writer; the batch fails first
            failure = self._outcome_of_failure(f"{type(exc).__name__}: {exc}")
            self._resolve([(pending, failure) for pending in batch])
            raise
        self._resolve([(pending, first + offset) for offset, pending in enumerate(batch)])

    def _reserve_wal(self) -> None:
        """fsync mode: grow the WAL file with zeros to WAL_RESERVE_BYTES (past its last frame,
        once). SQLite reads frames up to the first one whose salt and checksum do not match
        its header, so zeros past the end are not frames; a commit writing into them does not
        change the file's size, and its fsync has no size to journal. Done holding SQLite's
        write lock (no other connection appends a frame meanwhile), never through a symlink.
        Only a speed-up: any failure leaves the file as SQLite wrote it."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:
            return
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            conn.execute("ROLLBACK")
            return
        try:
            info = os.fstat(fd)
            if info.st_size < WAL_RESERVE_BYTES and stat.S_ISREG(info.st_mode):
                os.pwrite(fd, bytes(WAL_RESERVE_BYTES - info.st_size), info.st_size)
                os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)
            conn.execute("ROLLBACK")

    def _maybe_checkpoint_wal(self, wal: sqlite3.Connection | None) -> sqlite3.Connection | None:
        """fsync mode's writer: a WAL checkpoint every WAL_CHECKPOINT_COMMITS transactions, after
        which the next commit starts the WAL again from its beginning."""
        if self._since_wal < WAL_CHECKPOINT_COMMITS:
            return wal
        # under the write lock, so that no commit lands meanwhile (an append queues for the
        # writer instead): the checkpoint then copies every frame, which is what lets the next
        # commit start the WAL again (a PASSIVE checkpoint racing commits never catches up)
        with self._write_lock:
            with self._lock:
                self._since_wal = 0
            return self._checkpoint_wal(wal)

    def _maybe_checkpoint(self, *, idle: bool) -> None:
        due = time.monotonic() >= self._checkpoint_due
        if self._since_checkpoint >= self.checkpoint_every or (due and self._since_checkpoint):
            self._checkpoint_now()
        elif due or idle:
            self._checkpoint_due = time.monotonic() + self.checkpoint_seconds
            if self._checkpoint_error is not None:
                self._checkpoint_now()  # retry so a strict log can recover

    def _head_now(self) -> tuple[int, str, int]:
        with self._lock:
            return self._seq, self._head, self._since_checkpoint

    def _checkpoint_now(self, head: tuple[int, str, int] | None = None) -> None:
        try:
            self._write_checkpoint(head)
        except (OSError, AuditError) as exc:
            with self._lock:
                self._checkpoint_error = str(exc)
        else:
            with self._lock:
                self._checkpoint_error = None
        self._checkpoint_due = time.monotonic() + self.checkpoint_seconds

    def _write_checkpoint(self, at_head: tuple[int, str, int] | None = None) -> None:
        """Sign and append a checkpoint of the chain's head as it stands, or of `at_head`
        (sequence, hash, events it covers since the last checkpoint); in process mode commits
        landing meanwhile are counted towards the next checkpoint."""
        seq, head, counted = at_head if at_head is not None else self._head_now()
        checkpoint = sign(
            Checkpoint(chain=self.chain, worker=self.worker, seq=seq, head=head, at=utc_now()),
            self._key,
        )
        append_checkpoint(self.checkpoint_path, checkpoint)
        with self._lock:
            self._last_checkpoint = seq
            self._since_checkpoint -= counted


_INSERT = "INSERT INTO events (seq, recorded_at, event, prev, hash) VALUES (?,?,?,?,?)"


def _worker_from(path: Path) -> str:
    stem = path.name.split(".")[0]
    stem = stem[len("audit-") :] if stem.startswith("audit-") else stem
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", stem)[:64].lstrip("-_.")
    return cleaned or "main"


def _statements(script: str) -> list[str]:
    """SCHEMA's statements one by one (executescript would commit the open transaction)."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements
