"""A stalled audit disk (an fsync that does not return) must not leave requests waiting for
good: the wait for a request's record is bounded by `[server] request_timeout_s`, past which a
strict log answers 503 (never the answer it was for), as when the log is unavailable.

The stall is injected in the writer thread's commit (where an fsync that hangs holds it); the
in-place commit, which would hold the event loop itself, is kept out of the way."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

from guard_support import contract, credit_rows, predict_scope, served_model, settings, training

from bastion.guard import audit as audit_module
from bastion.guard.app import create_app
from bastion.guard.auth import KeyStore, Principal

TIMEOUT_S = 0.5


def _stalling_writer(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """(stall, release): once `stall` is set, the writer thread's commits wait for `release`."""
    stall, release = threading.Event(), threading.Event()
    real = audit_module.AuditLog._commit

    def commit(self: Any, datas: list[bytes]) -> int:
        if stall.is_set() and threading.current_thread().name.startswith("bastion-audit"):
            release.wait(30)
        return real(self, datas)

    monkeypatch.setattr(audit_module.AuditLog, "_commit", commit)
    return stall, release


def _exchange(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str | None, tenant: str | None = None
) -> Any:
    """One request (with `key`, or without a credential) while the audit disk stalls: the
    status sent (None if none), the seconds it took, and the app. With `tenant`, the key is
    read by an authenticator that gives it that tenant."""
    stall, release = _stalling_writer(monkeypatch)
    app = create_app(
        settings(tmp_path, server={"request_timeout_s": TIMEOUT_S}),
        model=served_model(),
        contract=contract(),
        training=training(),
    )
    if tenant is not None and key is not None:
        app.guard.authenticator = _Tenant(key.split("_")[1], tenant)
    body = json.dumps({"rows": credit_rows()[:2]}).encode()
    scope = predict_scope(body, key or "")
    if key is None:
        scope["headers"] = [h for h in scope["headers"] if h[0] != b"authorization"]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def served() -> float:
        lifespan: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        said: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await lifespan.put({"type": "lifespan.startup"})
        life = asyncio.ensure_future(app({"type": "lifespan"}, lifespan.get, said.put))
        assert (await said.get())["type"] == "lifespan.startup.complete"
        log = app.guard.audit
        log._fast_disk, log._commit_seconds = False, 1.0  # a slow disk: the writer commits
        stall.set()
        started = time.monotonic()
        try:
            await asyncio.wait_for(app(scope, receive, send), 10)
        except asyncio.TimeoutError:
            pass  # left waiting: what this test is about
        took = time.monotonic() - started
        release.set()
        await asyncio.sleep(0.1)
        await lifespan.put({"type": "lifespan.shutdown"})
        await said.get()
        await life
        return took

    took = asyncio.run(served())
    starts = [m for m in sent if m["type"] == "http.response.start"]
    return (starts[0]["status"] if starts else None), took, app


class _Tenant:
    """An authenticator (a team's own) whose principal carries `tenant`."""

    def __init__(self, key_id: str, tenant: str) -> None:
        self.principal = Principal(key_id=key_id, tenant=tenant, scopes=frozenset({"predict"}))
        self.store = None

    def authenticate(self, header: bytes | None) -> Principal:
        return self.principal


def _key(folder: Path) -> str:
    store = KeyStore(folder / "keys.sqlite3")
    try:
        return store.create(["predict"], None)[0]
    finally:
        store.close()


@pytest.mark.parametrize("credential", [True, False])
def test_a_stalled_audit_disk_is_answered_503_within_the_request_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, credential: bool
) -> None:
    """An admitted request (its admission never durable) and a refused one (its one event
    never durable) both waited for the disk for good: no answer past the request timeout.
    Now each is answered 503 once the request timeout has passed, counted as an audit
    failure; never the model's 200, never the 401 unrecorded."""
    key = _key(tmp_path) if credential else None
    status, took, app = _exchange(tmp_path, monkeypatch, key)
    assert status == 503, (status, took)
    assert TIMEOUT_S <= took < TIMEOUT_S + 2
    assert app.guard.metrics.audit_failures._value.get() == 1
    assert app.guard.in_flight.current == 0


def test_a_request_recorded_as_it_can_be_is_answered_500_within_the_request_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request whose event cannot be made (a tenant the log refuses) is recorded as it can
    be before its 500 is sent; with the disk stalled, that record's wait was unbounded (no
    answer). Now the 500 is sent once the request timeout has passed, the record left queued."""
    status, took, app = _exchange(tmp_path, monkeypatch, _key(tmp_path), tenant="acme corp\n")
    assert status == 500, (status, took)
    assert took < TIMEOUT_S * 2 + 2
    assert app.guard.in_flight.current == 0
