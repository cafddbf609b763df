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
from typing import Any, BinaryIO, NamedTuple

from bastion.errors import LimitExceeded
from bastion.scan.source import CorruptInput, SliceReader

EOCD_SIG = b"PK\x05\x06"
ZIP64_LOCATOR_SIG = b"PK\x06\x07"
ZIP64_EOCD_SIG = b"PK\x06\x06"
CENTRAL_SIG = b"PK\x01\x02"
LOCAL_SIG = b"PK\x03\x04"


class ZipFormatError(CorruptInput):
    pass


class ZipEntry(NamedTuple):
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


class ZipDirectory(NamedTuple):
    entries: tuple[ZipEntry, ...]
    prefix_bytes: int  # bytes before the first local header (self-extractor or polyglot)
    truncated_listing: bool
    comment: bytes


def _find_eocd(handle: BinaryIO, size: int) -> tuple[int, bytes]:
    window = min(size, 65_535 + 22)
    handle.seek(size - window)
    tail = handle.read(window)
    pos = tail.rfind(EOCD_SIG)
    while pos >= 0 and len(tail) - pos < 22:
        pos = tail.rfind(EOCD_SIG, 0, pos)
    if pos < 0:
        raise ZipFormatError("no end-of-central-directory record")
    return size - window + pos, tail[pos:]


def read_directory(handle: BinaryIO, size: int, max_members: int) -> ZipDirectory:
    eocd_offset, record = _find_eocd(handle, size)
    (_sig, _disk, _cd_disk, _n_disk, total, cd_size, cd_offset,
     comment_len) = struct.unpack("<4sHHHHIIH", record[:22])
    comment = record[22:22 + comment_len]
    cd_end = eocd_offset
    locator = b""
    if eocd_offset >= 20:
        handle.seek(eocd_offset - 20)
        locator = handle.read(20)
    if locator[:4] == ZIP64_LOCATOR_SIG:
        # like zipfile: the zip64 record is read right before its locator
        handle.seek(eocd_offset - 20 - 56)
        z64 = handle.read(56)
        if z64[:4] != ZIP64_EOCD_SIG:
            raise ZipFormatError("bad zip64 end-of-central-directory record")
        total, cd_size, cd_offset = struct.unpack("<QQQ", z64[32:56])
        cd_end = eocd_offset - 20 - 56
    elif total == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
        raise ZipFormatError("zip64 markers without a zip64 locator")
    # Data prepended to the archive shifts every offset (zipfile's "concat" logic).
    prefix = cd_end - cd_size - cd_offset
    if prefix < 0 or cd_size > size:
        raise ZipFormatError("central directory lies outside the file")
    handle.seek(cd_offset + prefix)
    directory = handle.read(cd_size)
    entries: list[ZipEntry] = []
    pos = 0
    truncated = False
    while pos + 46 <= len(directory):
        if directory[pos:pos + 4] != CENTRAL_SIG:
            break
        if len(entries) >= max_members:
            truncated = True
            break
        (_sig, _create_spec, create_system, _extract_version, flags, method, _time, _date, crc,
         csize, usize, name_len, extra_len, comment_len, _disk_start, _internal, external,
         offset) = struct.unpack("<4sBBHHHHHIIIHHHHHII", directory[pos:pos + 46])
        raw_name = directory[pos + 46:pos + 46 + name_len]
        extra = directory[pos + 46 + name_len:pos + 46 + name_len + extra_len]
        csize, usize, offset = _apply_zip64(extra, csize, usize, offset)
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
        entries.append(ZipEntry(name, raw_name, method, flags, csize, usize, offset + prefix,
                                external, create_system, crc))
        pos += 46 + name_len + extra_len + comment_len
    if len(entries) < total and not truncated and total != 0xFFFF:
        raise ZipFormatError(f"central directory lists {len(entries)} of {total} entries")
    return ZipDirectory(tuple(entries), prefix, truncated, comment)


def _apply_zip64(extra: bytes, csize: int, usize: int, offset: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack("<HH", extra[pos:pos + 4])
        body = extra[pos + 4:pos + 4 + length]
        if tag == 0x0001:
            fields = []
            for i in range(0, len(body) - 7, 8):
                fields.append(struct.unpack("<Q", body[i:i + 8])[0])
            values = iter(fields)
            if usize == 0xFFFFFFFF:
                usize = next(values, usize)
            if csize == 0xFFFFFFFF:
                csize = next(values, csize)
            if offset == 0xFFFFFFFF:
                offset = next(values, offset)
        pos += 4 + length
    return csize, usize, offset


class MemberData(NamedTuple):
    start: int  # offset of the member's data in the archive
    local_name: bytes


def locate(handle: BinaryIO, size: int, entry: ZipEntry) -> MemberData:
    if entry.header_offset + 30 > size:
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
    return MemberData(start, local_name)


class _InflatingReader(io.RawIOBase):
    """Streams a compressed member, stopping at the declared size and at `budget` bytes."""

    def __init__(self, raw: BinaryIO, method: int, declared: int,
                 charge: Callable[[int], None]) -> None:
        self._raw = raw
        self._charge = charge
        self._declared = declared
        self._produced = 0
        self._pending = b""
        if method == 8:
            self._dec: Any = zlib.decompressobj(-15)
        else:
            import bz2

            self._dec = bz2.BZ2Decompressor()
        self._zlib = method == 8
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self._declared - self._produced)
        while len(self._pending) < want and not self._eof:
            chunk = self._raw.read(1 << 16)
            if not chunk:
                self._eof = True
                break
            if self._zlib:
                out = self._dec.decompress(chunk, max(want, 1 << 16))
                while self._dec.unconsumed_tail and len(out) < (1 << 22):
                    out += self._dec.decompress(self._dec.unconsumed_tail, 1 << 16)
            else:
                out = self._dec.decompress(chunk)
            self._charge(len(out))
            self._pending += out
        take = self._pending[:want]
        self._pending = self._pending[want:]
        buffer[: len(take)] = take
        self._produced += len(take)
        return len(take)


class ZipReader:
    """Open members of one archive. `opener` gives fresh handles on the archive bytes."""

    def __init__(self, opener: Callable[[], BinaryIO], size: int, max_members: int) -> None:
        self._opener = opener
        self.size = size
        with opener() as handle:
            self.directory = read_directory(handle, size, max_members)

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
        if entry.method not in (8, 12):
            raise ZipFormatError(f"unsupported compression method {entry.method}")
        cache: list[bytes] = []

        def open_inflated() -> BinaryIO:
            if not cache:
                raw = io.BufferedReader(SliceReader(self._opener, data.start,
                                                    entry.compressed_size))
                try:
                    reader = _InflatingReader(raw, entry.method, entry.size, charge)
                    cache.append(io.BufferedReader(reader).read())
                except (zlib.error, OSError, EOFError) as exc:
                    raise ZipFormatError(f"cannot inflate {entry.name!r}: {exc}") from exc
                finally:
                    raw.close()
            return io.BytesIO(cache[0])

        return open_inflated


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


__all__ = ["LimitExceeded", "ZipEntry", "ZipFormatError", "ZipReader", "member_name_problem"]
