"""Hostile inputs: bombs, forged sizes, deep nesting, links, worker crashes and timeouts.
A file that hits a bound is reported as incomplete/unsafe, never clean; one bad file never
stops the scan of the others."""

from __future__ import annotations

import bz2
import gzip
import io
import os
import pickle
import struct
import time
import zipfile
from pathlib import Path

import pytest
from helpers import rules, scan_data, scan_file

from bastion.config import Limits, Settings
from bastion.parallel import Outcome, run_isolated
from bastion.policy import evaluate
from bastion.scan.engine import run_scan

SMALL = Limits(max_decompressed_mb=8, max_depth=4, max_members=50, timeout_s=20)


def test_gzip_bomb_stops_at_the_budget() -> None:
    bomb = gzip.compress(b"\x00" * (64 * 1024 * 1024))
    started = time.monotonic()
    result = scan_data(bomb, "bomb.pkl.gz", SMALL)
    assert "LIM001" in rules(result) and result.incomplete
    assert time.monotonic() - started < 10


def test_bz2_bomb_inside_zip_member_stops_at_the_budget() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_BZIP2) as archive:
        archive.writestr("big.bin", b"A" * (32 * 1024 * 1024))
    result = scan_data(buffer.getvalue(), "bomb.zip", SMALL)
    assert "LIM001" in rules(result)


def test_deeply_nested_archives_hit_the_depth_limit() -> None:
    data = pickle.dumps({"ok": 1})
    for level in range(8):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(f"l{level}.zip" if level else "m.pkl", data)
        data = buffer.getvalue()
    result = scan_data(data, "deep.zip", SMALL)
    assert "LIM001" in rules(result) and result.incomplete


def test_member_count_limit() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(120):
            archive.writestr(f"f{i}.txt", b"x")
    result = scan_data(buffer.getvalue(), "many.zip", SMALL)
    assert "LIM001" in rules(result)


def test_forged_zip_sizes_are_not_trusted() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.pkl", b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00hi\x85R.")
    data = bytearray(buffer.getvalue())
    central = data.find(b"PK\x01\x02")
    data[central + 24 : central + 28] = struct.pack("<I", 0xFFFFFFF0)  # uncompressed size
    result = scan_data(bytes(data), "forged.zip", SMALL)
    assert "PKL001" in rules(result)


def test_zip_entry_pointing_outside_the_file() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.pkl", pickle.dumps(1))
    data = bytearray(buffer.getvalue())
    central = data.find(b"PK\x01\x02")
    data[central + 42 : central + 46] = struct.pack("<I", 10_000_000)
    result = scan_data(bytes(data), "bad.zip", SMALL)
    assert "ARC005" in rules(result) or "FMT004" in rules(result)


def test_one_corrupt_member_does_not_stop_the_others() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.bin", os.urandom(4096))
        archive.writestr("evil.pkl", b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00hi\x85R.")
    data = bytearray(buffer.getvalue())
    first = data.find(b"PK\x03\x04") + 30 + len("a.bin")
    data[first : first + 64] = b"\xff" * 64  # corrupt the deflate stream of a.bin
    result = scan_data(bytes(data), "mixed.zip", SMALL)
    assert "PKL001" in rules(result)


def test_huge_declared_lengths_do_not_allocate() -> None:
    for data, name in (
        (struct.pack("<Q", 2**63) + b"{}", "h.safetensors"),
        (b"GGUF" + struct.pack("<IQQ", 3, 2**60, 2**60), "h.gguf"),
        (b"\x93NUMPY\x01\x00" + struct.pack("<H", 65535), "h.npy"),
        (b"\x80\x04\x95" + struct.pack("<Q", 2**62) + b"N.", "h.pkl"),
        (b"\x80\x04\x8e" + struct.pack("<Q", 2**62), "h2.pkl"),
    ):
        result = scan_data(data, name, SMALL)
        assert result.findings, name
        assert not result.errors, (name, result.errors)


def test_memo_index_bomb_is_bounded() -> None:
    # LONG_BINPUT with a 4-billion index makes naive unpicklers allocate a huge memo
    data = b"\x80\x04N\x72\xff\xff\xff\xf0."
    result = scan_data(data, "memo.pkl", SMALL)
    assert not result.errors


def test_timeout_kills_the_worker_and_reports_the_file() -> None:
    outcomes: list[Outcome] = []

    def slow(item: int) -> str:
        if item == 1:
            time.sleep(30)
        return f'"done {item}"'

    started = time.monotonic()
    run_isolated(
        [0, 1, 2],
        slow,
        workers=2,
        timeout_s=1.0,
        memory_mb=512,
        on_outcome=outcomes.append,
        method="fork",
    )
    assert time.monotonic() - started < 15
    by_index = {o.index: o for o in outcomes}
    assert by_index[1].result is None and "time limit" in (by_index[1].failure or "")
    assert by_index[0].result and by_index[2].result


def test_crashing_worker_is_reported_and_replaced() -> None:
    outcomes: list[Outcome] = []

    def crash(item: int) -> str:
        if item == 0:
            os._exit(3)
        return '"ok"'

    run_isolated(
        [0, 1, 2, 3],
        crash,
        workers=1,
        timeout_s=20,
        memory_mb=512,
        on_outcome=outcomes.append,
        method="fork",
    )
    by_index = {o.index: o for o in outcomes}
    assert "crashed" in (by_index[0].failure or "")
    assert all(by_index[i].result == '"ok"' for i in (1, 2, 3))


def test_memory_limit_is_enforced_in_workers() -> None:
    outcomes: list[Outcome] = []

    def hog(item: int) -> str:
        block = bytearray(1024 * 1024 * 1024)  # 1 GiB over a 256 MiB budget
        return str(len(block))

    run_isolated(
        [0], hog, workers=1, timeout_s=20, memory_mb=256, on_outcome=outcomes.append, method="fork"
    )
    assert outcomes[0].result is None


def test_folder_scan_reports_links_and_keeps_going(tmp_path: Path) -> None:
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps([1]))
    (tmp_path / "evil.pkl").write_bytes(b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00hi\x85R.")
    os.symlink("/etc/passwd", tmp_path / "leak.bin")
    os.symlink(tmp_path / "ok.pkl", tmp_path / "alias.pkl")
    os.mkfifo(tmp_path / "pipe")
    report = run_scan([tmp_path], Settings(workers=2))
    by_path = {r.path: r for r in report.results}
    assert "ARC002" in {f.rule_id for f in by_path["leak.bin"].findings}
    assert by_path["alias.pkl"].findings == ()
    assert by_path["pipe"].errors
    assert "PKL001" in {f.rule_id for f in by_path["evil.pkl"].findings}
    assert evaluate(report, Settings()).exit_code == 1


def test_unreadable_file_is_an_error_not_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bastion.scan.engine as engine

    (tmp_path / "locked.pkl").write_bytes(pickle.dumps(1))
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps(2))
    real = engine.file_source

    def deny(path: Path, display: str):  # type: ignore[no-untyped-def]
        if path.name == "locked.pkl":
            raise PermissionError(13, "Permission denied")
        return real(path, display)

    monkeypatch.setattr(engine, "file_source", deny)  # workers are forked: they see it too
    report = run_scan([tmp_path], Settings(workers=1))
    assert [e.location.path for e in report.errors] == ["locked.pkl"]
    assert evaluate(report, Settings()).exit_code == 2


def test_scanner_never_executes_the_payload(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = (
        b"\x80\x02cposix\nsystem\nX"
        + struct.pack("<I", len(f"touch {marker}"))
        + f"touch {marker}".encode()
        + b"\x85R."
    )
    for name in ("p.pkl", "p.pkl.gz"):
        data = gzip.compress(payload) if name.endswith("gz") else payload
        (tmp_path / name).write_bytes(data)
    (tmp_path / "p.bz2").write_bytes(bz2.compress(payload))
    report = run_scan([tmp_path], Settings(workers=1))
    assert len([f for f in report.findings if f.rule_id == "PKL001"]) == 3
    assert not marker.exists()


def test_corrupt_member_file_named_like_a_model() -> None:
    result = scan_file(Path(__file__))  # a .py file: out of scope, not an error
    assert result.findings == () and result.skips and result.skips[0].code == "out-of-scope"


def test_onnx_external_data_hard_link_is_flagged(tmp_path: Path) -> None:
    from corpus import _onnx_model

    outside = tmp_path / "secret.txt"
    outside.write_text("token=abc")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(_onnx_model(external="weights.bin"))
    os.link(outside, folder / "weights.bin")
    result = scan_file(folder / "model.onnx")
    assert "ONX001" in rules(result)
    (folder / "weights.bin").unlink()
    (folder / "weights.bin").write_bytes(b"\x00" * 16)
    assert "ONX001" not in rules(scan_file(folder / "model.onnx"))


@pytest.mark.parametrize(
    "text",
    [
        b"x = 1\n",
        b"x\x9c not really\n",
        b"hello world\n",
        b"import torch\n",
        b"Copyright 2026\n",
        b"# notes\n",
    ],
)
def test_text_is_not_mistaken_for_a_model_format(text: bytes) -> None:
    result = scan_data(text * 20, "notes.txt")
    assert result.findings == () and result.skips[0].code == "out-of-scope"


def test_safetensors_header_with_non_string_dtype() -> None:
    """Found by the atheris harness in CI: a dict as dtype made a set lookup raise."""
    header = b'{"a": {"dtype": {"dtype": "F33"}, "shape": [2], "data_offsets": [0, 8]}}'
    result = scan_data(struct.pack("<Q", len(header)) + header + b"\0" * 8, "x.safetensors")
    assert "SFT002" in rules(result) and not result.errors


def test_worker_start_failure_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from bastion.errors import BastionError

    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    before = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(os, "fork", no_fork)
    with pytest.raises(BastionError, match="cannot start a scan worker"):
        run_isolated(
            [0, 1],
            lambda item: "1",
            workers=2,
            timeout_s=5,
            memory_mb=256,
            on_outcome=lambda outcome: None,
            method="fork",
        )
    assert len(os.listdir("/proc/self/fd")) == before  # the pipes were closed


def test_no_worker_outlives_the_run() -> None:
    outcomes: list[Outcome] = []
    run_isolated(
        list(range(6)),
        lambda item: str(item),
        workers=3,
        timeout_s=20,
        memory_mb=256,
        on_outcome=outcomes.append,
        method="fork",
    )
    assert sorted(int(o.result or -1) for o in outcomes) == list(range(6))
    with pytest.raises(ChildProcessError):  # every worker was reaped: no zombies, no orphans
        os.waitpid(-1, os.WNOHANG)
