"""NumPy .npy files (an object array is a pickle in disguise: np.load(allow_pickle=True) runs it).
.npz archives are zip files whose members are scanned as .npy."""

from __future__ import annotations

import ast
import struct

from bastion.findings import Confidence, Severity, Stage
from bastion.rules import Rule
from bastion.scan.base import MALFORMED, ScanContext
from bastion.scan.source import Source, slice_opener

OBJECT_ARRAY = Rule(
    id="NPY001", title="NumPy object array (embedded pickle)", severity=Severity.MEDIUM,
    confidence=Confidence.HIGH, stage=Stage.ARTIFACT, profile="model-code-execution",
    description="The array has dtype object: its data is a pickle that np.load unpickles when "
                "allow_pickle=True. The embedded pickle is scanned too.",
    remediation="Store numeric arrays only, or load with allow_pickle=False.",
)
MAX_NPY_HEADER = 1 << 20


class NpyScanner:
    name = "npy"
    formats = ("npy",)

    def scan(self, ctx: ScanContext, source: Source, fmt: str) -> None:
        with source.open() as handle:
            preamble = handle.read(12)
            if len(preamble) < 10 or (preamble[6] in (2, 3) and len(preamble) < 12):
                ctx.add(MALFORMED.finding(source.location, "truncated .npy preamble",
                                          evidence="truncated"))
                return
            major = preamble[6]
            if major == 1:
                (length,) = struct.unpack("<H", preamble[8:10])
                start = 10
            elif major in (2, 3):
                (length,) = struct.unpack("<I", preamble[8:12])
                start = 12
            else:
                ctx.add(MALFORMED.finding(source.location, f"unknown .npy version {major}",
                                          evidence=f"version={major}"))
                return
            if length > MAX_NPY_HEADER or start + length > source.size:
                ctx.add(MALFORMED.finding(source.location, f"header length {length} is invalid",
                                          evidence=f"header_length={length}"))
                return
            handle.seek(start)
            raw = handle.read(length)
        try:
            header = ast.literal_eval(raw.decode("latin-1" if major < 3 else "utf-8"))
            descr, shape = header["descr"], header["shape"]
        except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError) as exc:
            ctx.add(MALFORMED.finding(source.location, f"unreadable .npy header: {exc}",
                                      evidence=raw[:120].decode("latin-1")))
            return
        if not _has_object(descr):
            _check_size(ctx, source, descr, shape, start + length)
            return
        ctx.add(OBJECT_ARRAY.finding(source.location, "object array: np.load unpickles its data",
                                     evidence=str(descr)[:80]))
        offset = start + length
        from bastion.scan.pickle import scan_pickle

        child = source.child("<object array pickle>", slice_opener(source, offset,
                                                                   source.size - offset),
                             source.size - offset)
        ctx.formats.append("pickle")
        scan_pickle(ctx, child)


def _has_object(descr: object) -> bool:
    if isinstance(descr, str):
        return "O" in descr.lstrip("<>|=")[:1]
    if isinstance(descr, (list, tuple)):
        return any(_has_object(part) for part in descr)
    return False


def _check_size(ctx: ScanContext, source: Source, descr: object, shape: object,
                offset: int) -> None:
    if not isinstance(descr, str) or not isinstance(shape, tuple):
        return
    try:
        import numpy as np

        itemsize = np.dtype(descr).itemsize
    except Exception:  # numpy raises many types (even SyntaxError) on hostile descr strings
        return
    count = 1
    for dim in shape:
        if not isinstance(dim, int) or dim < 0:
            ctx.add(MALFORMED.finding(source.location, f"invalid shape {shape}",
                                      evidence=str(shape)[:80]))
            return
        count *= dim
    if offset + count * itemsize > source.size:
        ctx.add(MALFORMED.finding(source.location, "array data is shorter than its shape "
                                  "declares", evidence=f"shape={shape} descr={descr}",
                                  severity=Severity.MEDIUM))
