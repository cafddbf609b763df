"""Identification decides as the loaders decide (issue #7, class 3): every sample here was read
as something harmless (or not at all) before, while a real loader runs its payload. Payloads only
echo a marker, in a throw-away subprocess."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import pickle
import pickletools
import struct
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import pytest
from helpers import scan_data, scan_file

from bastion.findings import Severity, TargetResult
from bastion.scan.identify import identify, identify_all
from bastion.scan.pickle_probe import (
    ARGUMENTS,
    LEN1,
    LEN4,
    LEN4_SIGNED,
    LEN8,
    LINE,
    NONE,
    START_OPCODES,
    TWO_LINES,
    looks_like_pickle,
)

MARKER = "bastion-marker"
PAYLOAD = f"cos\nsystem\n(S'echo {MARKER}'\ntR.".encode()  # protocol 0, the classic


def runs_payload(tmp_path: Path, name: str, data: bytes, loader: str) -> bool:
    """Load `data` with the real loader in a subprocess; True when the marker was echoed."""
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


PICKLE_LOAD = "import pickle,sys\ntry: pickle.load(open(sys.argv[1],'rb'))\nexcept Exception: pass"
JOBLIB_LOAD = "import joblib,sys\ntry: joblib.load(sys.argv[1])\nexcept Exception: pass"
TORCH_LOAD = (
    "import torch,sys\ntry: torch.load(sys.argv[1], weights_only=False)\nexcept Exception: pass"
)


def flags_payload(result: TargetResult) -> bool:
    return any("system" in f.evidence and f.severity is Severity.CRITICAL for f in result.findings)


# --- pickles the way _pickle reads them ------------------------------------------------------


def test_start_opcodes_are_what_cpython_accepts_first() -> None:
    """Every opcode _pickle accepts as a stream's first (given a valid argument), and no other."""
    arguments = {
        "uint1": b"\x01",
        "uint2": b"\x01\x00",
        "int4": b"\x01\x00\x00\x00",
        "uint4": b"\x01\x00\x00\x00",
        "uint8": b"\x01" + b"\x00" * 7,
        "decimalnl_short": b"1\n",
        "decimalnl_long": b"1\n",
        "stringnl": b"'a'\n",
        "stringnl_noescape": b"a\n",
        "stringnl_noescape_pair": b"builtins\nint\n",
        "string4": b"\x01\x00\x00\x00a",
        "string1": b"\x01a",
        "bytes1": b"\x01a",
        "bytes4": b"\x01\x00\x00\x00a",
        "bytes8": b"\x01" + b"\x00" * 7 + b"a",
        "bytearray8": b"\x01" + b"\x00" * 7 + b"a",
        "unicodestringnl": b"a\n",
        "unicodestring1": b"\x01a",
        "unicodestring4": b"\x01\x00\x00\x00a",
        "unicodestring8": b"\x01" + b"\x00" * 7 + b"a",
        "floatnl": b"1.0\n",
        "float8": b"\x00" * 8,
        "long1": b"\x01\x01",
        "long4": b"\x01\x00\x00\x00\x01",
    }

    class Recording(pickle.Unpickler):
        def persistent_load(self, pid: object) -> object:
            return 1

        def find_class(self, module: str, name: str) -> object:
            return int

    import copyreg

    copyreg.add_extension("bastion_test", "ext", 1)
    try:
        accepted = set()
        for op in pickletools.opcodes:
            arg = b"" if op.arg is None else arguments[op.arg.name]
            if op.name == "FRAME":
                arg = b"\x02" + b"\x00" * 7
            try:
                Recording(io.BytesIO(op.code.encode("latin-1") + arg + b"N.")).load()
                accepted.add(ord(op.code))
            except Exception:
                continue
    finally:
        copyreg.remove_extension("bastion_test", "ext", 1)
    # EXT1 works here (code 1 is registered); EXT2/EXT4 the same way with larger codes
    assert accepted | {0x83, 0x84} == set(START_OPCODES)


def test_argument_table_matches_pickletools() -> None:
    shapes = {
        "uint1": 1,
        "uint2": 2,
        "int4": 4,
        "uint4": 4,
        "uint8": 8,
        "float8": 8,
        "decimalnl_short": LINE,
        "decimalnl_long": LINE,
        "stringnl": LINE,
        "stringnl_noescape": LINE,
        "unicodestringnl": LINE,
        "floatnl": LINE,
        "stringnl_noescape_pair": TWO_LINES,
        "string1": LEN1,
        "bytes1": LEN1,
        "unicodestring1": LEN1,
        "long1": LEN1,
        "string4": LEN4_SIGNED,
        "long4": LEN4_SIGNED,
        "bytes4": LEN4,
        "unicodestring4": LEN4,
        "bytes8": LEN8,
        "unicodestring8": LEN8,
        "bytearray8": LEN8,
    }
    table = {
        ord(op.code): NONE if op.arg is None else shapes[op.arg.name] for op in pickletools.opcodes
    }
    assert table == ARGUMENTS


@pytest.mark.parametrize(
    "data",
    [
        b"I0x10\n0" + PAYLOAD,  # a hex int: valid to _pickle, an error to pickletools
        b"L0x10L\n0" + PAYLOAD,
        b"I" + b" " * 5000 + b"1\n0" + PAYLOAD,  # a first argument longer than the head
        PAYLOAD[:-1] + b"\xff" * 3000,  # the call runs before the unpickler meets the damage
        b"B" + struct.pack("<I", 3000) + b"x" * 3000 + b"0" + PAYLOAD,  # first opcode BINBYTES
        b")0" + PAYLOAD,  # EMPTY_TUPLE first
    ],
    ids=[
        "hex-int",
        "hex-long",
        "long-first-line",
        "broken-after-call",
        "binbytes-first",
        "empty-tuple-first",
    ],
)
def test_pickles_the_unpickler_runs_are_pickles(data: bytes, tmp_path: Path) -> None:
    assert runs_payload(tmp_path, "m.pkl", data, PICKLE_LOAD)
    assert identify(data[:1024], len(data), "m.pkl", lambda: io.BytesIO(data)) == "pickle"
    assert flags_payload(scan_data(data, "m.pkl"))


@pytest.mark.parametrize(
    "text",
    [
        b"Copyright 2024 The Authors. All rights reserved.\n" * 30,
        b"import os\nfrom pathlib import Path\n\nprint(Path.cwd())\n",
        b"cat\ndog\nfish\nbird\n",  # a GLOBAL-shaped word list: nothing is called
        b"# Title\n\nSome (a) text.\n",
        b"(c) 2024 ACME Inc.\n",
        b"Version: 1.2.3\n",
        b"col_a,col_b,col_c\n1,2,3\n",
        b"]]]]\n",
        b"N",
        b"Introduction\nThis model was trained on data.\n" * 40,
        # MIT licence: PERSID line, then OBJ (a persistent id is data, not an import)
        b"Permission is hereby granted, free of charge, to any person obtaining a copy\n"
        b'of this software and associated documentation files (the "Software"), to deal\n' * 5,
        # SHORT_BINBYTES whose length byte ('a' = 97) skips onto a '.' (STOP)
        b"CacheControl==0.14.4\ndistlib==0.4.4\ndistro==1.9.0\nmsgpack==1.2.4\n"
        b"packaging==26.3\nplatformdirs==4.12.4\npyproject-hooks==1.3.3\n" * 3,
        # SHORT_BINBYTES, SHORT_BINSTRING, then APPENDS without a mark: _pickle stops there
        b"VARIABLES X,Y\nCONSTANTS A,B,R\nEQN[1] = A*X^3+B*Y^2-R\n" * 6,
    ],
)
def test_text_is_not_a_pickle(text: bytes) -> None:
    assert not looks_like_pickle(text[:1024], len(text), lambda: io.BytesIO(text))
    assert "pickle" not in identify_all(text[:1024], len(text), "README")


def test_real_pickles_of_every_protocol_are_pickles() -> None:
    for protocol in range(6):
        data = pickle.dumps({"a": [1, 2.5, "x", b"y", None, True]}, protocol=protocol)
        assert identify(data[:1024], len(data)) == "pickle", protocol


# --- joblib's prefixes -----------------------------------------------------------------------


def test_joblib_raw_lzma_file(tmp_path: Path) -> None:
    """joblib.load decompresses a file starting with `]\\x00` as .lzma (FORMAT_ALONE)."""
    data = lzma.compress(PAYLOAD, format=lzma.FORMAT_ALONE)
    assert runs_payload(tmp_path, "m.joblib", data, JOBLIB_LOAD)
    assert identify(data[:1024], len(data)) == "lzma"
    assert flags_payload(scan_data(data, "m.joblib"))


def test_joblib_pre_0_10_zfile(tmp_path: Path) -> None:
    """joblib.load reads `ZF` + a hex length + a zlib stream (its format before 0.10)."""
    data = b"ZF" + hex(len(PAYLOAD)).encode().ljust(19) + zlib.compress(PAYLOAD)
    assert runs_payload(tmp_path, "m.pkl", data, JOBLIB_LOAD)
    assert identify(data[:1024], len(data)) == "zlib"
    assert flags_payload(scan_data(data, "m.pkl"))


def zlib_and_pickle(payload: bytes) -> bytes:
    """A valid zlib stream whose bytes are also a pickle: CMF '(' (MARK) and FLG 0x91
    (FROZENSET) pass zlib's header check; a stored block's header '(' + LEN 'J'... is read by
    the unpickler as MARK and BININT, whose argument swallows LEN/NLEN and one stored byte;
    then the stored bytes are the payload. zlib.decompress yields b'\\xff' + payload, which is
    not a pickle (so the zlib view alone looks harmless)."""
    raw = b"\xff" + payload
    raw += b"." * (0x014A - len(raw))
    return (
        b"(\x91("
        + struct.pack("<HH", 0x014A, 0x014A ^ 0xFFFF)
        + raw
        + b"\x01\x00\x00\xff\xff"
        + struct.pack(">I", zlib.adler32(raw))
    )


def test_zlib_stream_that_is_also_a_pickle(tmp_path: Path) -> None:
    data = zlib_and_pickle(PAYLOAD)
    assert zlib.decompress(data).startswith(b"\xff" + PAYLOAD)
    assert runs_payload(tmp_path, "m.bin", data, PICKLE_LOAD)
    assert set(identify_all(data[:1024], len(data))) == {"pickle", "zlib"}
    result = scan_data(data, "m.bin")
    assert flags_payload(result)
    assert "FMT002" in {f.rule_id for f in result.findings}  # both views, reported


# --- tar the way tarfile (torch.load's legacy path) reads it ---------------------------------


def v7_tar(members: dict[str, bytes]) -> bytes:
    """An old-style tar: no `ustar` magic, only a valid header checksum."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    blob = bytearray(buffer.getvalue())
    offset = 0
    while offset + 512 <= len(blob) and blob[offset : offset + 512].strip(b"\x00"):
        header = blob[offset : offset + 512]
        header[257:265] = b"\x00" * 8  # drop "ustar  \0"
        header[148:156] = b" " * 8
        header[148:156] = b"%06o\x00 " % sum(header)
        blob[offset : offset + 512] = header
        size = int(header[124:136].split(b"\x00")[0].strip() or b"0", 8)
        offset += 512 + (size + 511) // 512 * 512
    return bytes(blob)


def test_v7_tar_legacy_checkpoint(tmp_path: Path) -> None:
    data = v7_tar({"storages": PAYLOAD, "tensors": pickle.dumps(0), "pickle": pickle.dumps(0)})
    assert b"ustar" not in data
    assert runs_payload(tmp_path, "legacy.pt", data, TORCH_LOAD)
    assert identify(data[:1024], len(data)) == "tar"
    assert flags_payload(scan_data(data, "legacy.pt"))


def test_ordinary_tar_still_tar() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("weights.bin")
        info.size = 4
        archive.addfile(info, io.BytesIO(b"abcd"))
    data = buffer.getvalue()
    assert identify_all(data[:1024], len(data)) == ("tar",)


# --- protobufs by structure, in any field order ----------------------------------------------


def onnx_model_bytes() -> bytes:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, producer_name="bastion-test")
    data: bytes = model.SerializeToString()
    onnx.checker.check_model(model)
    return data


def top_fields(data: bytes) -> list[bytes]:
    """Split a serialized message into its top-level fields (raw bytes of each)."""
    from bastion.scan.protobuf import ProtoStream

    proto = ProtoStream(io.BytesIO(data), len(data))
    out, start = [], 0
    for _number, wire, pos, length in proto.fields(0, len(data)):
        end = pos + length if wire == 2 else (pos + length if wire in (1, 5) else None)
        if end is None:  # varint: find its end
            end = start + 1
            while data[end] & 0x80:
                end += 1
            end += 1
        out.append(data[start:end])
        start = end
    return out


def test_onnx_with_fields_in_another_order() -> None:
    onnx = pytest.importorskip("onnx")
    data = onnx_model_bytes()
    assert identify(data[:1024], len(data), "m.onnx") == "onnx"
    reordered = b"".join(reversed(top_fields(data)))
    assert reordered != data and reordered[0] != 0x08
    assert onnx.load_from_string(reordered).graph.node[0].op_type == "Relu"  # loader accepts
    assert (
        identify(reordered[:1024], len(reordered), "model.bin", lambda: io.BytesIO(reordered))
        == "onnx"
    )


def test_savedmodel_with_fields_in_another_order() -> None:
    from corpus.protobuf_writer import field_bytes, field_varint, node

    graph = field_bytes(1, node("a", "PyFunc"))
    meta_graph = field_bytes(2, graph)
    data = field_bytes(2, meta_graph) + field_varint(1, 1)  # meta_graphs before the version
    assert identify(data[:1024], len(data), "saved_model.pb") == "savedmodel"
    assert identify(data[:1024], len(data), "renamed.dat") == "savedmodel"


def test_keras_metadata_pb_is_identified() -> None:
    """keras_metadata.pb: SavedMetadata { repeated SavedObject nodes = 1 } with node_id (2),
    node_path (3), identifier (4), metadata (5, JSON)."""
    from corpus.protobuf_writer import field_bytes, field_varint

    def saved_object(node_id: int, path: str, metadata: str) -> bytes:
        return (
            field_varint(2, node_id)
            + field_bytes(3, path.encode())
            + field_bytes(4, b"_tf_keras_layer")
            + field_bytes(5, metadata.encode())
        )

    data = b"".join(
        field_bytes(1, saved_object(i, f"root.layer-{i}", '{"class_name": "Dense", "config": {}}'))
        for i in range(3)
    )
    assert identify(data[:1024], len(data), "keras_metadata.pb") == "keras_metadata"
    assert identify(data[:1024], len(data), "other.pb") == "keras_metadata"


def test_frozen_graphdef_is_identified() -> None:
    from corpus.protobuf_writer import field_bytes, node

    data = b"".join(field_bytes(1, node(f"n{i}", "Const")) for i in range(4))
    assert identify(data[:1024], len(data), "frozen.pb") == "tf_graphdef"
    assert not scan_data(data, "frozen.pb").findings
    evil = data + field_bytes(1, node("call", "PyFunc"))
    assert "TF001" in {f.rule_id for f in scan_data(evil, "frozen.pb").findings}


def test_savedmodel_text_form() -> None:
    text = (
        b"# a comment\nsaved_model_schema_version: 1\nmeta_graphs {\n  graph_def {\n"
        b'    node {\n      name: "a"\n      op: "PyFunc"\n    }\n  }\n}\n'
    )
    assert identify(text[:1024], len(text), "saved_model.pbtxt") == "savedmodel_text"
    reordered = b"meta_graphs {\n  graph_def {\n  }\n}\nsaved_model_schema_version: 1\n"
    assert identify(reordered, len(reordered), "x.txt") == "savedmodel_text"
    assert identify(b'node {\n  name: "a"\n  op: "Const"\n}\n', 30) == "savedmodel_text"


def test_random_binary_is_not_a_protobuf_model() -> None:
    import random

    rng = random.Random(7)
    for _ in range(200):
        blob = bytes(rng.randrange(256) for _ in range(300))
        assert set(identify_all(blob, len(blob))) <= {
            "unknown",
            "pickle",
            "zlib",
            "safetensors",
            "tar",
        }


# --- bytes after the end of a compressed stream ----------------------------------------------

BZ2_LOAD = "import bz2,pickle,sys\ntry: pickle.load(bz2.open(sys.argv[1]))\nexcept Exception: pass"
XZ_LOAD = "import lzma,pickle,sys\ntry: pickle.load(lzma.open(sys.argv[1]))\nexcept Exception: pass"


@pytest.mark.parametrize(
    "compress,loader", [(bz2.compress, BZ2_LOAD), (lzma.compress, XZ_LOAD)], ids=["bz2", "xz"]
)
def test_second_stream_is_read_by_the_loader(compress: object, loader: str, tmp_path: Path) -> None:
    """bz2.open/lzma.open continue into a following stream: the payload's second half is
    there (the first stream alone is a truncated, harmless pickle)."""
    cut = PAYLOAD.index(b"(")
    data = compress(PAYLOAD[:cut]) + compress(PAYLOAD[cut:])  # type: ignore[operator]
    assert runs_payload(tmp_path, "m.pkl", data, loader)
    assert flags_payload(scan_data(data, "m.pkl"))


def test_data_after_a_gzip_stream_is_scanned() -> None:
    data = gzip.compress(pickle.dumps([1, 2])) + PAYLOAD
    result = scan_data(data, "m.pkl.gz")
    assert "ARC008" in {f.rule_id for f in result.findings}
    assert flags_payload(result)


def test_zero_padding_after_a_stream_is_fine() -> None:
    data = gzip.compress(pickle.dumps([1, 2])) + b"\x00" * 512
    result = scan_data(data, "m.pkl.gz")
    assert not [f for f in result.findings if f.severity.rank >= Severity.LOW.rank]
    assert not result.incomplete


def test_multi_member_gzip_is_one_stream() -> None:
    data = gzip.compress(b"\x80\x04") + gzip.compress(PAYLOAD)
    assert flags_payload(scan_data(data, "m.pkl.gz"))


# --- ordinary files stay quiet ---------------------------------------------------------------


def test_ordinary_compressed_pickles_are_clean(tmp_path: Path) -> None:
    joblib = pytest.importorskip("joblib")
    for compress in ("zlib", "gzip", "bz2", "lzma", "xz"):
        path = tmp_path / f"model.{compress}.joblib"
        joblib.dump({"weights": [1.0, 2.0], "name": "m"}, path, compress=compress)
        result = scan_file(path)
        assert not [f for f in result.findings if f.severity.rank >= Severity.LOW.rank], compress
        assert not result.incomplete and not result.errors, compress


def test_stream_shorter_than_declared() -> None:
    """Found by atheris: a zip member that declares more bytes than it holds."""
    for data in (b"(", b"(N", b"\x80\x02N"):
        assert looks_like_pickle(data, 1000, lambda d=data: io.BytesIO(d)) is False


# --- what the loader's library finds where bastion did not look ------------------------------


def test_hdf5_after_a_user_block(tmp_path: Path) -> None:
    """libhdf5 finds the superblock at 512, 1024, 2048, ... bytes: a file that starts as a
    pickle is also the Keras .h5 model h5py opens."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "model.h5"
    config = '{"class_name": "Sequential", "config": {"layers": []}}'
    with h5py.File(path, "w", userblock_size=1024) as handle:
        handle.attrs["model_config"] = config
    data = bytearray(path.read_bytes())
    data[: len(PAYLOAD)] = PAYLOAD
    data = bytes(data)
    path.write_bytes(data)
    with h5py.File(path, "r") as handle:
        assert handle.attrs["model_config"] == config
    assert identify_all(data[:1024], len(data), "model.h5", lambda: io.BytesIO(data)) == (
        "pickle",
        "hdf5",
    )
    result = scan_data(data, "model.h5")
    assert flags_payload(result) and "FMT002" in {f.rule_id for f in result.findings}


def gnu_sparse_member(name: bytes, chunks: list[tuple[int, bytes]], size: int) -> bytes:
    """One old-GNU sparse ('S') tar member: stored chunks at logical offsets, zeros between."""

    def octal(value: int, width: int) -> bytes:
        return b"%0*o\x00" % (width - 1, value)

    stored = b"".join(chunk for _offset, chunk in chunks)
    header = bytearray(512)
    header[0 : len(name)] = name
    header[100:108], header[108:116], header[116:124] = octal(0o644, 8), octal(0, 8), octal(0, 8)
    header[124:136], header[136:148] = octal(len(stored), 12), octal(0, 12)
    header[156:157] = b"S"
    header[257:265] = b"ustar  \x00"
    sparse_map = b"".join(octal(offset, 12) + octal(len(chunk), 12) for offset, chunk in chunks)
    header[386 : 386 + len(sparse_map)] = sparse_map
    header[483:495] = octal(size, 12)
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\x00 " % sum(header)
    return bytes(header) + stored.ljust((len(stored) + 511) // 512 * 512, b"\x00")


def test_sparse_tar_member_is_read_as_extracted(tmp_path: Path) -> None:
    """torch.load's legacy path extracts 'storages' with tarfile: a GNU sparse member gets its
    holes filled with zeros, so the extracted pickle differs from the stored bytes (which read
    as one truncated BINBYTES8)."""
    hole = 4096
    first = b"\x80\x02\x8e" + struct.pack("<Q", hole - 11)  # BINBYTES8 swallowing the hole
    second = b"0" + PAYLOAD
    data = (
        gnu_sparse_member(b"storages", [(0, first), (hole, second)], hole + len(second))
        + b"\x00" * 1024
    )
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        extracted = archive.extractfile("storages").read()  # type: ignore[union-attr]
    assert extracted.endswith(PAYLOAD) and PAYLOAD not in first + second[:1]
    assert runs_payload(tmp_path, "legacy.pt", data, TORCH_LOAD)
    assert flags_payload(scan_data(data, "legacy.pt"))


@pytest.mark.parametrize(
    "data",
    [
        b"(cpty\nspawn\nS'id'o.",
        b"cbuiltins\ngetattr\nS'os'S'system'\x86R.",
        b"cbuiltins\neval\nS\"print('hello')\"\x85R.",
    ],
)
def test_a_broken_stream_that_imports_a_dangerous_name_is_a_pickle(data: bytes) -> None:
    """fickling's own samples: text-like streams (a letter first, nothing around the GLOBAL)
    that the unpickler still resolves — importing pty or builtins.eval — before it breaks."""
    from helpers import gate_fails, scan_data

    assert looks_like_pickle(data, len(data))
    assert gate_fails(scan_data(data, "m.pkl"))


def test_text_naming_ordinary_modules_stays_text() -> None:
    data = b"certifi\nnumpy\npandas==2.0\n"
    assert not looks_like_pickle(data, len(data))
