"""Attacks on the abandonment of a team's app behind GuardMiddleware (issue #11), from the
review of 1a5b914: a request cancelled again and again (as anyio's cancel scopes do), the
timeout firing as the app answers, the server cancelling a request during its grace, the
audit log failing as a request is abandoned, and a shutdown with an abandoned task that
ignores every cancellation. In process, through the ASGI interface and lifespan, with the
harness of test_guard_inner_abandoned."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("prometheus_client")

from guard_support import assert_chain_ok, audit_events, credit_rows, predict_scope
from test_guard_inner_abandoned import (
    ANSWER,
    ANSWERED_BY,
    GRACE_S,
    TIMEOUT_S,
    Client,
    _abandoned,
    _answered_504_in_time,
    _metric,
    _outcomes,
    _run,
    _swallowing,
)


def _scope(client: Client, inner: str) -> tuple[dict[str, Any], Any, Any, list[dict[str, Any]]]:
    body = json.dumps({"rows": credit_rows()[:2]}).encode()
    scope = predict_scope(body, client.key)
    scope["headers"].append((b"x-inner", inner.encode()))
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    return scope, receive, send, sent


def _release(release: list[asyncio.Event], client: Client, task: Any) -> None:
    """The end of a scenario: the swallowing apps let out, and the request's task, if it has
    not ended, left for `_run` to wait for."""
    for event in release:
        event.set()
    if not task.done():
        client.left.append(task)


def _in_cancel_scope(app: Any, scope: Any, receive: Any, send: Any) -> tuple[Any, list[Any]]:
    """The request run inside an anyio cancel scope (as Starlette's task groups and
    `fail_after` run it): its task, and the scope (once the task has started)."""
    scopes: list[Any] = []

    async def within_a_cancel_scope() -> None:
        with anyio.CancelScope() as cancel_scope:
            scopes.append(cancel_scope)
            await app(scope, receive, send)

    return asyncio.ensure_future(within_a_cancel_scope()), scopes


def test_a_request_cancelled_by_an_anyio_scope_gives_its_app_the_grace(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """anyio (Starlette's task groups, `fail_after`) cancels a task again at each of its
    waits until it leaves the scope. A team's app that ends on its cancellation after a short
    clean-up (a rollback) must get its grace: not be abandoned, logged as an error and counted
    (with many at once, the worker would turn not ready and refuse everyone 503). Before the
    fix the second cancellation cut the grace to nothing."""
    seen: dict[str, Any] = {}
    cleaned: list[bool] = []

    async def tidy(scope: Any, receive: Any, send: Any) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # its clean-up, well within the grace
            cleaned.append(True)
            raise

    async def scenario(client: Client, app: Any) -> None:
        scope, receive, send, sent = _scope(client, "tidy")
        task, scopes = _in_cancel_scope(app, scope, receive, send)
        await asyncio.sleep(TIMEOUT_S / 3)
        scopes[0].cancel()
        await asyncio.wait({task}, timeout=GRACE_S + 1)
        seen["done"] = task.done()
        seen["sent"] = sent
        seen["in_flight"] = app.guard.in_flight.current
        seen["abandoned"] = _abandoned(app)
        seen["counted"] = _metric(app, "bastion_guard_inner_abandoned_total")

    with caplog.at_level(logging.ERROR, logger="bastion.guard.pipeline"):
        _run(tmp_path, {"tidy": tidy}, scenario)
    assert seen["done"] and seen["sent"] == [] and seen["in_flight"] == 0
    assert cleaned == [True]
    assert seen["abandoned"] == 0 and seen["counted"] == 0
    assert not [r for r in caplog.records if "abandoned" in r.getMessage()]


def test_a_stubborn_app_cancelled_again_and_again_is_still_let_go_within_the_grace(
    tmp_path: Path,
) -> None:
    """The other side of the grace kept through repeated cancellations: an app that catches
    every cancellation still cannot hold a request cancelled by an anyio scope past it."""
    release: list[asyncio.Event] = []
    seen: dict[str, Any] = {}

    async def scenario(client: Client, app: Any) -> None:
        scope, receive, send, _sent = _scope(client, "swallow")
        task, scopes = _in_cancel_scope(app, scope, receive, send)
        try:
            await asyncio.sleep(TIMEOUT_S / 3)
            scopes[0].cancel()
            await asyncio.wait({task}, timeout=GRACE_S + 1)
            seen["done"] = task.done()
            seen["in_flight"] = app.guard.in_flight.current
            seen["abandoned"] = _abandoned(app)
        finally:
            _release(release, client, task)

    _run(tmp_path, {"swallow": _swallowing(release, stubborn=True)}, scenario)
    assert seen["done"] and seen["in_flight"] == 0 and seen["abandoned"] == 1


def test_a_timeout_as_the_app_answers_gives_one_answer_and_its_record(tmp_path: Path) -> None:
    """Apps that answer at about the request timeout (just before, at, just after), some
    lingering after their answer: each request gets exactly one answer, 200 or the 504, and
    the recorded outcome says which."""
    seen: dict[str, Any] = {}

    def answering_at(delay: float, linger: float) -> Any:
        async def inner(scope: Any, receive: Any, send: Any) -> None:
            await asyncio.sleep(delay)
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": ANSWER})
            await asyncio.sleep(linger)

        return inner

    timings = [(TIMEOUT_S + d, linger) for d in (-0.004, -0.001, 0, 0.001) for linger in (0, 0.01)]
    inners = {f"at{i}": answering_at(*t) for i, t in enumerate(timings)}

    async def scenario(client: Client, app: Any) -> None:
        seen["exchanges"] = [
            await client.call(f"at{i}", wait=ANSWERED_BY + 1) for i in range(len(timings))
        ]
        seen["in_flight"] = app.guard.in_flight.current
        seen["abandoned"] = _abandoned(app)

    _run(tmp_path, inners, scenario)
    statuses = []
    for exchange in seen["exchanges"]:
        assert exchange.raised is None
        starts = [m for m in exchange.messages if m["type"] == "http.response.start"]
        assert len(starts) == 1, exchange.messages
        assert exchange.status in (200, 504)
        statuses.append(exchange.status)
    assert [status for status, _ in _outcomes(tmp_path)] == statuses
    assert seen["in_flight"] == 0 and seen["abandoned"] == 0
    assert_chain_ok(tmp_path)


def test_a_request_cancelled_during_its_grace_ends_and_gives_its_place_back(
    tmp_path: Path,
) -> None:
    """The timeout fired, the app ignores its cancellation, and during the grace the server
    cancels the request (its shutdown deadline): the request ends by the end of that grace,
    with no answer, its place given back and the task abandoned."""
    release: list[asyncio.Event] = []
    seen: dict[str, Any] = {}

    async def scenario(client: Client, app: Any) -> None:
        scope, receive, send, sent = _scope(client, "swallow")
        task = asyncio.ensure_future(app(scope, receive, send))
        try:
            await asyncio.sleep(TIMEOUT_S + GRACE_S / 3)  # in the grace
            task.cancel()
            await asyncio.wait({task}, timeout=GRACE_S)
            seen["cancelled"] = task.done() and task.cancelled()
            seen["sent"] = sent
            seen["in_flight"] = app.guard.in_flight.current
            seen["abandoned"] = _abandoned(app)
            seen["next"] = await client.call()
        finally:
            _release(release, client, task)

    _run(tmp_path, {"swallow": _swallowing(release, stubborn=True)}, scenario)
    assert seen["cancelled"] and seen["sent"] == []
    assert seen["in_flight"] == 0 and seen["abandoned"] == 1
    assert seen["next"].status == 200


def test_the_audit_failing_as_a_request_is_abandoned_gives_503_in_strict_mode(
    tmp_path: Path,
) -> None:
    """Strict audit: the 504's outcome cannot be made durable (the disk fails during the
    grace): the client gets the strict 503, never an unrecorded answer; the place is given
    back and the task is still held."""
    from bastion.guard.audit import AuditUnavailable

    release: list[asyncio.Event] = []
    seen: dict[str, Any] = {}

    async def scenario(client: Client, app: Any) -> None:
        audit = app.guard.audit
        append = audit.append
        calls = {"n": 0}

        async def failing(event: Any) -> int:
            calls["n"] += 1
            if calls["n"] > 1:  # the admission went through; the outcome does not
                raise AuditUnavailable("disk gone")
            return await append(event)

        audit.append = failing
        try:
            seen["hung"] = await client.call("swallow", wait=ANSWERED_BY + 1)
        finally:
            audit.append = append
        seen["in_flight"] = app.guard.in_flight.current
        seen["abandoned"] = _abandoned(app)

    _run(tmp_path, {"swallow": _swallowing(release)}, scenario)
    hung = seen["hung"]
    assert hung.raised is None and hung.status == 503, hung.messages
    assert seen["in_flight"] == 0 and seen["abandoned"] == 1


def test_the_shutdown_is_not_held_by_an_abandoned_task_that_ignores_every_cancellation(
    tmp_path: Path,
) -> None:
    """The lifespan's shutdown (the guard closing its audit log) ends at once though an
    abandoned task ignores every cancellation; the request's 504 was durable before its
    answer, so nothing of it is lost. (asyncio.run's own clean-up then waits for that task: here
    until the test releases it; for ever if nothing does. asyncio cannot stop it.)"""
    release: list[asyncio.Event] = []
    seen: dict[str, Any] = {}

    loop_time: dict[str, float] = {}

    async def scenario(client: Client, app: Any) -> None:
        seen["hung"] = await client.call("swallow", wait=ANSWERED_BY + 1)
        seen["abandoned"] = _abandoned(app)
        seen["audit"] = app.guard.audit

    original = _swallowing(release, stubborn=True)

    async def swallow(scope: Any, receive: Any, send: Any) -> None:
        try:
            await original(scope, receive, send)
        finally:
            loop_time["ended"] = asyncio.get_running_loop().time()
            seen["log closed then"] = seen["audit"]._closed

    async def released_late(client: Client, app: Any) -> None:
        try:
            await scenario(client, app)
        finally:
            # released only after the shutdown began: the shutdown must not wait for it
            asyncio.get_running_loop().call_later(0.5, lambda: [e.set() for e in release])

    _run(tmp_path, {"swallow": swallow}, released_late)
    _answered_504_in_time(seen["hung"])
    assert seen["abandoned"] == 1
    # the shutdown closed the log and ended; the task ended later, when released
    assert seen["log closed then"] is True
    assert _outcomes(tmp_path) == [(504, "timeout")]
    assert_chain_ok(tmp_path)


def test_a_request_refused_for_too_many_abandoned_tasks_spends_no_budget(
    tmp_path: Path,
) -> None:
    """`max_abandoned = 1` reached: the requests refused 503 (they never reach the app) must
    not spend the key's daily rows. Before, the refusal came after the budget was charged:
    a client retrying as Retry-After asks used its day's budget on refusals, and once the
    worker served again it was refused 429."""
    release: list[asyncio.Event] = []
    seen: dict[str, Any] = {}

    async def scenario(client: Client, app: Any) -> None:
        seen["hung"] = await client.call("swallow", wait=ANSWERED_BY + 1)  # 2 rows
        seen["refused"] = [await client.call() for _ in range(2)]  # 2 rows each
        release[0].set()
        await asyncio.sleep(0.05)
        seen["served"] = await client.call()  # 2 rows: within a budget of 6

    _run(
        tmp_path,
        {"swallow": _swallowing(release)},
        scenario,
        server={"max_abandoned": 1},
        limits={"daily_rows": 6},
    )
    _answered_504_in_time(seen["hung"])
    assert [e.status for e in seen["refused"]] == [503, 503]
    assert seen["served"].status == 200, seen["served"].messages
    assert _outcomes(tmp_path) == [
        (504, "timeout"),
        (503, "unavailable"),
        (503, "unavailable"),
        (200, "allow"),
    ]
    assert_chain_ok(tmp_path)


def test_a_public_path_of_a_team_app_is_held_to_the_request_timeout(tmp_path: Path) -> None:
    """A GET /healthz (public by default) that the team's app never answers is answered 504
    past the request timeout and its task let go. Before, it went to the app past every step,
    and the request waited with the app for as long as it liked."""
    release: list[asyncio.Event] = []
    seen: dict[str, Any] = {}

    async def scenario(client: Client, app: Any) -> None:
        scope, receive, send, sent = _scope(client, "swallow")
        scope.update(method="GET", path="/healthz", raw_path=b"/healthz")
        task = asyncio.ensure_future(app(scope, receive, send))
        try:
            await asyncio.wait({task}, timeout=ANSWERED_BY)
            seen["sent"] = list(sent)
        finally:
            task.cancel()  # a no-op once it is done
            _release(release, client, task)

    _run(tmp_path, {"swallow": _swallowing(release)}, scenario)
    starts = [m for m in seen["sent"] if m["type"] == "http.response.start"]
    assert [m["status"] for m in starts] == [504]
    assert audit_events(tmp_path) == []  # a public path is not recorded


def test_a_public_path_of_a_team_app_passes_its_answer_on_and_is_refused_at_the_cap(
    tmp_path: Path,
) -> None:
    """A team's /healthz that answers gets its own answer through, as before; while
    `max_abandoned` abandoned tasks run, it is refused 503 without reaching the app."""
    release: list[asyncio.Event] = []
    seen: dict[str, Any] = {}

    async def scenario(client: Client, app: Any) -> None:
        def health(inner: str) -> tuple[Any, ...]:
            scope, receive, send, sent = _scope(client, inner)
            scope.update(method="GET", path="/healthz", raw_path=b"/healthz")
            return scope, receive, send, sent

        scope, receive, send, sent = health("")
        await app(scope, receive, send)
        seen["fine"] = list(sent)
        try:
            seen["abandoned"] = await client.call("swallow")  # takes the one abandoned place
            scope, receive, send, sent = health("")
            await app(scope, receive, send)
            seen["capped"] = list(sent)
        finally:
            for event in release:
                event.set()

    _run(tmp_path, {"swallow": _swallowing(release)}, scenario, server={"max_abandoned": 1})
    fine = [m for m in seen["fine"] if m["type"] == "http.response.start"]
    assert [m["status"] for m in fine] == [200]
    assert seen["abandoned"].status == 504
    capped = [m for m in seen["capped"] if m["type"] == "http.response.start"]
    assert [m["status"] for m in capped] == [503]
