"""Issue #11: a team's app behind GuardMiddleware that ignores its cancellation at the request
timeout (it catches CancelledError and waits on) held its request for good: no answer, no
outcome event, and its in-flight place never given back, so a few such requests refused
everyone else 503. Its task is now cancelled, given `[server] cancel_grace_s` to end, then
abandoned: the request is answered 504 and recorded as `model: timeout`, its place is free,
what the task sends later is dropped, and at most `[server] max_abandoned` such tasks run
(past it the worker is not ready and refuses requests for the app 503).

The requests go into the app in process, through its ASGI interface and lifespan, as a server
sends them: a client that stops waiting does not cancel its request (uvicorn only tells the app
of the disconnect if it asks)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

from guard_support import (
    Exchange,
    assert_chain_ok,
    audit_events,
    contract,
    credit_rows,
    predict_scope,
    served_model,
    settings,
    training,
)

from bastion.guard.app import create_app
from bastion.guard.auth import KeyStore

TIMEOUT_S = 0.3
GRACE_S = 1.0  # the default `[server] cancel_grace_s`
ANSWERED_BY = TIMEOUT_S + GRACE_S + 0.5  # the timeout, the grace, and room for a loaded machine
TIMED_OUT = {"error": {"code": "timeout", "message": "the model did not answer in time"}}
ANSWER = b'{"predictions": [{"label": "good"}, {"label": "bad"}]}'  # a team's app's answer
BUSY = {"error": {"code": "overloaded", "message": "the service is busy; retry shortly"}}


class Client:
    """Requests to the guard around the served model, each taken by the inner app named in its
    `x-inner` header (the served model's own app when none is)."""

    def __init__(self, app: Any, key: str) -> None:
        self.app = app
        self.key = key
        self.left: list[asyncio.Future[None]] = []  # requests the client stopped waiting for

    async def call(self, inner: str = "", wait: float = 10.0) -> Exchange:
        """One request, waited for `wait` seconds at most; a request still running then is
        left running, as a server does when its client gives up."""
        body = json.dumps({"rows": credit_rows()[:2]}).encode()
        scope = predict_scope(body, self.key)
        if inner:
            scope["headers"].append((b"x-inner", inner.encode()))
        exchange = Exchange()
        loop = asyncio.get_running_loop()
        sent_at = loop.time()

        async def receive() -> dict[str, Any]:
            if exchange.messages:  # the answer is on its way: the cycle is over
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                exchange.answered_after = loop.time() - sent_at
            exchange.messages.append(message)

        task = asyncio.ensure_future(self.app(scope, receive, send))
        await asyncio.wait({task}, timeout=wait)
        if task.done():
            exchange.raised = task.exception()
        else:
            self.left.append(task)
        await asyncio.sleep(0.05)  # what the request left running (an outcome's append)
        return exchange


Scenario = Callable[[Client, Any], Awaitable[None]]
Inner = Callable[[Any, Any, Any], Awaitable[None]]


def _run(tmp_path: Path, inners: dict[str, Inner], scenario: Scenario, **tables: Any) -> Any:
    """`scenario(client, app)` inside the lifespan of a guard around the served model (request
    timeout TIMEOUT_S, and the settings `tables`), whose inner app hands requests to `inners`
    by their `x-inner` header. Returns the app, after its shutdown."""
    server = {"request_timeout_s": TIMEOUT_S, **tables.pop("server", {})}
    app = create_app(
        settings(tmp_path, server=server, **tables),
        model=served_model(),
        contract=contract(),
        training=training(),
    )
    served = app.app

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        name = dict(scope.get("headers", ())).get(b"x-inner", b"").decode()
        await (inners[name] if name else served)(scope, receive, send)

    app.app = wrapped  # a team's app: a plain ASGI callable
    store = KeyStore(tmp_path / "keys.sqlite3")
    key = store.create(["predict"], None)[0]
    store.close()

    async def main() -> None:
        lifespan: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        said: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await lifespan.put({"type": "lifespan.startup"})
        life = asyncio.ensure_future(app({"type": "lifespan"}, lifespan.get, said.put))
        assert (await said.get())["type"] == "lifespan.startup.complete"
        client = Client(app, key)
        try:
            await scenario(client, app)
        finally:
            await lifespan.put({"type": "lifespan.shutdown"})
            await said.get()
            await life
            for task in client.left:  # (before the fix: requests that never ended)
                task.cancel()
            await asyncio.sleep(0.05)

    asyncio.run(main())
    return app


def _swallowing(release: list[asyncio.Event], stubborn: bool = False) -> Inner:
    """An app that catches its cancellation and waits on, until the test sets the event it
    makes; a `stubborn` one catches every cancellation, not just the first."""

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        event = asyncio.Event()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            release.append(event)
            while True:
                try:
                    await event.wait()
                    return
                except asyncio.CancelledError:
                    if not stubborn:
                        raise

    return inner


def _outcomes(folder: Path) -> list[tuple[int, str]]:
    """Each recorded outcome's status and model verdict, in order."""
    return [
        (event["status"], event["decisions"].get("model", ""))
        for event in audit_events(folder)
        if "status" in event
    ]


def _answered_504_in_time(exchange: Exchange) -> None:
    assert exchange.raised is None, repr(exchange.raised)
    assert exchange.status == 504, exchange.messages
    assert exchange.document() == TIMED_OUT
    assert exchange.answered_after is not None and exchange.answered_after < ANSWERED_BY


def _metric(app: Any, name: str) -> float | None:
    text = app.guard.metrics.exposition()[0].decode()
    values = [float(line.split()[1]) for line in text.splitlines() if line.startswith(name + " ")]
    return values[0] if values else None


def _abandoned(app: Any) -> int | None:
    """The abandoned tasks the guard holds (None before the guard had any notion of them)."""
    held = getattr(app.guard, "abandoned", None)
    return None if held is None else len(held)


def test_an_inner_app_that_ignores_its_cancellation_is_answered_504_and_let_go(
    tmp_path: Path,
) -> None:
    """Before, the request never ended: no answer, no outcome, its in-flight place held."""
    release: list[asyncio.Event] = []
    seen: dict[str, Any] = {}

    async def scenario(client: Client, app: Any) -> None:
        seen["hung"] = await client.call("swallow", wait=ANSWERED_BY + 2)
        seen["in_flight"] = app.guard.in_flight.current
        seen["abandoned"] = _abandoned(app)
        seen["counted"] = _metric(app, "bastion_guard_inner_abandoned_total")
        seen["running"] = _metric(app, "bastion_guard_inner_abandoned_running")
        seen["next"] = await client.call()

    app = _run(tmp_path, {"swallow": _swallowing(release)}, scenario)
    _answered_504_in_time(seen["hung"])
    assert seen["in_flight"] == 0
    assert seen["abandoned"] == 1 and seen["counted"] == 1 and seen["running"] == 1
    assert seen["next"].status == 200
    assert len(seen["next"].document()["predictions"]) == 2
    assert _outcomes(tmp_path) == [(504, "timeout"), (200, "allow")]
    assert_chain_ok(tmp_path)
    assert _abandoned(app) == 0  # the shutdown cancelled it once more: it ended


def test_requests_to_an_app_that_ignores_cancellation_do_not_lock_out_the_others(
    tmp_path: Path,
) -> None:
    """With max_in_flight = 2, before: the first two such requests held both places for good
    and every later request, a normal one too, was refused 503."""
    release: list[asyncio.Event] = []
    seen: dict[str, Any] = {}

    async def scenario(client: Client, app: Any) -> None:
        seen["hung"] = [await client.call("swallow", wait=ANSWERED_BY + 1) for _ in range(5)]
        seen["next"] = await client.call()
        seen["in_flight"] = app.guard.in_flight.current

    inners = {"swallow": _swallowing(release)}
    _run(tmp_path, inners, scenario, limits={"max_in_flight": 2})
    assert seen["next"].status == 200
    for exchange in seen["hung"]:
        _answered_504_in_time(exchange)
    assert seen["in_flight"] == 0
    assert _outcomes(tmp_path) == [(504, "timeout")] * 5 + [(200, "allow")]
    assert_chain_ok(tmp_path)


def test_past_max_abandoned_the_worker_is_not_ready_and_refuses_until_some_end(
    tmp_path: Path,
) -> None:
    """`[server] max_abandoned = 2`: two abandoned tasks running make the worker not ready,
    and a request for the app is refused 503 (recorded as `model: unavailable`) without
    starting another; once one of them ends, requests are served again."""
    release: list[asyncio.Event] = []
    seen: dict[str, Any] = {}

    async def scenario(client: Client, app: Any) -> None:
        seen["hung"] = [await client.call("swallow", wait=ANSWERED_BY + 1) for _ in range(2)]
        seen["ready"] = app.guard.ready()
        seen["refused"] = await client.call()
        seen["in_flight"] = app.guard.in_flight.current
        release[0].set()  # one abandoned task ends
        await asyncio.sleep(0.05)
        seen["abandoned"] = _abandoned(app)
        seen["ready again"] = app.guard.ready()
        seen["served"] = await client.call()

    inners = {"swallow": _swallowing(release)}
    _run(tmp_path, inners, scenario, server={"max_abandoned": 2})
    for exchange in seen["hung"]:
        _answered_504_in_time(exchange)
    assert seen["ready"] is False
    refused = seen["refused"]
    assert refused.status == 503 and refused.document() == BUSY
    (start,) = [m for m in refused.messages if m["type"] == "http.response.start"]
    assert (b"retry-after", b"1") in start["headers"]
    assert seen["in_flight"] == 0
    assert seen["abandoned"] == 1 and seen["ready again"] is True
    assert seen["served"].status == 200
    assert _outcomes(tmp_path) == [
        (504, "timeout"),
        (504, "timeout"),
        (503, "unavailable"),
        (200, "allow"),
    ]
    # the refused request never reached the app: its one event is its outcome, no admission
    assert sum(1 for event in audit_events(tmp_path) if "status" not in event) == 3
    assert_chain_ok(tmp_path)


def test_what_an_abandoned_task_sends_later_is_dropped(tmp_path: Path) -> None:
    """An abandoned task that sends an answer later, while another request is with the app:
    it reaches neither that request nor its own (answered 504 already), and it receives a
    disconnect. Before, its request waited for it, and its late answer was sent as a 200."""
    late = b'{"predictions": [{"label": "late"}, {"label": "late"}]}'
    inside = asyncio.Event()  # (made before the loop runs: fine from Python 3.10)
    written = asyncio.Event()
    seen: dict[str, Any] = {}

    async def late_writer(scope: Any, receive: Any, send: Any) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await inside.wait()  # the next request is with the app
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": late})
            seen["received"] = await receive()
            written.set()

    async def waits_for_it(scope: Any, receive: Any, send: Any) -> None:
        inside.set()
        await asyncio.wait_for(written.wait(), TIMEOUT_S / 2)
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": ANSWER})

    async def scenario(client: Client, app: Any) -> None:
        seen["first"] = await client.call("late", wait=ANSWERED_BY + 1)
        seen["second"] = await client.call("waits")

    _run(tmp_path, {"late": late_writer, "waits": waits_for_it}, scenario)
    _answered_504_in_time(seen["first"])
    assert b"late" not in json.dumps(seen["first"].document()).encode()
    assert written.is_set() and seen["received"] == {"type": "http.disconnect"}
    second = seen["second"]
    assert second.status == 200, second.messages
    assert [p["label"] for p in second.document()["predictions"]] == ["good", "bad"]
    assert _outcomes(tmp_path) == [(504, "timeout"), (200, "allow")]
    assert_chain_ok(tmp_path)


def test_a_cancelled_request_to_an_app_that_ignores_it_still_ends(tmp_path: Path) -> None:
    """The request itself cancelled (a server's shutdown deadline), its app catching every
    cancellation: before, the request went on waiting with the app, its place held. Now the
    request is cancelled within the grace, the app's task abandoned and its place given back."""
    release: list[asyncio.Event] = []
    seen: dict[str, Any] = {}

    async def scenario(client: Client, app: Any) -> None:
        try:
            await cancelled(client, app)
        finally:
            for event in release:  # (before the fix, it is what ends the request)
                event.set()

    async def cancelled(client: Client, app: Any) -> None:
        body = json.dumps({"rows": credit_rows()[:2]}).encode()
        scope = predict_scope(body, client.key)
        scope["headers"].append((b"x-inner", b"swallow"))
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        task = asyncio.ensure_future(app(scope, receive, send))
        await asyncio.sleep(TIMEOUT_S / 3)
        task.cancel()
        await asyncio.wait({task}, timeout=GRACE_S + 1)
        seen["done"] = task.done()
        seen["cancelled"] = task.done() and task.cancelled()
        seen["sent"] = sent
        seen["in_flight"] = app.guard.in_flight.current
        seen["abandoned"] = _abandoned(app)
        if not task.done():
            client.left.append(task)

    _run(tmp_path, {"swallow": _swallowing(release, stubborn=True)}, scenario)
    assert seen["done"] and seen["cancelled"]
    assert seen["sent"] == []
    assert seen["in_flight"] == 0 and seen["abandoned"] == 1


def test_an_app_that_began_its_answer_before_ignoring_its_cancellation_is_answered_504(
    tmp_path: Path,
) -> None:
    """The guard holds an inner app's answer until the app has ended (it judges the answer
    whole), so an answer begun and never finished has not reached the client: as at any
    timeout, the client gets the guard's 504 and nothing the app sent."""
    release: list[asyncio.Event] = []
    swallow = _swallowing(release)
    seen: dict[str, Any] = {}

    async def begins(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"predic', "more_body": True})
        await swallow(scope, receive, send)

    async def scenario(client: Client, app: Any) -> None:
        seen["hung"] = await client.call("begins", wait=ANSWERED_BY + 1)
        seen["in_flight"] = app.guard.in_flight.current

    _run(tmp_path, {"begins": begins}, scenario)
    _answered_504_in_time(seen["hung"])
    assert seen["in_flight"] == 0
    assert _outcomes(tmp_path) == [(504, "timeout")]
    assert_chain_ok(tmp_path)
