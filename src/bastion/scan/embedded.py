"""Serialized payloads carried as data: a string or bytes value (a pickle constant, a JSON config
value, safetensors metadata) that holds a pickle or an archive, raw or encoded (hex, base64,
base32/85, compressed), is what the next consumer loads. This module turns such a value into the
candidate payload bytes, with pure, bounded decoders only: it never unpickles or imports.

Used by the pickle scanner (every str/bytes constant of a stream, and the arguments of decoder
calls a stream makes) and by the config/metadata scanners."""

from __future__ import annotations

import base64
import binascii
import io
import re
import zlib

from bastion.errors import LimitExceeded
from bastion.records import Record
from bastion.scan.pickle_probe import START_OPCODES

# Formats a loader deserializes (and bastion scans) when handed the bytes.
# also the boosters' own serialisations that pickled XGBoost/LightGBM models carry for their
# native parsers (scan/boosters.py checks their structure)
PAYLOAD_FORMATS = frozenset({"pickle", "zip", "tar", "7z", "npy", "xgboost_ubj", "lightgbm_text"})
COMPRESSED_FORMATS = frozenset({"gzip", "bz2", "xz", "zlib"})
MIN_PAYLOAD = 12  # b"cos\nsystem\n." is the shortest pickle that resolves a global
MAX_LAYERS = 4  # encodings/compressions stacked on one value
DEFAULT_MAX_VALUES = 200_000  # values examined per scanned stream

_HEX_RE = re.compile(rb"^(?:0x)?[0-9A-Fa-f\s]{24,}$")
_B64_RE = re.compile(rb"^[A-Za-z0-9+/=\s_-]{16,}$")
_CHEAP_HEAD = re.compile(rb"^[A-Za-z0-9+/=_\s-]{16}")
# First bytes of zip, npy, 7z, gzip, bz2, xz (zlib: low nibble 8; pickles: START_OPCODES).
_PAYLOAD_FIRST_BYTES = frozenset(b"P\x937\x1fB\xfd")
# The first bytes a payload identified from a value may start with (besides "tree"): any opcode
# a pickle can start with, the magics above, a zlib header, XGBoost UBJSON's "{".
PAYLOAD_START_BYTES = frozenset(
    START_OPCODES | _PAYLOAD_FIRST_BYTES | {b for b in range(256) if b & 0x0F == 8} | {ord("{")}
)
# First bytes of pickles (protocol 2+), gzip, zlib, zip, bz2, xz, 7z, npy.
_BINARY_HEADS = frozenset({b"\x80", b"\x1f", b"x", b"P", b"B", b"\xfd", b"7", b"\x93"})


def bounded_decompress(data: bytes, kind: str, limit: int) -> bytes:
    """Inflate `data` (zlib, gzip, bz2 or xz/lzma) to at most `limit` bytes; more is an error."""
    if kind in ("zlib", "gzip"):
        out = zlib.decompressobj(zlib.MAX_WBITS | (32 if kind == "gzip" else 0)).decompress(
            data, limit + 1
        )
    elif kind == "bz2":
        import bz2

        out = bz2.BZ2Decompressor().decompress(data, limit + 1)
    else:
        import lzma

        try:
            out = lzma.LZMADecompressor().decompress(data, limit + 1)
        except lzma.LZMAError as exc:
            raise ValueError(str(exc)) from exc
    if len(out) > limit:
        raise LimitExceeded("embedded payload inflates past the limit")
    return out


def decode(kind: str, data: bytes, limit: int) -> bytes | None:
    """One pure decoding step: 'b64', 'b64url', 'b32', 'b16'/'hex', 'a85', 'b85', or a
    compression ('zlib', 'gzip', 'bz2', 'xz'/'lzma'). None when `data` is not valid input.
    Raises LimitExceeded when a compressed input inflates past `limit`."""
    try:
        if kind == "b64":
            return base64.b64decode(data)
        if kind == "b64url":
            return base64.urlsafe_b64decode(data)
        if kind == "b32":
            return base64.b32decode(data)
        if kind in ("b16", "hex"):
            text = re.sub(rb"\s", b"", data)
            if text[:2] in (b"0x", b"0X"):
                text = text[2:]
            return binascii.unhexlify(text)
        if kind == "a85":
            return base64.a85decode(data)
        if kind == "b85":
            return base64.b85decode(data)
        if kind in ("zlib", "gzip", "bz2", "xz", "lzma"):
            return bounded_decompress(data, "xz" if kind == "lzma" else kind, limit)
    except (ValueError, binascii.Error, zlib.error, OSError, EOFError):
        return None
    raise ValueError(f"unknown decoder {kind!r}")


def as_bytes(value: str | bytes | bytearray | memoryview, limit: int) -> bytes:
    """The bytes a str or bytes value stands for, cut at `limit` + 1 (latin-1 first, the way
    protocol 2 pickles text and `str.encode('latin-1')` round-trips bytes)."""
    if isinstance(value, str):
        try:
            return value[: limit + 1].encode("latin-1")
        except UnicodeEncodeError:
            return value[: limit + 1].encode("utf-8", "surrogatepass")
    return bytes(value[: limit + 1])


class Payload(Record):
    how: str  # the decoding chain, e.g. "base64+zlib" ("raw" when stored as is)
    fmt: str  # identified format of `data`
    data: bytes


def _textual_decodings(data: bytes) -> list[str]:
    """The text encodings `data` could be in whose decoded head could start a payload."""
    head = data[:4096]
    kinds = []
    if _HEX_RE.match(head):
        kinds.append("hex")
    if _B64_RE.match(head):
        kinds.append("b64url" if (b"-" in head or b"_" in head) else "b64")
    return [kind for kind in kinds if _could_start_payload(decode(kind, _head_of(data), 64))]


def _head_of(data: bytes) -> bytes:
    """A prefix of encoded text that decodes on its own (64 hex digits or base64 characters)."""
    compact = re.sub(rb"\s", b"", data[:256])
    if compact[:2] in (b"0x", b"0X"):
        compact = compact[2:]
    return compact[:64]


def _could_start_payload(head: bytes | None) -> bool:
    """Cheap test before identification: the first byte of a pickle (any opcode a stream can
    start with), zip, npy, 7z, gzip, bz2, xz or zlib stream."""
    if not head:
        return False
    return head[0] in PAYLOAD_START_BYTES or head.startswith(b"tree")  # LightGBM text


def payloads_in(value: str | bytes | bytearray | memoryview, limit: int) -> list[Payload]:
    """The serialized payloads one value carries: itself when it is one, or what a chain of at
    most MAX_LAYERS decodings (hex, base64, compression) turns it into. Bounded by `limit`
    bytes per value; a compressed layer that inflates past it is returned still compressed (the
    scanner then reports the limit instead of passing it)."""
    if len(value) < MIN_PAYLOAD:
        return []
    data = as_bytes(value, limit)
    if len(data) > limit:
        return []
    out: list[Payload] = []
    frontier: list[tuple[str, bytes]] = [("raw", data)]
    for _layer in range(MAX_LAYERS):
        next_frontier: list[tuple[str, bytes]] = []
        for how, blob in frontier:
            if len(blob) < MIN_PAYLOAD:
                continue
            tar = len(blob) > 262 and blob[257:262] == b"ustar"
            fmt = identify_whole(blob) if tar or _could_start_payload(blob) else "unknown"
            if fmt in PAYLOAD_FORMATS:
                out.append(Payload(how=how, fmt=fmt, data=blob))
                continue
            if fmt in COMPRESSED_FORMATS:
                try:
                    inflated = decode(fmt, blob, limit)
                except LimitExceeded:
                    out.append(Payload(how=how, fmt=fmt, data=blob))
                    continue
                if inflated is not None:
                    next_frontier.append((_chain(how, fmt), inflated))
                continue
            for kind in _textual_decodings(blob):
                decoded = decode(kind, blob, limit)
                if decoded is not None:
                    next_frontier.append((_chain(how, kind), decoded))
        frontier = next_frontier
        if not frontier:
            break
    return out


_ONE_LINE_TEXT = bytes(range(32, 127)) + b"\t"


def identify_whole(blob: bytes) -> str:
    """Identify a carried value from all of its bytes, as a file is (the probes look past the
    first KiB within their fixed budgets): a benign-looking prefix longer than 1 KiB does not
    hide the pickle after it."""
    from bastion.scan.identify import identify

    if not blob.translate(None, _ONE_LINE_TEXT):
        # one line of printable text ("class_weight"): pickle.loads cannot resolve a global
        # without a newline; only a pure-Python unpickler reading it as a whole file could
        return "unknown"
    return identify(blob[:1024], len(blob), opener=lambda: io.BytesIO(blob))


def _chain(how: str, step: str) -> str:
    name = {"b64": "base64", "b64url": "base64url"}.get(step, step)
    return name if how == "raw" else f"{how}+{name}"


def worth_decoding(value: str | bytes | bytearray | memoryview) -> bool:
    """Cheap pre-filter for scanning many values: could `value` hold a payload at all?
    (Length, and a head that is binary, a pickle opcode, or encoded text.)"""
    if len(value) < MIN_PAYLOAD:
        return False
    head = value[:16]
    if isinstance(head, str):
        if head.isalnum() and len(value) < 24:
            return False
        try:
            head_bytes = head.encode("latin-1")
        except UnicodeEncodeError:
            return False
    else:
        head_bytes = bytes(head)
    if _CHEAP_HEAD.match(head_bytes):
        return True
    if len(value) > 262 and as_bytes(value[257:262], 5) == b"ustar":
        return True
    if b"\n" in as_bytes(value[:512], 512) or head_bytes[:1] in _BINARY_HEADS:
        return True
    # Any opcode a pickle may start with (a MARK run, a long STRING popped before the payload),
    # but not a word ("class_weight"): a loader handed that refuses it or reads it as text.
    return _could_start_payload(head_bytes) and not head_bytes[:2].isalnum()
