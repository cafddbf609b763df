"""One regression test per published container-level scanner bypass (zip/tar/compression),
each with its link. Samples are built in code; payloads only echo a marker, and where the
advisory says the real loader runs it, a subprocess proves it."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from helpers import scan_data
from zipcraft import Member, simple_zip

from bastion.findings import Severity, TargetResult

MARKER = "bastion-marker"
PAYLOAD = f"cos\nsystem\n(S'echo {MARKER}'\ntR.".encode()
TORCH_LOAD = (
    "import torch,sys\ntry: torch.load(sys.argv[1], weights_only=False)\nexcept Exception: pass"
)


def runs_payload(tmp_path: Path, name: str, data: bytes, loader: str = TORCH_LOAD) -> bool:
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


def torch_reads(data: bytes, record: str = "data.pkl") -> bytes | None:
    torch = pytest.importorskip("torch")
    try:
        return bytes(torch._C.PyTorchFileReader(io.BytesIO(data)).get_record(record))
    except RuntimeError:
        return None


def checkpoint(data_pkl: Member) -> list[Member]:
    return [data_pkl, Member(b"archive/version", b"3\n"), Member(b"archive/byteorder", b"little")]


def test_cve_2025_1944_local_and_central_names_differ(tmp_path: Path) -> None:
    """https://github.com/mmaitre314/picklescan/security/advisories/GHSA-7q5r-7gvp-wc82 —
    the local header names another file than the central directory: zipfile refuses the
    member (picklescan crashed), PyTorch loads it."""
    data = simple_zip(
        checkpoint(Member(b"archive/data.pkl", PAYLOAD, local_name=b"archive/innocent.txt"))
    )
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(data)).read("archive/data.pkl")
    assert torch_reads(data) == PAYLOAD
    assert runs_payload(tmp_path, "model.pt", data)
    result = scan_data(data, "model.pt")
    assert "ARC007" in {f.rule_id for f in result.findings}
    assert flags_payload(result)


@pytest.mark.parametrize("where", ["central", "local", "both"])
@pytest.mark.parametrize("bit", range(16))
def test_cve_2025_1945_flag_bits(bit: int, where: str) -> None:
    """https://github.com/mmaitre314/picklescan/security/advisories/GHSA-w8jq-xcqf-f792 —
    flipped general-purpose flag bits: whatever bit, wherever, if PyTorch's reader returns the
    payload bastion reports it; if no reader can, bastion does not call the file clean."""
    flags = 1 << bit
    member = Member(b"archive/data.pkl", PAYLOAD, flags=flags if where != "local" else 0)
    data = bytearray(simple_zip(checkpoint(member)))
    if where in ("local", "both"):
        data[6:8] = struct.pack("<H", flags)
    data = bytes(data)
    result = scan_data(data, "model.pt")
    if torch_reads(data) == PAYLOAD:
        assert flags_payload(result)
    else:
        assert flags_payload(result) or result.incomplete


@pytest.mark.parametrize("method", [0, 8], ids=["stored", "deflated"])
def test_cve_2025_10156_bad_crc(method: int, tmp_path: Path) -> None:
    """https://nvd.nist.gov/vuln/detail/CVE-2025-10156 (JFrog) — a wrong CRC makes zipfile
    raise at the end of the member, which halted picklescan; PyTorch ignores CRCs."""
    data = simple_zip(checkpoint(Member(b"archive/data.pkl", PAYLOAD, method=method, crc=1)))
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(data)).read("archive/data.pkl")
    assert runs_payload(tmp_path, "model.pt", data)
    assert flags_payload(scan_data(data, "model.pt"))


def test_cve_2025_1889_pickle_member_with_another_extension(tmp_path: Path) -> None:
    """https://github.com/mmaitre314/picklescan/security/advisories/GHSA-769v-p64c-89pr —
    picklescan only opened members with pickle extensions; a loader that reads the member
    by name runs it whatever it is called."""
    data = simple_zip(
        [
            *checkpoint(Member(b"archive/data.pkl", pickle.dumps([1]))),
            Member(b"archive/extra/config.p", PAYLOAD),
        ]
    )
    loader = (
        "import pickle,sys,zipfile\n"
        "pickle.load(zipfile.ZipFile(sys.argv[1]).open('archive/extra/config.p'))"
    )
    assert runs_payload(tmp_path, "model.pt", data, loader)
    assert flags_payload(scan_data(data, "model.pt"))


def test_cve_2025_10155_plain_pickle_under_a_pytorch_name(tmp_path: Path) -> None:
    """https://nvd.nist.gov/vuln/detail/CVE-2025-10155 (JFrog) — a plain pickle named like a
    PyTorch file was scanned as a zip and failed quietly; torch.load unpickles it."""
    assert runs_payload(tmp_path, "pytorch_model.bin", PAYLOAD)
    assert flags_payload(scan_data(PAYLOAD, "pytorch_model.bin"))


def test_saferpickle_pr_46_spanned_archive_marker(tmp_path: Path) -> None:
    """https://github.com/google/saferpickle/pull/46 — a zip starting with the spanned-archive
    marker PK\\x07\\x08 was not routed to the zip scanner; zipfile opens it anyway."""
    data = b"PK\x07\x08" + simple_zip([Member(b"model/payload.pkl", PAYLOAD)])
    loader = (
        "import pickle,sys,zipfile\n"
        "pickle.load(zipfile.ZipFile(sys.argv[1]).open('model/payload.pkl'))"
    )
    assert runs_payload(tmp_path, "model.zip", data, loader)
    assert flags_payload(scan_data(data, "model.zip"))


def test_modelscan_issue_354_corrupt_entry_before_data_pkl(tmp_path: Path) -> None:
    """https://github.com/protectai/modelscan/issues/354 — one unreadable entry before
    archive/data.pkl aborted modelscan's whole iteration (reported clean)."""
    data = bytearray(
        simple_zip(
            [
                Member(b"archive/aaa-broken", b"x" * 64),
                *checkpoint(Member(b"archive/data.pkl", PAYLOAD)),
            ]
        )
    )
    central = data.find(b"PK\x01\x02")
    data[central + 42 : central + 46] = struct.pack("<I", 8)  # no local header there
    data = bytes(data)
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(data)).read("archive/aaa-broken")
    assert runs_payload(tmp_path, "model.pt", data)
    result = scan_data(data, "model.pt")
    assert "ARC005" in {f.rule_id for f in result.findings}
    assert flags_payload(result)


def test_modelaudit_pr_942_extensionless_gzip_member() -> None:
    """https://github.com/promptfoo/modelaudit/pull/942 — a gzip-wrapped pickle without an
    extension inside a zip or tar was not routed to the decompressor."""
    wrapped = gzip.compress(PAYLOAD)
    assert flags_payload(scan_data(simple_zip([Member(b"blob", wrapped)]), "bundle.zip"))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("blob")
        info.size = len(wrapped)
        archive.addfile(info, io.BytesIO(wrapped))
    assert flags_payload(scan_data(buffer.getvalue(), "bundle.tar"))


def test_modelaudit_pr_624_protocol_0_pickle_named_txt() -> None:
    """https://github.com/promptfoo/modelaudit/pull/624 — a protocol 0 pickle named notes.txt
    inside a zip was skipped; the plain text that looks almost like one is not a pickle."""
    assert flags_payload(scan_data(simple_zip([Member(b"notes.txt", PAYLOAD)]), "a.zip"))
    plain = simple_zip([Member(b"notes.txt", b"c\nthis is plain text\nnot a pickle stream")])
    result = scan_data(plain, "a.zip")
    assert not [f for f in result.findings if f.severity.rank >= Severity.LOW.rank]
