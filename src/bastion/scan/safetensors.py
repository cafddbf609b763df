"""safetensors: the header is checked the way a strict loader should (bounded length, valid JSON,
no duplicate keys, dtype/shape/offset consistency, no overlaps or gaps, within bounds, no trailing
bytes). Tensor bytes are never read. `__metadata__` values are checked for payloads carried as
strings and for credentials (scan/config_values.py)."""

from __future__ import annotations

import struct

from bastion.findings import Confidence, Severity, Stage
from bastion.rules import Rule
from bastion.scan.base import ScanContext
from bastion.scan.config_values import check_values
from bastion.scan.jsonconfig import parse_json
from bastion.scan.source import Source

BAD_HEADER = Rule(
    id="SFT001",
    title="Malformed safetensors header",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-integrity",
    description="The header length or JSON is invalid. Readers disagree on such files; some "
    "allocate the declared length before checking it.",
    remediation="Regenerate the file with the safetensors library.",
)
BAD_LAYOUT = Rule(
    id="SFT002",
    title="safetensors tensor layout is inconsistent",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-integrity",
    description="A tensor's offsets disagree with its dtype and shape, point outside the data "
    "section, or overlap another tensor: different readers load different weights, "
    "a way to hide tampered weights.",
    remediation="Regenerate the file with the safetensors library.",
)
DUPLICATE_KEY = Rule(
    id="SFT003",
    title="safetensors header repeats a key",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="masquerading",
    description="A tensor name appears twice in the header; which one a reader keeps is "
    "implementation-defined.",
    remediation="Regenerate the file.",
)
TRAILING = Rule(
    id="SFT004",
    title="Bytes outside the tensors of a safetensors file",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="masquerading",
    description="The data section is larger than the tensors it holds (gaps or trailing bytes): "
    "room for a hidden payload or a polyglot.",
    remediation="Regenerate the file.",
)

# the rules this module's checks emit (listed in bastion.catalogue)
RULES = (BAD_HEADER, BAD_LAYOUT, DUPLICATE_KEY, TRAILING)

DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
    "C64": 8,
    "F4": 1,
    "F6_E2M3": 1,
    "F6_E3M2": 1,
}
MAX_HEADER = 100 * 1024 * 1024


class SafetensorsScanner:
    name = "safetensors"
    formats = ("safetensors",)

    def scan(self, ctx: ScanContext, source: Source, fmt: str) -> None:
        loc = source.location
        with source.open() as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                ctx.add(
                    BAD_HEADER.finding(
                        loc, "file shorter than the header length", evidence="truncated"
                    )
                )
                return
            (length,) = struct.unpack("<Q", prefix)
            limit = min(MAX_HEADER, ctx.limits.max_metadata)
            if length > limit or length > source.size - 8:
                ctx.add(
                    BAD_HEADER.finding(
                        loc,
                        f"header length {length} exceeds the file or the {limit}-byte limit",
                        evidence=f"header_length={length}",
                    )
                )
                return
            raw = handle.read(length)
        try:
            header, duplicates = parse_json(raw)
        except (ValueError, RecursionError) as exc:
            ctx.add(
                BAD_HEADER.finding(loc, f"header is not valid JSON: {exc}", evidence=str(exc)[:200])
            )
            return
        for key in duplicates:
            ctx.add(DUPLICATE_KEY.finding(loc, f"tensor '{key}' is declared twice", evidence=key))
        if not isinstance(header, dict):
            ctx.add(BAD_HEADER.finding(loc, "header is not a JSON object", evidence="not-object"))
            return
        data_size = source.size - 8 - length
        spans: list[tuple[int, int, str]] = []
        for name, info in header.items():
            if name == "__metadata__":
                if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                    ctx.add(
                        BAD_HEADER.finding(
                            loc, "__metadata__ must map strings to strings", evidence="__metadata__"
                        )
                    )
                check_values(ctx, source, info, "safetensors metadata")
                continue
            problem = _tensor_problem(info, data_size)
            if problem:
                ctx.add(
                    BAD_LAYOUT.finding(
                        loc.model_copy(update={"pointer": name[:200]}),
                        f"tensor '{name}': {problem}",
                        evidence=problem,
                    )
                )
                continue
            begin, end = info["data_offsets"]
            spans.append((begin, end, name))
        spans.sort()
        cursor = 0
        for begin, end, name in spans:
            if begin < cursor:
                ctx.add(
                    BAD_LAYOUT.finding(
                        loc.model_copy(update={"pointer": name[:200]}),
                        f"tensor '{name}' overlaps the previous tensor",
                        evidence=f"overlap at {begin}",
                    )
                )
            elif begin > cursor:
                ctx.add(
                    TRAILING.finding(
                        loc,
                        f"{begin - cursor} unused bytes before '{name}'",
                        evidence=f"gap at {cursor}",
                    )
                )
            cursor = max(cursor, end)
        if cursor < data_size:
            ctx.add(
                TRAILING.finding(
                    loc,
                    f"{data_size - cursor} bytes after the last tensor",
                    evidence=f"trailing from {cursor}",
                )
            )


def _tensor_problem(info: object, data_size: int) -> str | None:
    if not isinstance(info, dict):
        return "entry is not an object"
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        return f"unknown dtype {str(dtype)[:40]!r}"
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        return "shape must be a list of non-negative integers"
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        return "data_offsets must be two integers"
    begin, end = offsets
    if begin < 0 or end < begin:
        return f"invalid data_offsets {offsets}"
    if end > data_size:
        return f"data_offsets end {end} beyond the data section of {data_size} bytes"
    count = 1
    for dim in shape:
        count *= dim
    bits = {"F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}.get(str(dtype))
    expected = (count * bits + 7) // 8 if bits else count * DTYPE_SIZES[str(dtype)]
    if end - begin != expected:
        return f"{end - begin} bytes for {dtype}{shape}, which needs {expected}"
    return None
