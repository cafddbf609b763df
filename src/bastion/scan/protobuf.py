"""A bounded protobuf wire-format walker over a seekable stream. Length-delimited fields are
returned as (offset, length) windows and only read when the caller asks, so multi-GB ONNX or
SavedModel files are walked without reading tensor bytes."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import BinaryIO

from bastion.scan.source import CorruptInput

VARINT, FIXED64, LENGTH, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5


class ProtoError(CorruptInput):
    pass


class ProtoStream:
    def __init__(self, handle: BinaryIO, size: int) -> None:
        self.handle = handle
        self.size = size
        self._buf = b""
        self._buf_start = 0

    def _byte_at(self, pos: int) -> int:
        rel = pos - self._buf_start
        if not 0 <= rel < len(self._buf):
            self.handle.seek(pos)
            self._buf = self.handle.read(1 << 16)
            self._buf_start = pos
            rel = 0
            if not self._buf:
                raise ProtoError(f"truncated at byte {pos}")
        return self._buf[rel]

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        result = shift = 0
        while True:
            if pos >= end:
                raise ProtoError(f"truncated varint at byte {pos}")
            byte = self._byte_at(pos)
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result, pos
            shift += 7
            if shift > 63:
                raise ProtoError(f"varint longer than 10 bytes at byte {pos}")

    def read(self, pos: int, length: int) -> bytes:
        rel = pos - self._buf_start
        if rel >= 0 and rel + length <= len(self._buf):
            return self._buf[rel : rel + length]
        self.handle.seek(pos)
        data = self.handle.read(length)
        if len(data) != length:
            raise ProtoError(f"truncated field at byte {pos}")
        return data

    def fields(self, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
        """Yield (field number, wire type, value or offset, length) for one message."""
        if end > self.size or start < 0 or start > end:
            raise ProtoError(f"message window {start}..{end} outside the file")
        pos = start
        while pos < end:
            key, pos = self.varint(pos, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise ProtoError(f"field number 0 at byte {pos}")
            if wire == VARINT:
                value, pos = self.varint(pos, end)
                yield number, wire, value, 0
            elif wire == FIXED64:
                if pos + 8 > end:
                    raise ProtoError(f"truncated fixed64 at byte {pos}")
                yield number, wire, pos, 8
                pos += 8
            elif wire == FIXED32:
                if pos + 4 > end:
                    raise ProtoError(f"truncated fixed32 at byte {pos}")
                yield number, wire, pos, 4
                pos += 4
            elif wire == LENGTH:
                length, pos = self.varint(pos, end)
                if pos + length > end:
                    raise ProtoError(
                        f"field {number} of {length} bytes overruns its message at byte {pos}"
                    )
                yield number, wire, pos, length
                pos += length
            else:
                raise ProtoError(f"unsupported wire type {wire} at byte {pos}")

    def string(self, pos: int, length: int, limit: int = 1 << 20) -> str:
        return self.read(pos, min(length, limit)).decode("utf-8", "replace")


# --- identification: which message a loader could parse these bytes as ----------------------

# field number -> wire type of the messages that decide what a protobuf file is
_ONNX_MODEL_GRAPHS = {7: LENGTH, 20: LENGTH, 25: LENGTH}  # graph, training_info, functions
_ONNX_GRAPH = {
    1: LENGTH,
    2: LENGTH,
    5: LENGTH,
    10: LENGTH,
    11: LENGTH,
    12: LENGTH,
    13: LENGTH,
    14: LENGTH,
    15: LENGTH,
    16: LENGTH,
}
_ONNX_NODE_OR_FUNCTION = {
    1: LENGTH,
    2: LENGTH,
    3: LENGTH,
    4: LENGTH,
    5: LENGTH,
    6: LENGTH,
    7: LENGTH,
    8: LENGTH,
    9: LENGTH,
    10: LENGTH,
    11: LENGTH,
    12: LENGTH,
}
_ONNX_TRAINING = {1: LENGTH, 2: LENGTH, 3: LENGTH, 4: LENGTH}
_META_GRAPH = {1: LENGTH, 2: LENGTH, 3: LENGTH, 4: LENGTH, 5: LENGTH, 6: LENGTH, 7: LENGTH}
_NODE_DEF = {1: LENGTH, 2: LENGTH, 3: LENGTH, 4: LENGTH, 5: LENGTH, 6: LENGTH, 7: LENGTH}
_SAVED_OBJECT = {2: VARINT, 3: LENGTH, 4: LENGTH, 5: LENGTH, 6: LENGTH}
PROBE_BUDGET = 4 << 20  # bytes the identification walk may read
_TOP_FIELDS = 4096
_INNER_FIELDS = 64
_INNER_MESSAGES = 8


class _ProbeExhausted(Exception):
    pass


class _ProbeHandle(io.RawIOBase):
    """The head, then the rest of the stream within a read budget (or nothing without an
    opener): reading past what the probe may see raises _ProbeExhausted, never 'truncated'."""

    def __init__(self, head: bytes, opener: Callable[[], BinaryIO] | None) -> None:
        self._head = head
        self._opener = opener
        self._inner: BinaryIO | None = None
        self._pos = 0
        self._budget = PROBE_BUDGET

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = offset
        return offset

    def read(self, size: int = -1) -> bytes:
        fits = size >= 0 and self._pos + size <= len(self._head)
        if fits or (self._opener is None and self._pos < len(self._head)):
            data = self._head[self._pos : self._pos + size if size >= 0 else None]
        else:
            if self._opener is None or self._budget <= 0:
                raise _ProbeExhausted
            if self._inner is None:
                self._inner = self._opener()
            size = min(size if size >= 0 else self._budget, self._budget)
            self._budget -= size
            self._inner.seek(self._pos)
            data = self._inner.read(size)
        self._pos += len(data)
        return data

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
        super().close()


def _walk(
    proto: ProtoStream, start: int, end: int, limit: int
) -> list[tuple[int, int, int, int]] | None:
    """Up to `limit` fields of the message at start..end; None when it is not wire format.
    A walk the probe may not finish counts as valid so far."""
    out: list[tuple[int, int, int, int]] = []
    try:
        for field in proto.fields(start, end):
            out.append(field)
            if len(out) >= limit:
                break
    except _ProbeExhausted:
        pass
    except ProtoError:
        return None
    return out


def _matches(
    proto: ProtoStream,
    pos: int,
    length: int,
    schema: dict[int, int],
    require: dict[int, int] | None = None,
) -> bool:
    """The message at pos is wire format, its known fields have the schema's wire types and
    it holds at least one field of `require` (default: of the schema)."""
    fields = _walk(proto, pos, pos + length, _INNER_FIELDS)
    if fields is None or not fields:
        return False
    if any(schema.get(number, wire) != wire for number, wire, _p, _l in fields):
        return False
    wanted = require or schema
    return any(wanted.get(number) == wire for number, wire, _p, _l in fields)


def protobuf_kinds(
    head: bytes, size: int, opener: Callable[[], BinaryIO] | None = None
) -> tuple[str, ...]:
    """The messages (onnx, savedmodel, keras_metadata, tf_graphdef) whose readers would take
    these bytes as one of theirs, found by a bounded walk of the wire format: field order does
    not matter to protobuf readers, so it does not matter here."""
    if not head:
        return ()
    handle = _ProbeHandle(head, opener)
    try:
        proto = ProtoStream(handle, size)  # type: ignore[arg-type]
        top = _walk(proto, 0, size, _TOP_FIELDS)
        if not top:
            return ()
        kinds: list[str] = []

        def any_field(
            number: int, wire: int, schema: dict[int, int], require: dict[int, int] | None = None
        ) -> bool:
            candidates = [(p, n) for num, w, p, n in top if num == number and w == wire]
            return any(
                _matches(proto, p, n, schema, require) for p, n in candidates[:_INNER_MESSAGES]
            )

        if (
            any_field(7, LENGTH, _ONNX_GRAPH)
            or any_field(20, LENGTH, _ONNX_TRAINING)
            or any_field(25, LENGTH, _ONNX_NODE_OR_FUNCTION)
        ):
            kinds.append("onnx")
        if any_field(2, LENGTH, _META_GRAPH):
            kinds.append("savedmodel")
        if all(number == 1 and wire == LENGTH for number, wire, _p, _l in top) and any_field(
            1, LENGTH, _SAVED_OBJECT, {2: VARINT, 4: LENGTH, 5: LENGTH}
        ):
            kinds.append("keras_metadata")
        if all(_ONNX_MODEL_GRAPHS.get(number) is None for number, _w, _p, _l in top) and any_field(
            1, LENGTH, _NODE_DEF, {2: LENGTH}
        ):
            kinds.append("tf_graphdef")
        return tuple(kinds)
    finally:
        handle.close()
