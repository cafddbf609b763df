"""Build zip archives byte by byte for differential tests: every record is written as asked,
so tests can make the readers (Python's zipfile, miniz in PyTorch, bastion) disagree."""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple


class Member(NamedTuple):
    name: bytes
    data: bytes  # what the member holds (before compression)
    method: int = 0  # 0 stored, 8 deflate
    flags: int = 0
    crc: int | None = None  # default: the right CRC
    local_name: bytes | None = None  # default: same as name

    def stored(self) -> bytes:
        if self.method == 8:
            compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
            return compressor.compress(self.data) + compressor.flush()
        return self.data

    def checksum(self) -> int:
        return zlib.crc32(self.data) if self.crc is None else self.crc


def local_header(member: Member, payload: bytes) -> bytes:
    name = member.name if member.local_name is None else member.local_name
    return (
        struct.pack(
            "<4sHHHHHIIIHH",
            b"PK\x03\x04",
            20,
            member.flags,
            member.method,
            0,
            0x21,
            member.checksum(),
            len(payload),
            len(member.data),
            len(name),
            0,
        )
        + name
    )


def central_header(member: Member, payload: bytes, offset: int) -> bytes:
    return (
        struct.pack(
            "<4sBBHHHHHIIIHHHHHII",
            b"PK\x01\x02",
            20,
            3,
            20,
            member.flags,
            member.method,
            0,
            0x21,
            member.checksum(),
            len(payload),
            len(member.data),
            len(member.name),
            0,
            0,
            0,
            0,
            0o100644 << 16,
            offset,
        )
        + member.name
    )


def end_record(total: int, cd_size: int, cd_offset: int, comment: bytes = b"") -> bytes:
    return (
        struct.pack(
            "<4sHHHHIIH", b"PK\x05\x06", 0, 0, total, total, cd_size, cd_offset, len(comment)
        )
        + comment
    )


def zip64_end_record(total: int, cd_size: int, cd_offset: int) -> bytes:
    return struct.pack(
        "<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, total, total, cd_size, cd_offset
    )


def zip64_locator(record_offset: int, disks: int = 1) -> bytes:
    return struct.pack("<4sIQI", b"PK\x06\x07", 0, record_offset, disks)


class Built(NamedTuple):
    data: bytes  # local headers and data
    directory: bytes  # central directory
    count: int


def members_and_directory(members: list[Member], base: int = 0) -> Built:
    """Local records (offsets counted from `base`) and their central directory."""
    body = b""
    directory = b""
    for member in members:
        payload = member.stored()
        offset = base + len(body)
        body += local_header(member, payload) + payload
        directory += central_header(member, payload, offset)
    return Built(body, directory, len(members))


def simple_zip(members: list[Member], prefix: bytes = b"", comment: bytes = b"") -> bytes:
    built = members_and_directory(members, 0)
    return (
        prefix
        + built.data
        + built.directory
        + end_record(built.count, len(built.directory), len(built.data), comment)
    )
