"""One regression test per published bypass or loader advisory of Keras, ONNX, GGUF and
safetensors (2023-2026), each built in code from its advisory with a harmless payload, and run
against the real loader where it is installed and safe to do so. Template-injection advisories
(CVE-2024-34359) are tested with the template analysis; pickle-scanner bypasses in
test_advisories.py."""

from __future__ import annotations

import base64
import io
import json
import marshal
import os
import struct
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from helpers import gate_fails, rules, scan_data, scan_file

from bastion.findings import Severity

MARKER = "bastion-marker"


def _run(tmp_path: Path, code: str) -> str:
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    return proc.stdout + proc.stderr


# --- Keras ----------------------------------------------------------------------------------


def _keras(*layers: dict[str, Any]) -> bytes:
    config = {
        "module": "keras.src.models.functional",
        "class_name": "Functional",
        "config": {
            "name": "m",
            "trainable": True,
            "layers": list(layers),
            "input_layers": [],
            "output_layers": [["gadget", 0, 0]],
        },
        "registered_name": "Functional",
    }
    buffer = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            "metadata.json",
            json.dumps({"keras_version": "3.15.1", "date_saved": "2026-01-01@00:00:00"}),
        )
        archive.writestr("config.json", json.dumps(config))
    return buffer.getvalue()


def _lambda(function: dict[str, Any], arguments: dict[str, Any], inputs: object) -> dict[str, Any]:
    return {
        "module": "keras.layers",
        "class_name": "Lambda",
        "config": {"name": "gadget", "function": function, "arguments": arguments},
        "build_config": {"input_shape": [None, 10]},
        "name": "gadget",
        "inbound_nodes": [{"args": [], "kwargs": {"inputs": inputs}}],
    }


def _fn(module: str, name: str) -> dict[str, Any]:
    return {
        "module": module,
        "class_name": "function",
        "config": name,
        "registered_name": "function",
    }


def _bytecode_lambda() -> dict[str, Any]:
    code = marshal.dumps(compile(f"lambda x: print('{MARKER}') or x", "<poc>", "eval"))
    return {
        "module": "keras.layers",
        "class_name": "Lambda",
        "config": {
            "name": "gadget",
            "function": {
                "class_name": "__lambda__",
                "config": {
                    "code": base64.b64encode(code).decode(),
                    "defaults": None,
                    "closure": None,
                },
            },
        },
        "name": "gadget",
        "inbound_nodes": [],
    }


def test_cve_2024_3660_lambda_bytecode(tmp_path: Path) -> None:
    """https://nvd.nist.gov/vuln/detail/CVE-2024-3660 — a Lambda layer's marshalled bytecode
    ran on load (Keras < 2.13; today whenever safe_mode is off)."""
    (tmp_path / "m.keras").write_bytes(_keras(_bytecode_lambda()))
    assert "KER001" in rules(scan_file(tmp_path / "m.keras"), Severity.CRITICAL)


def test_cve_2025_1550_arbitrary_module_function() -> None:
    """https://github.com/keras-team/keras/security/advisories/GHSA-48g7-3x6r-xfhp — Keras < 3.9
    imported any `module` named in config.json and called the function with the config's
    arguments (here subprocess.Popen through a Lambda)."""
    data = _keras(_lambda(_fn("subprocess", "Popen"), {"args": ["echo", MARKER]}, "x"))
    assert "KER003" in rules(scan_data(data, "m.keras"), Severity.CRITICAL)


def test_cve_2025_8747_get_file_function_reference() -> None:
    """https://github.com/io-no/CVE-Reports/issues/5 (CVE-2025-8747) — keras.utils.get_file
    named as a function reference in a Lambda downloads an attacker file under safe_mode."""
    data = _keras(
        _lambda(
            _fn("keras.utils", "get_file"),
            {"origin": "http://127.0.0.1:9/x", "cache_dir": "/tmp"},
            "x",
        )
    )
    assert "KER003" in rules(scan_data(data, "m.keras"), Severity.CRITICAL)


def test_cve_2025_9906_safe_mode_switched_off_by_the_model() -> None:
    """https://github.com/io-no/CVE-Reports/issues/5 (CVE-2025-9906) — a Lambda calls
    keras.config.enable_unsafe_deserialization, then a bytecode Lambda runs."""
    switch = _lambda(_fn("keras.config", "enable_unsafe_deserialization"), {}, "x")
    result = scan_data(_keras(switch, _bytecode_lambda()), "m.keras")
    assert {"KER001", "KER003"} <= rules(result, Severity.CRITICAL)


def test_keras_3_15_still_calls_public_function_references(tmp_path: Path) -> None:
    """The same class against today's keras (3.15, safe_mode=True): any public API function
    not on keras' denylist is called with the config's input (harmless marker: set_floatx)."""
    (tmp_path / "m.keras").write_bytes(
        _keras(_lambda(_fn("keras.config", "set_floatx"), {}, "float16"))
    )
    assert "KER003" in rules(scan_file(tmp_path / "m.keras"), Severity.CRITICAL)
    out = _run(
        tmp_path,
        "import keras\ntry:\n keras.saving.load_model('m.keras')\n"
        "except Exception:\n pass\nprint('floatx', keras.config.floatx())",
    )
    assert "floatx float16" in out, out


def test_cve_2025_9905_hdf5_lambda(tmp_path: Path) -> None:
    """https://github.com/io-no/CVE-Reports/issues/7 (CVE-2025-9905) — legacy HDF5 models
    ignore safe_mode; a Lambda's bytecode runs."""
    h5py = pytest.importorskip("h5py")
    code = base64.b64encode(marshal.dumps(compile("lambda x: x", "<poc>", "eval"))).decode()
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs["model_config"] = json.dumps(
            {
                "class_name": "Sequential",
                "config": {
                    "layers": [
                        {
                            "class_name": "Lambda",
                            "config": {"function": [code, None, None], "function_type": "lambda"},
                        }
                    ]
                },
            }
        )
    assert "KER001" in rules(scan_file(path), Severity.CRITICAL)


def test_cve_2025_49655_torch_module_wrapper() -> None:
    """https://nvd.nist.gov/vuln/detail/CVE-2025-49655 — TorchModuleWrapper deserialises a
    pickled torch module with torch.load(weights_only=False)."""
    from corpus import opcodes as op

    wrapped = {
        "module": "keras.layers",
        "class_name": "TorchModuleWrapper",
        "config": {"module": base64.b64encode(op.system_call()).decode()},
        "registered_name": None,
    }
    result = scan_data(_keras(wrapped), "m.keras")
    assert "KER004" in rules(result)
    assert "PKL001" in rules(result, Severity.CRITICAL)


def test_keras_lookup_vocabulary_file_read() -> None:
    """https://github.com/keras-team/keras/pull/21751 (and #23050) — StringLookup/IndexLookup
    read a `vocabulary` file path named in the config on load (arbitrary local or gs:// file
    read into the model)."""
    layer = {
        "module": "keras.layers",
        "class_name": "StringLookup",
        "config": {"vocabulary": "/etc/passwd"},
        "registered_name": None,
    }
    assert "KER003" in rules(scan_data(_keras(layer), "m.keras"), Severity.HIGH)


def test_keras_hub_tokenizer_file_read() -> None:
    """https://github.com/keras-team/keras-hub/pull/2517 — keras-hub tokenizers read vocabulary
    / merges / proto paths from the config under safe_mode."""
    layer = {
        "module": "keras_hub.src.tokenizers.byte_pair_tokenizer",
        "class_name": "BytePairTokenizer",
        "config": {"vocabulary": "/home/user/.aws/credentials", "merges": "/etc/hosts"},
        "registered_name": "keras_hub>BytePairTokenizer",
    }
    assert "KER003" in rules(scan_data(_keras(layer), "m.keras"), Severity.HIGH)


def test_keras_tfsmlayer_loads_an_external_savedmodel() -> None:
    """https://github.com/keras-team/keras/pull/23050 (TFSMLayer.from_config fails closed) —
    TFSMLayer loads and runs the SavedModel at a config-chosen path."""
    layer = {
        "module": "keras.layers",
        "class_name": "TFSMLayer",
        "config": {"filepath": "/tmp/attacker_savedmodel"},
        "registered_name": None,
    }
    assert "KER003" in rules(scan_data(_keras(layer), "m.keras"), Severity.CRITICAL)


# --- ONNX -----------------------------------------------------------------------------------


def _onnx_external(location: str) -> bytes:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1])
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "4")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["y"])],
        "g",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [weight],
    )
    model = helper.make_model(graph)
    data: bytes = model.SerializeToString()
    onnx.load_model_from_string(data)  # the real parser accepts the file
    return data


@pytest.mark.parametrize(
    "location,reference",
    [
        ("../../../../etc/passwd", "https://nvd.nist.gov/vuln/detail/CVE-2022-25882"),
        ("weights/../../../etc/passwd", "https://nvd.nist.gov/vuln/detail/CVE-2024-27318"),
        ("/etc/passwd", "https://nvd.nist.gov/vuln/detail/CVE-2024-27318"),
        ("../../tmp/overwritten", "https://github.com/onnx/onnx/pull/6959 (CVE-2025-51480)"),
        ("..\\..\\windows\\win.ini", "https://nvd.nist.gov/vuln/detail/CVE-2022-25882"),
    ],
)
def test_onnx_external_data_traversal(location: str, reference: str) -> None:
    result = scan_data(_onnx_external(location), "model.onnx")
    assert "ONX001" in rules(result, Severity.CRITICAL), (reference, result.findings)


def test_onnx_external_data_symlink(tmp_path: Path) -> None:
    """https://nvd.nist.gov/vuln/detail/CVE-2026-27489 — a plainly named external data file
    that is a symbolic link out of the model folder (fixed in onnx 1.21)."""
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").symlink_to(outside)
    (folder / "model.onnx").write_bytes(_onnx_external("weights.bin"))
    assert "ONX001" in rules(scan_file(folder / "model.onnx"), Severity.CRITICAL)


def test_cve_2024_5187_model_tarball_traversal() -> None:
    """https://github.com/advisories/GHSA-6rq9-53c3-f7vj — onnx.hub extracted model tarballs
    without checking member names ('../' overwrote files)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (
            ("model/model.onnx", _onnx_external("w.bin")),
            ("../../.bashrc", b"echo bastion-marker\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert "ARC001" in rules(scan_data(buffer.getvalue(), "model.tar.gz"), Severity.HIGH)


# --- GGUF -----------------------------------------------------------------------------------


def _s(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def _gguf(n_tensors: int, n_kv: int, body: bytes) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv) + body


def _kv_u32(key: str, value: int) -> bytes:
    return _s(key) + struct.pack("<II", 4, value)


def _tensor(name: str, dims: tuple[int, ...], ggml_type: int = 0, offset: int = 0) -> bytes:
    return (
        _s(name)
        + struct.pack("<I", len(dims))
        + b"".join(struct.pack("<Q", d) for d in dims)
        + struct.pack("<IQ", ggml_type, offset)
    )


def _padded(header: bytes, data: bytes = b"") -> bytes:
    return header + b"\x00" * (-len(header) % 32) + data


# Talos, February 2024 (GGML GGUF heap overflows) and Databricks' "GGML GGUF File Format
# Vulnerabilities" (CVE-2024-25664..25668, January 2024): counts and lengths trusted before
# allocation.
@pytest.mark.parametrize(
    "data,reference",
    [
        (_gguf(0, 1 << 62, b""), "https://nvd.nist.gov/vuln/detail/CVE-2024-23605 (n_kv)"),
        (_gguf(1 << 62, 0, b""), "https://nvd.nist.gov/vuln/detail/CVE-2024-21836 (n_tensors)"),
        (
            _gguf(0, 1, struct.pack("<Q", (1 << 64) - 1) + b"k"),
            "https://nvd.nist.gov/vuln/detail/CVE-2024-23496 (string length wraps)",
        ),
        (
            _gguf(0, 1, _s("k") + struct.pack("<IIQ", 9, 8, 1 << 62)),
            "https://nvd.nist.gov/vuln/detail/CVE-2024-21825 (array of strings count)",
        ),
        (
            _gguf(1, 0, _tensor("t", (1, 1, 1, 1, 1))),
            "https://nvd.nist.gov/vuln/detail/CVE-2024-21802 (n_dims > GGML_MAX_DIMS)",
        ),
        (
            _gguf(1, 0, _tensor("t", (1 << 40, 1 << 40))),
            "https://github.com/ggml-org/llama.cpp/pull/18674 (dimension product overflow)",
        ),
        (
            _padded(_gguf(1, 0, _tensor("t", (1024,)))),
            "https://github.com/advisories/GHSA-96jg-mvhq-q7q7 (CVE-2026-33298: tensor larger than "
            "its data; also CVE-2026-7482 'Bleeding Llama' out-of-bounds read)",
        ),
        (
            _gguf(1, 0, _tensor("t", (32,), ggml_type=0xFFFFFFFF)),
            "https://github.com/ggml-org/llama.cpp/pull/19856 (negative tensor type)",
        ),
        (
            _gguf(0, 1, _kv_u32("general.alignment", 0)),
            "https://github.com/ggml-org/llama.cpp/pull/19856 (alignment not a power of two)",
        ),
        (
            _gguf(0, 1, _kv_u32("general.alignment", 0x80000000)),
            "https://github.com/ggml-org/llama.cpp/pull/24997 (alignment overflow)",
        ),
    ],
    ids=[
        "n_kv",
        "n_tensors",
        "string_length",
        "string_array_count",
        "n_dims",
        "dim_product",
        "data_past_eof",
        "negative_type",
        "alignment_zero",
        "alignment_huge",
    ],
)
def test_gguf_declared_sizes(data: bytes, reference: str) -> None:
    result = scan_data(data, "model.gguf")
    assert gate_fails(result, Severity.HIGH), (reference, result.findings)


def _gguf_py(tmp_path: Path, build, readable: bool = True) -> Path:  # type: ignore[no-untyped-def]
    """A structurally valid GGUF written by gguf-py, read back by gguf-py's reader."""
    gguf = pytest.importorskip("gguf")
    import numpy as np

    path = tmp_path / "model.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    build(writer, gguf)
    writer.add_tensor("w", np.zeros((2, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if readable:
        gguf.GGUFReader(str(path))  # the real reader accepts it
    return path


def test_gguf_block_count_over_max_layers(tmp_path: Path) -> None:
    """https://github.com/ggml-org/llama.cpp/pull/25821 — block_count > LLAMA_MAX_LAYERS (512)
    wrote past llama_hparams' fixed arrays."""
    path = _gguf_py(tmp_path, lambda w, g: w.add_block_count(100_000))
    assert "GGF001" in rules(scan_file(path), Severity.HIGH)


def test_gguf_tokenizer_array_of_the_wrong_type(tmp_path: Path) -> None:
    """https://github.com/ggml-org/llama.cpp/pull/26690 — tokenizer.ggml.scores declared as
    UINT8 but read as float32: a heap read past the array."""

    def build(writer: Any, gguf: Any) -> None:
        writer.add_key_value(
            "tokenizer.ggml.scores",
            [1, 2, 3],
            gguf.GGUFValueType.ARRAY,
            sub_type=gguf.GGUFValueType.UINT8,
        )

    assert "GGF001" in rules(scan_file(_gguf_py(tmp_path, build)), Severity.HIGH)


def test_gguf_alignment_of_the_wrong_type(tmp_path: Path) -> None:
    """https://github.com/ggml-org/llama.cpp/pull/26318 — general.alignment stored as INT32
    hit an assertion in the loader."""

    def build(writer: Any, gguf: Any) -> None:
        writer.add_key_value("general.alignment", 32, gguf.GGUFValueType.INT32)

    path = _gguf_py(tmp_path, build, readable=False)  # gguf-py refuses it; llama.cpp asserted
    assert "GGF001" in rules(scan_file(path), Severity.HIGH)


def test_gguf_byte_token_outside_the_table(tmp_path: Path) -> None:
    """https://github.com/ggml-org/llama.cpp/pull/25969 — a '<0x-1>' byte token made the
    PLaMo-2 tokenizer write before its 256-entry table."""

    def build(writer: Any, gguf: Any) -> None:
        writer.add_tokenizer_model("plamo2")
        writer.add_token_list(["<unk>", "<0x0A>", "<0x-1>"])

    assert "GGF001" in rules(scan_file(_gguf_py(tmp_path, build)), Severity.HIGH)


def test_gguf_ordinary_file_is_clean(tmp_path: Path) -> None:
    def build(writer: Any, gguf: Any) -> None:
        writer.add_block_count(2)
        writer.add_tokenizer_model("llama")
        writer.add_token_list(["<unk>", "<0x0A>", "a"])
        writer.add_token_scores([0.0, 0.0, 0.0])
        writer.add_token_types([2, 6, 1])

    result = scan_file(_gguf_py(tmp_path, build))
    assert not result.findings, result.findings


def test_gguf_block_table_matches_gguf_py() -> None:
    gguf = pytest.importorskip("gguf")
    from bastion.scan.gguf import GGML_BLOCKS

    expected = {int(t): (size[0], size[1]) for t, size in gguf.GGML_QUANT_SIZES.items()}
    assert expected == GGML_BLOCKS


# --- safetensors ----------------------------------------------------------------------------


def _safetensors(header: str, data: bytes) -> bytes:
    raw = header.encode()
    return struct.pack("<Q", len(raw)) + raw + data


def test_safetensors_duplicate_keys() -> None:
    """https://github.com/safetensors/safetensors/issues/401 — a header repeating a key: JSON
    readers keep different copies (the Rust reader refuses, Python's json keeps the last)."""
    header = (
        '{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
        '"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}'
    )
    assert "SFT003" in rules(scan_data(_safetensors(header, b"\x00" * 8), "m.safetensors"))


def test_safetensors_overlapping_tensors() -> None:
    """https://huggingface.co/blog/safetensors-security-audit (Trail of Bits audit, 2023) —
    tensors aliasing the same bytes load differently in lazy and eager readers."""
    header = (
        '{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
        '"b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}'
    )
    result = scan_data(_safetensors(header, b"\x00" * 12), "m.safetensors")
    assert gate_fails(result, Severity.HIGH)


def test_safetensors_header_length_beyond_the_file() -> None:
    """https://huggingface.co/blog/safetensors-security-audit — the 8-byte header length sized
    an allocation before any check (out-of-memory on a tiny file)."""
    data = struct.pack("<Q", (1 << 63) + 2) + b'{"a": 1}'
    assert gate_fails(scan_data(data, "m.safetensors"), Severity.MEDIUM)
