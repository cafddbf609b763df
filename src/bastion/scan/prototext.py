"""A bounded reader for the protobuf text format (what `saved_model.pbtxt` holds). It knows no
schema: a message is a list of (field name, value) pairs, a value is a scalar string (string
literals unescaped, numbers and enum names as written) or a nested message. Input size, nesting
depth and the number of values are capped; anything malformed raises `TextProtoError`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Union

from bastion.errors import LimitExceeded
from bastion.scan.source import CorruptInput

MAX_DEPTH = 100
MAX_TOKENS = 1_000_000

Value = Union[str, "Message"]
Message = list[tuple[str, Value]]

_TOKEN = re.compile(
    rb"""\s+|\#[^\n]*|(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')"""
    rb"""|(?P<word>[A-Za-z0-9_.+\-/]+)|(?P<punct>[{}<>:\[\],;])""",
    re.DOTALL,
)
_ESCAPES = {
    b"n": b"\n",
    b"t": b"\t",
    b"r": b"\r",
    b"'": b"'",
    b'"': b'"',
    b"\\": b"\\",
    b"a": b"\a",
    b"b": b"\b",
    b"f": b"\f",
    b"v": b"\v",
    b"?": b"?",
}
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)", re.DOTALL)
_CLOSE = {"{": "}", "<": ">"}


class TextProtoError(CorruptInput):
    pass


def _unescape(raw: bytes) -> str:
    def one(match: re.Match[bytes]) -> bytes:
        code = match.group(1)
        if code[:1] == b"x":
            return bytes([int(code[1:], 16)])
        if code[:1].isdigit():
            return bytes([int(code, 8) & 0xFF])
        return _ESCAPES.get(code, code)

    return _ESCAPE.sub(one, raw).decode("utf-8", "replace")


def _token_stream(data: bytes) -> Iterator[tuple[str, str]]:
    pos = 0
    count = 0
    for match in _TOKEN.finditer(data):
        if match.start() != pos:
            raise TextProtoError(f"unexpected character at byte {pos}")
        pos = match.end()
        kind = match.lastgroup
        if kind is None:
            continue  # whitespace or comment
        count += 1
        if count > MAX_TOKENS:
            raise LimitExceeded(f"SavedModel text with more than {MAX_TOKENS} tokens")
        text = match.group(kind)
        yield (kind, _unescape(text[1:-1]) if kind == "string" else text.decode("ascii"))
    if pos != len(data):
        raise TextProtoError(f"unexpected character at byte {pos}")


class _Tokens:
    """The token stream with one token of lookahead; whitespace and comments are dropped."""

    def __init__(self, data: bytes) -> None:
        self._stream = _token_stream(data)
        self._next: tuple[str, str] | None = None

    def peek(self) -> tuple[str, str] | None:
        if self._next is None:
            self._next = next(self._stream, None)
        return self._next

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise TextProtoError("unexpected end of input")
        self._next = None
        return token


def parse(data: bytes) -> Message:
    """Parse a whole text-format message (the caller bounds `data`'s size)."""
    tokens = _Tokens(data)
    root: Message = []
    stack: list[tuple[Message, str]] = [(root, "")]
    while tokens.peek() is not None:
        kind, text = tokens.take()
        current, closer = stack[-1]
        if kind == "punct" and text == closer:
            stack.pop()
            continue
        if kind == "punct" and text in ",;":
            continue
        if kind == "punct" and text == "[":  # extension or Any type URL as a field name
            parts = []
            while (part := tokens.take()) != ("punct", "]"):
                parts.append(part[1])
            name = "[" + "".join(parts) + "]"
        elif kind == "word":
            name = text
        else:
            raise TextProtoError(f"expected a field name, found {text!r}")
        kind, text = tokens.take()
        if kind == "punct" and text == ":":
            kind, text = tokens.take()
        if kind == "punct" and text in _CLOSE:
            if len(stack) > MAX_DEPTH:
                raise TextProtoError("messages nested too deeply")
            child: Message = []
            current.append((name, child))
            stack.append((child, _CLOSE[text]))
        elif kind == "punct" and text == "[":  # repeated scalar field in list form
            while (item := tokens.take()) != ("punct", "]"):
                if item != ("punct", ","):
                    _scalar(tokens, item, current, name)
        else:
            _scalar(tokens, (kind, text), current, name)
    if len(stack) != 1:
        raise TextProtoError("unclosed message at end of input")
    return root


def _scalar(tokens: _Tokens, token: tuple[str, str], into: Message, name: str) -> None:
    kind, text = token
    if kind == "string":
        parts = [text]
        while (following := tokens.peek()) is not None and following[0] == "string":
            parts.append(tokens.take()[1])  # adjacent literals concatenate
        into.append((name, "".join(parts)))
    elif kind == "word":
        into.append((name, text))
    else:
        raise TextProtoError(f"expected a value for {name!r}, found {text!r}")


def messages(message: Message, name: str) -> list[Message]:
    return [value for key, value in message if key == name and isinstance(value, list)]


def scalars(message: Message, name: str) -> list[str]:
    return [value for key, value in message if key == name and isinstance(value, str)]


def scalar(message: Message, name: str) -> str:
    found = scalars(message, name)
    return found[-1] if found else ""
