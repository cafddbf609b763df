"""SHA-256 of whole files, shared by signing and the ML-BOM."""

from __future__ import annotations

import hashlib
import mmap
import os
from pathlib import Path


def file_sha256(path: Path) -> bytes:
    """Hashed straight from a memory map: no copy into Python buffers, and hashlib releases the
    GIL, so one thread per core runs at the machine's hashing limit."""
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return hashlib.sha256(b"").digest()
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return hashlib.sha256(mapped).digest()
