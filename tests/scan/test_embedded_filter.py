"""The bulk pre-filter of the payloads-as-data search (scan/embedded_filter.py) against the
per-value analysis it stands in front of (embedded.worth_decoding + payloads_in): it never leaves
out a value the per-value path would flag, a hit is always the value that holds it (payload text
split over neighbours, separators inside values, chunk edges), and ordinary text is not a
candidate at all."""

from __future__ import annotations

import base64
import bz2
import gzip
import lzma
import pickle
import uuid
import zlib
from collections.abc import Callable, Sequence
from typing import Any
from unittest.mock import patch

import pytest
from corpus import opcodes as op
from helpers import scan_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.scan import embedded_filter
from bastion.scan.embedded import _textual_decodings, as_bytes, payloads_in, worth_decoding
from bastion.scan.embedded_filter import payload_candidates

LIMIT = 1 << 20
PAYLOADS = [
    b"cos\nsystem\n(S'echo bastion-marker'\ntR.",  # protocol 0: printable but for newlines
    op.system_call("echo bastion-marker"),  # protocol 4
    pickle.dumps({"a": [1, 2, 3]}, protocol=2),  # benign pickles are payloads too
]


def _b64_lines(data: bytes) -> bytes:
    return base64.encodebytes(data)  # 76-character lines


ENCODINGS: list[Callable[[bytes], bytes]] = [
    lambda b: b,
    lambda b: b.hex().encode(),
    lambda b: b.hex().upper().encode(),
    lambda b: b"0x" + b.hex().encode(),
    lambda b: " ".join(b.hex()[i : i + 8] for i in range(0, len(b.hex()), 8)).encode(),
    base64.b64encode,
    base64.urlsafe_b64encode,
    _b64_lines,
    zlib.compress,
    gzip.compress,
    bz2.compress,
    lzma.compress,
    lambda b: base64.b64encode(zlib.compress(b)),
    lambda b: base64.b64encode(gzip.compress(b)).decode("ascii").replace("=", "").encode() + b"==",
    lambda b: zlib.compress(b.hex().encode()),
]
FILLER = st.one_of(
    st.text(alphabet="ABCDEFabcdefxyz0189+/=-_ \t\n", max_size=40),  # the base64 class
    st.text(alphabet="value 0123456789,.;:|", max_size=30),  # ordinary text, separators
    st.text(max_size=30),  # any character, non-latin-1 ones too
    st.binary(max_size=40),
)


def _encoded(data: Any) -> Any:
    return st.tuples(st.sampled_from(PAYLOADS), st.sampled_from(ENCODINGS)).map(
        lambda pair: pair[1](pair[0])
    )


@st.composite
def _values(draw: Any) -> list[str | bytes]:
    """Values with payload encodings whole, cut at a random place with the pieces in
    neighbouring values, or with text before or after them; between them ordinary values."""
    out: list[str | bytes] = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["filler", "whole", "split", "wrapped"]))
        if kind == "filler":
            out.append(draw(FILLER))
            continue
        blob = draw(_encoded(None))
        if kind == "split":
            cut = draw(st.integers(0, len(blob)))
            pieces = [blob[:cut], blob[cut:]]
        elif kind == "wrapped":
            before, after = draw(FILLER), draw(FILLER)
            pieces = [_bytes(before) + blob + _bytes(after)]
        else:
            pieces = [blob]
        for piece in pieces:  # as text where it is text, sometimes
            as_text = draw(st.booleans())
            out.append(piece.decode("latin-1") if as_text else piece)
    return out


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")


def _flagged(values: Sequence[str | bytes]) -> dict[int, list[tuple[str, str, bytes]]]:
    """What the per-value path finds, by value index (every call site runs worth_decoding
    first, then payloads_in)."""
    out = {}
    for index, value in enumerate(values):
        if worth_decoding(value):
            found = [(p.how, p.fmt, p.data) for p in payloads_in(value, LIMIT)]
            if found:
                out[index] = found
    return out


def _check(values: list[str | bytes]) -> None:
    candidates = payload_candidates(values)
    assert candidates == sorted(set(candidates))
    assert all(0 <= i < len(values) for i in candidates)
    flagged = _flagged(values)
    missed = set(flagged) - set(candidates)
    assert not missed, [values[i] for i in missed]
    # the exact analysis of the candidates names the same values with the same payloads
    assert _flagged_among(values, candidates) == flagged


def _flagged_among(
    values: Sequence[str | bytes], candidates: list[int]
) -> dict[int, list[tuple[str, str, bytes]]]:
    sub = _flagged([values[i] for i in candidates])
    return {candidates[i]: found for i, found in sub.items()}


SLOW = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SLOW
@given(_values())
def test_the_bulk_filter_never_misses_a_value_the_per_value_path_flags(values: list[Any]) -> None:
    _check(values)


@SLOW
@given(_values())
def test_chunk_edges_and_values_longer_than_a_chunk(values: list[Any]) -> None:
    """The same with tiny chunks: values split over many joins, most payloads longer than a
    chunk (candidates on their own)."""
    with (
        patch.object(embedded_filter, "CHUNK_SIZE", 48),
        patch.object(embedded_filter, "CHUNK_VALUES", 3),
    ):
        _check(values)


HEAD_CHARS = "ABCDEFGHPQXYZabcgkrwxz0123789+/-_="


@st.composite
def _text_heads(draw: Any) -> str:
    """Text of the base64 class with the prefixes the decoders drop or skip (whitespace, 0x,
    '=') before the characters that fix the first decoded byte."""
    lead: str = draw(st.sampled_from(["", " ", "\n\t", "0x", "0X", " 0 x", "0x0x", "=", " = "]))
    alphabet = draw(st.sampled_from([HEAD_CHARS + " \n", "0123456789abcdefABCDEF \n"]))
    body: str = draw(st.text(alphabet=alphabet, min_size=2, max_size=90))
    return lead + body


@settings(max_examples=800, deadline=None)
@given(_text_heads())
def test_every_text_head_a_decoder_would_try_is_a_candidate(text: str) -> None:
    """The first-byte pattern against the decoders' own head test (embedded._head_of, decode,
    _could_start_payload): a head the per-value path would decode is never filtered out."""
    for value in (text, text.encode("ascii")):
        if _textual_decodings(as_bytes(value, LIMIT)):
            assert payload_candidates([value]) == [0], value


@pytest.mark.parametrize(
    "value",
    [
        "gASV" + "A" * 4092 + ", then text",  # the decoders look at the first 4096 bytes only
        "gASV" + "A" * 12,  # base64 of a protocol 4 header, 16 characters exactly
        "80" + "0" * 22,  # hex of a PROTO opcode, as short as the hex pattern allows
        "  0x 80" + "0" * 30,  # whitespace and 0x dropped before the digits
        "8 0" + "0" * 30,  # ...and between them
        "==gASV" + "A" * 20,  # '=' skipped by the lenient base64 decoder
        "tree\nversion=v3\n",  # LightGBM text: a newline, so not one line of text
        base64.b64encode(b"tree\nversion=v3\nnum_class=1\n").decode(),  # ...and in base64
        "caf\u00e9 \u00e0 la carte ok",  # latin-1 text: bytes outside ASCII
        "\u20ac" * 20,  # not latin-1: searched as str
        b"\x00" * 12,
    ],
)
def test_what_a_decoder_or_identifier_could_read_is_a_candidate(value: str | bytes) -> None:
    assert payload_candidates(["value 1", value, "value 3"]) == [1]


@pytest.mark.parametrize(
    "values",
    [
        [f"value {i}" for i in range(2000)],
        [str(uuid.UUID(int=i * 7919)) for i in range(2000)],
        [f"Customer Name Number {i}" for i in range(2000)],
        [f"Paris, this is row {i}; it says nothing." for i in range(2000)],
        [f"{i:032x}" for i in range(2000)],  # hex whose first byte, 0x00, starts no format
        ["a" * 11, "A" * 15, "|" * 40, "x|" * 30],
    ],
)
def test_ordinary_text_is_not_a_candidate(values: list[str]) -> None:
    assert payload_candidates(values) == []
    assert payload_candidates([v.encode() for v in values]) == []


def test_every_value_outside_one_line_of_text_is_a_candidate_whatever_its_neighbours() -> None:
    values = ["\x01" + "a" * 20, "\x02" + "b" * 20, "c" * 20 + "\n", "\xff" * 12, "d" * 20]
    assert payload_candidates(values) == [0, 1, 2, 3]
    assert payload_candidates([_bytes(v) for v in values]) == [0, 1, 2, 3]


def test_chunks_stay_within_their_size() -> None:
    """Memory: no join is larger than CHUNK_SIZE (one value past it is on its own)."""
    sizes: list[int] = []
    search = embedded_filter._search

    def spy(values: Any, lengths: Any, starts: list[int], low: int, high: int) -> Any:
        sizes.append(starts[high] - starts[low])
        return search(values, lengths, starts, low, high)

    values = ["x" * n for n in (5, 30, 47, 48, 49, 10, 200, 1, 17)] * 3
    with (
        patch.object(embedded_filter, "CHUNK_SIZE", 48),
        patch.object(embedded_filter, "_search", spy),
    ):
        payload_candidates(values)
    assert sizes and max(sizes) <= 48 + 1


def test_a_separator_inside_a_value_is_charged_to_that_value() -> None:
    """A value holding '|' then base64 becomes a candidate itself (the per-value path then
    clears it); its neighbours do not."""
    b64 = base64.b64encode(PAYLOADS[1]).decode()
    values = ["value 1", "note|" + b64, "value 3"]
    assert payload_candidates(values) == [1]
    assert _flagged(values) == {}


def test_mixed_str_and_bytes_keep_their_positions() -> None:
    b64 = base64.b64encode(PAYLOADS[0])
    values: list[str | bytes] = ["value 1", b64, "value 3", b64.decode(), b"value 5", b"\x80"]
    assert payload_candidates(values) == [1, 3]


# --- end to end: the finding names the row ------------------------------------------------------


def _frame(cells: list[str], dtype: str) -> bytes:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    return pickle.dumps(pd.DataFrame({"note": pd.array(cells, dtype=dtype)}), protocol=5)


@pytest.mark.parametrize("row", [0, 1234, 4999])
def test_a_payload_in_an_arrow_string_column_is_reported_at_its_row(row: int) -> None:
    payload = base64.b64encode(op.system_call("echo bastion")).decode()
    cells = [f"value {i}" for i in range(5000)]
    cells[row] = payload
    # the rows around it hold pieces of the same text, which no decoder reads as a payload
    for near, piece in ((row - 1, payload[:20]), (row + 1, payload[20:])):
        if 0 <= near < len(cells):
            cells[near] = piece
    assert set(_flagged(cells)) == {row}
    result = scan_data(_frame(cells, "str"), "frame.pkl")
    hits = [f for f in result.findings if f.evidence == "posix.system"]
    assert hits, result.findings
    assert all(f" row {row} (base64)" in f.location.members[-1] for f in hits), hits


def test_a_payload_in_an_object_column_is_found() -> None:
    payload = op.system_call("echo bastion").hex()
    cells = [f"value {i}" for i in range(5000)]
    cells[77] = payload
    result = scan_data(_frame(cells, "object"), "frame.pkl")
    assert "posix.system" in {f.evidence for f in result.findings}


def test_a_large_benign_arrow_column_is_clean_and_complete() -> None:
    cells = [f"Customer {i}, nothing here" for i in range(200_000)]
    result = scan_data(_frame(cells, "str"), "frame.pkl")
    assert not result.findings and not result.incomplete


def test_one_value_referenced_many_times_is_searched_once() -> None:
    """The data walk keeps each object once: a 1 MB candidate the stream references 100,000
    times (memo gets) is not joined 100,000 times."""
    import time

    blob = "gASV" + "A" * 1_000_000  # base64 of a pickle header: a candidate
    data = pickle.dumps([blob] * 100_000, protocol=4)
    started = time.perf_counter()
    result = scan_data(data, "many.pkl")
    assert time.perf_counter() - started < 20.0
    assert not result.incomplete
