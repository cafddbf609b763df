"""The HDF5 superblock is checked before libhdf5 sees a file (libhdf5 can loop forever in C on a
corrupt one, which only the scan worker's wall-time kill bounded). Files h5py writes, of every
superblock version it can write, pass; corrupt superblocks are FMT004 and never reach h5py."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import gate_fails, scan_data

from bastion.scan.hdf5_superblock import BadSuperblock, lookup3, read_superblock

h5py = pytest.importorskip("h5py")
FOUND = Path(__file__).parent.parent / "data" / "fuzz_regressions"
SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _write(path: Path, **options: object) -> bytes:
    with h5py.File(path, "w", **options) as h5:
        h5.attrs["model_config"] = '{"class_name": "Sequential", "config": {"layers": []}}'
        h5.create_dataset("weights/dense/kernel", data=np.arange(12.0).reshape(3, 4))
        h5["weights"].attrs["layer_names"] = [b"dense"]
    return path.read_bytes()


def _four_byte_offsets(path: Path) -> bytes:
    """sizes of offsets and lengths 4 (h5py's low-level file creation property list)."""
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_sizes(4, 4)
    with h5py.File(h5py.h5f.create(str(path).encode(), h5py.h5f.ACC_TRUNC, fcpl=fcpl)) as h5:
        h5["x"] = np.arange(3)
    return path.read_bytes()


WRITERS = {
    "v0 (libver earliest)": lambda p: _write(p, libver="earliest"),
    "v2 (libver v108)": lambda p: _write(p, libver=("v108", "latest")),
    "v3 (libver latest)": lambda p: _write(p, libver="latest"),
    "v0 after a 512-byte user block": lambda p: _write(p, userblock_size=512),
    "v3 after a 4096-byte user block": lambda p: _write(p, libver="latest", userblock_size=4096),
    "v2 with 4-byte offsets": _four_byte_offsets,
}


def _superblock(data: bytes) -> object:
    return read_superblock(io.BytesIO(data), len(data))


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_files_h5py_writes_pass(tmp_path: Path, kind: str) -> None:
    data = WRITERS[kind](tmp_path / "model.h5")
    block = _superblock(data)
    assert block.version == int(kind[1])  # type: ignore[attr-defined]
    result = scan_data(data, "model.h5")
    assert not result.errors
    assert "FMT004" not in {f.rule_id for f in result.findings}
    assert not gate_fails(result)


def test_the_model_config_is_still_judged_after_the_check(tmp_path: Path) -> None:
    """A legacy Keras config with a Lambda given as source text (ModelAudit's
    malicious_lambda.h5), in files of both superblock generations: the check lets them through
    to the config analysis, which flags them."""
    layer = {"class_name": "Lambda", "config": {"function": "lambda x: eval('1')"}}
    config = json.dumps({"class_name": "Sequential", "config": {"name": "m", "layers": [layer]}})
    for libver in ("earliest", "latest"):
        path = tmp_path / f"{libver}.h5"
        with h5py.File(path, "w", libver=libver) as h5:
            h5.attrs["model_config"] = config
        result = scan_data(path.read_bytes(), "model.h5")
        assert "KER001" in {f.rule_id for f in result.findings}, libver
        assert "FMT004" not in {f.rule_id for f in result.findings}, libver


def _with_checksum(data: bytearray, offset: int = 0) -> bytes:
    """Recompute a version 2/3 superblock's checksum after an edit (a deliberate corruption
    that libhdf5's own checksum test would not catch)."""
    width = data[offset + 9]
    end = offset + 12 + 4 * width
    data[end : end + 4] = struct.pack("<I", lookup3(bytes(data[offset:end])))
    return bytes(data)


def _v3_corruptions(original: bytes) -> dict[str, bytes]:
    ones = b"\xff" * 8
    out = {}
    for name, at in (("base", 12), ("end-of-file", 28), ("root group object header", 36)):
        for label, value in (("all ones", ones), ("2**40", struct.pack("<Q", 1 << 40))):
            data = bytearray(original)
            data[at : at + 8] = value
            out[f"v3 {name} {label}"] = _with_checksum(data)
    data = bytearray(original)
    data[12:44] = ones * 4
    out["v3 every address all ones"] = _with_checksum(data)
    out["v3 every address all ones, old checksum"] = bytes(data)
    data = bytearray(original)
    data[20:28] = struct.pack("<Q", len(original) + 8)
    out["v3 superblock extension past the end"] = _with_checksum(data)
    data = bytearray(original)
    data[9] = 3
    out["v3 size of offsets 3"] = bytes(data)
    data = bytearray(original)
    data[8] = 4
    out["superblock version 4"] = bytes(data)
    out["v3 truncated"] = original[:30]
    return out


def _v0_corruptions(original: bytes) -> dict[str, bytes]:
    out = {}
    for name, at in (("base", 24), ("end-of-file", 40), ("root group object header", 64)):
        data = bytearray(original)
        data[at : at + 8] = b"\xff" * 8
        out[f"v0 {name} all ones"] = bytes(data)
    for name, at in (("free-space info", 32), ("driver information", 48)):
        data = bytearray(original)
        data[at : at + 8] = struct.pack("<Q", len(original) * 2)
        out[f"v0 {name} past the end"] = bytes(data)
    data = bytearray(original)
    data[24:96] = b"\xff" * 72
    out["v0 every field after the ranks all ones"] = bytes(data)
    for name, at in (("free-space version", 9), ("root entry version", 10), ("shared", 12)):
        data = bytearray(original)
        data[at] = 1
        out[f"v0 {name} 1"] = bytes(data)
    data = bytearray(original)
    data[16:18] = b"\0\0"
    out["v0 leaf rank 0"] = bytes(data)
    data = bytearray(original)
    data[40:48] = struct.pack("<Q", 20)
    out["v0 end-of-file inside the superblock"] = bytes(data)
    return out


def test_corrupt_superblocks_are_malformed_and_never_reach_libhdf5(tmp_path: Path) -> None:
    cases = {
        **_v3_corruptions(_write(tmp_path / "v3.h5", libver="latest")),
        **_v0_corruptions(_write(tmp_path / "v0.h5", libver="earliest")),
        "signature only": SIGNATURE,
        "user block, then a superblock of version 9": b"\0" * 512 + SIGNATURE + b"\x09" * 100,
    }
    with pytest.raises(BadSuperblock, match="no HDF5 superblock signature"):
        _superblock(b"\0" * 512 + b"\x89HDF" + b"\0" * 600)
    for name, data in cases.items():
        with pytest.raises(BadSuperblock):
            _superblock(data)
        started = time.monotonic()
        result = scan_data(data, "model.h5")
        assert time.monotonic() - started < 5, name
        assert not result.errors, name
        messages = [f.message for f in result.findings if f.rule_id == "FMT004"]
        assert messages and "corrupt HDF5 superblock" in messages[0], (name, result.findings)
        assert gate_fails(result), name


def test_version_1_superblock_is_read() -> None:
    """h5py cannot write version 1 (a non-default indexed-storage rank): built by hand, with
    the root group's object header right after the superblock."""
    ranks = struct.pack("<HHI", 4, 16, 0) + struct.pack("<HH", 32, 0)
    length = 16 + len(ranks) + 6 * 8 + 24
    addresses = struct.pack("<QqQqQQ", 0, -1, length + 64, -1, 0, length)
    head = SIGNATURE + bytes([1, 0, 0, 0, 0, 8, 8, 0])
    data = head + ranks + addresses + struct.pack("<II", 0, 0) + bytes(16) + bytes(64)
    assert len(head + ranks + addresses) + 24 == length
    block = _superblock(data)
    assert block.version == 1 and block.root == length  # type: ignore[attr-defined]
    broken = bytearray(data)
    broken[24:26] = b"\0\0"  # indexed storage rank 0
    with pytest.raises(BadSuperblock, match="rank 0"):
        _superblock(bytes(broken))


def test_lookup3_matches_the_checksums_libhdf5_writes(tmp_path: Path) -> None:
    for libver in ("v108", "latest"):
        data = _write(tmp_path / f"{libver}.h5", libver=(libver, "latest"))
        assert struct.unpack_from("<I", data, 44)[0] == lookup3(data[:44])


@pytest.mark.parametrize("path", sorted(FOUND.glob("hdf5-*")), ids=lambda p: p.name)
def test_fuzz_regression_inputs_finish_quickly(path: Path) -> None:
    started = time.monotonic()
    result = scan_data(path.read_bytes(), path.name)
    assert time.monotonic() - started < 10
    assert not result.errors and "FMT004" in {f.rule_id for f in result.findings}


HANGS = Path(__file__).parent.parent / "data" / "hdf5_hangs"


def test_what_still_loops_in_libhdf5_is_bounded_by_the_worker(tmp_path: Path) -> None:
    """Found by fuzzing HDF5 in-process behind the superblock check: a valid superblock, and a
    global heap collection whose free-space object (index 0) has size 0, so libhdf5's heap
    parser never advances when a variable-length string attribute is read. Not scanned
    in-process here (it would hang the test run): the CLI's worker is killed at its time limit
    and the file is incomplete (LIM001), never clean."""
    data = (HANGS / "global-heap-zero-size-object.h5").read_bytes()
    assert _superblock(data).version == 0  # type: ignore[attr-defined]
    gcol = data.index(b"GCOL")
    assert data[gcol + 4] == 1
    target = tmp_path / "model.h5"
    target.write_bytes(data)
    command = [sys.executable, "-m", "bastion", "scan", str(target), "--timeout", "2"]
    ran = subprocess.run(
        [*command, "--no-store", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 1, ran.stderr[-500:]
    report = json.loads(ran.stdout)
    (result,) = report["results"]
    assert result["incomplete"]
    assert [f["rule_id"] for f in result["findings"]] == ["LIM001"]
