"""Zip archives read the way each consuming loader reads them (issue #7, class 4): Python's
zipfile and PyTorch's reader (miniz, torch._C.PyTorchFileReader) resolve the end records
differently; bastion scans the members of both views and reports the disagreement. Differential
checks compare bastion's member bytes with both real readers. Payloads only echo a marker."""

from __future__ import annotations

import io
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import scan_data, scan_file
from zipcraft import (
    Member,
    end_record,
    members_and_directory,
    simple_zip,
    zip64_end_record,
    zip64_locator,
)

from bastion.findings import Severity, TargetResult
from bastion.scan.pytorch import torch_layout
from bastion.scan.ziparchive import MINIZ, ZIPFILE, ZipReader

MARKER = "bastion-marker"
PAYLOAD = f"cos\nsystem\n(S'echo {MARKER}'\ntR.".encode()
TORCH_LOAD = (
    "import torch,sys\ntry: torch.load(sys.argv[1], weights_only=False)\nexcept Exception: pass"
)


def torch_reader(data: bytes) -> object:
    torch = pytest.importorskip("torch")
    return torch._C.PyTorchFileReader(io.BytesIO(data))


def runs_payload(tmp_path: Path, data: bytes) -> bool:
    path = tmp_path / "model.pt"
    path.write_bytes(data)
    proc = subprocess.run(
        [sys.executable, "-c", TORCH_LOAD, str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return MARKER in proc.stdout


def flags_payload(result: TargetResult) -> bool:
    return any("system" in f.evidence and f.severity is Severity.CRITICAL for f in result.findings)


def checkpoint(data_pkl: bytes, extra: tuple[Member, ...] = (), method: int = 0) -> list[Member]:
    """The members torch.load needs: archive/data.pkl, archive/version, archive/byteorder."""
    return [
        Member(b"archive/data.pkl", data_pkl, method=method),
        Member(b"archive/version", b"3\n"),
        Member(b"archive/byteorder", b"little"),
        *extra,
    ]


BENIGN = checkpoint(
    pickle.dumps({"weights": [1.0, 2.0]}, protocol=2),
    (Member(b"archive/padding-name-to-grow-the-directory", b""),),
)
EVIL = checkpoint(PAYLOAD, (Member(b"archive/filler", b"x" * 4096),))


def zip64_locator_split() -> bytes:
    """zipfile reads the zip64 end record right before its locator (BENIGN's directory);
    miniz reads the one the locator points to (EVIL's directory)."""
    benign = members_and_directory(BENIGN, 0)
    evil = members_and_directory(EVIL, len(benign.data))
    body = benign.data + evil.data
    evil_cd = len(body)
    evil_record_at = evil_cd + len(evil.directory)
    evil_record = zip64_end_record(evil.count, len(evil.directory), evil_cd)
    benign_cd = evil_record_at + len(evil_record)
    benign_record = zip64_end_record(benign.count, len(benign.directory), benign_cd)
    return (
        body
        + evil.directory
        + evil_record
        + benign.directory
        + benign_record
        + zip64_locator(evil_record_at)
        + end_record(0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    )


def eocd_offset_split() -> bytes:
    """zipfile reads the central directory right before the end record and shifts member
    offsets by the difference ("concat"); miniz reads it at the stored offset."""
    evil = members_and_directory(EVIL, 0)
    benign_start = len(evil.data) + len(evil.directory)
    benign_real = members_and_directory(BENIGN, benign_start)
    assert len(benign_real.directory) >= len(evil.directory)
    concat = benign_start + len(benign_real.data) - len(evil.data)
    benign = members_and_directory(BENIGN, benign_start - concat)
    return (
        evil.data
        + evil.directory
        + benign.data
        + benign.directory
        + end_record(evil.count, len(benign.directory), len(evil.data))
    )


@pytest.mark.parametrize(
    "build", [zip64_locator_split, eocd_offset_split], ids=["zip64-locator", "eocd-offset"]
)
def test_readers_see_different_members(build: object, tmp_path: Path) -> None:
    data = build()  # type: ignore[operator]
    # the real readers disagree: zipfile gives the benign pickle, torch the payload
    assert zipfile.ZipFile(io.BytesIO(data)).read("archive/data.pkl") == BENIGN[0].data
    assert torch_reader(data).get_record("data.pkl") == PAYLOAD  # type: ignore[attr-defined]
    assert runs_payload(tmp_path, data)
    result = scan_data(data, "model.pt")
    assert flags_payload(result)
    disagree = [f for f in result.findings if f.rule_id == "ARC009"]
    assert disagree and disagree[0].severity is Severity.HIGH


def padded_pickle(padding: int) -> bytes:
    """A pickle whose payload follows `padding` zero bytes (one BINBYTES8 argument)."""
    return b"\x80\x02\x8e" + struct.pack("<Q", padding) + b"\x00" * padding + b"0" + PAYLOAD


def test_payload_after_megabytes_of_padding_in_a_deflated_member(tmp_path: Path) -> None:
    """8 MiB of zeros deflate to a few kB (a ratio near 1000:1); bastion used to stop
    inflating after about 4 MiB and never saw what follows."""
    data = simple_zip(checkpoint(padded_pickle(8 << 20), method=8))
    assert len(data) < 64 * 1024
    assert zipfile.ZipFile(io.BytesIO(data)).read("archive/data.pkl").endswith(PAYLOAD)
    assert runs_payload(tmp_path, data)
    assert flags_payload(scan_data(data, "model.pt"))


def bastion_members(data: bytes) -> dict[bytes, bytes]:
    reader = ZipReader(lambda: io.BytesIO(data), len(data), 10_000)
    out = {}
    for entry in reader.directory.entries:
        out[entry.raw_name] = reader.opener(entry, lambda n: None)().read()
    return out


def written_zip(members: dict[str, bytes], compression: int, force_zip64: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in members.items():
            with archive.open(name, "w", force_zip64=force_zip64) as handle:
                handle.write(content)
    return buffer.getvalue()


MEMBER_SETS = {
    "small": {"archive/data.pkl": pickle.dumps([1, 2]), "archive/version": b"3\n"},
    "large": {"archive/data.pkl": bytes(range(256)) * (24 * 1024), "archive/version": b"3\n"},
    "extreme-ratio": {"archive/data.pkl": b"\x00" * (12 << 20), "archive/version": b"3\n"},
}


@pytest.mark.parametrize(
    "compression",
    [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA],
    ids=["stored", "deflated", "bzip2", "lzma"],
)
@pytest.mark.parametrize("kind", sorted(MEMBER_SETS))
@pytest.mark.parametrize("force_zip64", [False, True], ids=["zip32", "zip64"])
def test_member_bytes_equal_the_real_readers(
    compression: int, kind: str, force_zip64: bool
) -> None:
    data = written_zip(MEMBER_SETS[kind], compression, force_zip64)
    ours = bastion_members(data)
    theirs = {
        info.filename.encode(): zipfile.ZipFile(io.BytesIO(data)).read(info)
        for info in zipfile.ZipFile(io.BytesIO(data)).infolist()
    }
    assert ours == theirs
    if compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):  # what miniz reads
        reader = torch_reader(data)
        for name, content in ours.items():
            record = name.decode()[len("archive/") :]
            assert reader.get_record(record) == content  # type: ignore[attr-defined]
    reader_views = ZipReader(lambda: io.BytesIO(data), len(data), 100)
    assert reader_views.disagreement() is None


def test_torch_save_and_numpy_archives_agree_and_are_clean(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    numpy = pytest.importorskip("numpy")
    torch.save({"w": torch.zeros(3), "step": 4}, tmp_path / "ckpt.pt")
    numpy.savez_compressed(tmp_path / "arrays.npz", a=numpy.arange(10), b=numpy.ones((2, 2)))
    for name in ("ckpt.pt", "arrays.npz"):
        data = (tmp_path / name).read_bytes()
        assert ZipReader(lambda d=data: io.BytesIO(d), len(data), 100).disagreement() is None
        result = scan_file(tmp_path / name)
        assert not [f for f in result.findings if f.severity.rank >= Severity.LOW.rank], name
        assert not result.incomplete


# --- torch.load's own decisions --------------------------------------------------------------


def is_torchscript_per_torch(data: bytes) -> bool | None:
    torch = pytest.importorskip("torch")
    try:
        return bool(torch.serialization._is_torchscript_zip(torch_reader(data)))
    except RuntimeError:
        return None  # torch.load refuses the archive


LAYOUTS = {
    "checkpoint": [Member(b"archive/data.pkl", pickle.dumps(1)), Member(b"archive/version", b"3")],
    "code-folder-only": [
        Member(b"archive/data.pkl", pickle.dumps(1)),
        Member(b"archive/code/__torch__/m.py", b"def f(): pass"),
        Member(b"archive/version", b"3"),
    ],
    "constants": [
        Member(b"archive/data.pkl", pickle.dumps(1)),
        Member(b"archive/constants.pkl", pickle.dumps(())),
        Member(b"archive/version", b"3"),
    ],
    "constants-elsewhere": [
        Member(b"archive/data.pkl", pickle.dumps(1)),
        Member(b"archive/sub/constants.pkl", pickle.dumps(())),
        Member(b"archive/version", b"3"),
    ],
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_torchscript_decision_equals_torch(layout: str) -> None:
    data = simple_zip(LAYOUTS[layout])
    reader = ZipReader(lambda: io.BytesIO(data), len(data), 100)
    ours = torch_layout(reader)
    assert ours is not None
    assert ours.torchscript == is_torchscript_per_torch(data)


def test_code_folder_does_not_relax_a_checkpoint() -> None:
    """A `code/` folder used to make bastion treat data.pkl as TorchScript (and accept
    TorchScript's names) while torch.load unpickles it as an ordinary checkpoint."""
    data_pkl = b"\x80\x02c__torch__.evil\nthing\n)R."
    data = simple_zip(
        [
            Member(b"archive/data.pkl", data_pkl),
            Member(b"archive/code/__torch__/m.py", b"def f(): pass"),
            Member(b"archive/version", b"3\n"),
        ]
    )
    assert is_torchscript_per_torch(data) is False
    result = scan_data(data, "model.pt")
    assert "PT001" not in {f.rule_id for f in result.findings}
    assert any(
        "__torch__.evil" in f.evidence and f.severity.rank >= Severity.HIGH.rank
        for f in result.findings
    )


def test_miniz_only_reads_the_root_of_the_first_entry() -> None:
    reader_data = simple_zip(
        [Member(b"model/data.pkl", pickle.dumps(1)), Member(b"model/version", b"3\n")]
    )
    layout = torch_layout(ZipReader(lambda: io.BytesIO(reader_data), len(reader_data), 10))
    assert layout is not None and layout.root == b"model/"
    flat = simple_zip([Member(b"data.pkl", pickle.dumps(1))])
    assert torch_layout(ZipReader(lambda: io.BytesIO(flat), len(flat), 10)) is None


# --- members that cannot be inspected --------------------------------------------------------


def test_encrypted_member_makes_the_scan_undecided(tmp_path: Path) -> None:
    data = simple_zip(
        [Member(b"model/data.pkl", PAYLOAD, flags=0x1), Member(b"model/version", b"3\n")]
    )
    with pytest.raises(RuntimeError, match="encrypted"):
        zipfile.ZipFile(io.BytesIO(data)).read("model/data.pkl")
    result = scan_data(data, "archive.zip")
    assert result.incomplete
    assert "ARC004" in {f.rule_id for f in result.findings}
    path = tmp_path / "archive.zip"
    path.write_bytes(data)
    from bastion.cli.main import main

    assert (
        main(["scan", str(path), "--no-store", "-f", "json", "-o", str(tmp_path / "out.json")]) == 2
    )


def test_views_of_one_reader_only_are_reported() -> None:
    """A zip behind other data: zipfile reads it (it shifts offsets), miniz cannot."""
    data = b"#!/bin/sh\nexit 0\n" + simple_zip([Member(b"m/data.pkl", PAYLOAD)])
    reader = ZipReader(lambda: io.BytesIO(data), len(data), 10)
    assert set(reader.views) == {ZIPFILE} and MINIZ in reader.view_errors
    result = scan_data(data, "model.zip")
    assert flags_payload(result)


def test_encrypted_7z_is_undecided() -> None:
    py7zr = pytest.importorskip("py7zr")
    for header_encryption in (False, True):
        buffer = io.BytesIO()
        with py7zr.SevenZipFile(
            buffer, "w", password="secret", header_encryption=header_encryption
        ) as archive:
            archive.writestr(PAYLOAD, "model.pkl")
        result = scan_data(buffer.getvalue(), "model.7z")
        assert result.incomplete, header_encryption
        assert "ARC004" in {f.rule_id for f in result.findings}
