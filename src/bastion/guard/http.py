"""Plain ASGI helpers the pipeline uses: capped body reading, bounded JSON, JSON responses.

Bodies are counted while they stream in (a Content-Length over the cap is refused before any
byte is read; a body without one stops at the cap). JSON is decoded by msgspec (which rejects
NaN/Infinity literals and numbers out of the float range) and then walked once, iteratively,
against depth, item and string-length caps; deeper nesting than Python's recursion allows is a
decode error too, never a crash."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any, Literal, Union

import msgspec

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()


class BodyError(Exception):
    """A request body the guard refuses; `status` and `code` say how."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    declared = header(scope, b"content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BodyError(400, "bad_request", "Content-Length is not a number") from None
        if size > limit:
            raise BodyError(413, "too_large", f"the body is over {limit} bytes")
    parts: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BodyError(400, "disconnected", "the client went away")
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise BodyError(413, "too_large", f"the body is over {limit} bytes")
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def parse_json(raw: bytes, max_depth: int, max_items: int, max_chars: int) -> Any:
    """The decoded document; BodyError (400/413) when it is not JSON or breaks a cap."""
    if not raw:
        raise BodyError(400, "bad_request", "the body is empty: send a JSON document")
    try:
        document = _DECODER.decode(raw)
    except RecursionError:
        raise BodyError(413, "too_deep", f"JSON nested deeper than {max_depth} levels") from None
    except msgspec.DecodeError as exc:
        message = str(exc).split(" - at ")[0][:80]
        raise BodyError(400, "bad_json", f"the body is not valid JSON ({message})") from None
    stack: list[tuple[Any, int]] = [(document, 1)]
    items = 0
    while stack:
        item, depth = stack.pop()
        items += 1
        if items > max_items:
            raise BodyError(413, "too_many_items", f"more than {max_items} JSON values")
        if isinstance(item, str):
            if len(item) > max_chars:
                raise BodyError(413, "string_too_long", f"a string is over {max_chars} characters")
        elif isinstance(item, (dict, list)):
            if depth > max_depth:
                raise BodyError(413, "too_deep", f"JSON nested deeper than {max_depth} levels")
            values = item.values() if isinstance(item, dict) else item
            if isinstance(item, dict):
                for key in item:
                    if len(key) > max_chars:
                        raise BodyError(413, "string_too_long", "a key is too long")
            stack.extend((value, depth + 1) for value in values)
    return document


_ROWS_DECODERS: dict[int, msgspec.json.Decoder[Any]] = {}


def _rows_decoder(max_chars: int) -> msgspec.json.Decoder[Any]:
    decoder = _ROWS_DECODERS.get(max_chars)
    if decoder is None:
        text = Annotated[str, msgspec.Meta(max_length=max_chars)]
        shape = dict[Literal["rows"], list[dict[text, Union[text, int, float, bool, None]]]]  # type: ignore[valid-type]  # noqa: UP007
        decoder = _ROWS_DECODERS[max_chars] = msgspec.json.Decoder(shape)
        if len(_ROWS_DECODERS) > 8:  # a few sizes over a process's reloads, never a leak
            _ROWS_DECODERS.pop(next(iter(_ROWS_DECODERS)))
    return decoder


def parse_rows(raw: bytes, max_depth: int, max_items: int, max_chars: int) -> Any | None:
    """A `{"rows": [{column: scalar}, ...]}` body decoded and shape-checked in one pass by
    msgspec (typed decoding, no walk in Python); None when the body is anything else, or breaks
    a cap, so that the caller runs `parse_json` and its own shape checks for the exact error.
    Whatever this accepts, `parse_json` accepts as the same document."""
    if max_depth < 3:
        return None
    try:
        document = _rows_decoder(max_chars).decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    rows = document.get("rows")
    if rows is None:
        return None
    # parse_json counts every value: the document, the list, each row and each cell
    if 2 + len(rows) + sum(len(row) for row in rows) > max_items:
        return None
    return document


def encode(document: Any) -> bytes:
    return _ENCODER.encode(document)


async def send_json(
    send: Send,
    status: int,
    document: Any,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = encode(document)
    await send_bytes(send, status, body, b"application/json", headers)


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"x-content-type-options", b"nosniff"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def error_document(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def replay(body: bytes, original: Receive) -> Receive:
    """A receive callable that hands `body` to the inner app in one message, then waits on the
    client's connection (for the disconnect an inner app may listen for)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await original()

    return receive
