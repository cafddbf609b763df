"""The HDF5 superblock, checked before libhdf5 is given the file. libhdf5 trusts the addresses
and sizes it finds there, and on a corrupt superblock it can fail deep inside C or, on some
corruptions (all-ones addresses found by the fuzzer), not return at all, which nothing in the
scanning process can interrupt. This bounded reader checks what libhdf5 itself would reject or
mis-handle, from the HDF5 File Format Specification (section II.A, superblock versions 0-3):

* the signature, at byte 0 or a power of two from 512 on (after a user block), as libhdf5
  looks for it;
* every version field (superblock 0-3; free-space, root symbol table entry and shared header
  message versions 0 in versions 0/1), the sizes of offsets and lengths (2, 4, 8, 16 or 32),
  the B-tree ranks (non-zero);
* the base address (at most the superblock's own position: libhdf5 moves the base to the
  superblock and shifts the end-of-file address by the difference), the end-of-file address
  against the real file size (libhdf5 calls a file that ends earlier truncated), and every
  address the superblock holds — root group object header (required), superblock extension,
  free-space info, driver information block — defined only inside the file, after the
  superblock;
* the lookup3 checksum of versions 2 and 3.

It reads at most MAX_PROBES signatures and one superblock (under 200 bytes)."""

from __future__ import annotations

import struct
from typing import BinaryIO, NamedTuple

SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAX_PROBES = 40  # byte 0, then 512 * 2**k: up to 2**48, beyond any real user block
SIZES = (2, 4, 8, 16, 32)
_MASK = 0xFFFFFFFF


class Superblock(NamedTuple):
    offset: int  # where the signature was found (the end of any user block)
    version: int
    size_of_offsets: int
    size_of_lengths: int
    base: int
    end: int  # absolute end of the HDF5 data, as libhdf5 computes it from the stored EOF
    root: int  # absolute address of the root group's object header


class BadSuperblock(Exception):
    """The superblock is missing, or libhdf5 must not be given it (the message says why)."""


def read_superblock(handle: BinaryIO, size: int) -> Superblock:
    """The superblock of the HDF5 file in `handle` (`size` bytes), or BadSuperblock."""
    offset = _find_signature(handle, size)
    handle.seek(offset)
    head = handle.read(16)
    if len(head) < 16:
        raise BadSuperblock("superblock truncated")
    version = head[8]
    if version in (0, 1):
        return _version_0_1(handle, offset, size, head)
    if version in (2, 3):
        return _version_2_3(handle, offset, size, head)
    raise BadSuperblock(f"unknown superblock version {version}")


def _find_signature(handle: BinaryIO, size: int) -> int:
    offset = 0
    for _ in range(MAX_PROBES):
        if offset + len(SIGNATURE) > size:
            break
        handle.seek(offset)
        if handle.read(len(SIGNATURE)) == SIGNATURE:
            return offset
        offset = 512 if offset == 0 else offset * 2
    raise BadSuperblock("no HDF5 superblock signature at byte 0 or after a user block")


def _sizes(offsets: int, lengths: int) -> None:
    if offsets not in SIZES or lengths not in SIZES:
        raise BadSuperblock(f"sizes of offsets/lengths {offsets}/{lengths} (not 2, 4, 8, 16, 32)")


def _read(handle: BinaryIO, count: int) -> bytes:
    data = handle.read(count)
    if len(data) < count:
        raise BadSuperblock("superblock truncated")
    return data


def _addresses(data: bytes, width: int) -> list[int | None]:
    """Little-endian addresses of `width` bytes; all ones is HDF5's undefined address."""
    undefined = (1 << (8 * width)) - 1
    out: list[int | None] = []
    for at in range(0, len(data), width):
        value = int.from_bytes(data[at : at + width], "little")
        out.append(None if value == undefined else value)
    return out


def _version_0_1(handle: BinaryIO, offset: int, size: int, head: bytes) -> Superblock:
    version, free_space, root_entry, _reserved, shared_header, offsets, lengths = head[8:15]
    if (free_space, root_entry, shared_header) != (0, 0, 0):
        raise BadSuperblock(
            f"free-space/root entry/shared header versions {free_space}/{root_entry}/"
            f"{shared_header} (only 0 exists)"
        )
    _sizes(offsets, lengths)
    ranks = _read(handle, 8 + (4 if version == 1 else 0))
    leaf_k, internal_k = struct.unpack_from("<HH", ranks)
    storage_k = struct.unpack_from("<H", ranks, 8)[0] if version == 1 else 1
    if not (leaf_k and internal_k and storage_k):
        raise BadSuperblock("B-tree rank 0 in the superblock")
    # base, free-space info, end of file, driver info; then the root group's symbol table
    # entry: link name offset, object header address, cache type (4), reserved (4), scratch (16)
    fields = _read(handle, 6 * offsets + 24)
    base, free_space_at, eof, driver_at, _name, root = _addresses(fields[: 6 * offsets], offsets)
    cache_type = struct.unpack_from("<I", fields, 6 * offsets)[0]
    if cache_type > 2:
        raise BadSuperblock(f"root symbol table entry cache type {cache_type} (0-2 exist)")
    length = 16 + len(ranks) + len(fields)
    block = _place(offset, size, base, eof, length, version, offsets, lengths)
    for name, address in (("free-space info", free_space_at), ("driver information", driver_at)):
        if address is not None:
            _inside(block, name, address)
    return block._replace(root=_inside(block, "root group object header", root))


def _version_2_3(handle: BinaryIO, offset: int, size: int, head: bytes) -> Superblock:
    version, offsets, lengths = head[8], head[9], head[10]
    _sizes(offsets, lengths)
    # signature, versions/sizes/flags (4); base, extension, end of file, root object header;
    # checksum (4)
    addresses_end = 12 + 4 * offsets
    handle.seek(offset)
    body = _read(handle, addresses_end + 4)
    if lookup3(body[:addresses_end]) != int.from_bytes(body[addresses_end:], "little"):
        raise BadSuperblock("superblock checksum does not match")
    base, extension, eof, root = _addresses(body[12:addresses_end], offsets)
    block = _place(offset, size, base, eof, len(body), version, offsets, lengths)
    if extension is not None:
        _inside(block, "superblock extension", extension)
    return block._replace(root=_inside(block, "root group object header", root))


def _place(
    offset: int,
    size: int,
    base: int | None,
    eof: int | None,
    length: int,
    version: int,
    offsets: int,
    lengths: int,
) -> Superblock:
    """Check the base and end-of-file addresses as libhdf5 uses them (H5F__super_read)."""
    if base is None or base > offset:
        shown = "undefined" if base is None else base
        raise BadSuperblock(f"base address {shown} beyond the superblock at byte {offset}")
    if eof is None:
        raise BadSuperblock("end-of-file address undefined")
    end = eof + (offset - base)  # libhdf5 moves the base to the superblock, and the EOF with it
    if end > size:
        raise BadSuperblock(f"end-of-file address {end} beyond the file's {size} bytes")
    if end < offset + length:
        raise BadSuperblock(f"end-of-file address {end} inside the superblock")
    return Superblock(offset, version, offsets, lengths, base, end, 0)


def _inside(block: Superblock, name: str, address: int | None) -> int:
    """The absolute position of a superblock address, which must be after the superblock and
    inside the file's data."""
    if address is None:
        raise BadSuperblock(f"{name} address undefined")
    at = block.offset + address
    if at >= block.end:
        raise BadSuperblock(f"{name} address {address} beyond the end of the file")
    return at


def _rot(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (32 - shift))) & _MASK


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 hashlittle, the checksum of HDF5 metadata (H5_checksum_lookup3)."""
    a = b = c = (0xDEADBEEF + len(data) + initval) & _MASK
    at, left = 0, len(data)
    while left > 12:
        x, y, z = struct.unpack_from("<III", data, at)
        a, b, c = (a + x) & _MASK, (b + y) & _MASK, (c + z) & _MASK
        a = ((a - c) & _MASK) ^ _rot(c, 4)
        c = (c + b) & _MASK
        b = ((b - a) & _MASK) ^ _rot(a, 6)
        a = (a + c) & _MASK
        c = ((c - b) & _MASK) ^ _rot(b, 8)
        b = (b + a) & _MASK
        a = ((a - c) & _MASK) ^ _rot(c, 16)
        c = (c + b) & _MASK
        b = ((b - a) & _MASK) ^ _rot(a, 19)
        a = (a + c) & _MASK
        c = ((c - b) & _MASK) ^ _rot(b, 4)
        b = (b + a) & _MASK
        at, left = at + 12, left - 12
    if left == 0:
        return c
    x, y, z = struct.unpack_from("<III", data[at:] + bytes(12 - left))
    a, b, c = (a + x) & _MASK, (b + y) & _MASK, (c + z) & _MASK
    c = ((c ^ b) - _rot(b, 14)) & _MASK
    a = ((a ^ c) - _rot(c, 11)) & _MASK
    b = ((b ^ a) - _rot(a, 25)) & _MASK
    c = ((c ^ b) - _rot(b, 16)) & _MASK
    a = ((a ^ c) - _rot(c, 4)) & _MASK
    b = ((b ^ a) - _rot(a, 14)) & _MASK
    c = ((c ^ b) - _rot(b, 24)) & _MASK
    return int(c)
