"""Byte streams of data files with bounds: decompression by content (gzip, bz2, xz, zstd) with a
cap on the inflated size and on the compression ratio, and a cap on the length of one line.

The readers (pyarrow's CSV and JSON readers, Python's csv module) read through these streams, so
a decompression bomb or a multi-gigabyte line stops with a DataInputError after at most the
bound's worth of bytes, whatever the reader would have buffered."""

from __future__ import annotations

import codecs
import contextlib
import io
import itertools
import logging
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from bastion.errors import DataInputError, MissingExtra

log = logging.getLogger("bastion.data")

MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
COMPRESSED_SUFFIXES = {
    ".gz": "gzip",
    ".gzip": "gzip",
    ".bz2": "bz2",
    ".xz": "xz",
    ".zst": "zstd",
    ".zstd": "zstd",
}
RATIO_FLOOR = 16 * 1024 * 1024  # the ratio bound applies once this much has been inflated
READ_CHUNK = 1024 * 1024
# Nesting of one JSON value (arrays and objects). pyarrow's JSON reader recurses in C++ and
# overflows the stack (a segfault, no exception) somewhere between 5,000 and 20,000 levels;
# Python's json stops near 1,000. A table's cell nested this deep is not data but an attack.
MAX_JSON_DEPTH = 64
# How long ArrowLoan.end waits for pyarrow to let go of a stream (it takes well under a
# millisecond once the reader is dropped; past this the stream is closed anyway).
RELEASE_WAIT_S = 2.0


def compression_of(head: bytes) -> str | None:
    """The compression a file's first bytes announce, or None."""
    for magic, name in MAGIC:
        if head.startswith(magic):
            return name
    return None


class _Counting(io.RawIOBase):
    """Counts the compressed bytes a decompressor pulled from the file."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)

    def close(self) -> None:
        self.raw.close()
        super().close()


class BoundedStream(io.RawIOBase):
    """The (decompressed) bytes of one file. Raises DataInputError when more than `cap` bytes
    inflate, when the inflated/compressed ratio passes `max_ratio` (after RATIO_FLOOR bytes), or
    — when `max_line` is set — when one line is longer than `max_line` bytes. `lines` counts the
    newlines read so far, so an error can name the line."""

    def __init__(
        self,
        inner: BinaryIO,
        *,
        name: str,
        compression: str | None,
        counter: _Counting | None,
        cap: int,
        max_ratio: int,
        max_line: int | None,
        json_depth: JsonDepth | None = None,
        count_byte: bytes | None = None,
    ) -> None:
        self.inner = inner
        self.name = name
        self.compression = compression
        self.counter = counter
        self.cap = cap
        self.max_ratio = max_ratio
        self.max_line = max_line
        self.json_depth = json_depth
        self.total = 0
        self.lines = 0
        self.since_newline = 0
        self.count_byte = count_byte  # one byte whose occurrences are counted (a CSV quote)
        self.counted = 0
        self.ended = False  # the end of the stream was reached

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        # never more than one line's bound at a time: a line inside one chunk is then within it
        want = min(len(buffer), READ_CHUNK, self.max_line or READ_CHUNK)
        try:
            data = self.inner.read(want)
        except DataInputError:
            raise
        except (OSError, EOFError, ValueError, MemoryError) as exc:
            raise DataInputError(
                f"{self.name}: the {self.compression or 'file'} stream is corrupt after "
                f"{self.total:,} bytes ({type(exc).__name__}: {str(exc)[:120]})",
                kind="compression" if self.compression else "io",
                line=self.lines + 1,
            ) from exc
        except Exception as exc:  # zstandard.ZstdError and other decompressor errors
            raise DataInputError(
                f"{self.name}: the {self.compression or 'file'} stream is corrupt after "
                f"{self.total:,} bytes ({type(exc).__name__})",
                kind="compression",
                line=self.lines + 1,
            ) from exc
        size = len(data)
        if not size:
            self.ended = True
            return 0
        self.total += size
        if self.compression is not None:
            if self.total > self.cap:
                raise DataInputError(
                    f"{self.name}: inflates past {self.cap:,} bytes (decompression bomb?)",
                    kind="decompressed-size",
                    line=self.lines + 1,
                    hint="raise max_decompressed_mb in the policy's [data] table if the "
                    "file is genuine",
                )
            packed = self.counter.count if self.counter is not None else 0
            if self.total > RATIO_FLOOR and self.total > self.max_ratio * max(packed, 1):
                raise DataInputError(
                    f"{self.name}: {packed:,} compressed bytes inflate to more than "
                    f"{self.total:,} (ratio over {self.max_ratio}:1, decompression bomb?)",
                    kind="decompressed-size",
                    line=self.lines + 1,
                    hint="raise max_compression_ratio in the policy's [data] table if the "
                    "file is genuine",
                )
        if self.json_depth is not None:
            self.json_depth.feed(data)  # before the lines are counted: it names the line
        if self.max_line is not None:
            self._track_lines(data)
        if self.count_byte is not None:
            self.counted += data.count(self.count_byte)
        buffer[:size] = data
        return size

    def _track_lines(self, data: bytes) -> None:
        assert self.max_line is not None
        last = data.rfind(b"\n")
        if last < 0:
            self.since_newline += len(data)
        else:
            first = data.find(b"\n")
            if self.since_newline + first > self.max_line:
                self._too_long()
            self.lines += data.count(b"\n")
            self.since_newline = len(data) - last - 1
        if self.since_newline > self.max_line:
            self._too_long()

    def _too_long(self) -> None:
        raise DataInputError(
            f"{self.name}: line {self.lines + 1:,} is longer than {self.max_line:,} bytes",
            kind="line-too-long",
            line=self.lines + 1,
            hint="a row this long is malformed input (or raise max_line_kb in the policy's "
            "[data] table)",
        )

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            super().close()


def open_bytes(
    path: Path,
    *,
    name: str,
    compression: str | None,
    cap: int,
    max_ratio: int,
    max_line: int | None,
    json_depth: int | None = None,
    count_byte: bytes | None = None,
) -> io.BufferedReader:
    """The decompressed bytes of `path`, bounded. `compression` is what the content announced
    (compression_of), never the file name. With `json_depth`, the bytes are JSON Lines and a
    value nested deeper than that stops the stream before a JSON parser sees it. With
    `count_byte`, the stream (the returned reader's `raw`) counts that byte's occurrences."""
    raw: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by the returned stream
    counter: _Counting | None = None
    inner: BinaryIO
    try:
        if compression is None:
            inner = raw
        else:
            counter = _Counting(raw)
            inner = _decompressor(compression, counter)
    except BaseException:
        raw.close()
        raise
    stream = BoundedStream(
        inner,
        name=name,
        compression=compression,
        counter=counter,
        cap=cap,
        max_ratio=max_ratio,
        max_line=max_line,
        json_depth=None if json_depth is None else JsonDepth(name, json_depth),
        count_byte=count_byte,
    )
    if stream.json_depth is not None:
        stream.json_depth.lines = lambda: stream.lines
    return io.BufferedReader(stream, buffer_size=256 * 1024)


class _Lent:
    """What pyarrow holds instead of the stream: the loan's read and the stream's other
    methods, and nothing a Python frame refers to, so that it dies when pyarrow drops it."""

    __slots__ = ("__weakref__", "_stream", "close", "read", "seek", "tell")

    def __init__(self, stream: io.BufferedIOBase, read: Callable[[int], memoryview]) -> None:
        self._stream = stream
        self.read = read
        self.close = stream.close
        self.seek = stream.seek
        self.tell = stream.tell

    @property
    def closed(self) -> bool:
        return self._stream.closed


class ArrowLoan:
    """One of these streams lent to pyarrow's streaming CSV or JSON reader, and taken back.

    pyarrow reads a Python stream from a thread of its IO pool, ahead of the batches asked
    for, and wraps each block it reads in a buffer that keeps the Python object; that thread
    can still hold the stream, or drop the last reference to a block, after the reader is
    closed, and each of those steps takes the GIL. If the process then exits from code that
    holds the GIL, the exit waits for the IO pool and the pool's thread waits for the GIL:
    the process hangs for good (apache/arrow#50482; here a fuzz run that never ended, and
    `exit()` from C after a read, which hung one time in two). So pyarrow gets a stand-in that
    nothing else refers to, each block as a view the loan tracks, and text already transcoded
    to UTF-8 (pyarrow's own transcoder is a Python object called from its threads). Leaving
    the `with` block drops the reader and waits, with the GIL released, until pyarrow has let
    go of the stand-in and of every block (well under a millisecond once the reader is
    dropped; bounded by RELEASE_WAIT_S), then closes the stream: once a read is over, no
    thread of pyarrow's holds a Python object of ours.

        with ArrowLoan(stream, encoding="latin-1") as loan:
            loan.open(pyarrow.csv.open_csv, read_options=...)  # told the text is UTF-8
            for batch in loan.batches(): ...
    """

    def __init__(self, stream: io.BufferedIOBase, *, encoding: str | None = None) -> None:
        self.stream = stream
        self.reader: Any = None
        self._lent: weakref.ref[_Lent] | None = None
        self._views: set[int] = set()  # the blocks pyarrow still holds, by serial number
        self._serial = itertools.count()
        self._decoder = None
        if encoding is not None and codecs.lookup(encoding).name not in ("utf-8", "utf-8-sig"):
            self._decoder = codecs.getincrementaldecoder(encoding)()
        self._pending = bytearray()  # transcoded, not yet handed over (deleting its head is cheap)
        self._ending = False  # set by `end`: pyarrow's read-ahead gets end-of-file from here on
        self.failure: Exception | None = None  # what the stream raised under pyarrow

    def __enter__(self) -> ArrowLoan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()

    def open(self, function: Callable[..., Any], **options: Any) -> None:
        """`loan.reader` = pyarrow's `function` (open_csv, open_json) on the stand-in. The
        stand-in is never bound to a name here: a traceback keeping the frame would keep it."""
        try:
            self.reader = function(self._stand_in(), **options)
        except Exception:
            self.raise_failure()
            raise
        self.raise_failure()  # the first block failed: pyarrow saw an early end, not the error

    def batches(self) -> Iterator[Any]:
        """The reader's record batches. An error the stream raised (a bound, text that does
        not decode) is raised here, in the caller's thread, ahead of any batch or error pyarrow
        made of the stream's early end."""
        try:
            for batch in self.reader:
                self.raise_failure()
                yield batch
        except Exception:
            self.raise_failure()
            raise
        self.raise_failure()

    def raise_failure(self) -> None:
        """Raise what the stream raised under pyarrow, if it did."""
        if self.failure is not None:
            failure, self.failure = self.failure, None
            try:
                raise failure
            finally:
                del failure  # the traceback holds this frame: no cycle through it

    def _stand_in(self) -> _Lent:
        lent = _Lent(self.stream, self._read)
        self._lent = weakref.ref(lent)
        return lent

    def _read(self, size: int = -1) -> memoryview:
        """pyarrow's read. An exception never reaches pyarrow (it would keep the Python object,
        and its frames, in its threads): it is kept for `raise_failure`, and pyarrow is told
        the file ended."""
        return self._tracked(memoryview(self._data(size)))  # no name for the view here: a
        # failure's traceback keeps this frame (the caller of `_data`), and with it its names

    def _tracked(self, view: memoryview) -> memoryview:
        serial = next(self._serial)
        self._views.add(serial)
        weakref.finalize(view, self._views.discard, serial)
        return view

    def _data(self, size: int) -> bytes:
        """`_next`, or b"" once the stream has failed (kept in `failure`)."""
        if self.failure is not None:
            return b""
        try:
            return self._next(size)
        except Exception as exc:
            self.failure = exc
            return b""

    def _next(self, size: int) -> bytes:
        """Up to `size` bytes of UTF-8 (all when negative), fewer only at the end: read a piece
        of at most READ_CHUNK at a time, no more than is still missing (a decoding error
        surfaces where pyarrow's block reaches it, not a megabyte early), and nothing once
        `end` has begun (pyarrow's read-ahead of a big block stops within a piece)."""
        if size < 0:
            size = 1 << 62
        if self._decoder is None:
            pieces: list[bytes] = []
            held = 0
            while held < size and not self._ending:
                piece = self.stream.read(min(READ_CHUNK, size - held))
                if not piece:
                    break
                pieces.append(piece)
                held += len(piece)
            return b"".join(pieces)
        while len(self._pending) < size and not self._ending:
            raw = self.stream.read(min(READ_CHUNK, size - len(self._pending)))
            self._pending += self._decoder.decode(raw, final=not raw).encode("utf-8")
            if not raw:
                break
        cut = min(size, len(self._pending))  # never more than asked for
        out = bytes(self._pending[:cut])
        del self._pending[:cut]
        return out

    def lent(self) -> bool:
        """Whether pyarrow still holds the stand-in or a block."""
        return bool(self._views) or (self._lent is not None and self._lent() is not None)

    def end(self) -> None:
        """Close and drop the reader, wait (bounded) until pyarrow has dropped the stand-in
        and every block, then close the stream."""
        self._ending = True
        reader, self.reader = self.reader, None
        if reader is not None:
            with contextlib.suppress(Exception):
                reader.close()
            del reader
        deadline = time.monotonic() + RELEASE_WAIT_S
        while self.lent() and time.monotonic() < deadline:
            time.sleep(0.0002)  # releases the GIL, which pyarrow's thread may be waiting for
        if self.lent():
            log.warning(
                "pyarrow still held a data stream %.1f s after its reader closed", RELEASE_WAIT_S
            )
        self.stream.close()


def _decompressor(compression: str, raw: Any) -> Any:
    if compression == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=raw, mode="rb")
    if compression == "bz2":
        import bz2

        return bz2.BZ2File(raw, mode="rb")
    if compression == "xz":
        import lzma

        return lzma.LZMAFile(raw, mode="rb")
    if compression == "zstd":
        try:
            import zstandard
        except ImportError as exc:
            raise MissingExtra("zstandard", "data") from exc
        reader = zstandard.ZstdDecompressor().stream_reader(
            raw, read_across_frames=True, closefd=True
        )
        return reader
    raise ValueError(f"unknown compression {compression}")


def read_head(path: Path, size: int = 4096) -> bytes:
    """The first bytes of the file as stored."""
    with open(path, "rb") as handle:
        return handle.read(size)


class JsonDepth:
    """The nesting depth of JSON Lines, checked over the bytes as they stream past, vectorised
    with NumPy (a byte loop in Python would cost seconds per megabyte). Every newline starts a
    new value (pyarrow reads with newlines_in_values=False, and a raw newline inside a JSON
    string is invalid). The opening brackets of a line bound its depth from above, so a line
    with at most `limit` of them passes at the cost of one count; only a line with more is
    measured exactly: strings are delimited by the quotes no odd run of backslashes escapes, and
    brackets inside them do not count. Exact for valid JSON; on invalid JSON a parser stops at
    the first error, before which the count is exact too. Raises DataInputError (kind "limit")
    at the first line nested deeper than `limit`."""

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self.partial = bytearray()  # the fed bytes since the last newline
        self.partial_opens = 0
        self.lines: Callable[[], int] = lambda: 0  # lines before the fed bytes
        self.first_seen = False  # the stream's first value has been checked

    def feed(self, data: bytes) -> None:
        import numpy as np

        if not data:
            return
        if not self.first_seen:
            self._first_value(data)
        raw = np.frombuffer(data, dtype=np.uint8)
        newlines = np.flatnonzero(raw == 10)
        opens = np.cumsum((raw == 91) | (raw == 123), dtype=np.int64)
        if len(newlines):
            at_newline = opens[newlines]
            most = max(
                self.partial_opens + int(at_newline[0]),
                int(np.diff(at_newline).max()) if len(newlines) > 1 else 0,
            )
            tail_opens = int(opens[-1] - at_newline[-1])
        else:
            most = tail_opens = self.partial_opens + int(opens[-1])
        if max(most, tail_opens) > self.limit:
            self._exact(bytes(self.partial) + data)
        if len(newlines):
            self.partial = bytearray(data[int(newlines[-1]) + 1 :])
        else:
            self.partial += data
        self.partial_opens = tail_opens

    def _first_value(self, data: bytes) -> None:
        """The stream's first value must be an object: pyarrow's JSON reader crashes the
        process (a segfault, pyarrow 2x) on a stream whose first value is `null`, and no other
        first value makes a table."""
        first = data.lstrip(b" \t\r\n")
        if not first:
            return  # only blank so far
        self.first_seen = True
        if first[:1] != b"{":
            line = self.lines() + data[: len(data) - len(first)].count(b"\n") + 1
            raise DataInputError(
                f"{self.name}: line {line:,} is not a JSON object; every JSON Lines row is one",
                line=line,
                row=line - 1,
                hint='each line holds one row as {"column": value, ...}',
            )

    def _exact(self, data: bytes) -> None:
        """Measure the lines of `data` (which starts at the start of a line)."""
        import numpy as np

        raw = np.frombuffer(data, dtype=np.uint8)
        n = len(raw)
        index = np.arange(n, dtype=np.int64)
        newline = raw == 10
        # the run of backslashes right before each byte
        last_other = np.maximum.accumulate(np.where(raw == 92, -1, index))
        before = np.zeros(n, dtype=np.int64)
        before[1:] = index[:-1] - last_other[:-1]
        quote = (raw == 34) & (before % 2 == 0)
        # a byte is inside a string when an odd number of its line's quotes precede it
        # counts up to and including the newline that starts each byte's line (0 on the first)
        line_start = np.maximum.accumulate(np.where(newline, index, -1)) + 1
        quotes = np.concatenate(([0], np.cumsum(quote, dtype=np.int64)))
        opened = quotes[1:] - quote - quotes[line_start]
        outside = (opened % 2 == 0) & ~quote
        step = np.zeros(n, dtype=np.int64)
        step[outside & ((raw == 91) | (raw == 123))] = 1
        step[outside & ((raw == 93) | (raw == 125))] = -1
        levels = np.concatenate(([0], np.cumsum(step)))
        deep = np.flatnonzero(levels[1:] - levels[line_start] > self.limit)
        if len(deep):
            line = self.lines() + int(np.count_nonzero(newline[: int(deep[0])])) + 1
            raise DataInputError(
                f"{self.name}: line {line:,} nests JSON deeper than {self.limit} levels",
                kind="limit",
                line=line,
                row=line - 1,
                hint="a table's cell is not nested this deep; flatten the data",
            )
