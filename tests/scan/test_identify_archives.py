"""Archives and compressed streams read the way their extractors read them (white-box attack
findings A1-08 ... A1-36 in the issue #7 work): every sample ran its payload with the real
reader and passed bastion before. Payloads only echo a marker, in a subprocess."""

from __future__ import annotations

import gzip
import io
import pickle
import shutil
import struct
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import pytest
from helpers import scan_data

from bastion.findings import Severity, TargetResult
from bastion.scan.identify import identify

MARKER = "bastion-marker"
PAYLOAD = f"cos\nsystem\n(S'echo {MARKER}'\ntR.".encode()
BENIGN = pickle.dumps({"coef": [0.1, 0.2]}, protocol=2)


def runs_payload(tmp_path: Path, name: str, data: bytes, loader: str) -> bool:
    path = tmp_path / name
    path.write_bytes(data)
    proc = subprocess.run(
        [sys.executable, "-c", loader, str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return MARKER in proc.stdout


def flags_payload(result: TargetResult) -> bool:
    return any("system" in f.evidence and f.severity is Severity.CRITICAL for f in result.findings)


EXTRACT_ALL = (
    "import os,pickle,sys,tarfile\nd=sys.argv[1]+'.d'\n"
    "tarfile.open(sys.argv[1]).extractall(d)\n"
    "for root,_,files in os.walk(d):\n"
    "    for f in files:\n"
    "        try: pickle.load(open(os.path.join(root,f),'rb'))\n"
    "        except Exception: pass\n"
)


def tar_of(members: list[tuple[str, bytes, bytes]]) -> bytes:
    """A tar of (name, content, type flag) members, written by tarfile, types patched in."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, content, _kind in members:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    data = bytearray(buffer.getvalue())
    offset = 0
    for _name, content, kind in members:
        if kind != b"0":
            header = data[offset : offset + 512]
            header[156:157] = kind
            header[148:156] = b" " * 8
            header[148:156] = b"%06o\x00 " % sum(header)
            data[offset : offset + 512] = header
        offset += 512 + (len(content) + 511) // 512 * 512
    return bytes(data)


def test_tar_member_of_unknown_type(tmp_path: Path) -> None:
    """A1-11: type 'Z' is no type tarfile knows; extractall writes it as a regular file."""
    data = tar_of([("model/config.json", b"{}", b"0"), ("model/model.pkl", PAYLOAD, b"Z")])
    assert runs_payload(tmp_path, "model.tar", data, EXTRACT_ALL)
    assert flags_payload(scan_data(data, "model.tar"))


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar")
def test_tar_data_after_a_header_tarfile_cannot_parse(tmp_path: Path) -> None:
    """A1-09: tarfile ends quietly at a broken header; GNU tar skips to the next one."""
    first = tar_of([("model/config.json", b"{}", b"0")])
    second = tar_of([("model/model.pkl", PAYLOAD, b"0")])
    data = first[:1024] + b"\x01" * 512 + second
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        assert archive.getnames() == ["model/config.json"]
    out = tmp_path / "x"
    out.mkdir()
    (tmp_path / "model.tar").write_bytes(data)
    subprocess.run(
        ["tar", "-xf", str(tmp_path / "model.tar"), "-C", str(out)], capture_output=True, timeout=60
    )
    assert (out / "model" / "model.pkl").read_bytes() == PAYLOAD
    result = scan_data(data, "model.tar")
    assert "FMT004" in {f.rule_id for f in result.findings}
    assert flags_payload(result)


def test_tar_member_with_a_negative_base_256_size() -> None:
    """Found by the fuzzer: a size field in base-256 with the negative marker (0xff) makes
    tarfile's next header offset negative; the scan reported a ValueError from `seek` (a
    scanner error) instead of a malformed archive."""
    data = bytearray(tar_of([("model.pkl", BENIGN, b"0")]) + tar_of([("x.pkl", PAYLOAD, b"0")]))
    header = data[:512]
    header[124:136] = b"\xff" * 4 + (2**64 - 5000).to_bytes(8, "big")  # a size of -5000
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\x00 " % sum(header)
    data[:512] = header
    with tarfile.open(fileobj=io.BytesIO(bytes(data))) as archive:
        assert archive.next() is not None and archive.offset < 0
    result = scan_data(bytes(data), "model.tar")
    assert not result.errors
    assert any(f.rule_id == "FMT004" and "negative" in f.message for f in result.findings), (
        result.findings
    )


def test_tar_with_base_256_checksum(tmp_path: Path) -> None:
    """A1-15: tarfile decodes base-256 numbers (first byte 0x80), so torch.load's legacy tar
    path opens a header whose checksum is stored that way."""
    data = bytearray(
        tar_of(
            [
                ("storages", PAYLOAD, b"0"),
                ("tensors", pickle.dumps(0), b"0"),
                ("pickle", pickle.dumps(0), b"0"),
            ]
        )
    )
    header = data[:512]
    header[148:156] = b" " * 8
    header[148:156] = b"\x80" + sum(header).to_bytes(7, "big")
    data[:512] = header
    data = bytes(data)
    assert identify(data[:1024], len(data), "checkpoint") == "tar"
    loader = (
        "import torch,sys\ntry: torch.load(sys.argv[1], weights_only=False)\nexcept Exception: pass"
    )
    assert runs_payload(tmp_path, "checkpoint", data, loader)
    assert flags_payload(scan_data(data, "checkpoint"))


def test_gzip_members_after_long_zero_padding(tmp_path: Path) -> None:
    """A1-14/A1-19: GzipFile skips any run of zeros between members."""
    data = gzip.compress(b"") + b"\x00" * (128 * 1024) + gzip.compress(PAYLOAD)
    loader = (
        "import gzip,pickle,sys\ntry: pickle.load(gzip.open(sys.argv[1]))\nexcept Exception: pass"
    )
    assert runs_payload(tmp_path, "model.pkl.gz", data, loader)
    assert flags_payload(scan_data(data, "model.pkl.gz"))


def test_zlib_stream_that_starts_with_empty_blocks(tmp_path: Path) -> None:
    """A1-24: joblib inflates any file starting with 'x'; 300 empty stored blocks first."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = b"\x00\x00\x00\xff\xff" * 300 + deflate.compress(PAYLOAD) + deflate.flush()
    data = b"\x78\x01" + body + struct.pack(">I", zlib.adler32(PAYLOAD))
    assert zlib.decompress(data) == PAYLOAD
    loader = "import joblib,sys\ntry: joblib.load(sys.argv[1])\nexcept Exception: pass"
    assert runs_payload(tmp_path, "finalized_model.sav", data, loader)
    assert identify(data[:1024], len(data)) == "zlib"
    assert flags_payload(scan_data(data, "finalized_model.sav"))


def test_zstd_pickle(tmp_path: Path) -> None:
    """A1-21: pandas.read_pickle('*.pkl.zst') and backports.zstd / Python 3.14's
    compression.zstd decompress zstd frames."""
    zstandard = pytest.importorskip("zstandard")
    pytest.importorskip("backports.zstd")
    data = zstandard.ZstdCompressor().compress(PAYLOAD)
    loader = (
        "import pickle,sys\nfrom backports import zstd\n"
        "try: pickle.load(zstd.open(sys.argv[1]))\nexcept Exception: pass"
    )
    assert runs_payload(tmp_path, "model.pkl.zst", data, loader)
    assert identify(data[:1024], len(data)) == "zstd"
    assert flags_payload(scan_data(data, "model.pkl.zst"))


def test_7z_duplicate_names_are_all_scanned(tmp_path: Path) -> None:
    """A1-25: py7zr extracts a second 'model.pkl' as 'model_0.pkl'; both must be scanned."""
    py7zr = pytest.importorskip("py7zr")
    buffer = io.BytesIO()
    with py7zr.SevenZipFile(buffer, "w") as archive:
        archive.writestr(BENIGN, "model.pkl")
        archive.writestr(PAYLOAD, "model.pkl")
    assert flags_payload(scan_data(buffer.getvalue(), "model.7z"))


def test_ordinary_tars_and_gzips_stay_quiet() -> None:
    data = tar_of([("model/config.json", b"{}", b"0"), ("model/model.pkl", BENIGN, b"0")])
    for sample, name in (
        (data, "model.tar"),
        (gzip.compress(data), "model.tar.gz"),
        (gzip.compress(BENIGN) + b"\x00" * 4096, "model.pkl.gz"),
    ):
        result = scan_data(sample, name)
        assert not [f for f in result.findings if f.severity.rank >= Severity.LOW.rank], name
        assert not result.incomplete, name
