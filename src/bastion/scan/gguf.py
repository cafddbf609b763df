"""GGUF (llama.cpp): every declared length and count is checked against the bytes that exist,
tensor dimensions are validated, and Jinja chat templates (default and named) are analysed."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import BinaryIO

from bastion.errors import LimitExceeded
from bastion.findings import Confidence, Severity, Stage
from bastion.rules import Rule
from bastion.scan.base import ScanContext
from bastion.scan.source import CorruptInput, Source
from bastion.scan.templates import template_findings

BAD_GGUF = Rule(
    id="GGF001",
    title="Malformed GGUF structure",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-integrity",
    description="A declared string length, array count, tensor count, dimension or offset does "
    "not fit the file. GGUF loaders have had heap overflows on exactly these fields.",
    remediation="Do not load it; re-convert the model with llama.cpp's own tools.",
)
DUPLICATE_KEY = Rule(
    id="GGF002",
    title="GGUF metadata key repeated",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="masquerading",
    description="A metadata key appears twice; readers keep different copies (e.g. two chat "
    "templates, one reviewed and one used).",
    remediation="Re-convert the model.",
)

# the rules this module's checks emit (listed in bastion.catalogue)
RULES = (BAD_GGUF, DUPLICATE_KEY)

_SCALAR = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
UINT32, INT32, FLOAT32, STRING, ARRAY = 4, 5, 6, 8, 9
MAX_DIMS = 4
MAX_ARRAY_DEPTH = 4
MAX_LAYERS = 512  # llama.cpp's LLAMA_MAX_LAYERS: a larger block_count wrote out of bounds
KEEP_KEYS_PREFIX = ("tokenizer.chat_template",)
TOKENS_KEY = "tokenizer.ggml.tokens"
# Keys whose declared type llama.cpp trusts when it reads them (a narrower element type made
# it read past the array: llama.cpp PR 26690; an INT32 alignment hit an assertion: PR 26318).
EXPECTED_TYPES: dict[str, tuple[int, int | None]] = {  # key -> (type, array item type)
    "general.alignment": (UINT32, None),
    "tokenizer.ggml.tokens": (ARRAY, STRING),
    "tokenizer.ggml.scores": (ARRAY, FLOAT32),
    "tokenizer.ggml.token_type": (ARRAY, INT32),
    "tokenizer.ggml.merges": (ARRAY, STRING),
}
# ggml tensor types: (elements per block, bytes per block), as gguf-py's GGML_QUANT_SIZES.
GGML_BLOCKS: dict[int, tuple[int, int]] = {
    0: (1, 4),
    1: (1, 2),
    2: (32, 18),
    3: (32, 20),
    6: (32, 22),
    7: (32, 24),
    8: (32, 34),
    9: (32, 40),
    10: (256, 84),
    11: (256, 110),
    12: (256, 144),
    13: (256, 176),
    14: (256, 210),
    15: (256, 292),
    16: (256, 66),
    17: (256, 74),
    18: (256, 98),
    19: (256, 50),
    20: (32, 18),
    21: (256, 110),
    22: (256, 82),
    23: (256, 136),
    24: (1, 1),
    25: (1, 2),
    26: (1, 4),
    27: (1, 8),
    28: (1, 8),
    29: (256, 56),
    30: (1, 2),
    34: (256, 54),
    35: (256, 66),
    39: (32, 17),
    40: (64, 36),
    41: (128, 18),
}


class GgufError(CorruptInput):
    pass


class _Reader:
    def __init__(self, handle: BinaryIO, size: int) -> None:
        self.handle = handle
        self.size = size
        self.pos = 0

    def take(self, count: int) -> bytes:
        if count < 0 or self.pos + count > self.size:
            raise GgufError(
                f"needs {count} bytes at offset {self.pos}, file has {self.size - self.pos} left"
            )
        data = self.handle.read(count)
        if len(data) != count:
            raise GgufError("file shorter than its size")
        self.pos += count
        return data

    def skip(self, count: int) -> None:
        if count < 0 or self.pos + count > self.size:
            raise GgufError(
                f"declared {count} bytes at offset {self.pos}, file has {self.size - self.pos} left"
            )
        self.pos += count
        self.handle.seek(self.pos)

    def unpack(self, fmt: str) -> int | float | bool:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]  # type: ignore[no-any-return]

    def u32(self) -> int:
        return int(self.unpack("<I"))

    def u64(self) -> int:
        return int(self.unpack("<Q"))

    def peek_u32(self) -> int:
        value = self.u32()
        self.pos -= 4
        self.handle.seek(self.pos)
        return value


def _check_byte_tokens(tokens: list[str]) -> None:
    """Byte tokens are <0xNN> with two hex digits; llama.cpp's PLaMo-2 tokenizer indexed a
    256-entry table with whatever stood there ("<0x-1>" wrote before it, PR 25969)."""
    for token in tokens:
        if (
            token.startswith("<0x")
            and token.endswith(">")
            and (len(token) != 6 or not all(c in "0123456789abcdefABCDEF" for c in token[3:5]))
        ):
            raise GgufError(f"byte token {token[:40]!r} is not <0xNN>")


class GgufScanner:
    name = "gguf"
    formats = ("gguf",)

    def scan(self, ctx: ScanContext, source: Source, fmt: str) -> None:
        with source.open() as handle:
            reader = _Reader(handle, source.size)
            try:
                self._parse(ctx, source, reader)
            except GgufError as exc:
                ctx.add(
                    BAD_GGUF.finding(
                        source.location.model_copy(update={"pointer": f"byte {reader.pos}"}),
                        str(exc),
                        evidence=str(exc),
                    )
                )

    def _parse(self, ctx: ScanContext, source: Source, r: _Reader) -> None:
        r.take(4)
        version = r.u32()
        if version not in (1, 2, 3):
            raise GgufError(f"unsupported GGUF version {version}")
        count = r.u32 if version == 1 else r.u64
        n_tensors, n_kv = count(), count()
        # each key-value pair needs >= 12 bytes, each tensor info >= 24: counts must fit.
        if n_kv * 12 > r.size or n_tensors * 24 > r.size:
            raise GgufError(
                f"declares {n_kv} metadata pairs and {n_tensors} tensors, more "
                "than the file can hold"
            )
        seen: set[str] = set()
        alignment = 32
        budget = [ctx.limits.max_metadata]
        for _ in range(n_kv):
            ctx.check_time()
            key = self._string(r, count, budget)
            vtype = r.u32()
            keep = key.startswith(KEEP_KEYS_PREFIX) or key == TOKENS_KEY
            if key in EXPECTED_TYPES:
                self._check_type(r, key, vtype)
            value = self._value(r, vtype, count, budget, keep, 0)
            if key.endswith(".block_count") and isinstance(value, int) and value > MAX_LAYERS:
                raise GgufError(f"{key} is {value}, more than llama.cpp's {MAX_LAYERS} layers")
            if key == TOKENS_KEY and isinstance(value, list):
                _check_byte_tokens(value)
            if key in seen:
                ctx.add(
                    DUPLICATE_KEY.finding(
                        source.location.model_copy(update={"pointer": key[:200]}),
                        f"metadata key '{key}' repeated",
                        evidence=key[:200],
                    )
                )
            seen.add(key)
            if key == "general.alignment" and isinstance(value, int):
                if value <= 0 or value & (value - 1) or value > 1 << 20:
                    raise GgufError(f"general.alignment {value} is not a sane power of two")
                alignment = value
            if keep and isinstance(value, str):
                for finding in template_findings(
                    source.location.model_copy(update={"pointer": key[:200]}), value, f"GGUF {key}"
                ):
                    ctx.add(finding)
        infos: list[tuple[str, int, int, int]] = []
        for _ in range(n_tensors):
            ctx.check_time()
            name = self._string(r, count, budget)
            n_dims = r.u32()
            if n_dims == 0 or n_dims > MAX_DIMS:
                raise GgufError(f"tensor '{name[:80]}' has {n_dims} dimensions")
            elements = 1
            for _dim in range(n_dims):
                dim = count()
                if dim == 0 or dim > 1 << 40:
                    raise GgufError(f"tensor '{name[:80]}' has dimension {dim}")
                elements *= dim
            if elements > 1 << 46:
                raise GgufError(f"tensor '{name[:80]}' has {elements} elements")
            ggml_type = r.u32()
            if ggml_type not in GGML_BLOCKS:
                raise GgufError(f"tensor '{name[:80]}' has unknown type {ggml_type}")
            offset = r.u64()
            infos.append((name, offset, elements, ggml_type))
        data_start = (r.pos + alignment - 1) // alignment * alignment
        for name, offset, elements, ggml_type in infos:
            if offset % alignment:
                raise GgufError(f"tensor '{name[:80]}' offset {offset} is not aligned")
            per_block, block_bytes = GGML_BLOCKS[ggml_type]
            if elements % per_block:
                raise GgufError(
                    f"tensor '{name[:80]}' has {elements} elements, not a whole "
                    f"number of type-{ggml_type} blocks"
                )
            end = data_start + offset + elements // per_block * block_bytes
            if end > r.size:
                raise GgufError(
                    f"tensor '{name[:80]}' data ends at byte {end}, past the end "
                    f"of the file ({r.size} bytes)"
                )

    @staticmethod
    def _check_type(r: _Reader, key: str, vtype: int) -> None:
        expected, item = EXPECTED_TYPES[key]
        if vtype != expected:
            raise GgufError(f"{key} has value type {vtype}, llama.cpp reads type {expected}")
        if item is not None:
            actual = r.peek_u32()  # the array's item type; the value is read next
            if actual != item:
                raise GgufError(
                    f"{key} is an array of type {actual}, llama.cpp reads it as type {item}"
                )

    def _string(self, r: _Reader, count: Callable[[], int], budget: list[int]) -> str:
        length = count()
        if length > budget[0]:
            raise LimitExceeded(f"GGUF string of {length} bytes exceeds the metadata budget")
        budget[0] -= length
        return r.take(length).decode("utf-8", "replace")

    def _value(
        self,
        r: _Reader,
        vtype: int,
        count: Callable[[], int],
        budget: list[int],
        keep: bool,
        depth: int,
    ) -> object:
        if vtype in _SCALAR:
            return r.unpack(_SCALAR[vtype])
        if vtype == STRING:
            if keep:
                return self._string(r, count, budget)
            r.skip(count())
            return None
        if vtype == ARRAY:
            if depth >= MAX_ARRAY_DEPTH:
                raise GgufError("arrays nested too deeply")
            item_type, n_items = r.u32(), count()
            if item_type in _SCALAR:
                r.skip(n_items * struct.calcsize(_SCALAR[item_type]))
                return None
            if item_type == STRING:
                if n_items * 8 > r.size - r.pos:
                    raise GgufError(f"array of {n_items} strings cannot fit the file")
                if keep:
                    return [self._string(r, count, budget) for _ in range(n_items)]
                for _ in range(n_items):
                    r.skip(count())
                return None
            if item_type == ARRAY:
                if n_items * 12 > r.size - r.pos:
                    raise GgufError(f"array of {n_items} arrays cannot fit the file")
                for _ in range(n_items):
                    self._value(r, ARRAY, count, budget, False, depth + 1)
                return None
            raise GgufError(f"array of unknown type {item_type}")
        raise GgufError(f"unknown metadata value type {vtype}")
