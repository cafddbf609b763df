"""A team's app behind GuardMiddleware failing. One that raises CancelledError without its
request being cancelled (it awaited a task or future of its own that was) is the app's failure:
answered with the guard's 500 and recorded as `model: error`. A request that is cancelled (its
client went away under a server that cancels, a graceful shutdown's deadline) still is. One
that answers a 5xx page has it replaced by the guard's 502: its text stays inside."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

from guard_support import contract, credit_rows, predict_scope, served_model, settings, training

from bastion.guard.app import create_app
from bastion.guard.auth import KeyStore

INTERNAL = {"error": {"code": "internal", "message": "the request could not be processed"}}


def _serve(tmp_path: Path, inner: Any, cancel: bool) -> tuple[list[dict[str, Any]], Any]:
    """One request to the guard around `inner` (the served app's lifespan kept); with `cancel`
    the request's task is cancelled while the inner app waits. What was sent, and what the app
    raised (None, or the exception)."""
    app = create_app(
        settings(tmp_path), model=served_model(), contract=contract(), training=training()
    )
    served = app.app

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await served(scope, receive, send)
        else:
            await inner(scope, receive, send)

    app.app = wrapped
    store = KeyStore(tmp_path / "keys.sqlite3")
    key = store.create(["predict"], None)[0]
    store.close()
    body = json.dumps({"rows": credit_rows()[:2]}).encode()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def main() -> Any:
        lifespan: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        said: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await lifespan.put({"type": "lifespan.startup"})
        life = asyncio.ensure_future(app({"type": "lifespan"}, lifespan.get, said.put))
        assert (await said.get())["type"] == "lifespan.startup.complete"
        task = asyncio.ensure_future(app(predict_scope(body, key), receive, send))
        if cancel:
            await asyncio.sleep(0.2)
            task.cancel()
        raised: BaseException | None = None
        try:
            await asyncio.wait_for(task, 10)
        except BaseException as exc:  # what escaped the middleware
            raised = exc
        await asyncio.sleep(0.05)
        assert app.guard.in_flight.current == 0
        await lifespan.put({"type": "lifespan.shutdown"})
        await said.get()
        await life
        return raised

    return sent, asyncio.run(main())


def _answered(tmp_path: Path, inner: Any) -> tuple[int, bytes]:
    """The status and body the guard sent for one request to `inner` (nothing escaped it)."""
    sent, raised = _serve(tmp_path, inner, cancel=False)
    assert raised is None, repr(raised)
    (start,) = [m for m in sent if m["type"] == "http.response.start"]
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body


def _outcomes(folder: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(folder / "audit" / "audit-guard.sqlite3") as conn:
        events = [json.loads(r[0]) for r in conn.execute("SELECT event FROM events ORDER BY seq")]
    return [e for e in events if "status" in e]


def test_an_inner_app_raising_cancelled_error_is_answered_500_and_recorded(
    tmp_path: Path,
) -> None:
    """Before, the CancelledError went through the middleware: the server answered its own
    bare 500 and the request had no outcome event (its admission only)."""

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0)
        raise asyncio.CancelledError()  # an internal task of the app's was cancelled

    status, body = _answered(tmp_path, inner)
    assert status == 500
    assert json.loads(body) == INTERNAL
    (outcome,) = _outcomes(tmp_path)
    assert outcome["status"] == 500 and outcome["decisions"]["model"] == "error"


def test_a_cancelled_request_is_still_cancelled(tmp_path: Path) -> None:
    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(5)

    sent, raised = _serve(tmp_path, inner, cancel=True)
    assert isinstance(raised, asyncio.CancelledError)
    assert not [m for m in sent if m["type"] == "http.response.start"]


@pytest.mark.parametrize("status", [500, 503])
def test_an_inner_apps_error_page_stays_inside(tmp_path: Path, status: int) -> None:
    """A team's app answering 5xx with its framework's debug page: before, the page (a
    traceback naming files and settings) reached the client as it was. The guard answers its
    own 502 and records the model's error; a 4xx of the app's (its own validation message)
    still passes, as the next test shows."""
    page = b'Traceback (most recent call last):\n  File "/srv/app/settings.py"\n'
    page += b"KeyError: db_password"

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": page})

    status, body = _answered(tmp_path, inner)
    assert status == 502
    assert json.loads(body) == {
        "error": {"code": "bad_answer", "message": "the model failed to answer"}
    }
    (outcome,) = _outcomes(tmp_path)
    assert outcome["status"] == 502 and outcome["decisions"]["model"] == "error"


def test_an_inner_apps_own_client_error_passes(tmp_path: Path) -> None:
    message = b'{"detail": "unknown customer segment"}'

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 422, "headers": []})
        await send({"type": "http.response.body", "body": message})

    status, body = _answered(tmp_path, inner)
    assert status == 422
    assert body == message


def test_an_unknown_kind_of_connection_never_reaches_the_inner_app(tmp_path: Path) -> None:
    """ASGI servers may add scope types (an extension's); the middleware guards http and
    websocket and passes lifespan on. Before, any other type went to the inner app past every
    step; now it is refused (an exception, as ASGI asks of an app for a type it does not
    serve) and the inner app never sees it."""
    app = create_app(
        settings(tmp_path), model=served_model(), contract=contract(), training=training()
    )
    reached: list[str] = []
    served = app.app

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["type"])

    app.app = inner

    async def nothing() -> dict[str, Any]:
        return {}

    async def ignore(message: Any) -> None:
        return None

    with pytest.raises(ValueError, match="no ASGI scope of type 'webtransport'"):
        asyncio.run(app({"type": "webtransport", "path": "/v1/predict"}, nothing, ignore))
    assert reached == []

    async def shutdown() -> None:  # what the served app's lifespan closes
        for hook in served.on_shutdown:
            result = hook()
            if hasattr(result, "__await__"):
                await result

    asyncio.run(shutdown())
