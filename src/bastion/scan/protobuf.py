"""A bounded protobuf wire-format walker over a seekable stream. Length-delimited fields are
returned as (offset, length) windows and only read when the caller asks, so multi-GB ONNX or
SavedModel files are walked without reading tensor bytes."""

from __future__ import annotations

from collections.abc import Iterator
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
            return self._buf[rel:rel + length]
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
                    raise ProtoError(f"field {number} of {length} bytes overruns its message "
                                     f"at byte {pos}")
                yield number, wire, pos, length
                pos += length
            else:
                raise ProtoError(f"unsupported wire type {wire} at byte {pos}")

    def string(self, pos: int, length: int, limit: int = 1 << 20) -> str:
        return self.read(pos, min(length, limit)).decode("utf-8", "replace")
