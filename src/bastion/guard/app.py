"""`create_app(settings, ...)`: the guard as one ASGI application, in serve or proxy mode.

Serve mode (a `ServedModel` given): `POST /v1/predict` (scope predict: labels) and
`POST /v1/score` (scope score: class probabilities, rounded), run by the model in a worker
thread. Proxy mode (`settings.proxy.upstream` set): the same routes, or `/v1/chat/completions`
for chat upstreams, forwarded by `proxy.ProxyApp`. Both: `GET /healthz` (public),
`GET /readyz` (admin scope, or public when listed in [auth] public_paths), `GET /metrics`
(loopback or admin scope), `GET /openapi.json` (admin scope). Every route but the public ones
is behind `GuardMiddleware`; a team that has its own app wraps it with `guard_middleware`.

The audit log, key store and limiter are opened here and closed by the app's lifespan; SIGHUP
re-reads guard.toml and swaps the settings without dropping a request (a request keeps the
settings it started with; changes that need a restart are logged)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bastion.errors import ConfigError
from bastion.guard import http
from bastion.guard.auth import Authenticator, JwtVerifier, KeyStore
from bastion.guard.limits import make_backend
from bastion.guard.metrics import Metrics
from bastion.guard.pipeline import (
    GUARD_SCOPE_KEY,
    UNKNOWN_ROUTE,
    Guard,
    GuardMiddleware,
    GuardRequest,
    RouteSpec,
    _check_recordable,
    read_digest_key,
)
from bastion.guard.screen import Classifier
from bastion.guard.settings import GuardSettings, load_guard_settings

log = logging.getLogger("bastion.guard")

SERVE_ROUTES = (
    RouteSpec(path="/v1/predict", scope="predict", kind="rows"),
    RouteSpec(path="/v1/score", scope="score", kind="rows"),
)
CHAT_ROUTES = (RouteSpec(path="/v1/chat/completions", scope="predict", kind="chat"),)
JSON_ROUTES = (RouteSpec(path="/v1/predict", scope="predict", kind="json"),)
ADMIN_ROUTES = (
    RouteSpec(path="/readyz", scope="admin", kind="get", methods=("GET", "HEAD")),
    RouteSpec(path="/openapi.json", scope="admin", kind="get", methods=("GET",)),
)


def routes_for(settings: GuardSettings, serving: bool) -> tuple[RouteSpec, ...]:
    if serving or settings.proxy.flavour in ("rows", "mlflow"):
        return SERVE_ROUTES + ADMIN_ROUTES
    if settings.proxy.flavour == "chat":
        return CHAT_ROUTES + ADMIN_ROUTES
    return JSON_ROUTES + ADMIN_ROUTES


def open_audit(settings: GuardSettings) -> Any:
    from bastion.guard.audit import AuditError, AuditLog, worker_log_path
    from bastion.guard.checkpoints import load_signing_key
    from bastion.guard.files import make_folders, remove_folders

    folder = settings.resolve(settings.audit.path)
    path = worker_log_path(folder, settings.server.worker)
    # read before the folder is made: a key refused leaves no empty folder behind
    key = settings.audit.signing_key
    signing_key = load_signing_key(settings.resolve(key)) if key else None
    try:
        made = make_folders(folder)
    except OSError as exc:
        raise AuditError(f"cannot make the audit folder {folder}: {exc.strerror}") from None
    try:
        return AuditLog(
            path,
            signing_key=signing_key,
            strict=settings.audit.strict,
            worker=settings.server.worker,
            durability=settings.audit.durability,
        )
    except BaseException:  # the log left nothing behind: nor do the folders made for it
        remove_folders(made)
        raise


def build_guard(
    settings: GuardSettings,
    *,
    model_digest: str,
    contract: Any = None,
    target: str = "",
    training: Sequence[Mapping[str, Any]] | None = None,
    scorer: Callable[[Sequence[Mapping[str, Any]]], Any] | None = None,
    injection_classifier: Callable[[str], float] | None = None,
    audit: Any = None,
    routes: Sequence[RouteSpec] = (),
) -> Guard:
    """The stateful parts of a guard, from settings and what was loaded at start. Whatever the
    settings name that can be refused (a model digest or route the audit log would refuse, the
    JWKS file, the OOD profile, the monitor's options, the input-digest key, the limiter) is
    checked before the key store and then the audit log are opened; if the audit log refuses,
    the key store is closed again, and removed if this call created it. A refused start leaves
    no key store or audit log behind, and existing ones as they were."""
    from bastion.datacheck.contract import prepare

    _check_recordable(model_digest, [*(route.path for route in routes), UNKNOWN_ROUTE])
    jwt = None
    if settings.auth.jwt.enabled:
        jwt = JwtVerifier(settings.auth.jwt, settings.resolve(settings.auth.jwt.jwks_file))
    columns: tuple[Any, ...] | None = None
    categories: dict[str, frozenset[str]] = {}
    encoder = ood = monitor = None
    if contract is not None:
        columns = tuple(c for c in prepare(contract) if c.name != target)
        categories = {
            c.name: frozenset(c.spec.enum)
            for c in columns
            if c.spec.type == "string" and c.spec.enum
        }
        ood, encoder = _ood(settings, contract, target, training)
        monitor = _monitor(settings, encoder, training, scorer)
    classifier = None
    if injection_classifier is not None:
        classifier = Classifier(
            injection_classifier,
            settings.injection.classifier_budget_ms,
            settings.injection.classifier_threshold,
        )
    digest_key = None
    if settings.audit.digest_key_file:
        digest_key = read_digest_key(settings.resolve(settings.audit.digest_key_file))
    limiter = make_backend(settings.limits)
    keys = KeyStore(settings.resolve(settings.auth.keys_db))
    if audit is None:
        try:
            audit = open_audit(settings)
        except BaseException:
            keys.discard()
            raise
    return Guard(
        settings,
        authenticator=Authenticator(keys, jwt),
        limiter=limiter,
        audit=audit,
        metrics=Metrics([r.path for r in routes]),
        model_digest=model_digest,
        contract=columns,
        columns=[c.name for c in columns or ()],
        categories=categories,
        encoder=encoder,
        ood=ood,
        monitor=monitor,
        classifier=classifier,
        digest_key=digest_key,
    )


def _ood(
    settings: GuardSettings,
    contract: Any,
    target: str,
    training: Sequence[Mapping[str, Any]] | None,
) -> tuple[Any, Any]:
    from bastion.guard.features import fit_encoder
    from bastion.guard.ood import OodDetector, fit_profile, load_profile

    if settings.ood.profile:
        detector = OodDetector.from_profile(load_profile(settings.resolve(settings.ood.profile)))
        return detector, detector.encoder
    if not training:
        return None, None
    if settings.ood.method == "isolation-forest":
        detector = OodDetector.isolation_forest(contract, training, target)
    else:
        detector = OodDetector.from_profile(fit_profile(contract, training, target))
    return detector, detector.encoder if detector else fit_encoder(contract, training, target)


def _monitor(
    settings: GuardSettings,
    encoder: Any,
    training: Sequence[Mapping[str, Any]] | None,
    scorer: Callable[[Sequence[Mapping[str, Any]]], Any] | None,
) -> Any:
    if encoder is None or not training:
        return None
    from bastion.guard.monitor import MonitorSettings, QueryMonitor, TrainingProfile

    try:
        options = MonitorSettings.model_validate(settings.monitor.options)
    except ValueError as exc:
        raise ConfigError(f"invalid [monitor.options]: {exc}") from exc
    scores = scorer(training) if scorer is not None else None
    profile = TrainingProfile.fit(
        encoder.encode(training), scores, features=encoder.names(), threshold=options.threshold
    )
    return QueryMonitor(profile, options)


def openapi(settings: GuardSettings, routes: Sequence[RouteSpec], contract: Any) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the guarded routes."""
    properties: dict[str, Any] = {}
    for column in contract or ():
        spec = column.spec
        kind = {"integer": "integer", "number": "number", "boolean": "boolean"}.get(
            spec.type, "string"
        )
        schema: dict[str, Any] = {"type": [kind, "null"] if spec.nullable else kind}
        if spec.enum:
            schema["enum"] = list(spec.enum)
        if kind in ("integer", "number"):
            if isinstance(spec.minimum, (int, float)):
                schema["minimum"] = spec.minimum
            if isinstance(spec.maximum, (int, float)):
                schema["maximum"] = spec.maximum
        properties[column.name] = schema
    row = {"type": "object", "properties": properties, "additionalProperties": not properties}
    if properties:
        row["required"] = list(properties)
    rows_body = {
        "type": "object",
        "required": ["rows"],
        "additionalProperties": False,
        "properties": {
            "rows": {
                "type": "array",
                "minItems": 1,
                "maxItems": settings.server.max_rows,
                "items": row,
            }
        },
    }
    error = {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    }
    answer = {
        "type": "object",
        "properties": {
            "predictions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["label"],
                    "properties": {
                        "label": {"type": "string"},
                        "scores": {"type": "object", "additionalProperties": {"type": "number"}},
                    },
                },
            }
        },
    }
    refusals = {
        str(code): {
            "description": text,
            "content": {"application/json": {"schema": error}},
        }
        for code, text in (
            (400, "not JSON"),
            (401, "no valid credential"),
            (403, "the credential lacks the scope, or is suspended"),
            (408, "the body did not arrive within the request timeout"),
            (413, "over a size bound"),
            (422, "refused by the input contract or a detector"),
            (429, "rate limit or budget"),
            (503, "overloaded, or the event could not be recorded"),
        )
    }
    paths: dict[str, Any] = {}
    for route in routes:
        if route.kind == "get":
            continue
        body = rows_body if route.kind == "rows" else {"type": "object"}
        paths[route.path] = {
            "post": {
                "operationId": route.path.strip("/").replace("/", "_"),
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": body}},
                },
                "responses": {
                    "200": {
                        "description": "the (hardened) answer",
                        "content": {"application/json": {"schema": answer}},
                    },
                    **refusals,
                },
            }
        }
    paths["/healthz"] = {
        "get": {
            "operationId": "healthz",
            "security": [],
            "responses": {"200": {"description": "up"}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "bastion guard", "version": "1"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }


class _Json:
    """A JSON response as a plain ASGI app."""

    def __init__(self, status: int, document: Any) -> None:
        self.status = status
        self.document = document

    async def __call__(self, scope: http.Scope, receive: http.Receive, send: http.Send) -> None:
        await http.send_json(send, self.status, self.document)


MODEL_THREADS = 40  # concurrent model calls of one worker (anyio's default thread limit)


def _predict(model: Any, rows: Any, committing: bool) -> Any:
    """The served model's call, in the model's thread. When the request's admission is pending
    (`[server] cpu_slice_hints` on; a lone request's is committed meanwhile in the event loop's
    thread, its fsync running; others' by the writer thread), the thread first yields the CPU
    once (`sched_yield`: no privilege, about a microsecond). On one core the
    fsync's disk steps each wake the committing thread, and Linux's scheduler (EEVDF) lets a
    model thread that has just started keep the core to the end of its slice; after a yield,
    its deadline is moved on and those wake-ups run at once, so the commit ends inside the
    model's time instead of after it (docs/benchmarks.md, runtime guard latency)."""
    if committing:
        yield_cpu = getattr(os, "sched_yield", None)  # Unix only (not on Windows)
        if yield_cpu is not None:
            yield_cpu()
    return model.predict(rows, True)


class InnerApp:
    """The routes behind the middleware (a plain ASGI app: a few fixed routes need no router)."""

    # its error answers are the guard's own documents (a proxy's fixed upstream messages):
    # the middleware passes them on, where it replaces a team's app's 5xx pages
    guard_documents = True

    def __init__(
        self,
        guard: Guard,
        spec: dict[str, Any],
        model: Any = None,
        proxy: Any = None,
    ) -> None:
        self.guard = guard
        self.spec = spec
        self.model = model
        self.proxy = proxy
        # serving a model, the rows come from the GuardRequest, never from the body
        self.reads_body = proxy is not None
        self.on_startup: list[Callable[[], Any]] = []
        self.on_shutdown: list[Callable[[], Any]] = []
        self._pool: Any = None

    async def __call__(self, scope: http.Scope, receive: http.Receive, send: http.Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path = scope["path"]
        if path == "/healthz":
            await http.send_json(send, 200, {"status": "ok"})
        elif path == "/readyz":
            ready = self.guard.ready()
            await http.send_json(send, 200 if ready else 503, {"ready": ready})
        elif path == "/openapi.json":
            await http.send_json(send, 200, self.spec)
        elif self.proxy is not None:
            await self.proxy(scope, receive, send)
        elif path in ("/v1/predict", "/v1/score") and self.model is not None:
            await self._predict(scope, send)
        else:
            await http.send_json(send, 404, http.error_document("not_found", "no such route"))

    async def _predict(self, scope: http.Scope, send: http.Send) -> None:
        from bastion.guard.output import prediction

        request: GuardRequest | None = scope.get(GUARD_SCOPE_KEY)
        if request is None or request.rows is None:
            await http.send_json(send, 500, http.error_document("internal", "not guarded"))
            return
        model = self.model
        # the model's thread has the rows before this coroutine waits, and the request's
        # admission is committed meanwhile, in this thread (the commit releases the GIL for
        # its fsync; waiting first would hand the GIL to the model for its whole run)
        start = request.start_admission
        hint = start is not None and self.guard.settings.server.cpu_slice_hints
        answered = asyncio.get_running_loop().run_in_executor(
            self._threads(), _predict, model, request.rows, hint
        )
        if start is not None:
            start()
        labels, scores = await answered
        document = {
            "predictions": [
                prediction(label, model.classes, scores[i] if scores is not None else None)
                for i, label in enumerate(labels)
            ]
        }
        request.answer = document
        await http.send_json(send, 200, document)

    def _threads(self) -> Any:
        """The model's own threads (as many as anyio's default): a model call that hangs past
        the request timeout keeps its thread, and must not take the event loop's shared
        executor (cpus + 4 threads, which the classifier uses too) with it."""
        if self._pool is None:
            import concurrent.futures

            from bastion.guard.scheduling import default_slice

            # the loop's thread has the short slice; the model's keep the default (scheduling)
            self._pool = concurrent.futures.ThreadPoolExecutor(
                MODEL_THREADS, thread_name_prefix="bastion-model", initializer=default_slice
            )
            self.on_shutdown.append(lambda: self._pool.shutdown(wait=False))
        return self._pool

    async def _lifespan(self, receive: http.Receive, send: http.Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # a lone request's admission commits in this thread (scheduling)
                if self.model is not None and self.guard.settings.server.cpu_slice_hints:
                    from bastion.guard.scheduling import short_slice

                    short_slice()
                try:
                    for hook in self.on_startup:
                        hook()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # every hook runs even if one fails: a proxy client that cannot close must not
                # leave the audit log unflushed
                failures = []
                for hook in self.on_shutdown:
                    try:
                        result = hook()
                        if hasattr(result, "__await__"):
                            await result
                    except Exception as exc:
                        failures.append(f"{type(exc).__name__}: {exc}")
                if failures:
                    await send({"type": "lifespan.shutdown.failed", "message": "; ".join(failures)})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(
    settings: GuardSettings,
    *,
    model: Any = None,
    contract: Any = None,
    training: Sequence[Mapping[str, Any]] | None = None,
    injection_classifier: Callable[[str], float] | None = None,
    audit: Any = None,
) -> GuardMiddleware:
    """The guard as an ASGI app: serve mode with `model` (a guard.model.ServedModel), proxy mode
    when `settings.proxy.upstream` is set. `contract` (datacheck.contract.Contract) is enforced
    on tabular routes; `training` rows (read as the contract's types) fit the OOD detector and
    the query monitor at start; `injection_classifier` is the optional ML hook."""
    from bastion.guard.proxy import ProxyApp

    serving = model is not None
    if serving == bool(settings.proxy.upstream):
        raise ConfigError("give either a model to serve or [proxy] upstream, not both or neither")
    routes = routes_for(settings, serving)
    target = settings.model.target
    scorer = None
    if serving and getattr(model, "has_scores", False):

        def scorer(rows: Sequence[Mapping[str, Any]]) -> Any:
            import numpy as np

            return np.asarray(model.predict(rows, True)[1])

    digest = model.digest if serving else _upstream_digest(settings)
    # made before the key store and the audit log are opened: it opens nothing, and a refusal
    # (httpx not installed) then leaves nothing behind
    proxy = None if serving else ProxyApp(settings.proxy, max_depth=settings.server.max_json_depth)
    guard = build_guard(
        settings,
        model_digest=digest,
        contract=contract,
        target=target,
        training=training,
        scorer=scorer,
        injection_classifier=injection_classifier,
        audit=audit,
        routes=routes,
    )
    inner = InnerApp(guard, openapi(settings, routes, guard.contract), model=model, proxy=proxy)
    app = GuardMiddleware(inner, guard, routes)
    inner.on_startup.append(lambda: _install_sighup(guard))
    inner.on_shutdown.append(guard.close)
    if proxy is not None:
        inner.on_shutdown.append(proxy.aclose)
    if audit is None and guard.audit is not None:
        inner.on_shutdown.append(guard.audit.close)
    inner.on_shutdown.append(guard.authenticator.store.close)
    return app


def _upstream_digest(settings: GuardSettings) -> str:
    import hashlib

    if settings.proxy.model_digest:
        return settings.proxy.model_digest
    return "sha256:" + hashlib.sha256(b"upstream:" + settings.proxy.upstream.encode()).hexdigest()


def reload_settings(guard: Guard) -> list[str]:
    """Re-read guard.toml (the file the settings came from) and swap it in; a broken file
    leaves the running settings in place."""
    source = guard.settings.source
    if not source:
        return []
    try:
        fresh = load_guard_settings(Path(source))
    except ConfigError as exc:
        guard.metrics.reloads.labels("refused").inc()
        log.error("SIGHUP: %s; the running settings stay", exc.message)
        return []
    pending = guard.reload(fresh)
    guard.metrics.reloads.labels("applied").inc()
    if pending:
        log.warning("SIGHUP: these changes need a restart: %s", ", ".join(pending))
    log.info("SIGHUP: settings reloaded from %s", source)
    return pending


def _install_sighup(guard: Guard) -> None:
    import asyncio

    try:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, reload_settings, guard)
    except (RuntimeError, ValueError, NotImplementedError, AttributeError):
        log.info("SIGHUP reload is not available in this thread")
