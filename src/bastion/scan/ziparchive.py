"""A hardened zip reader that reads archives the way model loaders do.

PyTorch (miniz) trusts the central directory, ignores CRCs and does not compare local and central
names; Python's zipfile raises on those differences, which scanners built on it turn into silent
passes. This reader lists every central-directory entry (duplicates included), reads each member
through its local header, never trusts declared sizes beyond the file, and bounds inflation."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO

from bastion.errors import LimitExceeded
from bastion.records import Record
from bastion.scan.source import CorruptInput, SliceReader

EOCD_SIG = b"PK\x05\x06"
ZIP64_LOCATOR_SIG = b"PK\x06\x07"
ZIP64_EOCD_SIG = b"PK\x06\x06"
CENTRAL_SIG = b"PK\x01\x02"
LOCAL_SIG = b"PK\x03\x04"


class ZipFormatError(CorruptInput):
    pass


class ZipEntry(Record):
    name: str
    raw_name: bytes
    method: int
    flags: int
    compressed_size: int
    size: int
    header_offset: int
    external_attr: int
    create_system: int
    crc: int

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & 0x1)

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")

    @property
    def is_symlink(self) -> bool:
        return self.create_system == 3 and (self.external_attr >> 16) & 0o170000 == 0o120000


class ZipDirectory(Record):
    entries: tuple[ZipEntry, ...]
    prefix_bytes: int  # bytes before the first local header (self-extractor or polyglot)
    truncated_listing: bool
    comment: bytes


# The two readers model files are loaded with. They resolve the end records differently, so
# one archive can hold two different sets of members (one for each reader).
ZIPFILE = "zipfile"  # Python's zipfile (numpy's npz, keras, joblib-in-zip, most tools)
MINIZ = "miniz"  # PyTorch's PyTorchFileReader (torch.load, torch.jit.load)
DIALECTS = (ZIPFILE, MINIZ)
READER_NAMES = {ZIPFILE: "Python's zipfile", MINIZ: "PyTorch's reader (miniz)"}
_EOCD, _Z64_LOCATOR, _Z64_RECORD, _CENTRAL = 22, 20, 56, 46


def _find_eocd(handle: BinaryIO, size: int, dialect: str) -> tuple[int, bytes]:
    window = min(size, 65_535 + _EOCD)
    handle.seek(size - window)
    tail = handle.read(window)
    if dialect == ZIPFILE:
        # zipfile: the last 22 bytes when they are a comment-less record, else the last
        # signature in the window, which must leave room for a record
        if tail[-_EOCD : -_EOCD + 4] == EOCD_SIG and tail[-2:] == b"\x00\x00":
            pos = len(tail) - _EOCD
        else:
            pos = tail.rfind(EOCD_SIG)
            if pos >= 0 and len(tail) - pos < _EOCD:
                raise ZipFormatError("truncated end-of-central-directory record")
    else:
        # miniz: the last signature that leaves room for a record
        pos = tail.rfind(EOCD_SIG)
        while pos >= 0 and len(tail) - pos < _EOCD:
            pos = tail.rfind(EOCD_SIG, 0, pos)
    if pos < 0:
        raise ZipFormatError("no end-of-central-directory record")
    return size - window + pos, tail[pos:]


class _EndValues(Record):
    total: int
    cd_size: int
    cd_offset: int
    zip64: bool


def _end_values(
    handle: BinaryIO, size: int, eocd_offset: int, record: bytes, dialect: str
) -> _EndValues:
    (_sig, disk, cd_disk, on_disk, total, cd_size, cd_offset, _comment_len) = struct.unpack(
        "<4sHHHHIIH", record[:_EOCD]
    )
    locator = b""
    if eocd_offset >= _Z64_LOCATOR + _Z64_RECORD:
        handle.seek(eocd_offset - _Z64_LOCATOR)
        locator = handle.read(_Z64_LOCATOR)
    if locator[:4] != ZIP64_LOCATOR_SIG:
        if dialect == MINIZ and (total != on_disk or disk or cd_disk):
            raise ZipFormatError("multi-disk archive")
        return _EndValues(total=total, cd_size=cd_size, cd_offset=cd_offset, zip64=False)
    _lsig, locator_disk, record_offset, disks = struct.unpack("<4sIQI", locator)
    if dialect == ZIPFILE:
        # zipfile reads the zip64 record right before its locator, and falls back to the
        # plain record when there is none there
        if locator_disk != 0 or disks > 1:
            raise ZipFormatError("zipfiles that span multiple disks are not supported")
        record_offset = eocd_offset - _Z64_LOCATOR - _Z64_RECORD
    else:
        # PyTorch's miniz reads it where the locator points
        if record_offset > size - _Z64_RECORD:
            raise ZipFormatError("zip64 locator points outside the file")
        if disks != 1:
            raise ZipFormatError("multi-disk zip64 archive")
    handle.seek(record_offset)
    z64 = handle.read(_Z64_RECORD)
    if len(z64) < _Z64_RECORD or z64[:4] != ZIP64_EOCD_SIG:
        if dialect == MINIZ:
            raise ZipFormatError("no zip64 end record where the locator points")
        return _EndValues(total=total, cd_size=cd_size, cd_offset=cd_offset, zip64=False)
    (
        _zsig,
        record_size,
        _made,
        _needed,
        disk64,
        cd_disk64,
        on_disk64,
        total64,
        cd_size64,
        cd_offset64,
    ) = struct.unpack("<4sQHHIIQQQQ", z64)
    if dialect == MINIZ and (
        record_size < _Z64_RECORD - 12
        or total64 != on_disk64
        or disk64
        or cd_disk64
        or cd_size64 > 0xFFFFFFFF
    ):
        raise ZipFormatError("zip64 end record miniz rejects")
    return _EndValues(total=total64, cd_size=cd_size64, cd_offset=cd_offset64, zip64=True)


def read_directory(
    handle: BinaryIO, size: int, max_members: int, dialect: str = ZIPFILE
) -> ZipDirectory:
    """The members `dialect`'s reader sees (see ZIPFILE and MINIZ)."""
    eocd_offset, record = _find_eocd(handle, size, dialect)
    comment = record[_EOCD : _EOCD + struct.unpack("<H", record[20:22])[0]]
    end = _end_values(handle, size, eocd_offset, record, dialect)
    total, cd_size, cd_offset, zip64 = end.total, end.cd_size, end.cd_offset, end.zip64
    if dialect == ZIPFILE:
        # data prepended to the archive shifts every offset (zipfile's "concat"); the central
        # directory is read from just before the end records, wherever cd_offset says
        prefix = eocd_offset - cd_size - cd_offset - (_Z64_LOCATOR + _Z64_RECORD if zip64 else 0)
        start = cd_offset + prefix
        if start < 0:
            raise ZipFormatError("bad offset for central directory")
    else:
        prefix, start = 0, cd_offset
        if cd_size < total * _CENTRAL or cd_offset + cd_size > size:
            raise ZipFormatError("central directory lies outside the file")
    handle.seek(start)
    directory = handle.read(min(cd_size, size))
    if dialect == ZIPFILE and len(directory) < cd_size:
        raise ZipFormatError("truncated central directory")
    entries: list[ZipEntry] = []
    pos = 0
    truncated = False
    while (pos < cd_size) if dialect == ZIPFILE else (len(entries) < total):
        if len(entries) >= max_members:
            truncated = True
            break
        if pos + _CENTRAL > len(directory) or directory[pos : pos + 4] != CENTRAL_SIG:
            raise ZipFormatError(f"bad central directory entry at byte {start + pos}")
        (
            _sig,
            _create_spec,
            create_system,
            _extract_version,
            flags,
            method,
            _time,
            _date,
            crc,
            csize,
            usize,
            name_len,
            extra_len,
            comment_len,
            _disk_start,
            _internal,
            external,
            offset,
        ) = struct.unpack("<4sBBHHHHHIIIHHHHHII", directory[pos : pos + _CENTRAL])
        end = pos + _CENTRAL + name_len + extra_len + comment_len
        if dialect == MINIZ:
            _miniz_entry_checks(method, flags, csize, usize, offset, size, end > len(directory))
        raw_name = directory[pos + _CENTRAL : pos + _CENTRAL + name_len]
        extra = directory[pos + _CENTRAL + name_len : pos + _CENTRAL + name_len + extra_len]
        csize, usize, offset = _apply_zip64(extra, csize, usize, offset)
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
        entries.append(
            ZipEntry(
                name=name,
                raw_name=raw_name,
                method=method,
                flags=flags,
                compressed_size=csize,
                size=usize,
                header_offset=offset + prefix,
                external_attr=external,
                create_system=create_system,
                crc=crc,
            )
        )
        pos = end
    return ZipDirectory(
        entries=tuple(entries),
        prefix_bytes=max(prefix, 0),
        truncated_listing=truncated,
        comment=comment,
    )


def _miniz_entry_checks(
    method: int, flags: int, csize: int, usize: int, offset: int, size: int, overruns: bool
) -> None:
    """The per-entry checks with which miniz refuses a whole archive."""
    if overruns:
        raise ZipFormatError("central directory entry overruns the directory")
    if (
        csize != 0xFFFFFFFF
        and usize != 0xFFFFFFFF
        and ((method == 0 and csize != usize) or (usize and not csize))
    ):
        raise ZipFormatError("entry sizes miniz rejects")
    if csize != 0xFFFFFFFF and offset + 30 + csize > size:
        raise ZipFormatError("entry data lies outside the file")
    if flags & 0x2000:
        raise ZipFormatError("masked local headers (encrypted central directory)")


def _apply_zip64(extra: bytes, csize: int, usize: int, offset: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack("<HH", extra[pos : pos + 4])
        body = extra[pos + 4 : pos + 4 + length]
        if tag == 0x0001:
            fields = []
            for i in range(0, len(body) - 7, 8):
                fields.append(struct.unpack("<Q", body[i : i + 8])[0])
            values = iter(fields)
            if usize == 0xFFFFFFFF:
                usize = next(values, usize)
            if csize == 0xFFFFFFFF:
                csize = next(values, csize)
            if offset == 0xFFFFFFFF:
                offset = next(values, offset)
        pos += 4 + length
    return csize, usize, offset


class MemberData(Record):
    start: int  # offset of the member's data in the archive
    local_name: bytes


def locate(handle: BinaryIO, size: int, entry: ZipEntry) -> MemberData:
    if entry.header_offset < 0 or entry.header_offset + 30 > size:
        raise ZipFormatError(f"local header of {entry.name!r} lies outside the file")
    handle.seek(entry.header_offset)
    header = handle.read(30)
    if header[:4] != LOCAL_SIG:
        raise ZipFormatError(f"no local header for {entry.name!r}")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    local_name = handle.read(name_len)
    start = entry.header_offset + 30 + name_len + extra_len
    if start + entry.compressed_size > size:
        raise ZipFormatError(f"data of {entry.name!r} runs past the end of the archive")
    return MemberData(start=start, local_name=local_name)


_PIECE = 1 << 20  # most output one decompression step may produce


def _lzma_member(raw: BinaryIO) -> Any:
    """Method 14: zipfile's framing (2-byte version, 2-byte property size, LZMA1 properties),
    then a raw LZMA1 stream."""
    import lzma

    header = raw.read(4)
    if len(header) < 4:
        raise ZipFormatError("truncated LZMA member header")
    props = raw.read(struct.unpack("<H", header[2:4])[0])
    try:
        filters = [lzma._decode_filter_properties(lzma.FILTER_LZMA1, props)]  # type: ignore[attr-defined]
        return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters)
    except (lzma.LZMAError, ValueError) as exc:
        raise ZipFormatError(f"bad LZMA member properties: {exc}") from exc


class _InflatingReader(io.RawIOBase):
    """Streams a compressed member up to its declared size, feeding every compressed byte to
    the decompressor (zlib's `unconsumed_tail` included) and charging what it produces."""

    def __init__(
        self, raw: BinaryIO, method: int, declared: int, charge: Callable[[int], None]
    ) -> None:
        self._raw = raw
        self._charge = charge
        self._declared = declared
        self._produced = 0
        self._pending = b""
        self._zlib = method == 8
        self._errors: tuple[type[Exception], ...] = (zlib.error, OSError, EOFError, ValueError)
        if method == 8:
            self._dec: Any = zlib.decompressobj(-15)
        elif method == 12:
            import bz2

            self._dec = bz2.BZ2Decompressor()
        else:
            import lzma

            self._dec = _lzma_member(raw)
            self._errors += (lzma.LZMAError,)
        self._done = False

    def readable(self) -> bool:
        return True

    def _step(self) -> bytes:
        """The next piece of output; sets _done at the end of the stream or of the input."""
        dec = self._dec
        if dec.eof:
            self._done = True
            return b""
        if self._zlib:
            data = dec.unconsumed_tail or self._raw.read(1 << 16)
        else:
            data = self._raw.read(1 << 16) if dec.needs_input else b""
        if not data and (self._zlib or dec.needs_input):
            self._done = True
            return b""
        out: bytes = dec.decompress(data, _PIECE)
        return out

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self._declared - self._produced)
        while len(self._pending) < want and not self._done:
            try:
                out = self._step()
            except self._errors as exc:
                raise ZipFormatError(f"cannot inflate: {exc}") from exc
            self._charge(len(out))
            self._pending += out
        take = self._pending[:want]
        self._pending = self._pending[want:]
        buffer[: len(take)] = take
        self._produced += len(take)
        return len(take)


class ZipReader:
    """Open members of one archive. `opener` gives fresh handles on the archive bytes.

    `views` holds what each reader (ZIPFILE, MINIZ) lists, `view_errors` why a reader refuses
    the archive; `directory` is every entry of any view (a view's own entries first), so
    scanning it covers what either loader would read."""

    def __init__(self, opener: Callable[[], BinaryIO], size: int, max_members: int) -> None:
        self._opener = opener
        self.size = size
        self.views: dict[str, ZipDirectory] = {}
        self.view_errors: dict[str, ZipFormatError] = {}
        with opener() as handle:
            for dialect in DIALECTS:
                try:
                    self.views[dialect] = read_directory(handle, size, max_members, dialect)
                except ZipFormatError as exc:
                    self.view_errors[dialect] = exc
        if not self.views:
            raise self.view_errors[ZIPFILE]
        self.directory = _union(list(self.views.values()))

    def disagreement(self) -> str | None:
        """How the readers' views differ, or None when they agree."""
        if self.view_errors:
            dialect, error = next(iter(self.view_errors.items()))
            return f"{READER_NAMES[dialect]} refuses the archive ({error})"
        listed = {d: {_identity(e) for e in v.entries} for d, v in self.views.items()}
        only_zipfile = listed[ZIPFILE] - listed[MINIZ]
        only_miniz = listed[MINIZ] - listed[ZIPFILE]
        if not (only_zipfile or only_miniz):
            return None
        names = sorted({e[0].decode("utf-8", "replace") for e in only_zipfile | only_miniz})
        return (
            f"{READER_NAMES[ZIPFILE]} and {READER_NAMES[MINIZ]} see different members "
            f"({len(only_zipfile)} only in one view, {len(only_miniz)} only in the other: "
            f"{', '.join(names[:5])})"
        )

    def locate(self, entry: ZipEntry) -> MemberData:
        with self._opener() as handle:
            return locate(handle, self.size, entry)

    def opener(self, entry: ZipEntry, charge: Callable[[int], None]) -> Callable[[], BinaryIO]:
        """A function returning a fresh readable stream of the member's (inflated) bytes.
        Stored members are seekable windows; compressed ones are spooled on first open."""
        data = self.locate(entry)
        if entry.method == 0:
            length = min(entry.compressed_size, self.size - data.start)
            return lambda: io.BufferedReader(SliceReader(self._opener, data.start, length))
        if entry.method not in (8, 12, 14):
            raise ZipFormatError(f"unsupported compression method {entry.method}")
        cache: list[bytes] = []

        def open_inflated() -> BinaryIO:
            if not cache:
                raw = io.BufferedReader(
                    SliceReader(self._opener, data.start, entry.compressed_size)
                )
                try:
                    reader = _InflatingReader(raw, entry.method, entry.size, charge)
                    cache.append(io.BufferedReader(reader).read())
                except (zlib.error, OSError, EOFError, ValueError) as exc:
                    raise ZipFormatError(f"cannot inflate {entry.name!r}: {exc}") from exc
                finally:
                    raw.close()
            return io.BytesIO(cache[0])

        return open_inflated


def _identity(entry: ZipEntry) -> tuple[bytes, int, int, int, int, int]:
    return (
        entry.raw_name,
        entry.header_offset,
        entry.method,
        entry.flags,
        entry.compressed_size,
        entry.size,
    )


def _union(views: list[ZipDirectory]) -> ZipDirectory:
    first = views[0]
    seen = {_identity(e) for e in first.entries}
    entries = list(first.entries)
    for view in views[1:]:
        for entry in view.entries:
            if _identity(entry) not in seen:
                seen.add(_identity(entry))
                entries.append(entry)
    return ZipDirectory(
        entries=tuple(entries),
        prefix_bytes=first.prefix_bytes,
        truncated_listing=any(v.truncated_listing for v in views),
        comment=first.comment,
    )


def member_name_problem(name: str) -> str | None:
    """Why extracting this name would escape the target folder, or None."""
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        return "absolute path"
    parts = normalised.split("/")
    if ".." in parts:
        return "parent-directory traversal"
    if "\x00" in name:
        return "NUL byte in name"
    return None


__all__ = [
    "MINIZ",
    "ZIPFILE",
    "LimitExceeded",
    "ZipEntry",
    "ZipFormatError",
    "ZipReader",
    "member_name_problem",
]
