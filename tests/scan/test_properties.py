"""Property tests: no input makes a parser raise, hang or report a scanner error; valid zips are
read exactly like zipfile reads them."""

from __future__ import annotations

import io
import json
import struct
import zipfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.config import Limits
from bastion.scan import registry
from bastion.scan.base import ScanContext
from bastion.scan.source import bytes_source
from bastion.scan.ziparchive import ZipReader

LIMITS = Limits(timeout_s=10, max_decompressed_mb=16, max_members=100, max_metadata_mb=4)
MAGIC = {
    "pickle": b"\x80\x04",
    "zip": b"PK\x03\x04",
    "npy": b"\x93NUMPY\x01\x00",
    "gguf": b"GGUF\x03\x00\x00\x00",
    "gzip": b"\x1f\x8b\x08\x00",
    "tar": b"",
    "safetensors": b"",
    "onnx": b"\x08\x07",
    "savedmodel": b"\x08\x01",
    "json": b'{"chat_template": ',
    "7z": b"7z\xbc\xaf\x27\x1c",
}
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def scan(fmt: str | None, data: bytes) -> ScanContext:
    ctx = ScanContext(LIMITS, registry())
    ctx.scan(bytes_source(data, "input.bin"), fmt)
    return ctx


@FAST
@given(st.sampled_from(sorted(MAGIC)), st.binary(max_size=2048))
def test_no_input_crashes_a_scanner(fmt: str, tail: bytes) -> None:
    ctx = scan(fmt, MAGIC[fmt] + tail)
    assert ctx.errors == [], ctx.errors


@FAST
@given(st.binary(max_size=4096))
def test_identification_never_crashes(data: bytes) -> None:
    assert scan(None, data).errors == []


@FAST
@given(
    st.dictionaries(
        st.text(
            st.characters(blacklist_characters="\x00/\\", blacklist_categories=("Cs",)),
            min_size=1,
            max_size=30,
        ),
        st.binary(max_size=200),
        max_size=8,
    ),
    st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2]),
)
def test_zip_reader_matches_zipfile(members: dict[str, bytes], method: int) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    data = buffer.getvalue()
    reader = ZipReader(lambda: io.BytesIO(data), len(data), 1000)
    ours = {}
    for entry in reader.directory.entries:
        with reader.opener(entry, lambda n: None)() as handle:
            ours[entry.name] = handle.read()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        theirs = {info.filename: archive.read(info) for info in archive.infolist()}
    assert ours == theirs


@FAST
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["F32", "I64", "U8", "BF16"]), st.lists(st.integers(0, 4), max_size=3)
        ),
        max_size=5,
    )
)
def test_consistent_safetensors_have_no_findings(tensors: list[tuple[str, list[int]]]) -> None:
    sizes = {"F32": 4, "I64": 8, "U8": 1, "BF16": 2}
    header, offset = {}, 0
    for index, (dtype, shape) in enumerate(tensors):
        count = 1
        for dim in shape:
            count *= dim
        header[f"t{index}"] = {
            "dtype": dtype,
            "shape": shape,
            "data_offsets": [offset, offset + count * sizes[dtype]],
        }
        offset += count * sizes[dtype]
    body = json.dumps(header).encode()
    data = struct.pack("<Q", len(body)) + body + b"\x00" * offset
    ctx = scan("safetensors", data)
    assert ctx.findings == [] and ctx.errors == []
