"""Issue #11: no request leaves the guard's middleware without an answer, and none unaudited.

Each test injects a failure at one stage of the pipeline (a record builder, the audit log, a
metrics call, a detector, the answer's encoding) and calls the app as a server would, in
process through its ASGI interface and lifespan. It checks what the client gets (an answer,
its status, the guard's error document, nothing internal), that no exception escapes the app,
and the audit log afterwards (its events, and its chain verified)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sqlite3
import time
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

from bastion.config import Settings
from bastion.guard import audit as audit_module
from bastion.guard.app import create_app
from bastion.guard.audit import AdmissionEvent, AuditEvent
from bastion.guard.auth import KeyStore, Principal
from bastion.guard.monitor import Alert
from bastion.guard.report import guard_report

SECRET = "/srv/secret/guard.py line 12"  # what an injected failure says: never in an answer
INTERNAL = {"error": {"code": "internal", "message": "the request could not be processed"}}


class Boom(RuntimeError):
    pass


def _app(folder: Path, model: Any = None, **tables: Any) -> Any:
    return create_app(
        settings(folder, **tables),
        model=model or served_model(),
        contract=contract(),
        training=training(),
    )


def _key(folder: Path, *scopes: str) -> str:
    store = KeyStore(folder / "keys.sqlite3")
    try:
        return store.create(list(scopes or ("predict",)), None)[0]
    finally:
        store.close()


def _request(
    app: Any,
    key: str | None,
    rows: list[dict[str, Any]] | None = None,
    path: str = "/v1/predict",
    during: Any = None,
    stalls: bool = False,
) -> Exchange:
    """One POST of `rows` (or of two credit rows) to `path`, straight into the ASGI app inside
    its lifespan (shutdown closes the audit log); `during(app)` runs inside it, after the
    request. With `stalls`, the client sends half the body and then nothing more."""
    body = json.dumps({"rows": rows if rows is not None else credit_rows()[:2]}).encode()
    scope = predict_scope(body, key or "")
    scope["path"], scope["raw_path"] = path, path.encode()
    if key is None:
        scope["headers"] = [h for h in scope["headers"] if h[0] != b"authorization"]
    exchange = Exchange()

    sent = [False]

    async def receive() -> dict[str, Any]:
        if stalls and sent[0]:
            await asyncio.Event().wait()  # the rest of the body never comes
        sent[0] = True
        if stalls:
            return {"type": "http.request", "body": body[: len(body) // 2], "more_body": True}
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        exchange.messages.append(message)

    async def served() -> None:
        lifespan: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        said: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await lifespan.put({"type": "lifespan.startup"})
        life = asyncio.ensure_future(app({"type": "lifespan"}, lifespan.get, said.put))
        assert (await said.get())["type"] == "lifespan.startup.complete"
        try:
            await asyncio.wait_for(app(scope, receive, send), 20)
        except Exception as exc:  # what escaped the middleware (the server's bare 500), or
            exchange.raised = exc  # TimeoutError: a request left waiting for good
        await asyncio.sleep(0.05)  # anything the request left running (an outcome's append)
        if during is not None:
            during(app)
        await lifespan.put({"type": "lifespan.shutdown"})
        await said.get()
        await life

    asyncio.run(served())
    return exchange


def _failure_findings(folder: Path) -> list[str]:
    """`bastion guard report`'s GRD009 findings (the guard failed to check or record a
    request) over the period's audit log: their pointers, one per detector that failed."""
    report = guard_report(folder / "audit", Settings(), since="1h")
    return sorted(f.location.pointer for f in report.findings if f.rule_id == "GRD009")


def _answered_internal(exchange: Exchange) -> None:
    """The guard's own 500: its error document, nothing the failure said."""
    assert exchange.raised is None, repr(exchange.raised)
    assert exchange.status == 500
    assert exchange.document() == INTERNAL
    assert b"/srv" not in exchange.body and b"Traceback" not in exchange.body


# -- the request's record cannot be made ------------------------------------------------------


class _OddTenant:
    """An authenticator (a team's own, or a bug) whose principal carries a tenant the audit
    log refuses: a hostile value slipping into a record."""

    def __init__(self, key_id: str) -> None:
        self.principal = Principal(
            key_id=key_id, tenant="acme corp\n<script>", scopes=frozenset({"predict"})
        )
        self.store = None

    def authenticate(self, header: bytes | None) -> Principal:
        return self.principal


def test_a_tenant_the_log_refuses_is_answered_500_and_recorded_without_it(
    tmp_path: Path,
) -> None:
    """The admission and the outcome both refuse the tenant: before, the admission's error was
    answered 500 by the pipeline's catch, whose own outcome then raised out of the middleware
    (no answer, no event). Now the guard answers its 500 and records what it safely can: the
    request's outcome without the tenant, `audit: error`, never the rows' answer."""
    app = _app(tmp_path)
    key = _key(tmp_path)
    real = app.guard.authenticator
    app.guard.authenticator = _OddTenant(key.split("_")[1])
    try:
        exchange = _request(app, key)
    finally:
        app.guard.authenticator = real
    _answered_internal(exchange)
    (event,) = audit_events(tmp_path)
    assert event["status"] == 500 and event["tenant"] is None
    assert event["key_id"] == key.split("_")[1]  # who is kept
    assert event["decisions"]["audit"] == "error" and "model" not in event["decisions"]
    assert app.guard.metrics.audit_failures._value.get() == 1
    with sqlite3.connect(tmp_path / "audit" / "audit-guard.sqlite3") as conn:
        (data,) = conn.execute("SELECT event FROM events").fetchone()
    assert isinstance(audit_module.decode_record(data), AuditEvent)  # export and report read it
    assert_chain_ok(tmp_path)
    # the runtime report says so: the admission failed in the pipeline, the outcome in the log
    assert _failure_findings(tmp_path) == ["detector audit", "detector pipeline"]


@pytest.mark.parametrize("refused", [False, True])
def test_an_outcome_that_cannot_be_built_before_the_answer_is_a_500(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused: bool
) -> None:
    """A refusal's one event (a 401), or the outcome that goes before a flagged answer (a key
    the monitor flagged), raising a RecordError (not AuditUnavailable) in its builder: it
    escaped the middleware (no answer, no event). Now the client gets the guard's 500, never
    the flagged 200, and the request is on record as that 500, `audit: error` (the event
    made with the generic record's checks)."""
    real = audit_module.outcome_made

    def failing(**fields: Any) -> Any:
        raise audit_module.RecordError("decisions", SECRET)

    monkeypatch.setattr(audit_module, "outcome_made", failing)
    app = _app(tmp_path)
    key = _key(tmp_path)
    app.guard.flagged[key.split("_")[1]] = None  # an earlier answer of the key raised alerts
    exchange = _request(app, None if refused else key)
    monkeypatch.setattr(audit_module, "outcome_made", real)
    _answered_internal(exchange)
    events = audit_events(tmp_path)
    outcome = events[-1]
    assert outcome["status"] == 500 and outcome["decisions"]["audit"] == "error"
    if refused:
        assert len(events) == 1 and outcome["decisions"]["auth"] == "missing"
    else:
        assert len(events) == 2 and outcome["admission"] == 1
        assert outcome["decisions"]["monitor"] == "flag"
    assert_chain_ok(tmp_path)


def test_an_admission_the_log_fails_with_an_unexpected_error_is_a_500_not_the_answer(
    tmp_path: Path,
) -> None:
    """The log's append raising something other than AuditUnavailable (a bug in the writer,
    an event it cannot encode) for the admission: before, awaiting it raised out of the
    middleware after the model had answered (no answer, no event). Now no 2xx leaves: the
    request is answered 500 and its outcome recorded, naming no admission."""
    app = _app(tmp_path)
    key = _key(tmp_path)
    log = app.guard.audit
    append, append_here = log.append, log.append_here

    def here(event: Any) -> int | None:
        if isinstance(event, AdmissionEvent):
            raise Boom(SECRET)
        return append_here(event)

    async def queued(event: Any) -> int:
        if isinstance(event, AdmissionEvent):
            raise Boom(SECRET)
        return int(await append(event))

    log.append_here, log.append = here, queued
    exchange = _request(app, key)
    _answered_internal(exchange)
    (event,) = audit_events(tmp_path)
    assert event["status"] == 500 and event["admission"] is None
    assert event["decisions"]["audit"] == "error" and event["decisions"]["model"] == "allow"
    assert_chain_ok(tmp_path)


def test_an_outcome_that_cannot_be_built_after_the_answer_is_still_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A plain answer's outcome follows it; its builder raising there used to escape the
    middleware once the answer had gone (the server logged a crash, the outcome was lost, no
    failure counted). Now it is logged, counted, and the outcome recorded with the generic
    record's checks: the status sent, naming the admission, `audit: error`."""
    real = audit_module.outcome_made

    def failing(**fields: Any) -> Any:
        if fields["status"] == 200:
            raise ValueError(SECRET)
        return real(**fields)

    monkeypatch.setattr(audit_module, "outcome_made", failing)
    app = _app(tmp_path)
    key = _key(tmp_path)
    with caplog.at_level(logging.ERROR, "bastion.guard"):
        exchange = _request(app, key)
    assert exchange.raised is None and exchange.status == 200
    assert len(exchange.document()["predictions"]) == 2
    admitted, outcome = audit_events(tmp_path)
    assert "status" not in admitted
    assert outcome["status"] == 200 and outcome["admission"] == 1
    assert outcome["decisions"]["audit"] == "error"
    assert app.guard.metrics.audit_failures._value.get() == 1
    assert "outcome" in caplog.text
    assert_chain_ok(tmp_path)


# -- metrics ------------------------------------------------------------------------------


def test_a_metrics_failure_after_the_answer_loses_no_outcome(tmp_path: Path) -> None:
    """Request metrics are counted once the answer is on its way; a failure there used to
    escape the middleware and skip the outcome's append (an answered request with only its
    admission). Metrics decide nothing: the failure is logged, the outcome recorded."""
    app = _app(tmp_path)
    key = _key(tmp_path)

    def observe(*args: Any) -> None:
        raise Boom(SECRET)

    app.guard.metrics.observe = observe
    exchange = _request(app, key)
    assert exchange.raised is None and exchange.status == 200
    admitted, outcome = audit_events(tmp_path)
    assert "status" not in admitted
    assert outcome["status"] == 200 and outcome["admission"] == 1
    assert (
        "audit" not in outcome["decisions"]
    )  # an ordinary outcome, nothing lost  # the outcome itself was fine
    assert_chain_ok(tmp_path)


def test_a_metrics_failure_on_an_overloaded_worker_still_answers_503(tmp_path: Path) -> None:
    """The in-flight bound's refusal counted its limit before its event and its answer: a
    metrics failure there left the request with neither."""
    app = _app(tmp_path)
    key = _key(tmp_path)

    def limit(which: str) -> None:
        raise Boom(SECRET)

    app.guard.metrics.limit = limit
    app.guard.in_flight.enter = lambda bound: False  # the worker is full
    exchange = _request(app, key)
    assert exchange.raised is None and exchange.status == 503
    assert exchange.document()["error"]["code"] == "overloaded"
    (event,) = audit_events(tmp_path)
    assert event["status"] == 503 and event["decisions"]["in_flight"] == "block"
    assert_chain_ok(tmp_path)


def test_a_metrics_failure_while_the_log_is_unavailable_still_answers_503(
    tmp_path: Path,
) -> None:
    """Strict mode with the log gone: counting the failure raised before the 503 was sent (no
    answer at all). The 503 goes out; nothing is recorded (the log is closed) and the chain
    as it stood verifies."""
    app = _app(tmp_path)
    key = _key(tmp_path)

    class Counter:
        def inc(self) -> None:
            raise Boom(SECRET)

    app.guard.metrics.audit_failures = Counter()
    app.guard.audit.close()
    exchange = _request(app, key)
    assert exchange.raised is None and exchange.status == 503
    assert exchange.document()["error"]["code"] == "unavailable"
    assert audit_events(tmp_path) == []
    assert_chain_ok(tmp_path)


# -- detectors ----------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["row_screen", "row_reader", "ood", "monitor"])
def test_a_detector_that_raises_is_a_500_recorded_as_the_pipelines_error(
    tmp_path: Path, stage: str
) -> None:
    """A detector raising (a bug, a value it cannot take) before the model or, for the
    monitor in block mode, before the answer: the guard's 500, recorded as `pipeline: error`;
    before, it was recorded as the model's error (a finding against the model, GRD007),
    or, past the model, as nothing but the status."""
    app = _app(tmp_path, ood={"action": "block"}, monitor={"action": "block"})
    key = _key(tmp_path)
    guard = app.guard

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise Boom(SECRET)

    if stage == "row_screen":
        guard.row_screen.rows = broken
    elif stage == "row_reader":
        guard.row_reader.read = broken
    elif stage == "ood":
        guard.ood.worst = broken
    else:
        guard.monitor.observe = broken
    exchange = _request(app, key)
    _answered_internal(exchange)
    events = audit_events(tmp_path)
    outcome = events[-1]
    assert outcome["status"] == 500 and outcome["decisions"]["pipeline"] == "error"
    if stage == "monitor":  # past the model: admitted, and the model did answer
        assert len(events) == 2 and outcome["decisions"]["model"] == "allow"
    else:
        assert len(events) == 1 and "model" not in outcome["decisions"]
    assert guard.metrics.decisions.get(("pipeline", "error")) == 1
    assert_chain_ok(tmp_path)
    assert _failure_findings(tmp_path) == ["detector pipeline"]


def _nan_alert(key_id: str) -> Alert:
    return Alert(kind="sweep", key_id=key_id, score=math.nan, threshold=0.5, message="x")


def test_an_alert_the_log_refuses_in_flag_mode_does_not_escape_after_the_answer(
    tmp_path: Path,
) -> None:
    """Flag mode observes the rows once the answer is sent; an alert whose event cannot be
    built (a NaN score) raised out of the middleware there. Now it is logged and counted, the
    request's outcome is recorded, and the key is flagged all the same."""
    app = _app(tmp_path)
    key = _key(tmp_path)
    key_id = key.split("_")[1]
    app.guard.monitor.observe = lambda *args: [_nan_alert(key_id)]
    exchange = _request(app, key)
    assert exchange.raised is None and exchange.status == 200
    assert [e.get("status") for e in audit_events(tmp_path)] == [None, 200]
    assert key_id in app.guard.flagged
    assert app.guard.metrics.audit_failures._value.get() == 1
    assert_chain_ok(tmp_path)


def test_a_monitor_that_returns_nonsense_after_the_answer_does_not_escape(
    tmp_path: Path,
) -> None:
    """Whatever goes wrong in the flag-mode monitor's look after the answer (here alerts that
    are not alerts) is logged: before, it raised out of the middleware to the server."""
    app = _app(tmp_path)
    key = _key(tmp_path)
    app.guard.monitor.observe = lambda *args: [object()]
    exchange = _request(app, key)
    assert exchange.raised is None and exchange.status == 200
    assert [e.get("status") for e in audit_events(tmp_path)] == [None, 200]
    assert_chain_ok(tmp_path)


def test_an_alert_the_log_refuses_in_block_mode_leaves_the_refusal_recorded(
    tmp_path: Path,
) -> None:
    """Block mode records a request's alerts with its outcome, before the answer: an alert
    that cannot be built raised out of the middleware (no 403, no event). Now the 403 is sent
    and recorded; the alert is logged and counted as an audit failure."""
    app = _app(tmp_path, monitor={"action": "block"})
    key = _key(tmp_path)
    app.guard.monitor.observe = lambda key_id, *args: [_nan_alert(key_id)]
    exchange = _request(app, key)
    assert exchange.raised is None and exchange.status == 403
    admitted, outcome = audit_events(tmp_path)
    assert outcome["admission"] == 1 and admitted["decisions"]["contract"] == "allow"
    assert outcome["status"] == 403 and outcome["decisions"]["monitor"] == "block"
    assert app.guard.metrics.audit_failures._value.get() == 1
    assert_chain_ok(tmp_path)


# -- what every request's record names --------------------------------------------------------


async def _nothing(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("not called")


@pytest.mark.parametrize(
    ("digest", "path", "named"),
    [("credit-v3", "/predict", "credit-v3"), ("sha256:" + "0" * 64, "/predict v2", "/predict v2")],
)
def test_a_model_digest_or_route_the_log_refuses_stops_the_guard_at_start(
    tmp_path: Path, digest: str, path: str, named: str
) -> None:
    """The model digest (`[proxy] model_digest`, or what a team passes to build_guard) and the
    route are named by every event: a value the log refuses made every request, a 401
    included, raise out of the middleware with no answer and no event. Now the guard refuses
    them at start, naming the value: build_guard before it opens anything, and the middleware
    for routes handed to it alone."""
    from bastion.errors import ConfigError
    from bastion.guard.app import build_guard
    from bastion.guard.pipeline import GuardMiddleware, RouteSpec

    routes = [RouteSpec(path=path, scope="score", kind="rows")]
    with pytest.raises(ConfigError) as refused:
        build_guard(settings(tmp_path), model_digest=digest, routes=routes)
    assert named in refused.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no key store, no audit log
    if digest.startswith("sha256:"):  # the routes given to the middleware only
        guard = build_guard(settings(tmp_path), model_digest=digest)
        try:
            with pytest.raises(ConfigError) as refused:
                GuardMiddleware(_nothing, guard, routes)
        finally:  # an embedding app closes what build_guard opened
            asyncio.run(guard.close())
            guard.audit.close()
            guard.authenticator.store.close()
        assert named in refused.value.message


def _proxy_settings(folder: Path, digest: str) -> Any:
    upstream = {"upstream": "http://127.0.0.1:9", "flavour": "json", "model_digest": digest}
    return settings(folder, proxy=upstream)


def test_a_proxy_model_digest_the_log_refuses_leaves_no_log_behind(tmp_path: Path) -> None:
    """`[proxy] model_digest = "credit-v3"`: the guard stopped at start (ConfigError, exit 2)
    only once build_guard had opened the key store and the audit log, which were left open,
    and an empty log (with its 8 MiB write-ahead file) was left on disk. Now the digest is
    refused before anything is opened or created."""
    from bastion.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        create_app(_proxy_settings(tmp_path, "credit-v3"))
    assert "credit-v3" in refused.value.message
    assert not (tmp_path / "audit").exists()
    assert not (tmp_path / "keys.sqlite3").exists()


def test_a_proxy_model_digest_the_log_refuses_leaves_an_existing_log_as_it_was(
    tmp_path: Path,
) -> None:
    """A restart with a digest the log refuses, on a log that already holds events: the
    command exits 2, and the log is neither opened nor changed (its events, its chain).
    Before, `bastion guard proxy` left it open, its writer thread running (which the test
    harness reports as a thread left running)."""
    from bastion.cli.main import main

    good = "sha256:" + "ab" * 32
    exchange = _request(create_app(_proxy_settings(tmp_path, good)), None)  # a 401, recorded
    assert exchange.status == 401
    log_file = tmp_path / "audit" / "audit-guard.sqlite3"
    before = log_file.read_bytes()
    config = tmp_path / "guard.toml"
    config.write_text(
        f'[auth]\nkeys_db = "{tmp_path / "keys.sqlite3"}"\n'
        f'[audit]\npath = "{tmp_path / "audit"}"\n'
        '[proxy]\nmodel_digest = "credit-v3"\n',
        encoding="utf-8",
    )
    argv = ["guard", "proxy", "--upstream", "http://127.0.0.1:9", "--flavour", "json"]
    assert main([*argv, "--config", str(config)]) == 2
    assert log_file.read_bytes() == before
    (event,) = audit_events(tmp_path)
    assert event["status"] == 401
    assert_chain_ok(tmp_path)


def test_a_bug_in_the_writer_thread_fails_its_batch_instead_of_leaving_it_waiting(
    tmp_path: Path,
) -> None:
    """The writer thread's group commit raising something other than sqlite3.Error (a bug)
    stopped the writer and failed what was still queued, but not the batch it was writing:
    those requests waited for their events for good (no answer, no timeout). Now the batch
    fails like the rest: strict mode answers 503."""
    app = _app(tmp_path)
    key = _key(tmp_path)
    log = app.guard.audit
    log.append_here = lambda event: None  # through the writer thread
    log._fast_disk = False
    commit = log._commit

    def broken(datas: list[bytes]) -> int:
        log._commit = commit
        raise Boom(SECRET)

    log._commit = broken
    exchange = _request(app, key)
    assert exchange.raised is None, repr(exchange.raised)
    assert exchange.status == 503 and exchange.document()["error"]["code"] == "unavailable"
    assert audit_events(tmp_path) == []
    assert_chain_ok(tmp_path)


def test_a_websocket_handshake_is_refused_and_recorded_not_passed_to_the_inner_app(
    tmp_path: Path,
) -> None:
    """A WebSocket scope went straight to the inner app: a team's WebSocket route behind the
    middleware answered an unauthenticated client, and nothing was recorded. It is refused
    (close before accept: the server answers the handshake 403) and on record."""
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute

    from bastion.guard.app import build_guard
    from bastion.guard.pipeline import GuardMiddleware, RouteSpec

    reached = []

    async def chat(websocket: Any) -> None:
        reached.append(True)
        await websocket.accept()
        await websocket.send_text("internal")
        await websocket.close()

    routes = [RouteSpec(path="/predict", scope="score", kind="rows")]
    guard = build_guard(settings(tmp_path), model_digest="sha256:" + "0" * 64, routes=routes)
    app = GuardMiddleware(Starlette(routes=[WebSocketRoute("/ws", chat)]), guard, routes)
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", b"Bearer bst_0123456789ab_x")],
        "scheme": "ws",
        "client": ("127.0.0.1", 5555),
        "server": ("127.0.0.1", 8080),
        "subprotocols": [],
    }
    sent: list[dict[str, Any]] = []
    inbox = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        if inbox:
            return inbox.pop()
        await asyncio.sleep(60)
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    try:
        asyncio.run(asyncio.wait_for(app(scope, receive, send), 20))
    finally:
        asyncio.run(guard.close())
        guard.audit.close()
        guard.authenticator.store.close()
    assert reached == [] and sent == [{"type": "websocket.close", "code": 1008}]
    (event,) = audit_events(tmp_path)
    assert event["status"] == 403 and event["route"] == "/unknown"
    assert event["decisions"] == {"input": "block"}
    assert event["key_id"] == "0123456789ab"  # who claimed to connect, as for HTTP refusals
    assert_chain_ok(tmp_path)


def test_a_body_that_stops_arriving_is_refused_408_within_the_request_timeout(
    tmp_path: Path,
) -> None:
    """A client with a valid key that sends half its body and stops (a slow-body attack):
    the body's reading had no deadline, so the request held its in-flight place for as long
    as the connection stayed open (max_in_flight such clients refuse everyone else). It is now
    refused 408 once `[server] request_timeout_s` has passed, recorded as `input: block`."""
    app = _app(tmp_path, server={"request_timeout_s": 0.5})
    key = _key(tmp_path)
    started = time.monotonic()
    exchange = _request(app, key, stalls=True)
    assert time.monotonic() - started < 10  # (the harness gives up at 20 s)
    assert exchange.raised is None, repr(exchange.raised)
    assert exchange.status == 408
    assert exchange.document()["error"]["code"] == "body_timeout"
    (event,) = audit_events(tmp_path)
    assert event["status"] == 408 and event["decisions"]["input"] == "block"
    assert app.guard.in_flight.current == 0
    assert_chain_ok(tmp_path)
