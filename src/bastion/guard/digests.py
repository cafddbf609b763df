"""SHA-256 on the request path: `sha256_hex(data)`, the same digest as
`hashlib.sha256(data).hexdigest()`.

A request computes a few SHA-256 digests of short inputs (its API key's, its body's, its audit
records'). hashlib's SHA-256 goes through OpenSSL's EVP layer, whose code is large: between
requests it leaves the CPU's caches, and the first digest of a request cost 17 µs against 8 µs
for CPython's own small implementation (`_sha256`, `_sha2` from 3.12), both fetched cold. Short
inputs take the small implementation; long ones (a big body) OpenSSL's, which is faster per
byte. Where neither private module exists, hashlib serves both."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

SHORT = 4096  # bytes: up to here the small implementation's per-byte cost does not matter


def _small_sha256() -> Callable[[bytes], Any]:
    for module in ("_sha2", "_sha256"):
        try:
            found = getattr(__import__(module), "sha256", None)
        except ImportError:
            continue
        if found is not None and found(b"abc").hexdigest() == hashlib.sha256(b"abc").hexdigest():
            return found  # type: ignore[no-any-return]
    return hashlib.sha256


_SMALL = _small_sha256()
_LARGE = hashlib.sha256


def sha256_hex(data: bytes) -> str:
    """The hex SHA-256 of `data`."""
    return (_SMALL if len(data) <= SHORT else _LARGE)(data).hexdigest()
