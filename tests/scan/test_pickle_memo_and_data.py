"""Issue #7 class 9, pickle side: memo indices that make CPython allocate out of proportion are
rejected before allocation and reported; payloads carried as data (a str/bytes value anywhere in
the loaded object holding a serialized pickle, raw or encoded) are decoded and analysed."""

from __future__ import annotations

import base64
import bz2
import gzip
import pickle
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest
from corpus import opcodes as op
from helpers import scan_data

from bastion.findings import Severity

NINE_BYTES = b"\x80\x02N" + b"r" + struct.pack("<I", 1 << 26) + b"."  # 2**26 * 16 B = 1 GiB


def scan_bounded(data: bytes, name: str = "m.pkl") -> tuple[object, float, int]:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = scan_data(data, name)
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return result, elapsed, peak


def test_nine_byte_memo_bomb_is_reported_within_bounds() -> None:
    assert len(NINE_BYTES) == 9
    result, elapsed, peak = scan_bounded(NINE_BYTES)
    found = {f.rule_id: f.severity for f in result.findings}  # type: ignore[attr-defined]
    assert found.get("PKL008") == Severity.HIGH
    assert elapsed < 2.0 and peak < 512 * 1024 * 1024, (elapsed, peak)


def test_real_loader_accepts_a_smaller_memo_bomb(tmp_path: Path) -> None:
    """The same shape with a 2**20 index: CPython allocates 16 MiB and returns None."""
    small = b"\x80\x02N" + b"r" + struct.pack("<I", 1 << 20) + b"."
    assert pickle.loads(small) is None
    assert "PKL008" in {f.rule_id for f in scan_data(small, "s.pkl").findings}


@pytest.mark.parametrize(
    "data",
    [
        b"(Np99999999999\n.",  # PUT (text) with an absurd index, protocol 0
        b"\x80\x02" + b"]" + b"r" + struct.pack("<I", 0x7FFFFFF0) + b".",
        # after a benign prefix long enough to matter to scanners that look only at the head
        b"\x80\x04"
        + b"\x8c\x10"
        + b"x" * 16
        + b"0" * 0
        + b"N" * 20_000
        + b"0" * 20_000
        + b"Nr"
        + struct.pack("<I", 1 << 30)
        + b".",
    ],
)
def test_memo_bombs_of_every_shape(data: bytes) -> None:
    result, elapsed, peak = scan_bounded(data)
    assert "PKL008" in {f.rule_id for f in result.findings}  # type: ignore[attr-defined]
    assert elapsed < 2.0 and peak < 512 * 1024 * 1024


def test_memo_bomb_does_not_hide_a_payload() -> None:
    data = (
        op.proto(2)
        + b"N"
        + b"r"
        + struct.pack("<I", 1 << 28)
        + b"0"
        + b"cposix\nsystem\nX\x04\x00\x00\x00echo\x85R."
    )
    rules = {f.rule_id for f in scan_data(data, "p.pkl").findings}
    assert {"PKL008", "PKL001"} <= rules


def test_text_heavy_benign_pickles_stay_clean_and_fast() -> None:
    """Strings full of 'r' bytes look like LONG_BINPUT candidates to the byte search; such
    streams take the Python engine, which must give the same (clean) answer quickly."""
    words = {f"rare-word-{i}-rrrr": i for i in range(50_000)}
    data = pickle.dumps(words, protocol=2)
    started = time.perf_counter()
    result = scan_data(data, "vocab.pkl")
    assert result.findings == ()
    assert time.perf_counter() - started < 5.0


# --- payloads carried as data -----------------------------------------------------------------


def _evil(cmd: str = "echo bastion-marker") -> bytes:
    return op.system_call(cmd)


@pytest.mark.parametrize(
    "encode",
    [
        lambda b: b,
        lambda b: b.hex(),
        lambda b: base64.b64encode(b).decode(),
        lambda b: base64.b64encode(b),
        lambda b: zlib.compress(b),
        lambda b: gzip.compress(b),
        lambda b: bz2.compress(b),
        lambda b: base64.b64encode(zlib.compress(b)).decode(),
    ],
)
def test_payload_stored_as_a_value_is_found(encode) -> None:  # type: ignore[no-untyped-def]
    carrier = {"config": {"name": "model", "blob": encode(_evil())}, "weights": [1.0, 2.0]}
    result = scan_data(pickle.dumps(carrier, protocol=4), "carrier.pkl")
    inner = [f for f in result.findings if f.evidence == "posix.system"]
    assert inner and inner[0].severity is Severity.CRITICAL
    assert any("data value" in member for member in inner[0].location.members)


def test_payload_in_an_ordered_dict_of_a_torch_checkpoint() -> None:
    torch = pytest.importorskip("torch")
    import io

    state = torch.nn.Linear(2, 2).state_dict()
    state._metadata[""]["note"] = base64.b64encode(_evil()).decode()  # type: ignore[attr-defined]
    extra = {"state_dict": state, "meta": {"cfg": _evil().hex()}}
    buffer = io.BytesIO()
    torch.save(extra, buffer)
    result = scan_data(buffer.getvalue(), "ckpt.pt")
    assert "posix.system" in {f.evidence for f in result.findings}


def test_payload_in_a_pandas_object_column() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"x": [1, 2], "note": ["ok", base64.b64encode(_evil()).decode()]})
    result = scan_data(pickle.dumps(frame, protocol=4), "frame.pkl")
    assert "posix.system" in {f.evidence for f in result.findings}


def test_the_next_consumer_really_runs_the_carried_payload(tmp_path: Path) -> None:
    """Proof with the real loaders: loading the carrier is harmless by itself, the consumer that
    decodes and loads the value runs the payload (a marker file)."""
    marker = tmp_path / "ran"
    carrier = {"blob": base64.b64encode(_evil(f"touch {marker}")).decode()}
    path = tmp_path / "carrier.pkl"
    path.write_bytes(pickle.dumps(carrier, protocol=4))
    code = (
        "import base64,pickle,sys; d=pickle.load(open(sys.argv[1],'rb')); "
        "pickle.loads(base64.b64decode(d['blob']))"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)
    assert marker.exists()
    assert "posix.system" in {f.evidence for f in scan_data(path.read_bytes(), "c.pkl").findings}


def test_data_walk_is_bounded_and_says_so() -> None:
    # hex strings whose head decodes to a pickle's PROTO opcode: each must be analysed, none is
    # a payload
    many = [f"80{i:030x}" for i in range(120_000)]
    started = time.perf_counter()
    result = scan_data(pickle.dumps(many, protocol=4), "many.pkl")
    assert time.perf_counter() - started < 10.0
    # what lies past the bound is not analysed: a limit (the file is never clean), not a LOW note
    assert [(f.rule_id, f.severity) for f in result.findings] == [("LIM001", Severity.HIGH)]
    assert "string/bytes values" in result.findings[0].message


def test_many_values_that_cannot_carry_a_payload_do_not_reach_the_bound() -> None:
    """The bulk pre-filter leaves out what no decoder could turn into a payload (hex whose first
    byte starts no format, text with punctuation, short values): no bound, nothing reported."""
    many = [f"{i:032x}" for i in range(60_000)] + [f"row {i}, nothing here" for i in range(60_000)]
    result = scan_data(pickle.dumps(many, protocol=4), "many.pkl")
    assert not result.findings and not result.incomplete
