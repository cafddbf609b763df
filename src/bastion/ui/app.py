"""`bastion ui`: the dashboard, a read-only Starlette app over the history store (and the
guard's audit log), served by uvicorn like the guard (one server dependency set: [guard]).

Every page needs a session (`sessions.py`: login with a guard API key holding `admin` or
`audit:read`; the guard page needs `audit:read`). Pages are rendered on the server with
Jinja2 (autoescape on for every template: findings carry attacker-chosen text — pickle global
names, file names, evidence), the only scripts are same-origin files under /static (the
vendored uPlot and app.js), and `headers.py` sets a strict Content Security Policy on every
response. The one state-changing form besides login is logout; both carry CSRF tokens and are
refused from another origin."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bastion.errors import StoreError
from bastion.ui import compliance
from bastion.ui.guard_activity import chart_payload, read_activity
from bastion.ui.headers import SecurityHeaders
from bastion.ui.queries import (
    ASPECTS,
    GATES,
    SEVERITIES,
    STAGES,
    STATUSES,
    FindingFilter,
    History,
)
from bastion.ui.sessions import KeyVerifier, LoginThrottle, Session, Sessions, csrf_ok

log = logging.getLogger("bastion.ui")
HERE = Path(__file__).parent
MAX_FORM_BYTES = 16 * 1024
POSTURE_LIMIT = 200  # models on the overview, the most recently seen
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
PAGES = (
    ("overview", "/", "Overview"),
    ("inventory", "/inventory", "Inventory"),
    ("runs", "/runs", "Runs"),
    ("findings", "/findings", "Findings"),
    ("trends", "/trends", "Trends"),
    ("lineage", "/lineage", "Lineage"),
    ("guard", "/guard", "Guard"),
    ("compliance", "/compliance", "Compliance"),
)


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["short"] = lambda digest: _short(str(digest))
    env.filters["base"] = lambda name: str(name).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    env.filters["when"] = lambda text: str(text or "").replace("T", " ")[:19]
    env.filters["qs"] = lambda params: urllib.parse.urlencode(
        {k: v for k, v in params.items() if v not in (None, "")}
    )
    env.filters["payload"] = lambda data: json.dumps(data, separators=(",", ":"))
    return env


def _short(digest: str) -> str:
    kind, _, rest = digest.partition(":")
    return f"{kind}:{rest[:12]}…" if len(rest) > 16 else digest


class Dashboard:
    """The app's state: the store reader, sessions, key verifier and templates."""

    def __init__(
        self,
        history: History,
        verifier: KeyVerifier,
        *,
        audit: Path | None,
        secure_cookies: bool,
        sessions: Sessions | None = None,
    ) -> None:
        self.history = history
        self.verifier = verifier
        self.audit = audit
        self.secure = secure_cookies
        self.sessions = sessions or Sessions()
        self.throttle = LoginThrottle()
        self.env = _environment()
        prefix = "__Host-" if secure_cookies else ""
        self.session_cookie = prefix + "bastion_ui"
        self.login_cookie = prefix + "bastion_ui_login"

    # -- plumbing ------------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        template: str,
        page: str,
        session: Session | None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        html = self.env.get_template(template).render(
            page=page,
            pages=PAGES,
            session=session,
            identity=session.identity if session else None,
            csrf=session.csrf if session else "",
            params={k: v for k, v in request.query_params.items() if k != "cursor"}
            | (
                {"cursor": request.query_params["cursor"]}
                if "cursor" in request.query_params
                else {}
            ),
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def session(self, request: Request) -> Session | None:
        session = self.sessions.get(request.cookies.get(self.session_cookie))
        if session is not None and not self.verifier.active(session.identity.key_id):
            self.sessions.end_key(session.identity.key_id)
            return None
        return session

    def cookie(self, response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )

    def same_origin(self, request: Request) -> bool:
        """A POST must come from a page of this dashboard (Origin, else Referer)."""
        expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
        origin = request.headers.get("origin")
        if origin is not None:
            return origin == expected
        referer = request.headers.get("referer")
        if referer is not None:
            return referer == expected or referer.startswith(expected + "/")
        return False

    async def form(self, request: Request) -> dict[str, str] | None:
        """A small url-encoded form body (None if it is not one)."""
        if request.headers.get("content-type", "").split(";")[0].strip() != (
            "application/x-www-form-urlencoded"
        ):
            return None
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return None
        try:
            pairs = urllib.parse.parse_qsl(
                body.decode("ascii"), keep_blank_values=True, max_num_fields=10
            )
        except (UnicodeDecodeError, ValueError):
            return None
        return dict(pairs)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def create_app(
    store: Path,
    verifier: KeyVerifier,
    *,
    audit: Path | None = None,
    host: str = "127.0.0.1",
    secure_cookies: bool | None = None,
    allowed_hosts: tuple[str, ...] = (),
    sessions: Sessions | None = None,
) -> Starlette:
    """The dashboard app over a store file. Cookies are `Secure` (and `__Host-`) unless the
    dashboard listens on loopback; `allowed_hosts` are the Host header values accepted besides
    the loopback names (a defence against DNS rebinding)."""
    if not Path(store).is_file():
        raise StoreError(
            f"no history store at {store}", hint="run a bastion command first, or pass --store"
        )
    from bastion.store import Store

    with Store(Path(store)):  # brings an older store's schema up to date once, read-write
        pass
    loopback = host in LOOPBACK_HOSTS
    secure = (not loopback) if secure_cookies is None else secure_cookies
    ui = Dashboard(
        History(Path(store)), verifier, audit=audit, secure_cookies=secure, sessions=sessions
    )
    ui.history.rule_tags()  # the rule catalogue (imports every check) once, at start
    hosts = {"127.0.0.1", "localhost", "[::1]", *allowed_hosts}
    if not loopback and host not in ("0.0.0.0", "::"):
        hosts.add(host)

    def page(
        name: str, *, audit_scope: bool = False
    ) -> Callable[[Callable[[Request, Session], Response]], Callable[[Request], Response]]:
        def wrap(view: Callable[[Request, Session], Response]) -> Callable[[Request], Response]:
            def endpoint(request: Request) -> Response:
                session = ui.session(request)
                if session is None:
                    return RedirectResponse("/login", status_code=303)
                if audit_scope and not session.identity.reads_audit:
                    return ui.render(
                        request,
                        "error.html",
                        name,
                        session,
                        status=403,
                        message="This page shows the guard's audit log: it needs a key with "
                        "the audit:read scope.",
                    )
                started = time.perf_counter()
                try:
                    response = view(request, session)
                except StoreError as exc:
                    response = ui.render(
                        request, "error.html", name, session, status=500, message=exc.message
                    )
                spent = (time.perf_counter() - started) * 1000
                response.headers["server-timing"] = f"page;dur={spent:.1f}"
                return response

            return endpoint

        return wrap

    # -- login and logout ----------------------------------------------------------------------

    def login_page(request: Request, error: str | None = None, status: int = 200) -> Response:
        nonce = ui.sessions.login_nonce()
        response = ui.render(
            request,
            "login.html",
            "login",
            None,
            status=status,
            login_token=ui.sessions.login_token(nonce),
            error=error,
        )
        ui.cookie(response, ui.login_cookie, nonce, 600)
        return response

    async def login(request: Request) -> Response:
        if request.method == "GET":
            if ui.session(request) is not None:
                return RedirectResponse("/", status_code=303)
            return login_page(request)
        client = _client(request)
        if not ui.same_origin(request):
            return Response("cross-origin request refused", status_code=403)
        if not ui.throttle.allowed(client):
            return login_page(request, "Too many failed attempts: wait a minute.", 429)
        form = await ui.form(request)
        if form is None or not ui.sessions.login_token_ok(
            request.cookies.get(ui.login_cookie), form.get("csrf")
        ):
            ui.throttle.failed(client)
            return login_page(request, "The form expired: try again.", 400)
        identity = ui.verifier.verify(form.get("token", ""))
        if identity is None:
            ui.throttle.failed(client)
            log.warning("dashboard login refused from %s", client)
            return login_page(request, "That token is not valid for the dashboard.", 401)
        ui.throttle.succeeded(client)
        ui.sessions.end(request.cookies.get(ui.session_cookie))
        session_id, _ = ui.sessions.create(identity)
        log.info("dashboard login: key %s from %s", identity.key_id, client)
        response = RedirectResponse("/", status_code=303)
        ui.cookie(response, ui.session_cookie, session_id, None)
        response.delete_cookie(
            ui.login_cookie, path="/", secure=secure, httponly=True, samesite="strict"
        )
        return response

    async def logout(request: Request) -> Response:
        session = ui.session(request)
        if not ui.same_origin(request):
            return Response("cross-origin request refused", status_code=403)
        form = await ui.form(request)
        if session is None or form is None or not csrf_ok(session, form.get("csrf")):
            return Response("invalid or missing CSRF token", status_code=403)
        ui.sessions.end(request.cookies.get(ui.session_cookie))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(
            ui.session_cookie, path="/", secure=secure, httponly=True, samesite="strict"
        )
        return response

    # -- pages ---------------------------------------------------------------------------------

    @page("overview")
    def overview(request: Request, session: Session) -> Response:
        history = ui.history
        posture = history.posture(POSTURE_LIMIT)
        failing = history.findings(FindingFilter(gate="failing"), limit=10)
        return ui.render(
            request,
            "overview.html",
            "overview",
            session,
            totals=history.totals(),
            posture=posture,
            posture_limit=POSTURE_LIMIT,
            aspects=ASPECTS,
            recent=history.runs(limit=10).rows,
            failing=failing,
        )

    @page("inventory")
    def inventory(request: Request, session: Session) -> Response:
        kind = request.query_params.get("kind", "model")
        kind = kind if kind in ("model", "dataset") else "model"
        rows, next_cursor = ui.history.inventory(kind, request.query_params.get("cursor"))
        return ui.render(
            request,
            "inventory.html",
            "inventory",
            session,
            kind=kind,
            rows=rows,
            next_cursor=next_cursor,
            manifests=ui.history.dataset_versions(20) if kind == "dataset" else [],
        )

    @page("runs")
    def runs(request: Request, session: Session) -> Response:
        params = request.query_params
        command = params.get("command") or None
        status = params.get("status") or None
        listing = ui.history.runs(command, status, params.get("cursor"))
        return ui.render(
            request,
            "runs.html",
            "runs",
            session,
            listing=listing,
            commands=ui.history.commands(),
            statuses=STATUSES,
            command=command,
            verdict_status=status,
        )

    @page("runs")
    def run(request: Request, session: Session) -> Response:
        run_id = int(request.path_params["run_id"])
        found = ui.history.run(run_id)
        if found is None:
            return ui.render(
                request, "error.html", "runs", session, status=404, message=f"No run {run_id}."
            )
        summary, metadata, verdict = found
        findings = ui.history.findings(
            FindingFilter(run=run_id), request.query_params.get("cursor")
        )
        return ui.render(
            request,
            "run.html",
            "runs",
            session,
            run=summary,
            metadata=metadata,
            verdict=verdict,
            waivers=_waivers(verdict),
            findings=findings,
            seen=ui.history.seen_by(run_id),
        )

    @page("findings")
    def findings(request: Request, session: Session) -> Response:
        flt = FindingFilter.parse(request.query_params)
        listing = ui.history.findings(flt, request.query_params.get("cursor"))
        return ui.render(
            request,
            "findings.html",
            "findings",
            session,
            flt=flt,
            listing=listing,
            stages=STAGES,
            severities=SEVERITIES,
            gates=GATES,
            taxonomy_ids=ui.history.taxonomy_ids(),
        )

    @page("findings")
    def finding(request: Request, session: Session) -> Response:
        finding_id = int(request.path_params["finding_id"])
        found = ui.history.finding(finding_id)
        if found is None:
            return ui.render(
                request,
                "error.html",
                "findings",
                session,
                status=404,
                message=f"No finding {finding_id}.",
            )
        row, full, verdict = found
        waivers = [w for w in _waivers(verdict) if w["rule"] == row.rule_id]
        return ui.render(
            request,
            "finding.html",
            "findings",
            session,
            row=row,
            full=full or {},
            tags=_tags(full or {}),
            waivers=waivers,
        )

    @page("trends")
    def trends(request: Request, session: Session) -> Response:
        days = request.query_params.get("days", "30")
        span = int(days) if days in ("7", "30", "90", "365") else 30
        history = ui.history
        data = history.finding_trends(span)
        axis = data["days"]
        activity = read_activity(ui.audit) if session.identity.reads_audit else None
        payload = {
            "days": axis,
            "severity": data["severity"],
            "stage": data["stage"],
            "drift": history.drift_trend(axis),
            "runs": history.run_statuses(axis),
            "guard": chart_payload(activity) if activity and not activity.problem else None,
        }
        return ui.render(
            request,
            "trends.html",
            "trends",
            session,
            span=span,
            payload=payload,
            empty=not axis,
            activity=activity,
        )

    @page("lineage")
    def lineage(request: Request, session: Session) -> Response:
        from bastion.ui.graph import layout

        digest = request.query_params.get("digest")
        graph = None
        if digest and len(digest) <= 600:
            graph = layout(ui.history.lineage(digest))
        return ui.render(
            request,
            "lineage.html",
            "lineage",
            session,
            digest=digest,
            graph=graph,
            recent=ui.history.recent_models(),
        )

    @page("guard", audit_scope=True)
    def guard(request: Request, session: Session) -> Response:
        activity = read_activity(ui.audit)
        guard_findings = ui.history.findings(FindingFilter(stage="deployment"), limit=10)
        return ui.render(
            request,
            "guard.html",
            "guard",
            session,
            audit=str(ui.audit) if ui.audit else None,
            activity=activity,
            payload=chart_payload(activity) if activity and not activity.problem else None,
            guard_findings=guard_findings,
        )

    @page("compliance")
    def compliance_page(request: Request, session: Session) -> Response:
        names = compliance.frameworks()
        framework = request.query_params.get("framework", "eu-ai-act")
        framework = framework if framework in names else next(iter(names))
        return ui.render(
            request,
            "compliance.html",
            "compliance",
            session,
            frameworks=names,
            framework=framework,
            matrix=compliance.matrix(framework, ui.history),
            cap=compliance.FIRING_CAP,
        )

    async def not_found(request: Request, exc: Exception) -> Response:
        return ui.render(
            request,
            "error.html",
            "",
            ui.session(request),
            status=404,
            message="No such page.",
        )

    routes = [
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", overview),
        Route("/inventory", inventory),
        Route("/runs", runs),
        Route("/runs/{run_id:int}", run),
        Route("/findings", findings),
        Route("/findings/{finding_id:int}", finding),
        Route("/trends", trends),
        Route("/lineage", lineage),
        Route("/guard", guard),
        Route("/compliance", compliance_page),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders, hsts=secure),
            Middleware(TrustedHostMiddleware, allowed_hosts=sorted(hosts)),
        ],
        exception_handlers={404: not_found},
    )
    app.state.dashboard = ui
    return app


def _waivers(verdict: dict[str, Any]) -> list[dict[str, Any]]:
    """The waivers a run's verdict records, with days left (negative: expired)."""
    today = dt.date.today()
    out = []
    for waiver in verdict.get("waivers", []) or []:
        try:
            expires = dt.date.fromisoformat(str(waiver.get("expires")))
        except ValueError:
            continue
        out.append({**waiver, "expires": expires.isoformat(), "days_left": (expires - today).days})
    return out


def _tags(full: dict[str, Any]) -> list[tuple[str, str]]:
    from bastion.rules import taxonomy

    titles = taxonomy()["frameworks"]
    out = []
    for framework, ids in (full.get("tags") or {}).items():
        names = titles.get(framework, {}).get("ids", {})
        for tag in ids or ():
            out.append((str(tag), str(names.get(tag, framework))))
    return out
