"""Proxy mode: the guard in front of any HTTP model server, which it treats as untrusted.

The inner app of `GuardMiddleware` in proxy mode forwards the checked (and possibly redacted)
request to the upstream and turns its answer into the guard's answer format. The upstream is
held to the same standards as a client: one deadline for the whole exchange (connect, send,
wait, read), a cap on the answer's size counted while it streams, and a schema check of the
answer. Whatever goes wrong (connection refused, timeout, a 4xx/5xx, an oversized or malformed
answer) the client gets a 502 or 504 with a fixed message: upstream error text, headers and
stack traces are never passed on. The client's credential is never forwarded; the body sent is
the guard's own re-encoding of what it checked (so the upstream parses exactly what the guard
judged: no duplicate keys, no parser differentials).

Flavours (guard.toml [proxy] flavour):
- `rows`: the upstream takes `{"rows": [...]}` and answers `{"predictions": [...]}` (a FastAPI
  app, another bastion guard);
- `mlflow`: MLflow scoring servers (`POST /invocations`, `{"dataframe_records": [...]}`);
- `chat`: OpenAI-style chat completions (`POST /v1/chat/completions`);
- `json`: any JSON API (every string screened, the answer passed on once it parses).
Each prediction may be a label, a list of class probabilities (classes named by position), or
an object with `label` and `scores`; TorchServe's list answers are of the first two kinds."""

from __future__ import annotations

import asyncio
from typing import Any

from bastion.guard import http
from bastion.guard.output import prediction
from bastion.guard.pipeline import GUARD_SCOPE_KEY, GuardRequest
from bastion.guard.settings import ProxySettings


class UpstreamError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def normalise(document: Any, rows: int) -> dict[str, Any]:
    """An upstream's answer as the guard's format; UpstreamError if it is not one of the
    accepted shapes or does not have one prediction per row."""
    predictions = document.get("predictions") if isinstance(document, dict) else document
    if not isinstance(predictions, list) or len(predictions) != rows:
        raise UpstreamError(502, "bad_upstream_answer", "the model server's answer was malformed")
    out = []
    for item in predictions:
        if isinstance(item, (str, int, float)) and not isinstance(item, bool):
            out.append({"label": str(item)})
        elif isinstance(item, bool):
            out.append({"label": str(int(item))})
        elif (
            isinstance(item, list)
            and item
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in item)
        ):
            best = max(range(len(item)), key=lambda i: item[i])
            out.append(prediction(str(best), [str(i) for i in range(len(item))], item))
        elif isinstance(item, dict) and isinstance(item.get("label"), (str, int, float)):
            entry: dict[str, Any] = {"label": str(item["label"])}
            scores = item.get("scores")
            if isinstance(scores, dict):
                entry["scores"] = scores
            out.append(entry)
        else:
            raise UpstreamError(
                502, "bad_upstream_answer", "the model server's answer was malformed"
            )
    return {"predictions": out}


class ProxyApp:
    """The inner ASGI app of proxy mode (see the module docstring)."""

    def __init__(self, settings: ProxySettings, *, max_depth: int = 64) -> None:
        import httpx

        self.settings = settings
        self.max_depth = max_depth
        self.base = settings.upstream.rstrip("/")
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.timeout_s),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            follow_redirects=False,
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __call__(self, scope: http.Scope, receive: http.Receive, send: http.Send) -> None:
        request: GuardRequest | None = scope.get(GUARD_SCOPE_KEY)
        if scope["type"] != "http" or request is None:
            await http.send_json(send, 404, http.error_document("not_found", "no such route"))
            return
        flavour = self.settings.flavour
        path = scope["path"]
        if flavour == "mlflow":
            url = self.base + (self.settings.predict_path or "/invocations")
            payload: Any = {"dataframe_records": request.rows}
        elif flavour == "rows":
            url = self.base + (self.settings.predict_path or path)
            payload = {"rows": request.rows}
        elif flavour == "chat":
            url = self.base + self.settings.chat_path
            payload = request.document
        else:
            url = self.base + (self.settings.predict_path or path)
            payload = request.document
        try:
            document = await asyncio.wait_for(self._exchange(url, payload), self.settings.timeout_s)
            if flavour in ("rows", "mlflow"):
                document = normalise(document, len(request.rows or ()))
            elif flavour == "chat" and not (
                isinstance(document, dict) and isinstance(document.get("choices"), list)
            ):
                raise UpstreamError(
                    502, "bad_upstream_answer", "the model server's answer was malformed"
                )
        except asyncio.TimeoutError:
            request.decisions["upstream"] = "timeout"
            await http.send_json(
                send, 504, http.error_document("upstream_timeout", "the model server timed out")
            )
            return
        except UpstreamError as error:
            request.decisions["upstream"] = "error"
            await http.send_json(send, error.status, http.error_document(error.code, error.message))
            return
        request.decisions["upstream"] = "allow"
        await http.send_json(send, 200, document)

    async def _exchange(self, url: str, payload: Any) -> Any:
        import httpx

        body = http.encode(payload)
        try:
            async with self._client.stream(
                "POST",
                url,
                content=body,
                headers={
                    "content-type": "application/json",
                    "accept": "application/json",
                    "accept-encoding": "identity",
                },
            ) as response:
                if response.status_code != 200:
                    raise UpstreamError(502, "upstream_error", "the model server failed")
                declared = response.headers.get("content-length")
                limit = self.settings.max_response_bytes
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    raise UpstreamError(
                        502, "upstream_too_large", "the model server's answer was too large"
                    )
                parts: list[bytes] = []
                size = 0
                async for chunk in response.aiter_raw():
                    size += len(chunk)
                    if size > limit:
                        raise UpstreamError(
                            502, "upstream_too_large", "the model server's answer was too large"
                        )
                    parts.append(chunk)
        except httpx.TimeoutException:
            raise asyncio.TimeoutError() from None
        except httpx.HTTPError:
            raise UpstreamError(
                502, "upstream_unreachable", "the model server is unreachable"
            ) from None
        raw = b"".join(parts)
        encoding = response.headers.get("content-encoding", "identity")
        if encoding not in ("identity", ""):
            raise UpstreamError(
                502, "bad_upstream_answer", "the model server's answer was malformed"
            )
        try:
            return http.parse_json(raw, self.max_depth, 1_000_000, 10_000_000)
        except http.BodyError:
            raise UpstreamError(
                502, "bad_upstream_answer", "the model server's answer was malformed"
            ) from None
