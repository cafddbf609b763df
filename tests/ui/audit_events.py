"""Guard audit events for the dashboard's tests and its latency bench: a stream of requests,
mostly allowed, some flagged by the query monitor, some blocked for personal data, spaced
evenly up to now."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any


def request_events(
    count: int,
    spacing: dt.timedelta,
    *,
    flag_every: int,
    block_every: int,
    tenant: str | None = None,
    latency_ms: tuple[float, int] = (3.0, 10),
) -> Iterator[Any]:
    """`count` AuditEvents, the last one `spacing` before now; every `flag_every`-th flagged,
    every `block_every`-th refused 422; latency base + i % period (`latency_ms`)."""
    now = dt.datetime.now(dt.timezone.utc)
    base, period = latency_ms
    for i in range(count):
        decisions = {"auth": "allow", "contract": "allow"}
        status = 200
        if i % flag_every == 0:
            decisions["monitor"] = "flag"
        if i % block_every == 0:
            decisions["pii"] = "block"
            status = 422
        at = now - spacing * (count - i)
        yield request_event(i, at, decisions, status, base + (i % period), tenant)


def request_event(
    i: int,
    at: dt.datetime,
    decisions: dict[str, str],
    status: int,
    latency_ms: float,
    tenant: str | None = None,
) -> Any:
    """The outcome of request `i` (its input digest is `i`) of key 0123456789ab."""
    from bastion.guard.audit import AuditEvent

    return AuditEvent(
        at=at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        key_id="0123456789ab",
        tenant=tenant,
        route="/v1/predict",
        model_digest="sha256:" + "ab" * 32,
        input_digest="sha256:" + f"{i:064x}",
        decisions=decisions,
        status=status,
        latency_ms=latency_ms,
    )
