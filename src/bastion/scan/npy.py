"""NumPy .npy files (an object array is a pickle in disguise: np.load(allow_pickle=True) runs it).
.npz archives are zip files whose members are scanned as .npy."""

from __future__ import annotations

import ast
import struct

from bastion.findings import Confidence, Severity, Stage
from bastion.rules import Rule
from bastion.scan.base import MALFORMED, ScanContext
from bastion.scan.dtypes import DtypeInfo, InvalidDtype, npy_dtype
from bastion.scan.source import Source, slice_opener

OBJECT_ARRAY = Rule(
    id="NPY001",
    title="NumPy object array (embedded pickle)",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="The array has dtype object: its data is a pickle that np.load unpickles when "
    "allow_pickle=True. The embedded pickle is scanned too.",
    remediation="Store numeric arrays only, or load with allow_pickle=False.",
)

# the rules this module's checks emit (listed in bastion.catalogue)
RULES = (OBJECT_ARRAY,)
MAX_NPY_HEADER = 1 << 20


class NpyScanner:
    name = "npy"
    formats = ("npy",)

    def scan(self, ctx: ScanContext, source: Source, fmt: str) -> None:
        with source.open() as handle:
            preamble = handle.read(12)
            if len(preamble) < 10 or (preamble[6] in (2, 3) and len(preamble) < 12):
                ctx.add(
                    MALFORMED.finding(
                        source.location, "truncated .npy preamble", evidence="truncated"
                    )
                )
                return
            major = preamble[6]
            if major == 1:
                (length,) = struct.unpack("<H", preamble[8:10])
                start = 10
            elif major in (2, 3):
                (length,) = struct.unpack("<I", preamble[8:12])
                start = 12
            else:
                ctx.add(
                    MALFORMED.finding(
                        source.location,
                        f"unknown .npy version {major}",
                        evidence=f"version={major}",
                    )
                )
                return
            if length > MAX_NPY_HEADER or start + length > source.size:
                ctx.add(
                    MALFORMED.finding(
                        source.location,
                        f"header length {length} is invalid",
                        evidence=f"header_length={length}",
                    )
                )
                return
            handle.seek(start)
            raw = handle.read(length)
        try:
            header = ast.literal_eval(raw.decode("latin-1" if major < 3 else "utf-8"))
            descr, shape = header["descr"], header["shape"]
        except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError) as exc:
            ctx.add(
                MALFORMED.finding(
                    source.location,
                    f"unreadable .npy header: {exc}",
                    evidence=raw[:120].decode("latin-1"),
                )
            )
            return
        try:
            dtype = npy_dtype(descr)
        except InvalidDtype as exc:
            ctx.add(
                MALFORMED.finding(
                    source.location, f"invalid .npy dtype: {exc}", evidence=str(descr)[:120]
                )
            )
            dtype = DtypeInfo(
                itemsize=None, has_object=True
            )  # fail closed: analyse the data as a pickle too
        offset = start + length
        if not dtype.has_object:
            _check_size(ctx, source, dtype.itemsize, shape, offset)
            return
        size = source.size - offset
        child = source.child("<object array pickle>", slice_opener(source, offset, size), size)
        plain = size <= ctx.limits.max_metadata and _holds_only_data(ctx, child)
        ctx.add(
            OBJECT_ARRAY.finding(
                source.location,
                "object array of plain data (strings, numbers); np.load still needs "
                "allow_pickle=True"
                if plain
                else "object array: np.load unpickles its data",
                evidence=str(descr)[:80],
                severity=Severity.INFO if plain else None,
            )
        )
        from bastion.scan.pickle import scan_pickle

        ctx.formats.append("pickle")
        scan_pickle(ctx, child)


# What np.save writes around an object array's items: the array and its dtype are rebuilt by
# these callables, which take only data. Any other global (or an extension code, persistent
# id, or class instantiation opcode) means the items are not plain data.
_ARRAY_REBUILDERS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),  # NumPy 1.x: allocates an empty ndarray
        ("numpy._core.multiarray", "_reconstruct"),  # NumPy 2.x name of the same function
        ("numpy", "ndarray"),  # the array type passed to _reconstruct
        ("numpy", "dtype"),  # the object dtype, rebuilt from its type code
    }
)
_OBJECT_OPCODES = frozenset(
    {"INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID"}
)
_STRING_OPCODES = frozenset(
    {
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
        "UNICODE",
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
    }
)
_MEMO_OPCODES = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "FRAME"})
_GET_OPCODES = frozenset({"GET", "BINGET", "LONG_BINGET"})
_NOT_STRING = object()


def _holds_only_data(ctx: ScanContext, source: Source) -> bool:
    """Does this pickle rebuild an array of plain data only (what np.save writes for object
    arrays of strings, numbers, None, lists, dicts)? STACK_GLOBAL operands are resolved only
    when the two stack-changing opcodes right before it pushed strings (directly or from the
    memo); anything unresolved counts as not plain."""
    import pickletools

    memo: dict[int, object] = {}
    pushed: list[object] = []  # what the last stack-changing opcodes pushed (strings or not)
    with source.open() as handle:
        try:
            for index, (opcode, arg, _pos) in enumerate(pickletools.genops(handle)):
                if index % 65536 == 0:
                    ctx.check_time()
                name = opcode.name
                if name in _OBJECT_OPCODES:
                    return False
                if name in _MEMO_OPCODES:
                    if name != "FRAME":
                        key = len(memo) if name == "MEMOIZE" else int(str(arg))
                        memo[key] = pushed[-1] if pushed else _NOT_STRING
                    continue
                if name == "GLOBAL":
                    module, _, attr = str(arg).partition(" ")
                    if (module, attr) not in _ARRAY_REBUILDERS:
                        return False
                    pushed.append(_NOT_STRING)
                elif name == "STACK_GLOBAL":
                    if len(pushed) < 2 or (pushed[-2], pushed[-1]) not in _ARRAY_REBUILDERS:
                        return False
                    pushed.append(_NOT_STRING)
                elif name in _STRING_OPCODES:
                    pushed.append(arg)
                elif name in _GET_OPCODES:
                    pushed.append(memo.get(int(str(arg)), _NOT_STRING))
                else:
                    pushed.append(_NOT_STRING)
                del pushed[:-2]
                if name == "STOP":
                    return True
        except Exception:  # pickletools raises ValueError and others on broken streams
            return False
    return False


def _check_size(
    ctx: ScanContext, source: Source, itemsize: int | None, shape: object, offset: int
) -> None:
    if itemsize is None or not isinstance(shape, tuple):
        return
    count = 1
    for dim in shape:
        if not isinstance(dim, int) or dim < 0:
            ctx.add(
                MALFORMED.finding(
                    source.location, f"invalid shape {shape}", evidence=str(shape)[:80]
                )
            )
            return
        count *= dim
    if offset + count * itemsize > source.size:
        ctx.add(
            MALFORMED.finding(
                source.location,
                "array data is shorter than its shape declares",
                evidence=f"shape={shape} itemsize={itemsize}",
                severity=Severity.MEDIUM,
            )
        )
