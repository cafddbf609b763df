"""Payloads carried as data: embedded.payloads_in decodes raw, hex, base64 and compressed
values into the bytes the next consumer would load, within bounds."""

from __future__ import annotations

import base64
import bz2
import gzip
import lzma
import pickle
import zlib

import pytest

from bastion.errors import LimitExceeded
from bastion.scan.embedded import bounded_decompress, decode, payloads_in, worth_decoding

PAYLOAD = b"cos\nsystem\n(S'echo bastion-marker'\ntR."


@pytest.mark.parametrize(
    "encode,how",
    [
        (lambda b: b, "raw"),
        (lambda b: b.hex(), "hex"),
        (lambda b: b.hex().encode(), "hex"),
        (lambda b: base64.b64encode(b).decode(), "base64"),
        (lambda b: zlib.compress(b), "zlib"),
        (lambda b: gzip.compress(b), "gzip"),
        (lambda b: bz2.compress(b), "bz2"),
        (lambda b: lzma.compress(b), "xz"),
        (lambda b: base64.b64encode(zlib.compress(b)).decode(), "base64+zlib"),
        (lambda b: zlib.compress(base64.b64encode(b)), "zlib+base64"),
        (lambda b: base64.b64encode(zlib.compress(b).hex().encode()), "base64+hex+zlib"),
    ],
)
def test_encoded_payload_is_found(encode, how) -> None:  # type: ignore[no-untyped-def]
    value = encode(PAYLOAD)
    assert worth_decoding(value)
    found = payloads_in(value, 1 << 20)
    assert [(p.how, p.fmt, p.data) for p in found] == [(how, "pickle", PAYLOAD)]


def test_protocol_2_payload_in_base64() -> None:
    inner = pickle.dumps({"a": 1}, protocol=2)
    assert payloads_in(base64.b64encode(inner), 1 << 20)[0].data == inner


@pytest.mark.parametrize(
    "text",
    [
        "sepal length (cm)",
        "hello world, this is text",
        "0123456789",
        "a" * 40,
        "deadbeef" * 8,
        "relu",
        "",
    ],
)
def test_ordinary_text_carries_nothing(text: str) -> None:
    assert payloads_in(text, 1 << 20) == []


def test_bomb_is_bounded() -> None:
    bomb = zlib.compress(b"\x00" * (8 << 20))
    with pytest.raises(LimitExceeded):
        bounded_decompress(bomb, "zlib", 1 << 20)
    found = payloads_in(base64.b64encode(bomb), 1 << 20)
    assert [p.fmt for p in found] == ["zlib"]  # handed on still compressed, never inflated whole


def test_decode_rejects_invalid_input() -> None:
    assert decode("b64", b"abcde", 100) is None
    assert decode("hex", b"zz", 100) is None
    assert decode("zlib", b"not zlib", 100) is None
