"""The request pipeline as plain ASGI middleware: `GuardMiddleware(app, guard, routes)`.

Mount it around any ASGI app (the guard's own serve and proxy apps are two such apps; a team
can wrap its own FastAPI or Starlette app the same way). Every request to a guarded route goes
through, in order:

1. in-flight bound and per-address rate limit (before anything is parsed);
2. authentication (API key or JWT) and authorisation (the route's scope); default deny: every
   path but the configured public ones (/healthz) needs a credential, and an authenticated
   request for a path that is not a guarded route is 404;
3. per-key rate limit, then the key's daily row budget once the body is counted;
4. input contract: body size while streaming, JSON depth/item/string caps, then for tabular
   routes the body's shape; personal data and secrets in the row values as sent (block /
   redact / flag / record: a refusal for personal data is recorded as `sensitive` even when
   the value breaks the contract too); then every row against the data contract (422);
5. sensitive data in chat text (personal data, secrets, prompt-injection markers, and the
   optional classifier);
6. out-of-distribution score of each row (record / flag / block);
7. the inner app (the model, or the upstream), within the request timeout (504 past it); a
   team's app runs in a task of its own, and one that ignores its cancellation is abandoned
   after `[server] cancel_grace_s` (its later sends dropped; at most `[server]
   max_abandoned` such tasks, past which the worker is not ready and refuses the app 503);
8. the query monitor (extraction and probing per key, drift) on the rows and the scores —
   before the answer when its action is `block` (an alert refuses the request that raised
   it); in `flag`/`record` mode, which cannot change an answer, after it is sent: the alerts
   are appended to the chain then, and the key's next request carries the flag;
9. output hardening of the answer for the caller's scope (labels only, rounding, top-k), or
   screening of a chat answer for personal data;
10. the audit trail. A request that reaches the inner app gets an AdmissionEvent (who, what,
    every verdict so far), appended while the model computes; its answer is sent once that
    event is durable, and its outcome event (status, latency, the answer's checks) follows
    the answer. A request refused on the way gets one event, durable before the refusal is
    sent. In strict mode an event that cannot be recorded turns the answer into a 503, so no
    2xx is ever sent without its decision on record; an event that cannot be made (a value
    its checks refuse) turns it into a 500, recorded as far as it can be (`audit: error`).

Every request gets an answer: a step that fails unexpectedly is answered 500 with the guard's
error document (details in the log only) and recorded as `model: error` or `pipeline:
error`; metrics failures are logged and change nothing.

Each step records its decision (detector -> action) in the request's audit event and in the
metrics. Refusals say what the client must change and nothing about how a detector decided."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from bastion.guard import http
from bastion.guard.auth import Authenticator, AuthFailure, Principal, authorise, is_key_id
from bastion.guard.limits import Backend, InFlight, LimiterUnavailable, retry_after_header
from bastion.guard.metrics import ACTIONS, DETECTORS, Metrics
from bastion.guard.output import BadAnswer, harden
from bastion.guard.rows import RowReader
from bastion.guard.screen import (
    Classifier,
    RowScreen,
    TextTooLong,
    chat_texts,
    injection_markers,
    redact_document,
    screen_text,
    texts_of,
)
from bastion.guard.settings import GuardSettings
from bastion.records import Record

log = logging.getLogger("bastion.guard")
_T = TypeVar("_T")

GUARD_SCOPE_KEY = "bastion.guard"  # where the inner app finds the GuardRequest
UNKNOWN_ROUTE = "/unknown"
_ROW_KEYS = frozenset({"rows"})
MAX_FLAGGED_KEYS = 10_000  # keys with monitor alerts their next request has not carried yet


# the 503 of a worker at its in-flight or abandoned-task bound (with Retry-After: 1)
_BUSY = "the service is busy; retry shortly"


class RouteSpec(Record):
    """A guarded route: its path, the scope it needs, how its body is read."""

    path: str
    scope: str
    kind: Literal["rows", "chat", "json", "get"] = "rows"
    methods: tuple[str, ...] = ("POST",)


class GuardRequest:
    """What the pipeline learned about a request, handed to the inner app in
    `scope["bastion.guard"]`: the caller, the parsed (and possibly redacted) body, the rows read
    as the contract's types, and the decisions so far."""

    __slots__ = (
        "admission",
        "admitted",
        "alerts",
        "answer",
        "decisions",
        "digest",
        "document",
        "encoded",
        "observed",
        "ood_after",
        "principal",
        "route",
        "rows",
        "start_admission",
    )

    def __init__(self, route: RouteSpec) -> None:
        self.route = route
        self.principal: Principal | None = None
        self.document: Any = None
        self.rows: list[dict[str, Any]] | None = None
        self.encoded: Any = None
        # the rows are encoded and scored once the answer is sent (`_ood`)
        self.ood_after = False
        self.decisions: dict[str, str] = {}
        # an in-process inner app (serve mode) may leave its answer's document here besides
        # sending it, which spares decoding the bytes it sent
        self.answer: Any = None
        self.alerts: list[Any] = []  # the query monitor's alerts this request raised
        # the answer's document, for the query monitor to observe once the answer is sent
        self.observed: Any = None
        # the append of the request's AdmissionEvent, running while the model computes
        self.admission: asyncio.Future[int] | None = None
        self.admitted: dict[str, str] = {}  # the verdicts its AdmissionEvent records
        # an inner app that hands the rows to another thread (a model's predict) calls this
        # right after, so the admission's commit runs while that thread computes; otherwise
        # it starts at the inner app's first wait (None once started)
        self.start_admission: Callable[..., None] | None = None
        self.digest: str | None = None  # the input digest, computed once for both records


class Refusal(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or []


class Guard:
    """The long-lived parts of a guard (key store, limiter state, audit log, detectors fitted
    at start) and the current settings, which `reload` swaps atomically: a request keeps the
    settings it started with."""

    def __init__(
        self,
        settings: GuardSettings,
        *,
        authenticator: Authenticator,
        limiter: Backend,
        audit: Any,
        metrics: Metrics,
        model_digest: str,
        contract: Any = None,
        columns: Sequence[str] = (),
        categories: dict[str, frozenset[str]] | None = None,
        encoder: Any = None,
        ood: Any = None,
        monitor: Any = None,
        classifier: Classifier | None = None,
        digest_key: bytes | None = None,
        extra_ready: Callable[[], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.authenticator = authenticator
        self.limiter = limiter
        self.audit = audit
        self.metrics = metrics
        self.model_digest = model_digest
        self.contract = contract  # prepared columns (datacheck.contract.prepare), or None
        self.columns = list(columns)
        self.categories = categories or {}
        self.encoder = encoder if encoder is not None else getattr(ood, "encoder", None)
        # compiled once: the rows of every request are encoded with it
        self.encoding = self.encoder.compile() if self.encoder is not None else None
        self.ood = ood
        self.monitor = monitor if self.encoder is not None else None
        self.classifier = classifier
        self.digest_key = digest_key
        self.in_flight = InFlight()
        # read at scrape time: a locked Gauge updated twice per request costs more
        metrics.in_flight.set_function(lambda: self.in_flight.current)
        # tasks of a team's app that ignored their cancellation at the request timeout and
        # were left running (`GuardMiddleware._let_go`); held here so that they are not
        # collected while pending, and bounded by `[server] max_abandoned`
        self.abandoned: set[asyncio.Future[None]] = set()
        metrics.abandoned_running.set_function(lambda: len(self.abandoned))
        self.blocked: dict[str, float] = {}  # key id -> monotonic time its monitor block ends
        # keys whose answered requests raised a monitor alert their next request has not
        # carried yet, oldest first (record and flag modes: GuardMiddleware._observe_answered)
        self.flagged: dict[str, None] = {}
        self.extra_ready = extra_ready
        self.row_screen = RowScreen(self.categories, settings.sensitive.max_chars)
        self.row_reader = RowReader(contract) if contract is not None else None

    def reload(self, settings: GuardSettings) -> list[str]:
        """Swap in new settings; returns the changed tables that need a restart to apply (the
        key store, audit log, limiter backend, proxy, model and listening socket are opened
        once)."""
        old = self.settings
        needs_restart = [
            table
            for table in ("server", "audit", "proxy", "model")
            if getattr(old, table) != getattr(settings, table)
        ]
        if old.auth.keys_db != settings.auth.keys_db or old.auth.jwt != settings.auth.jwt:
            needs_restart.append("auth")
        if (old.limits.backend, old.limits.redis_url) != (
            settings.limits.backend,
            settings.limits.redis_url,
        ):
            needs_restart.append("limits.backend")
        self.row_screen = RowScreen(self.categories, settings.sensitive.max_chars)
        self.settings = settings
        return needs_restart

    def ready(self) -> bool:
        """Whether the worker can serve: its audit log takes events, the extra check passes,
        and fewer than `[server] max_abandoned` abandoned tasks of the inner app run."""
        audit_ok = self.audit is None or self.audit.ready
        if len(self.abandoned) >= self.settings.server.max_abandoned:
            return False
        return bool(audit_ok and (self.extra_ready is None or self.extra_ready()))

    async def close(self) -> None:
        for task in list(self.abandoned):  # once more: a task that ends on it goes now
            task.cancel()
        await self.limiter.close()
        if self.classifier is not None:
            self.classifier.close()


def _claim(scope: http.Scope) -> bytes | None:
    """The Authorization header; the API key id it claims (checked or not) is kept in the
    scope, so a refusal is audited as who claimed to call."""
    authorization = http.header(scope, b"authorization")
    if authorization and authorization[:11].lower() == b"bearer bst_":
        claimed_id = authorization[11:23].decode("ascii", "replace")
        if is_key_id(claimed_id):
            scope["bastion.claimed_key"] = claimed_id
    return authorization


def _client_address(scope: http.Scope, trusted: Sequence[str]) -> str:
    client = scope.get("client")
    address = client[0] if client else "unknown"
    if trusted and address in trusted:
        forwarded = http.header(scope, b"x-forwarded-for")
        if forwarded:
            for hop in reversed(forwarded.decode("latin-1").split(",")):
                hop = hop.strip()
                if hop and hop not in trusted:
                    try:
                        return str(ipaddress.ip_address(hop))
                    except ValueError:
                        return address
    return address


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class GuardMiddleware:
    """The pipeline around `app` (see the module docstring)."""

    def __init__(self, app: http.ASGIApp, guard: Guard, routes: Sequence[RouteSpec]) -> None:
        self.app = app
        self.guard = guard
        self.routes = {route.path: route for route in routes}
        if guard.audit is not None:
            _check_recordable(guard.model_digest, [*self.routes, UNKNOWN_ROUTE])

    async def __call__(self, scope: http.Scope, receive: http.Receive, send: http.Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":  # never past the pipeline to the inner app
                await self._websocket(scope, receive, send)
                return
            if scope["type"] != "lifespan":  # default deny: nothing unknown reaches the app
                raise ValueError(f"the guard serves no ASGI scope of type {scope['type']!r}")
            await self.app(scope, receive, send)
            return
        guard = self.guard
        settings = guard.settings  # this request's settings, whatever a reload does meanwhile
        path = scope["path"]
        if path in settings.auth.public_paths and scope["method"] in ("GET", "HEAD"):
            if self._foreign():
                await self._public(scope, receive, send, settings)
            else:  # the guard's own /healthz and /readyz answer at once
                await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        route = self.routes.get(path)
        request = GuardRequest(route or RouteSpec(path=UNKNOWN_ROUTE, scope="admin"))
        address = _client_address(scope, settings.server.trusted_proxies)
        claimed: str | None = None
        if not guard.in_flight.enter(settings.limits.max_in_flight):
            self._count_limit("in_flight")
            request.decisions["in_flight"] = "block"
            status, body, headers = (
                503,
                http.error_document("overloaded", _BUSY),
                [(b"retry-after", b"1")],
            )
            await self._finish(scope, send, request, settings, started, status, body, headers, None)
            return
        try:
            status, body, headers, raw = await self._run(scope, receive, request, settings, address)
        except Refusal as refusal:
            status = refusal.status
            body = http.error_document(refusal.code, refusal.message)
            headers, raw = refusal.headers, None
        except Exception:  # a bug or a model crash: a generic 500, details in the log only
            log.exception("guard pipeline error on %s", request.route.path)
            if request.decisions.get("model") != "error":  # not the model's (`_call_inner`)
                request.decisions["pipeline"] = "error"
            status, body, headers, raw = 500, _internal_error(), [], None
        finally:
            guard.in_flight.leave()
        if request.principal is not None:
            claimed = request.principal.key_id
        try:
            await self._finish(
                scope, send, request, settings, started, status, body, headers, raw, claimed
            )
        finally:  # the model answered: its rows are observed even if sending the answer failed
            if request.ood_after:  # `_finish` was cancelled before it could score them
                self._ood_after(request, settings)
            if request.observed is not None:
                try:
                    await self._observe_answered(request, settings)
                except Exception:  # the answer is sent: logged, never raised to the server
                    log.exception("query monitor error on %s", request.route.path)

    async def _websocket(self, scope: http.Scope, receive: http.Receive, send: http.Send) -> None:
        """The pipeline guards HTTP requests; a WebSocket handshake would reach the inner app
        (a team's own WebSocket routes) past every step. It is refused (the server answers the
        handshake 403) and recorded like any refusal, as `input: block`."""
        started = time.perf_counter()
        request = GuardRequest(
            self.routes.get(scope.get("path", "")) or RouteSpec(path=UNKNOWN_ROUTE, scope="admin")
        )
        request.decisions["input"] = "block"
        _claim(scope)  # recorded as who claimed to connect, as an HTTP refusal is
        if (await receive())["type"] != "websocket.connect":
            return  # the client went away before the handshake

        async def close(message: http.Message) -> None:
            if message["type"] == "http.response.start":
                await send({"type": "websocket.close", "code": 1008})

        body = http.error_document("forbidden", "WebSocket is not served")  # never sent
        await self._finish(scope, close, request, self.guard.settings, started, 403, body, [], None)

    # -- the steps -------------------------------------------------------------------------

    async def _run(
        self,
        scope: http.Scope,
        receive: http.Receive,
        request: GuardRequest,
        settings: GuardSettings,
        address: str,
    ) -> tuple[int, Any, list[tuple[bytes, bytes]], bytes | None]:
        guard = self.guard
        limits = settings.limits
        try:
            decision = await guard.limiter.gcra("ip:" + address, limits.ip_rate, limits.ip_burst)
        except LimiterUnavailable:
            return self._limiter_down(request, "ip_limit")
        if not decision.allowed:
            self._over_limit(
                request,
                "ip",
                "ip_limit",
                decision,
                "rate_limited",
                "too many requests from this address",
            )
        if (
            scope["path"] == "/metrics"
            and settings.metrics.access == "loopback"
            and scope["method"] == "GET"
            and is_loopback(address)
        ):
            request.decisions["auth"] = "allow"
            content, kind = guard.metrics.exposition()
            return 200, _Raw(content, kind.encode()), [], None
        # authentication and authorisation
        authorization = _claim(scope)
        try:
            principal = guard.authenticator.authenticate(authorization)
        except AuthFailure as failure:
            request.decisions["auth"] = failure.reason
            raise Refusal(
                401,
                "unauthorized",
                "a valid credential is required (Authorization: Bearer <key>)",
                [(b"www-authenticate", b'Bearer realm="bastion-guard"')],
            ) from None
        request.principal = principal
        route = self.routes.get(scope["path"])
        if route is None:
            request.decisions["auth"] = "allow"
            if scope["path"] == "/metrics" and settings.metrics.access == "admin":
                return self._metrics(request, principal)
            raise Refusal(404, "not_found", "no such route")
        try:
            authorise(principal, route.scope)
        except AuthFailure:
            request.decisions["auth"] = "scope"
            raise Refusal(
                403, "forbidden", f"this credential does not grant the {route.scope} scope"
            ) from None
        request.decisions["auth"] = "allow"
        if scope["method"] not in route.methods:
            raise Refusal(405, "method_not_allowed", f"use {', '.join(route.methods)}")
        blocked_until = guard.blocked.get(principal.key_id)
        if blocked_until is not None:
            if blocked_until > time.monotonic():
                request.decisions["monitor"] = "block"
                raise Refusal(
                    403, "forbidden", "this credential is suspended; contact the operator"
                )
            del guard.blocked[principal.key_id]
        if self._foreign() and len(guard.abandoned) >= settings.server.max_abandoned:
            # as many abandoned tasks of the app as allowed are still running: no more are
            # started (`_call_foreign`); refused before the key's rate and budget are charged
            request.decisions["model"] = "unavailable"
            raise Refusal(
                503,
                "overloaded",
                _BUSY,
                [(b"retry-after", b"1")],
            )
        try:
            decision = await guard.limiter.gcra(
                "key:" + principal.key_id, limits.key_rate, limits.key_burst
            )
        except LimiterUnavailable:
            return self._limiter_down(request, "key_limit")
        if not decision.allowed:
            self._over_limit(
                request,
                "key",
                "key_limit",
                decision,
                "rate_limited",
                "too many requests for this credential",
            )
        if route.kind == "get":
            return await self._call_inner(scope, receive, request, settings, None)
        # the body: size while streaming, then bounded JSON
        server = settings.server
        try:
            # a body that trickles in (or stops) holds an in-flight place: bounded like the model
            deadline = asyncio.get_running_loop().time() + server.request_timeout_s
            raw = await _by(http.read_body(scope, receive, server.max_body_bytes), deadline)
            document = None
            if route.kind == "rows":  # typed decoding: the shape checked by msgspec
                document = http.parse_rows(
                    raw, server.max_json_depth, server.max_json_items, server.max_string_chars
                )
            shaped = document is not None
            if document is None:
                document = http.parse_json(
                    raw, server.max_json_depth, server.max_json_items, server.max_string_chars
                )
        except http.BodyError as error:
            request.decisions["input"] = "block"
            raise Refusal(error.status, error.code, error.message) from None
        except asyncio.TimeoutError:
            request.decisions["input"] = "block"
            raise Refusal(
                408, "body_timeout", "the request body did not arrive in time; send it at once"
            ) from None
        request.document = document
        scope["bastion.raw_body"] = raw
        if route.kind == "rows":
            rows = self._rows(request, document, settings, shaped)
            amount = len(rows)
        else:
            request.decisions["input"] = "allow"
            amount = 1
        try:
            decision = await guard.limiter.spend(
                "key:" + principal.key_id, amount, limits.daily_rows
            )
        except LimiterUnavailable:
            return self._limiter_down(request, "budget")
        if not decision.allowed:
            self._over_limit(
                request,
                "budget",
                "budget",
                decision,
                "budget_exhausted",
                "the daily query budget of this credential is used up",
            )
        if route.kind == "rows":
            # personal data first: a value refused for carrying it is recorded as such (the
            # audit and metrics say `sensitive`, not just `contract`), whatever else is wrong
            self._screen_rows(request, settings)
            self._contract(request, settings)
            self._ood(request, settings)
        elif route.kind == "chat":
            await self._screen_chat(request, settings)
        else:
            self._screen_json(request, settings)
        return await self._call_inner(scope, receive, request, settings, raw)

    def _over_limit(
        self,
        request: GuardRequest,
        metric: str,
        detector: str,
        decision: Any,
        code: str,
        message: str,
    ) -> None:
        """A limit refused the request: counted, recorded and answered 429 with Retry-After."""
        self._count_limit(metric)
        request.decisions[detector] = "block"
        retry = retry_after_header(decision.retry_after).encode()
        raise Refusal(429, code, message, [(b"retry-after", retry)])

    def _limiter_down(
        self, request: GuardRequest, detector: str
    ) -> tuple[int, Any, list[tuple[bytes, bytes]], bytes | None]:
        self._count_limit("unavailable")
        request.decisions[detector] = "unavailable"
        raise Refusal(
            503,
            "unavailable",
            "the service cannot check its limits; retry shortly",
            [(b"retry-after", b"1")],
        )

    def _metrics(
        self, request: GuardRequest, principal: Principal
    ) -> tuple[int, Any, list[tuple[bytes, bytes]], bytes | None]:
        try:
            authorise(principal, "admin")
        except AuthFailure:
            request.decisions["auth"] = "scope"
            raise Refusal(403, "forbidden", "metrics need the admin scope") from None
        content, kind = self.guard.metrics.exposition()
        return 200, _Raw(content, kind.encode()), [], None

    def _rows(
        self, request: GuardRequest, document: Any, settings: GuardSettings, shaped: bool
    ) -> list[dict[str, Any]]:
        """The body's rows; `shaped` when http.parse_rows already checked their shape."""
        if not isinstance(document, dict) or set(document) != _ROW_KEYS:
            request.decisions["input"] = "block"
            raise Refusal(422, "invalid_body", 'the body must be {"rows": [{column: value}]}')
        rows = document["rows"]
        if not isinstance(rows, list) or not rows:
            request.decisions["input"] = "block"
            raise Refusal(422, "invalid_body", '"rows" must be a non-empty list of objects')
        if len(rows) > settings.server.max_rows:
            request.decisions["input"] = "block"
            raise Refusal(413, "too_many_rows", f"at most {settings.server.max_rows} rows")
        for row in () if shaped else rows:
            if not isinstance(row, dict) or any(isinstance(v, (dict, list)) for v in row.values()):
                request.decisions["input"] = "block"
                raise Refusal(
                    422, "invalid_body", "each row must be an object of column to a plain value"
                )
        request.decisions["input"] = "allow"
        return rows

    def _contract(self, request: GuardRequest, settings: GuardSettings) -> None:
        from bastion.datacheck.contract import validate_row
        from bastion.guard.features import coerce_row

        columns = self.guard.contract
        rows = request.document["rows"]
        if columns is None:
            request.rows = [dict(r) for r in rows]
            return
        reader = self.guard.row_reader
        assert reader is not None
        accepted = [reader.read(row) for row in rows]
        if None not in accepted:  # every row in contract: read as its types, compiled
            request.decisions["contract"] = "allow"
            request.rows = accepted  # type: ignore[assignment]
            return
        problems: list[str] = []
        known = {c.name for c in columns}
        for index, row in enumerate(rows):
            for violation in validate_row(columns, row):
                if violation.column in known:
                    problems.append(
                        f"row {index}: {violation.column}: {violation.constraint} "
                        f"({violation.message})"
                    )
            unknown = sum(1 for key in row if key not in known)
            if unknown:
                problems.append(f"row {index}: {unknown} column(s) not in the contract")
            if len(problems) >= 20:
                break
        action = settings.contract.action
        if problems:
            request.decisions["contract"] = action
            if action == "block":
                raise Refusal(
                    422,
                    "contract_violation",
                    "the rows do not match the model's input contract: " + "; ".join(problems[:20]),
                )
        else:
            request.decisions["contract"] = "allow"
        request.rows = [coerce_row(columns, row) for row in rows]

    def _screen_rows(self, request: GuardRequest, settings: GuardSettings) -> None:
        """Personal data and secrets in the rows as sent (before the contract reads them)."""
        action = settings.sensitive.action
        rows = request.document["rows"]
        try:
            kinds, redacted = self.guard.row_screen.rows(rows, redact=action == "redact")
        except TextTooLong:
            limit = settings.sensitive.max_chars
            request.decisions["sensitive"] = "block"
            raise Refusal(413, "string_too_long", f"a value is over {limit} characters") from None
        if not kinds:
            request.decisions["sensitive"] = "allow"
            return
        request.decisions["sensitive"] = action
        if action == "block":
            raise Refusal(
                422,
                "personal_data",
                "the request carries personal data or a secret ("
                + ", ".join(sorted(set(kinds)))
                + "); remove it and retry",
            )
        if redacted is not None:
            request.document = {"rows": redacted}

    def _ood(self, request: GuardRequest, settings: GuardSettings) -> None:
        """Encode and score the rows before the model when a verdict may refuse them (`block`
        for the OOD detector or the query monitor); otherwise once the answer is sent
        (`_ood_after`), since a `flag` or `record` verdict cannot change it."""
        guard = self.guard
        if guard.encoding is None or (guard.ood is None and guard.monitor is None):
            return
        if settings.ood.action != "block" and not (
            guard.monitor is not None and settings.monitor.action == "block"
        ):
            request.ood_after = True
            return
        self._score_ood(request, settings)

    def _ood_after(self, request: GuardRequest, settings: GuardSettings) -> None:
        """The deferred OOD step: its verdict goes into the request's outcome event, its
        encoding to the query monitor. The answer may be sent: a failure is logged."""
        request.ood_after = False
        try:
            self._score_ood(request, settings)
        except Exception:
            log.exception("OOD scoring error on %s", request.route.path)
            if self.guard.ood is not None:
                request.decisions["ood"] = "error"

    def _score_ood(self, request: GuardRequest, settings: GuardSettings) -> None:
        guard = self.guard
        encoding = guard.encoding
        assert request.rows is not None and encoding is not None
        request.encoded = encoding.encode(request.rows)
        if guard.ood is None:
            return
        threshold = guard.ood.threshold(settings.ood.quantile, settings.ood.threshold)
        # `not <=`: a score that is not a number (a row the contract let through as NaN) is
        # out of distribution, and so is any batch holding one
        if not guard.ood.worst(request.encoded) <= threshold:
            action = settings.ood.action
            request.decisions["ood"] = action
            if action == "block":
                raise Refusal(
                    422,
                    "out_of_distribution",
                    "the rows are unlike the data this model serves; check the values",
                )
        else:
            request.decisions["ood"] = "allow"

    async def _screen_chat(self, request: GuardRequest, settings: GuardSettings) -> None:
        texts = chat_texts(request.document)
        if not texts:
            request.decisions["input"] = "block"
            raise Refusal(422, "invalid_body", 'a chat request needs "messages" with text content')
        # personal data anywhere in the request (a "user" field, a tool description, a message
        # "name" reach the upstream as much as the messages do); injection in the messages
        self._screen_json(request, settings)
        markers: list[str] = []
        for text in texts:
            markers += injection_markers(text)
        classifier = self.guard.classifier
        if classifier is not None and settings.injection.classifier:
            verdict = await asyncio.get_running_loop().run_in_executor(
                None, classifier.verdict, "\n".join(texts)[: settings.sensitive.max_chars]
            )
            request.decisions["classifier"] = (
                "flag" if verdict == "injection" else "allow" if verdict == "clean" else verdict
            )
            if verdict == "injection":
                markers.append("classifier")
        if markers:
            action = settings.injection.action
            request.decisions["injection"] = action
            if action == "block":
                raise Refusal(422, "prompt_injection", "the prompt was refused by the input policy")
        else:
            request.decisions["injection"] = "allow"

    def _screen_json(self, request: GuardRequest, settings: GuardSettings) -> None:
        action = settings.sensitive.action
        limit = settings.sensitive.max_chars
        strings = texts_of(request.document)
        kinds: list[str] = []
        for text in strings:
            if len(text) > limit:
                request.decisions["sensitive"] = "block"
                raise Refusal(413, "string_too_long", f"a text is over {limit} characters")
            kinds += screen_text(text, limit, redact=False)[0]
        if not kinds:
            request.decisions["sensitive"] = "allow"
            return
        request.decisions["sensitive"] = action
        if action == "block":
            raise Refusal(
                422,
                "personal_data",
                "the request carries personal data or a secret ("
                + ", ".join(sorted(set(kinds)))
                + "); remove it and retry",
            )
        if action == "redact":
            request.document = redact_document(request.document, limit)[0]

    async def _call_inner(
        self,
        scope: http.Scope,
        receive: http.Receive,
        request: GuardRequest,
        settings: GuardSettings,
        raw: bytes | None,
    ) -> tuple[int, Any, list[tuple[bytes, bytes]], bytes | None]:
        scope[GUARD_SCOPE_KEY] = request
        # a team's app (the guard's own serve and proxy app answers with the guard's documents)
        # runs in a task of its own, which is abandoned if it ignores its cancellation
        foreign = self._foreign()
        if self.guard.audit is not None:
            self._admit(scope, request, settings, raw)
        # the body the inner app reads is the checked (and possibly redacted) document; an
        # inner app that declares it reads the GuardRequest instead (the served model) is
        # spared its encoding
        reads = request.document is not None and getattr(self.app, "reads_body", True)
        body = http.encode(request.document) if reads else b""
        inner_receive = http.replay(body, receive)
        if reads:
            headers = [
                (k, v)
                for k, v in scope.get("headers", ())
                if k not in (b"content-length", b"transfer-encoding")
            ]
            headers.append((b"content-length", str(len(body)).encode()))
            scope = {**scope, "headers": headers}
        captured = _Capture(settings.output.max_response_bytes)
        try:
            if foreign:
                await self._call_foreign(
                    scope, inner_receive, captured.send, request.route.path, settings
                )
            else:  # in this task: the guard's own app ends when cancelled
                await _within(
                    self.app(scope, inner_receive, captured.send), settings.server.request_timeout_s
                )
        except asyncio.TimeoutError:
            request.decisions["model"] = "timeout"
            raise Refusal(504, "timeout", "the model did not answer in time") from None
        except _Capture.TooLarge:
            request.decisions["model"] = "error"
            raise Refusal(502, "bad_answer", "the model's answer was too large") from None
        except Exception:  # the model (or the team's app) failed: `__call__` answers 500
            request.decisions["model"] = "error"
            raise
        except asyncio.CancelledError:
            if _cancelled():  # this request was cancelled (its client, the server): not news
                raise
            # the inner app raised it without being cancelled (it awaited something of its
            # own that was): its failure, answered 500 and recorded like any other
            request.decisions["model"] = "error"
            raise _InnerCancelled() from None
        if captured.status is None:
            request.decisions["model"] = "error"
            raise Refusal(502, "bad_answer", "the model gave no answer")
        request.decisions.setdefault("model", "allow" if captured.status < 400 else "error")
        return await self._after(request, settings, captured, raw)

    async def _public(
        self, scope: http.Scope, receive: http.Receive, send: http.Send, settings: GuardSettings
    ) -> None:
        """A GET or HEAD of a public path of a team's app: no credential, no step of the
        pipeline, no record, but the same request timeout and abandonment as a guarded route
        (`_call_foreign`), its answer passed on as the app sends it: 504 past the timeout if
        the app has not begun one, 503 while `[server] max_abandoned` abandoned tasks run."""
        if len(self.guard.abandoned) >= settings.server.max_abandoned:
            await http.send_json(
                send,
                503,
                http.error_document("overloaded", _BUSY),
                [(b"retry-after", b"1")],
            )
            return
        begun = False

        async def passed_on(message: http.Message) -> None:
            nonlocal begun
            begun = begun or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._call_foreign(scope, receive, passed_on, scope["path"], settings)
        except asyncio.TimeoutError:
            if not begun:
                await http.send_json(
                    send, 504, http.error_document("timeout", "the service did not answer in time")
                )

    def _foreign(self) -> bool:
        """Whether the inner app is a team's (the guard's own serve and proxy app answers with
        the guard's documents)."""
        return not getattr(self.app, "guard_documents", False)

    async def _call_foreign(
        self,
        scope: http.Scope,
        receive: http.Receive,
        send: http.Send,
        path: str,
        settings: GuardSettings,
    ) -> None:
        """A team's app (its request for `path`), in a task of its own, within the request timeout
        (asyncio.TimeoutError past it, whatever the app does later). What it raises is raised here,
        a CancelledError of its own included. At the timeout (or when the request itself is
        cancelled) the task is cancelled and gets `[server] cancel_grace_s` to end; one that has not
        ended by then (it caught the CancelledError and waits on) is abandoned (`_let_go`), so that
        it holds neither the request's answer nor its in-flight place."""
        server = settings.server
        gate = _Gate(receive, send)
        task = asyncio.ensure_future(self.app(scope, gate.receive, gate.send))
        try:
            await asyncio.wait({task}, timeout=server.request_timeout_s)
        except asyncio.CancelledError:  # the request was cancelled, and the app with it
            task.cancel()
            try:
                await _grace(task, server.cancel_grace_s)
            finally:
                self._let_go(task, gate, path, settings)
            raise
        if task.done():
            task.result()
            return
        task.cancel()
        try:
            cancelled = await _grace(task, server.cancel_grace_s)
        finally:
            self._let_go(task, gate, path, settings)
        if cancelled is not None:  # the request itself was cancelled during the grace
            raise cancelled
        raise asyncio.TimeoutError()

    def _let_go(
        self,
        task: asyncio.Future[None],
        gate: _Gate,
        path: str,
        settings: GuardSettings,
    ) -> None:
        """After the cancellation of a team's app and its grace: a task that ended is done
        with (what it raised is logged); one still running is abandoned. Its `send` and
        `receive` are closed (what it sends later is dropped, it receives a disconnect), it is
        held in `Guard.abandoned` until it ends, counted, and logged. Once `[server]
        max_abandoned` are running the worker is not ready and requests for the app are
        refused 503 (`_run`) until some end."""
        if task.done():
            if not task.cancelled() and task.exception() is not None:
                log.warning(
                    "the app behind the guard failed when cancelled on %s",
                    path,
                    exc_info=task.exception(),
                )
            return
        gate.close()
        guard = self.guard
        guard.abandoned.add(task)
        since = time.monotonic()

        def ended(done: asyncio.Future[None]) -> None:
            guard.abandoned.discard(done)
            _retrieved(done)
            log.warning(
                "an abandoned task of the app behind the guard (%s) ended after %.1f s",
                path,
                time.monotonic() - since,
            )

        task.add_done_callback(ended)
        try:
            guard.metrics.abandoned.inc()
        except Exception:  # metrics decide nothing
            log.exception("metrics error counting an abandoned task")
        running, bound = len(guard.abandoned), settings.server.max_abandoned
        log.error(
            "the app behind the guard did not end when cancelled on %s: its task is abandoned "
            "(%d running, at most %d)",
            path,
            running,
            bound,
        )
        if running >= bound:
            log.error(
                "%d abandoned tasks of the app behind the guard are running: this worker is not "
                "ready, and refuses requests for the app until some end (or it is restarted)",
                running,
            )

    async def _after(
        self,
        request: GuardRequest,
        settings: GuardSettings,
        captured: _Capture,
        raw: bytes | None,
    ) -> tuple[int, Any, list[tuple[bytes, bytes]], bytes | None]:
        route = request.route
        status = captured.status or 502
        body = captured.body()
        if status >= 500 and not getattr(self.app, "guard_documents", False):
            # a team's app behind the middleware failed: its page (a traceback, paths,
            # settings) stays inside, as an upstream's does in proxy mode
            raise Refusal(502, "bad_answer", "the model failed to answer")
        if route.kind == "get" or status >= 300:
            return status, _Raw(body, captured.content_type), [], raw
        if request.answer is not None:  # the in-process model's document, not re-read
            document = request.answer
        else:
            try:
                document = http.parse_json(body, 64, 1_000_000, 10_000_000)
            except http.BodyError:
                request.decisions["output"] = "error"
                raise Refusal(502, "bad_answer", "the model's answer was malformed") from None
        if route.kind == "rows":
            if settings.monitor.action == "block":  # it may refuse this answer: before it
                self._monitor(request, settings, document)
            else:
                self._monitor_verdict(request, settings, document)
            rules = settings.output.scopes.get(route.scope)
            if rules is not None:
                try:
                    document = harden(document, rules)
                except BadAnswer:
                    request.decisions["output"] = "error"
                    raise Refusal(502, "bad_answer", "the model's answer was malformed") from None
                request.decisions["output"] = "allow"
        elif route.kind == "chat":
            document = self._screen_answer(request, settings, document)
        return status, document, [], raw

    def _monitor(self, request: GuardRequest, settings: GuardSettings, document: Any) -> None:
        """Block mode: the monitor looks before the answer. An alert on the key suspends it
        and refuses this request; so is a request of a key suspended while it was with the
        model (a burst sent at once passes the suspension check before any of it is
        observed)."""
        guard = self.guard
        monitor = guard.monitor
        if monitor is None or request.encoded is None or request.principal is None:
            return
        key_id = request.principal.key_id
        scores = _score_matrix(document, len(request.encoded))
        alerts = monitor.observe(key_id, request.encoded, scores)
        request.alerts = alerts  # recorded in the audit chain with the request's event
        self._raised(alerts)
        now = time.monotonic()
        if any(a.key_id == key_id for a in alerts):
            guard.blocked[key_id] = now + settings.monitor.block_seconds
        if guard.blocked.get(key_id, now) <= now:
            request.decisions["monitor"] = "allow"
            return
        request.decisions["monitor"] = "block"
        raise Refusal(403, "forbidden", "this credential is suspended; contact the operator")

    def _raised(self, alerts: list[Any]) -> None:
        for alert in alerts:
            log.warning("monitor alert: %s on key %s: %s", alert.kind, alert.key_id, alert.message)
            try:
                self.guard.metrics.alert(alert.kind)
            except Exception:  # metrics decide nothing
                log.exception("metrics error counting a monitor alert")

    def _count_limit(self, which: str) -> None:
        """A limit's refusal counted; a metrics failure is logged, and changes no answer."""
        try:
            self.guard.metrics.limit(which)
        except Exception:
            log.exception("metrics error counting the %s limit", which)

    def _audit_failed(self) -> None:
        """An event that could not be made durable, counted (a metrics failure is logged)."""
        try:
            self.guard.metrics.audit_failures.inc()
        except Exception:
            log.exception("metrics error counting an audit failure")

    def _alert_events(self, alerts: list[Any]) -> list[Any]:
        """The alerts' audit events. One that cannot be made (a value its checks refuse, a
        NaN score) is logged and counted as an audit failure; the others, and the request
        that raised them, are recorded as usual."""
        from bastion.guard.audit import AlertEvent

        events = []
        for alert in alerts:
            try:
                events.append(AlertEvent.from_alert(alert))
            except Exception:
                self._audit_failed()
                log.exception(
                    "a monitor alert (%r on key %r) could not be recorded",
                    getattr(alert, "kind", None),
                    getattr(alert, "key_id", None),
                )
        return events

    def _monitor_verdict(
        self, request: GuardRequest, settings: GuardSettings, document: Any
    ) -> None:
        """A monitor that only records or flags cannot change the answer, so it observes the
        rows once the answer is sent (`_observe_answered`): this request carries the alerts the
        key's answered requests raised since its last one (already in the audit chain)."""
        guard = self.guard
        if guard.monitor is None or guard.encoding is None or request.principal is None:
            return
        raised = request.principal.key_id in guard.flagged
        guard.flagged.pop(request.principal.key_id, None)
        request.decisions["monitor"] = settings.monitor.action if raised else "allow"
        request.observed = document

    async def _observe_answered(self, request: GuardRequest, settings: GuardSettings) -> None:
        """The query monitor's look at an answered request (record or flag mode): its alerts
        are logged and appended to the audit chain, then the key's next request is flagged.
        The CPU is the same as observing before the answer; the caller does not wait for it."""
        guard = self.guard
        assert guard.monitor is not None and request.principal is not None
        key_id = request.principal.key_id
        try:
            scores = _score_matrix(request.observed, len(request.encoded))
            alerts = guard.monitor.observe(key_id, request.encoded, scores)
        except Exception:  # the answer is sent: a monitor failure is logged, not raised
            log.exception("query monitor error on %s", request.route.path)
            return
        if not alerts:
            return
        self._raised(alerts)
        if guard.audit is not None:
            from bastion.guard.audit import AuditUnavailable

            try:
                await asyncio.gather(*map(guard.audit.append, self._alert_events(alerts)))
            except AuditUnavailable:
                self._audit_failed()
                log.error("monitor alerts on key %s could not be recorded", key_id)
            except Exception:  # the answer is sent: logged and counted, not raised
                self._audit_failed()
                log.exception("monitor alerts on key %s could not be recorded", key_id)
        # flagged once the alerts are in the chain: the request carrying the flag follows them
        if any(a.key_id == key_id for a in alerts):
            flagged = guard.flagged
            flagged[key_id] = None
            while len(flagged) > MAX_FLAGGED_KEYS:
                flagged.pop(next(iter(flagged)))

    def _screen_answer(self, request: GuardRequest, settings: GuardSettings, document: Any) -> Any:
        action = settings.output.screen_text
        limit = settings.sensitive.max_chars
        kinds: list[str] = []
        for text in texts_of(document):
            kinds += screen_text(text, limit, redact=False)[0]
        if not kinds:
            request.decisions["output"] = "allow"
            return document
        request.decisions["output"] = action
        if action == "block":
            raise Refusal(502, "answer_withheld", "the answer was withheld by the output policy")
        if action == "redact":
            return redact_document(document, limit)[0]
        return document

    # -- the answer and its audit event -------------------------------------------------------

    def _admit(
        self, scope: http.Scope, request: GuardRequest, settings: GuardSettings, raw: bytes | None
    ) -> None:
        """Arrange for the request's AdmissionEvent (every verdict so far) to be appended while
        the model computes; `_finish` sends no answer before it is durable. It is started by the
        inner app once the model has the rows (`GuardRequest.start_admission`), or else at the
        inner app's first wait. A request alone in flight commits it in place (see
        `AuditLog.append_here`); others share the writer's group commit."""
        from bastion.guard.audit import admission_made

        guard = self.guard
        audit = guard.audit
        event = admission_made(
            key_id=request.principal.key_id if request.principal else None,
            tenant=request.principal.tenant if request.principal else None,
            route=request.route.path,
            model_digest=guard.model_digest,
            input_digest=self._digest(scope, request, raw),
            decisions=_recorded(request, settings),
        )
        request.admitted = event.decisions
        alone = guard.in_flight.current <= 1
        loop = asyncio.get_running_loop()
        admission: asyncio.Future[int] = loop.create_future()
        # a request cancelled before `_finish` leaves it unawaited: its failure is not news
        admission.add_done_callback(_retrieved)

        def start(in_place: bool = True) -> None:
            if request.start_admission is None:
                return  # started already
            request.start_admission = None
            try:
                seq = audit.append_here(event) if alone and in_place else None
            except Exception as exc:  # AuditUnavailable in a strict log
                if not admission.done():  # (cancelled with its request)
                    admission.set_exception(exc)
                return
            if seq is not None:
                if not admission.done():
                    admission.set_result(seq)
                return
            task = asyncio.ensure_future(audit.append(event))
            task.add_done_callback(lambda done: _settle(admission, done))
            task.add_done_callback(_retrieved)

        request.admission = admission
        request.start_admission = start
        # an inner app that does not call it (a proxy, whose wait is on the network, not the
        # GIL) starts it at its first wait, through `append`: the loop stays free meanwhile
        loop.call_soon(start, False)

    def _digest(self, scope: http.Scope, request: GuardRequest, raw: bytes | None) -> str:
        if request.digest is None:
            from bastion.guard.audit import input_digest

            raw = raw if raw is not None else scope.get("bastion.raw_body")
            request.digest = input_digest(raw or b"", key=self.guard.digest_key)
        return request.digest

    async def _finish(
        self,
        scope: http.Scope,
        send: http.Send,
        request: GuardRequest,
        settings: GuardSettings,
        started: float,
        status: int,
        body: Any,
        headers: list[tuple[bytes, bytes]],
        raw: bytes | None,
        key_id: str | None = None,
    ) -> None:
        """Record the request's outcome, then send the answer. A request refused before the
        model is sent once its one event is durable. One the model answered is sent once its
        AdmissionEvent is durable (appended while the model ran); its outcome event follows
        the answer unless the outcome is a refusal or raised alerts, which are durable first.
        Nothing but a failure to send (or a cancellation) is raised: an event the log cannot
        take makes the answer a 503 (strict mode) and one that cannot be made, or any other
        failure to record, a 500 (`_record_failed`); metrics failures change nothing."""
        guard = self.guard
        if key_id is None:
            key_id = scope.get("bastion.claimed_key")
        # an answered request whose outcome adds nothing: (its admission, its verdicts), the
        # outcome event built and appended once the answer is sent
        after: tuple[int, dict[str, str]] | None = None
        if guard.audit is not None:
            from bastion.guard.audit import AuditUnavailable

            # no request waits for its record past the request timeout (a stalled disk)
            deadline = asyncio.get_running_loop().time() + settings.server.request_timeout_s
            try:
                admitted = (
                    await _by(request.admission, deadline)
                    if request.admission is not None
                    else None
                )
                decisions = _recorded(request, settings)
                if (
                    admitted
                    and not request.alerts
                    and _nothing_to_add(request.admitted, status, decisions)
                ):
                    after = (admitted, decisions)  # the decision to serve is durable
                else:
                    if request.ood_after:  # the outcome goes before the answer: with the score
                        self._ood_after(request, settings)
                        decisions = _recorded(request, settings)
                    seconds = time.perf_counter() - started
                    event = self._outcome(
                        scope, request, raw, key_id, decisions, status, seconds, admitted
                    )
                    if request.alerts:  # rare: the alerts become durable with the event
                        await _by(
                            asyncio.gather(
                                *map(guard.audit.append, self._alert_events(request.alerts)),
                                guard.audit.append(event),
                            ),
                            deadline,
                        )
                    else:
                        await _by(guard.audit.append(event), deadline)
                request.decisions["audit"] = "allow"
            except asyncio.TimeoutError:  # not durable in time: as unavailable (strict: 503)
                self._audit_failed()
                log.error(
                    "the audit event of a request on %s was not recorded in time",
                    request.route.path,
                )
                request.decisions["audit"] = "unavailable"
                if getattr(guard.audit, "strict", True):
                    status, body, headers = _unrecorded()
            except AuditUnavailable:
                self._audit_failed()
                request.decisions["audit"] = "unavailable"
                status, body, headers = _unrecorded()
            except Exception:  # not made (a value the checks refuse), or the log failed oddly
                log.exception("the audit event of a request on %s failed", request.route.path)
                status, body, headers = 500, _internal_error(), []
                if request.ood_after:  # the fallback goes before the answer: with the score
                    self._ood_after(request, settings)
                seconds = time.perf_counter() - started
                await self._record_failed(
                    scope, request, settings, raw, key_id, status, seconds, deadline=deadline
                )
        seconds = time.perf_counter() - started
        try:
            if isinstance(body, _Raw):
                await http.send_bytes(send, status, body.content, body.content_type, headers)
            else:
                await http.send_json(send, status, body, headers)
        finally:  # counted once the answer is on its way (or lost): metrics decide nothing
            if request.ood_after:
                self._ood_after(request, settings)
            try:
                guard.metrics.observe(request.route.path, status, seconds, request.decisions)
            except Exception:
                log.exception("metrics error on %s", request.route.path)
            if after is not None:
                admitted, decisions = after
                if "ood" in request.decisions:  # the deferred verdict
                    decisions["ood"] = request.decisions["ood"]
                try:
                    event = self._outcome(
                        scope, request, raw, key_id, decisions, status, seconds, admitted
                    )
                except Exception:  # the answer is sent: its outcome recorded as it can be
                    log.exception("the outcome of an answered request on %s", request.route.path)
                    await self._record_failed(
                        scope, request, settings, raw, key_id, status, seconds, decisions
                    )
                else:
                    await self._append_outcome(event)

    def _outcome(
        self,
        scope: http.Scope,
        request: GuardRequest,
        raw: bytes | None,
        key_id: str | None,
        decisions: dict[str, str],
        status: int,
        seconds: float,
        admitted: int | None,
    ) -> Any:
        """The request's AuditEvent (its outcome), `seconds` after it arrived."""
        from bastion.guard.audit import outcome_made

        return outcome_made(
            key_id=key_id,
            tenant=request.principal.tenant if request.principal else None,
            route=request.route.path,
            model_digest=self.guard.model_digest,
            input_digest=self._digest(scope, request, raw),
            decisions=decisions,
            status=status,
            latency_ms=round(seconds * 1000, 3),
            admission=admitted or None,
        )

    async def _append_outcome(self, event: Any) -> None:
        """The outcome of an answered request, after its answer (its admission is durable)."""
        from bastion.guard.audit import AuditUnavailable

        try:
            await self.guard.audit.append(event)
        except AuditUnavailable:
            self._audit_failed()
            log.error("the outcome of an answered request on %s was not recorded", event.route)
        except Exception:  # the answer is sent: logged and counted, not raised
            self._audit_failed()
            log.exception("the outcome of an answered request on %s was not recorded", event.route)

    async def _record_failed(
        self,
        scope: http.Scope,
        request: GuardRequest,
        settings: GuardSettings,
        raw: bytes | None,
        key_id: str | None,
        status: int,
        seconds: float,
        decisions: dict[str, str] | None = None,
        deadline: float | None = None,
    ) -> None:
        """The request's event could not be made or appended, for a reason other than the log
        being unavailable (a value the record's checks refuse, a bug): counted as an audit
        failure, and the request recorded as it can be (`_fallback_event`: the `status` sent,
        `audit: error`, each field the checks refuse left out), waiting for the log until the
        event loop's time `deadline` at most. Raises no Exception: a log that fails this too
        is logged and counted."""
        self._audit_failed()
        request.decisions["audit"] = "error"
        guard = self.guard
        try:
            verdicts = dict(decisions if decisions is not None else _recorded(request, settings))
            verdicts["audit"] = "error"
            event = _fallback_event(
                key_id=key_id,
                tenant=request.principal.tenant if request.principal else None,
                route=request.route.path,
                model_digest=guard.model_digest,
                input_digest=self._digest(scope, request, raw),
                decisions=verdicts,
                status=status,
                latency_ms=round(seconds * 1000, 3),
                admission=_admitted(request),
            )
            if deadline is None:
                await guard.audit.append(event)
            else:
                await _by(guard.audit.append(event), deadline)
        except Exception:
            log.exception("a request on %s is not on record", request.route.path)


class _InnerCancelled(Exception):
    """The inner app raised CancelledError while its request was not being cancelled."""


def _cancelled() -> bool:
    """Whether the current task is being cancelled (always so on Python 3.10, which cannot
    tell: a CancelledError is then taken as the request's own cancellation)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return cancelling is None or cancelling() > 0


def _internal_error() -> dict[str, Any]:
    return http.error_document("internal", "the request could not be processed")


def _unrecorded() -> tuple[int, Any, list[tuple[bytes, bytes]]]:
    """Strict mode's answer to a request whose event the log did not make durable."""
    return (
        503,
        http.error_document("unavailable", "the request could not be recorded; retry shortly"),
        [(b"retry-after", b"1")],
    )


# what `_fallback_event` puts in place of a field the record's checks refuse
_SPARE: dict[str, Any] = {"key_id": None, "tenant": None, "route": UNKNOWN_ROUTE, "admission": None}


def _fallback_event(**fields: Any) -> Any:
    """An AuditEvent of `fields` (all but `at`), built with the generic record's checks, each
    field they refuse replaced by one that says nothing of its own (no key id, no tenant, the
    unknown route, no admission; of the verdicts, the pipeline's vocabulary, `audit: error`
    and the unsafe settings). RecordError if a field that has no such stand-in is refused."""
    from bastion.guard.audit import MAX_DECISIONS, AuditEvent, utc_now
    from bastion.records import RecordError

    while True:  # each field is replaced at most once: a field refused again raises
        try:
            return AuditEvent(at=utc_now(), **fields)
        except RecordError as error:
            name = error.path.split(".", 1)[0].split("[", 1)[0]
            if name == "decisions":
                kept = [
                    (detector, action)
                    for detector, action in fields["decisions"].items()
                    if (detector in DETECTORS and action in ACTIONS)
                    or (_unsafe_name(detector) and action == "record")
                ]
                spare = dict(kept[: MAX_DECISIONS - 1])
                spare["audit"] = "error"
                if spare == fields["decisions"]:
                    raise
                fields["decisions"] = spare
            elif name in _SPARE and fields[name] != _SPARE[name]:
                fields[name] = _SPARE[name]
            else:
                raise


def _unsafe_name(text: Any) -> bool:
    """An unsafe setting's verdict name (`_recorded`: unsafe_<setting>), as the record takes it."""
    return (
        isinstance(text, str)
        and text.startswith("unsafe_")
        and len(text) <= 64
        and text.isascii()
        and text.replace("_", "").isalnum()
    )


def _admitted(request: GuardRequest) -> int | None:
    """The sequence number of the request's admission, if it was recorded."""
    future = request.admission
    if future is None or not future.done() or future.cancelled() or future.exception():
        return None
    return future.result() or None


def _check_recordable(model_digest: str, routes: Sequence[str]) -> None:
    """ConfigError unless audit events may name `model_digest` and each route: a value the
    record's checks refuse would fail every request's event (checked once, at start)."""
    from bastion.errors import ConfigError
    from bastion.guard.audit import AuditEvent, input_digest, utc_now
    from bastion.records import RecordError

    for route in routes:
        try:
            AuditEvent(
                at=utc_now(),
                key_id=None,
                tenant=None,
                route=route,
                model_digest=model_digest,
                input_digest=input_digest(b""),
                status=200,
                latency_ms=0.0,
            )
        except RecordError as error:
            value = model_digest if error.path == "model_digest" else route
            raise ConfigError(
                f"the audit log cannot record the {error.path.replace('_', ' ')} {value!r}: "
                f"{error.message}",
                hint="a model digest is sha256:<64 hex digits> ([proxy] model_digest)"
                if error.path == "model_digest"
                else None,
            ) from None


def _nothing_to_add(admitted: dict[str, str], status: int, decisions: dict[str, str]) -> bool:
    """Whether an answered request's outcome only adds its status, its latency and verdicts
    that allowed (the model answered, the answer passed its checks): then the durable
    admission says all there is to say before the answer, and the outcome may follow it.
    An answer a check flagged or redacted, or that carries monitor alerts, is recorded as
    such before it leaves."""
    if status >= 300:
        return False
    return all(
        action == "allow" or admitted.get(detector) == action
        for detector, action in decisions.items()
    )


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def _grace(task: asyncio.Future[None], seconds: float) -> asyncio.CancelledError | None:
    """Wait up to `seconds` for the cancelled `task` to end. A cancellation of the waiting
    task meanwhile does not cut the grace short (anyio's cancel scopes, Starlette's task groups
    among them, cancel again at every wait until the task leaves the scope: the grace would
    be nothing, and an app that ends on its cancellation after a short clean-up would be
    abandoned); the first is returned, for the caller to raise once the grace is over."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        left = deadline - loop.time()
        if left <= 0:
            break
        try:
            await asyncio.wait({task}, timeout=left)
        except asyncio.CancelledError as error:
            if cancelled is None:
                cancelled = error
    return cancelled


def _settle(future: asyncio.Future[int], done: asyncio.Future[int]) -> None:
    """Give `future` the outcome of `done`."""
    if future.done():
        return
    if done.cancelled():
        future.cancel()
    elif done.exception() is not None:
        future.set_exception(done.exception())  # type: ignore[arg-type]
    else:
        future.set_result(done.result())


def _recorded(request: GuardRequest, settings: GuardSettings) -> dict[str, str]:
    """The request's verdicts as recorded: each detector's, and the unsafe settings in force."""
    decisions = dict(request.decisions)
    for unsafe in settings.unsafe():
        decisions["unsafe_" + unsafe.removeprefix("unsafe_")] = "record"
    return decisions


class _Raw:
    __slots__ = ("content", "content_type")

    def __init__(self, content: bytes, content_type: bytes) -> None:
        self.content = content
        self.content_type = content_type


class _Gate:
    """The `receive` and `send` a team's app runs with (`_call_foreign`). Once its task is
    abandoned they are closed: what it sends is dropped (it never reaches the answer the
    guard sent, nor another request's), and it receives a disconnect."""

    __slots__ = ("_receive", "_send")

    def __init__(self, receive: http.Receive, send: http.Send) -> None:
        self._receive: http.Receive | None = receive
        self._send: http.Send | None = send

    async def receive(self) -> http.Message:
        receive = self._receive
        if receive is None:
            return {"type": "http.disconnect"}
        return await receive()

    async def send(self, message: http.Message) -> None:
        send = self._send
        if send is not None:
            await send(message)

    def close(self) -> None:
        self._receive = self._send = None


class _Capture:
    """The inner app's answer, held (up to a cap) until the pipeline has judged it."""

    class TooLarge(Exception):
        pass

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.status: int | None = None
        self.content_type = b"application/octet-stream"
        self.parts: list[bytes] = []
        self.size = 0

    async def send(self, message: http.Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            for key, value in message.get("headers", ()):
                if key.lower() == b"content-type":
                    self.content_type = bytes(value)
        elif message["type"] == "http.response.body":
            chunk = message.get("body", b"")
            self.size += len(chunk)
            if self.size > self.limit:
                raise _Capture.TooLarge()
            self.parts.append(chunk)

    def body(self) -> bytes:
        return b"".join(self.parts)


if sys.version_info >= (3, 11):

    async def _within(awaitable: Awaitable[None], seconds: float) -> None:
        """`awaitable` within `seconds` (asyncio.TimeoutError past it); in this task, without
        the task wait_for creates per call."""
        async with asyncio.timeout(seconds):
            await awaitable

    async def _by(awaitable: Awaitable[_T], deadline: float) -> _T:
        """`awaitable`'s result by the event loop's time `deadline` (asyncio.TimeoutError past
        it, the wait cancelled; an event already queued for the log stays queued)."""
        if isinstance(awaitable, asyncio.Future) and awaitable.done():  # no timer to arm
            return cast(_T, awaitable.result())
        async with asyncio.timeout_at(deadline):
            return await awaitable

else:  # pragma: no cover - Python 3.10

    async def _within(awaitable: Awaitable[None], seconds: float) -> None:
        await asyncio.wait_for(awaitable, seconds)

    async def _by(awaitable: Awaitable[_T], deadline: float) -> _T:
        seconds = max(0.0, deadline - asyncio.get_running_loop().time())
        return await asyncio.wait_for(awaitable, seconds)


def _score_matrix(document: Any, n: int) -> Any:
    """The class scores of an answer as an (n, k) array, or None when it has none."""
    import numpy as np

    predictions = document.get("predictions") if isinstance(document, dict) else None
    if not isinstance(predictions, list) or len(predictions) != n:
        return None
    rows = []
    for item in predictions:
        scores = item.get("scores") if isinstance(item, dict) else None
        if not isinstance(scores, dict):
            return None
        rows.append([float(v) for v in scores.values()])
    try:
        return np.asarray(rows, dtype=float)
    except ValueError:
        return None


def read_digest_key(path: Path) -> bytes:
    from bastion.errors import ConfigError

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the input-digest key {path}: {exc.strerror}") from exc
    if len(data) < 16:
        raise ConfigError(f"{path}: an input-digest key needs at least 16 bytes")
    return data
