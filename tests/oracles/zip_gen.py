"""A seeded generator of zip archives built byte by byte, to compare what Python's zipfile and
miniz (PyTorch's reader) return with what bastion scans: stored and deflated members, zip64
records, duplicate names, data descriptors, wrong CRCs, bytes before and after the archive,
several end records (and a zip64 locator that points elsewhere than the record before it),
and members whose payload sits after megabytes of padding.

Every physical entry holds a pickle naming its own global, ORACLE_MODULE.e<index>, so which
entry a reader returned can be told from its bytes."""

from __future__ import annotations

import pickle
import random
import struct
import zlib
from typing import NamedTuple

ORACLE_MODULE = "oracle_zip"
PREFIX = "archive/"  # PyTorch's reader wants every record under one folder


def member_pickle(index: int, padding: int = 0) -> bytes:
    """A pickle that calls ORACLE_MODULE.e<index>; `padding` zero bytes held in a BINBYTES
    before the call push the payload past the first megabytes of the member."""
    head = pickle.PROTO + b"\x02"
    if padding:
        head += pickle.BINBYTES + struct.pack("<I", padding) + bytes(padding) + pickle.POP
    call = f"c{ORACLE_MODULE}\ne{index}\n".encode() + pickle.EMPTY_TUPLE + pickle.REDUCE
    return head + call + pickle.STOP


class Entry(NamedTuple):
    name: str
    data: bytes
    deflate: bool
    descriptor: bool  # sizes and CRC after the data (flag bit 3)
    zip64: bool
    bad_crc: bool
    local_name: str  # the name in the local header (normally the same)


def _local(entry: Entry, payload: bytes, crc: int) -> bytes:
    flags = 0x08 if entry.descriptor else 0
    method = 8 if entry.deflate else 0
    name = entry.local_name.encode()
    extra = b""
    csize, usize, head_crc = len(payload), len(entry.data), crc
    if entry.descriptor:
        csize = usize = head_crc = 0
    if entry.zip64:
        extra = struct.pack("<HHQQ", 1, 16, usize, csize)
        csize = usize = 0xFFFFFFFF
    header = struct.pack(
        "<4sHHHHHIIIHH",
        b"PK\x03\x04",
        45 if entry.zip64 else 20,
        flags,
        method,
        0,
        0x21,
        head_crc,
        csize,
        usize,
        len(name),
        len(extra),
    )
    out = header + name + extra + payload
    if entry.descriptor:
        if entry.zip64:
            out += struct.pack("<4sIQQ", b"PK\x07\x08", crc, len(payload), len(entry.data))
        else:
            out += struct.pack("<4sIII", b"PK\x07\x08", crc, len(payload), len(entry.data))
    return out


def _central(entry: Entry, payload: bytes, crc: int, offset: int) -> bytes:
    flags = 0x08 if entry.descriptor else 0
    method = 8 if entry.deflate else 0
    name = entry.name.encode()
    csize, usize, off = len(payload), len(entry.data), offset
    extra = b""
    if entry.zip64:
        extra = struct.pack("<HHQQQ", 1, 24, usize, csize, offset)
        csize = usize = off = 0xFFFFFFFF
    return (
        struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            b"PK\x01\x02",
            45,
            45 if entry.zip64 else 20,
            flags,
            method,
            0,
            0x21,
            crc,
            csize,
            usize,
            len(name),
            len(extra),
            0,
            0,
            0,
            0,
            off,
        )
        + name
        + extra
    )


def _eocd(count: int, cd_size: int, cd_offset: int, zip64: bool, comment: bytes = b"") -> bytes:
    if zip64:
        return (
            struct.pack(
                "<4sHHHHIIH",
                b"PK\x05\x06",
                0,
                0,
                0xFFFF,
                0xFFFF,
                0xFFFFFFFF,
                0xFFFFFFFF,
                len(comment),
            )
            + comment
        )
    return (
        struct.pack(
            "<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, cd_size, cd_offset, len(comment)
        )
        + comment
    )


def _zip64_end(count: int, cd_size: int, cd_offset: int) -> bytes:
    return struct.pack(
        "<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, cd_size, cd_offset
    )


def _locator(record_offset: int) -> bytes:
    return struct.pack("<4sIQI", b"PK\x06\x07", 0, record_offset, 1)


def _payload(entry: Entry) -> tuple[bytes, int]:
    crc = zlib.crc32(entry.data)
    if entry.deflate:
        packer = zlib.compressobj(6, zlib.DEFLATED, -15)
        payload = packer.compress(entry.data) + packer.flush()
    else:
        payload = entry.data
    return payload, (crc ^ 0x5A5A5A5A) if entry.bad_crc else crc


def build(
    entries: list[Entry],
    *,
    prefix: bytes = b"",
    suffix: bytes = b"",
    zip64_end: bool = False,
    split_zip64: list[Entry] | None = None,
    extra_end: bool = False,
) -> bytes:
    """Lay out the archive. `split_zip64`: a second central directory that a zip64 locator
    points at, while the zip64 record just before the locator (the one Python's zipfile
    reads) describes the first one. `extra_end`: a stray end record (and its own small
    central directory of the first entry) before the real one."""
    out = bytearray(prefix)
    centrals = []
    for entry in [*entries, *(split_zip64 or [])]:
        payload, crc = _payload(entry)
        centrals.append(_central(entry, payload, crc, len(out) - len(prefix)))
        out += _local(entry, payload, crc)
    first = centrals[: len(entries)]
    if extra_end:
        stray_at = len(out) - len(prefix)
        out += first[0]
        out += _eocd(1, len(first[0]), stray_at, False)
    cd_offset = len(out) - len(prefix)
    cd = b"".join(first)
    out += cd
    if split_zip64 is not None:
        other_at = len(out) - len(prefix)
        other = b"".join(centrals[len(entries) :])
        out += other
        other_record = len(out) - len(prefix)
        out += _zip64_end(len(split_zip64), len(other), other_at)
        out += _zip64_end(len(entries), len(cd), cd_offset)
        out += _locator(other_record)
        out += _eocd(len(entries), len(cd), cd_offset, True)
    elif zip64_end:
        record = len(out) - len(prefix)
        out += _zip64_end(len(entries), len(cd), cd_offset)
        out += _locator(record)
        out += _eocd(len(entries), len(cd), cd_offset, True)
    else:
        out += _eocd(len(entries), len(cd), cd_offset, False)
    return bytes(out) + suffix


class Archive(NamedTuple):
    data: bytes
    features: tuple[str, ...]  # what the generator put in (for reading failures)


def generate(seed: int) -> Archive:
    rng = random.Random(seed)
    counter = iter(range(1_000))

    def entry(name: str, padding: int = 0) -> Entry:
        # the version record is what PyTorch's reader parses first; the others hold pickles
        data = b"3\n" if name.endswith("/version") else member_pickle(next(counter), padding)
        deflate = rng.random() < 0.6 or padding > 0
        return Entry(
            name,
            data,
            deflate,
            rng.random() < 0.25,
            rng.random() < 0.2,
            rng.random() < 0.1,
            name if rng.random() < 0.9 else name + ".local",
        )

    names = [PREFIX + "data.pkl", PREFIX + "version"]
    names += [PREFIX + f"m{k}.pkl" for k in range(rng.randrange(0, 3))]
    if rng.random() < 0.3:
        names.append(rng.choice(names))  # duplicate name
    padded = rng.random() < 0.04
    entries = [
        entry(name, rng.choice((5, 9)) << 20 if padded and i == 0 else 0)
        for i, name in enumerate(names)
    ]
    prefix = bytes(rng.randrange(1, 64)) if rng.random() < 0.15 else b""
    suffix = b""
    if rng.random() < 0.15:
        suffix = rng.choice((bytes(rng.randrange(1, 64)), b"PK\x05\x06" + bytes(18)))
    split = None
    if rng.random() < 0.15:
        split = [entry(PREFIX + "data.pkl"), entry(PREFIX + "version")]
    zip64_end, extra_end = rng.random() < 0.25, rng.random() < 0.1
    data = build(
        entries,
        prefix=prefix,
        suffix=suffix,
        zip64_end=zip64_end,
        split_zip64=split,
        extra_end=extra_end,
    )
    every = [*entries, *(split or [])]
    flags = {
        "bytes-before": bool(prefix),
        "bytes-after": bool(suffix) and suffix[:2] != b"PK",
        "end-record-after": suffix[:2] == b"PK",
        "zip64-end": zip64_end,
        "zip64-locator-elsewhere": split is not None,
        "stray-end-record": extra_end,
        "duplicate-name": len(set(names)) < len(names),
        "padding": padded,
        "data-descriptor": any(e.descriptor for e in every),
        "zip64-entry": any(e.zip64 for e in every),
        "bad-crc": any(e.bad_crc for e in every),
        "local-name-differs": any(e.local_name != e.name for e in every),
        "deflated": any(e.deflate for e in every),
    }
    return Archive(data, tuple(sorted(k for k, v in flags.items() if v)))
