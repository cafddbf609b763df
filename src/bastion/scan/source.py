"""What a scanner reads: a `Source` (a file on disk, an archive member, a decompressed stream)
and bounded readers over it. Scanners never read more than they are allowed to."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from bastion.errors import LimitExceeded
from bastion.findings import Location
from bastion.records import Record


class Source(Record):
    """One byte stream to scan. `open()` returns a fresh, seekable binary stream."""

    location: Location
    opener: Callable[[], BinaryIO]
    size: int
    name: str
    fs_path: Path | None = None  # set only for real files on disk
    depth: int = 0
    hints: tuple[str, ...] = ()

    def open(self) -> BinaryIO:
        return self.opener()

    def head(self, count: int = 64) -> bytes:
        with self.open() as handle:
            return handle.read(count)

    def tail(self, count: int) -> bytes:
        with self.open() as handle:
            handle.seek(max(0, self.size - count))
            return handle.read(count)

    def read_all(self, limit: int, what: str = "content") -> bytes:
        """The whole stream, or LimitExceeded when it is larger than `limit`."""
        if self.size > limit:
            raise LimitExceeded(f"{what} is {self.size} bytes, over the limit of {limit}")
        with self.open() as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise LimitExceeded(f"{what} is over the limit of {limit} bytes")
        return data

    def child(self, member: str, opener: Callable[[], BinaryIO], size: int) -> Source:
        return Source(
            location=self.location.model_copy(update={"members": (*self.location.members, member)}),
            opener=opener,
            size=size,
            name=member.rsplit("/", 1)[-1],
            depth=self.depth + 1,
        )


def file_source(path: Path, display: str) -> Source:
    """A file on disk, reported as `display` (its path relative to the scan root)."""
    return Source(
        location=Location(path=display),
        opener=lambda: open(path, "rb"),
        size=path.stat().st_size,  # at scan time, in the worker: the size that will be read
        name=path.name,
        fs_path=path,
    )


def bytes_source(
    data: bytes, name: str, location: Location | None = None, depth: int = 0
) -> Source:
    return Source(
        location=location or Location(path=name),
        opener=lambda: io.BytesIO(data),
        size=len(data),
        name=name,
        depth=depth,
    )


class CorruptInput(Exception):
    """Raised by a parser when the input breaks its format; reported as a malformed artifact."""


class SliceReader(io.RawIOBase):
    """A read-only, seekable window [start, start+length) of another seekable stream."""

    def __init__(self, opener: Callable[[], BinaryIO], start: int, length: int) -> None:
        self._base = opener()
        self._start = start
        self._length = length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            pos = offset
        elif whence == os.SEEK_CUR:
            pos = self._pos + offset
        else:
            pos = self._length + offset
        self._pos = max(0, pos)
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        remaining = self._length - self._pos
        if remaining <= 0:
            return 0
        want = min(len(buffer), remaining)
        self._base.seek(self._start + self._pos)
        data = self._base.read(want)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        self._base.close()
        super().close()


def slice_opener(source: Source, start: int, length: int) -> Callable[[], BinaryIO]:
    """An opener for the window [start, start+length) of `source`."""
    return lambda: io.BufferedReader(SliceReader(source.open, start, length))  # type: ignore[return-value]
