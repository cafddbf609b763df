"""`bastion audit export`: several workers' chains as one ordered stream, as JSON Lines or OCSF.

Each chain is read in sequence order; within a chain the recording time never goes back (the
writer makes sure of it), so the chains merge with a heap by (recorded_at, worker, seq) in
bounded memory. Only chains that verify are exported (a SIEM should not ingest a rewritten
log as if it were evidence); `verify=False` exports anyway and marks nothing.

OCSF mapping (OCSF 1.3, class API Activity, class_uid 6003, category Application Activity 6):

| OCSF attribute            | from the audit record                                          |
|---------------------------|----------------------------------------------------------------|
| activity_id / name        | 99 "Other", activity_name "Inference": a model query is not a  |
|                           | Create, Read, Update or Delete of a resource                   |
| type_uid                  | 600399 (class_uid * 100 + activity_id)                         |
| time                      | the event's `at` in epoch milliseconds                         |
| status_id / status        | 1 Success for 2xx/3xx, 2 Failure otherwise; status_code = HTTP |
| severity_id               | 1 Informational; 3 Medium if a detector flagged; 4 High if one |
|                           | blocked; 2 Low for a refused request (4xx) with no block       |
| actor.user.uid / org.uid  | the API key id / the tenant (never the secret)                 |
| api.operation             | the route                                                      |
| api.service.name          | "bastion guard"                                                |
| http_response.code        | the HTTP status                                                |
| src_endpoint              | {} (the guard records no client address: personal data)        |
| cloud.provider            | "unknown" (required by the class; the guard does not know)     |
| resources                 | the model, uid = its digest, type "ml-model"                   |
| duration                  | latency in ms (rounded)                                        |
|                           | An admission (the decision to serve, recorded before the model |
|                           | answered) has status_id 0 Unknown and no status_code, duration |
|                           | or http_response; its outcome names it in unmapped.admission   |
| metadata                  | product bastion, version, log_name = worker, sequence = seq,   |
|                           | uid = the record hash, correlation_uid = the chain id          |
| unmapped                  | input_digest and each detector's decision                      |

A query-monitor alert (an AlertEvent in the chain) becomes a Detection Finding (class 2004,
category Findings 2, activity 1 Create): finding_info.types and analytic.name = the alert's
kind, actor.user.uid = the key, evidences = score and threshold, message = the monitor's text;
severity 4 High for extraction and probing, 2 Low for drift and prediction shift.
"""

from __future__ import annotations

import datetime as dt
import heapq
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bastion.guard.audit import (
    AdmissionEvent,
    AlertEvent,
    AuditEvent,
    decode_record,
    stored_bytes,
)
from bastion.guard.audit_verify import audit_files, connect_read_only, verify_path
from bastion.guard.checkpoints import AuditError
from bastion.records import Record
from bastion.version import __version__

FORMATS = ("jsonl", "ocsf")
_DURATION = re.compile(r"^(\d{1,6})([smhdw])\Z")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class AuditRecord(Record):
    worker: str
    chain: str
    seq: int
    recorded_at: str
    hash: str
    event: AuditEvent | AlertEvent | AdmissionEvent


def parse_since(text: str, *, now: dt.datetime | None = None) -> str:
    """`24h`, `30m`, `7d`, `2w` before now, or an ISO date/time (UTC unless it says), as the
    audit log's time format."""
    now = now or dt.datetime.now(dt.timezone.utc)
    match = _DURATION.match(text.strip())
    if match:
        moment = now - dt.timedelta(seconds=int(match[1]) * _UNITS[match[2]])
    else:
        try:
            moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise AuditError(
                f"--since {text!r} is neither a duration nor a date",
                hint="e.g. 24h, 30m, 7d, 2025-01-31 or 2025-01-31T12:00:00Z",
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def read_chain(path: Path, since: str | None = None) -> Iterator[AuditRecord]:
    conn = connect_read_only(path)
    try:
        row = conn.execute("SELECT chain, worker FROM chain").fetchone()
        if row is None:
            raise AuditError(f"{path} has no chain header")
        chain, worker = str(row[0]), str(row[1])
        query = "SELECT seq, recorded_at, event, hash FROM events"
        cursor = (
            conn.execute(query + " WHERE recorded_at >= ? ORDER BY seq", (since,))
            if since
            else conn.execute(query + " ORDER BY seq")
        )
        while batch := cursor.fetchmany(2048):
            for seq, at, raw, digest in batch:
                try:
                    event = decode_record(stored_bytes(raw))
                except ValueError as exc:
                    raise AuditError(f"{path}: record {seq} is not an audit event: {exc}") from None
                yield AuditRecord(
                    worker=worker,
                    chain=chain,
                    seq=int(seq),
                    recorded_at=str(at),
                    hash=str(digest),
                    event=event,
                )
    except sqlite3.DatabaseError as exc:
        raise AuditError(f"cannot read the audit log {path}: {exc}") from None
    finally:
        conn.close()


def merged(
    path: Path, *, since: str | None = None, public_key: Path | None = None, verify: bool = True
) -> Iterator[AuditRecord]:
    """Every record at `path` (a log or a folder of workers' logs) in time order,
    after every chain verified (unless `verify=False`)."""
    if verify:
        for check in verify_path(path, public_key=public_key):
            if not check.ok:
                first = check.first_break
                raise AuditError(
                    f"{check.path} does not verify: {first.message if first else 'broken'}",
                    hint="run `bastion audit verify` for every problem",
                )
    streams = [read_chain(file, since) for file in audit_files(path)]
    return heapq.merge(*streams, key=lambda r: (r.recorded_at, r.worker, r.seq))


_TYPES = {AuditEvent: "request", AdmissionEvent: "admission", AlertEvent: "alert"}


def as_jsonl(record: AuditRecord) -> dict[str, Any]:
    return {
        "type": _TYPES[type(record.event)],
        "worker": record.worker,
        "chain": record.chain,
        "seq": record.seq,
        "recorded_at": record.recorded_at,
        "hash": record.hash,
        **record.event.model_dump(mode="json"),
    }


def _epoch_ms(text: str) -> int:
    moment = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
    return int(moment.timestamp() * 1000)


def _at(text: str) -> int:
    try:
        return _epoch_ms(text)
    except ValueError:  # "...:00Z" without microseconds
        return _epoch_ms(text.replace("Z", ".000000Z"))


def _metadata(record: AuditRecord) -> dict[str, Any]:
    return {
        "version": "1.3.0",
        "product": {"name": "bastion", "vendor_name": "bastion", "version": __version__},
        "log_name": record.worker,
        "sequence": record.seq,
        "uid": record.hash,
        "correlation_uid": record.chain,
        "logged_time": _at(record.recorded_at),
    }


def _alert_ocsf(record: AuditRecord, alert: AlertEvent) -> dict[str, Any]:
    """A monitor alert as an OCSF Detection Finding (2004, Findings 2): activity 1 Create."""
    return {
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": 200401,
        "type_name": "Detection Finding: Create",
        "time": _at(alert.at),
        "severity_id": 2 if alert.alert in ("drift", "prediction-shift") else 4,
        "status_id": 1,
        "status": "New",
        "message": alert.message,
        "finding_info": {
            "uid": record.hash,
            "title": f"bastion guard monitor: {alert.alert}",
            "types": [alert.alert],
            "analytic": {"name": alert.alert, "type_id": 1, "type": "Rule"},
        },
        "actor": {"user": {"uid": alert.key_id}} if alert.key_id != "*" else {},
        "evidences": [{"data": {"score": alert.score, "threshold": alert.threshold}}],
        "metadata": _metadata(record),
        "unmapped": {"queries": alert.queries, "feature": alert.feature},
    }


def as_ocsf(record: AuditRecord) -> dict[str, Any]:
    event = record.event
    if isinstance(event, AlertEvent):
        return _alert_ocsf(record, event)
    actions = set(event.decisions.values())
    status = event.status if isinstance(event, AuditEvent) else None
    if "block" in actions:
        severity = 4, "High"
    elif "flag" in actions:
        severity = 3, "Medium"
    elif status is not None and status >= 400:
        severity = 2, "Low"
    else:
        severity = 1, "Informational"
    user: dict[str, Any] = {"uid": event.key_id} if event.key_id else {"type": "Unknown"}
    if event.tenant:
        user["org"] = {"uid": event.tenant}
    unmapped: dict[str, Any] = {
        "input_digest": event.input_digest,
        "decisions": dict(event.decisions),
    }
    if status is None:  # an admission: the decision to serve, before the model answered
        outcome: dict[str, Any] = {
            "status_id": 0,
            "status": "Unknown",
            "status_detail": "admitted to the model; the outcome is a later record",
        }
    else:
        assert isinstance(event, AuditEvent)
        success = status < 400
        outcome = {
            "status_id": 1 if success else 2,
            "status": "Success" if success else "Failure",
            "status_code": str(status),
            "duration": round(event.latency_ms),
            "http_response": {"code": status},
        }
        if event.admission is not None:
            unmapped["admission"] = event.admission
    return {
        "class_uid": 6003,
        "class_name": "API Activity",
        "category_uid": 6,
        "category_name": "Application Activity",
        "activity_id": 99,
        "activity_name": "Inference",
        "type_uid": 600399,
        "type_name": "API Activity: Other",
        "time": _at(event.at),
        "severity_id": severity[0],
        "severity": severity[1],
        **outcome,
        "actor": {"user": user},
        "api": {"operation": event.route, "service": {"name": "bastion guard"}},
        "src_endpoint": {},
        "cloud": {"provider": "unknown"},
        "resources": [{"uid": event.model_digest, "type": "ml-model"}],
        "metadata": _metadata(record),
        "unmapped": unmapped,
    }


CONVERTERS = {"jsonl": as_jsonl, "ocsf": as_ocsf}
