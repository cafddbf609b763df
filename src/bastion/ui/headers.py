"""Security headers on every dashboard response, as plain ASGI middleware.

The Content Security Policy allows scripts, styles, images and fetches from the dashboard's
own origin only, with no inline script or style (the pages carry none: chart data travels in
`data-` attributes, escaped like every other value), no plugins, no framing, no `<base>`, and
forms that post only back to the dashboard. The referrer policy is `same-origin`, not
`no-referrer`: under `no-referrer` the browser sends `Origin: null` with the dashboard's own
form posts, and the origin check (app.py) needs the real one. Pages are never cached; static
files are."""

from __future__ import annotations

from typing import Any

from bastion.guard.http import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)
_COMMON = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
)
HSTS = (b"strict-transport-security", b"max-age=31536000")


class SecurityHeaders:
    """Adds the headers above (and HSTS when served over TLS) to every HTTP response."""

    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in (b"cache-control", b"server")
                ]
                headers.extend(_COMMON)
                headers.append(
                    (b"cache-control", b"private, max-age=3600" if static else b"no-store")
                )
                if self.hsts:
                    headers.append(HSTS)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
