"""`_fallback_event`, the record of a request whose own event could not be made: the verdicts
it keeps are ones the record takes, whatever else the request's verdicts hold (an inner app
holds the GuardRequest, and may write to its decisions), so that the request is on record."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.guard.audit import AuditEvent, input_digest
from bastion.guard.pipeline import _fallback_event


def _fields(decisions: dict[Any, Any]) -> dict[str, Any]:
    return {
        "key_id": "0123456789ab",
        "tenant": "acme",
        "route": "/v1/predict",
        "model_digest": "sha256:" + "a" * 64,
        "input_digest": input_digest(b"{}"),
        "decisions": decisions,
        "status": 500,
        "latency_ms": 1.0,
        "admission": None,
    }


@pytest.mark.parametrize(
    "odd",
    [
        {"unsafe_debug": True},  # an unsafe-looking verdict that is not one
        {"unsafe_" + "x" * 200: "record"},  # longer than the record takes
        {f"unsafe_setting{i}": "record" for i in range(40)},  # more verdicts than it takes
    ],
)
def test_a_verdict_the_record_refuses_is_left_out_not_the_whole_event(odd: dict[str, Any]) -> None:
    """Before, each of these was kept as a stand-in, refused again, and the request was not
    on record at all (`_record_failed` logged the RecordError)."""
    event = _fallback_event(**_fields({"auth": "allow", "model": "error", **odd}))
    assert isinstance(event, AuditEvent)
    assert event.decisions["auth"] == "allow" and event.decisions["model"] == "error"
    assert event.decisions["audit"] == "error"
    assert event.key_id == "0123456789ab" and event.tenant == "acme"
