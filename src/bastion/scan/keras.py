"""Keras artifacts: v3 `.keras` archives (config.json), legacy HDF5 (.h5) model_config, and Keras
configs embedded elsewhere. Checks Lambda layers with bytecode, references outside Keras,
in-framework gadgets (safe-mode switches, file fetchers, nested torch pickles) and nested models."""

from __future__ import annotations

import base64
import binascii
import json
import sys
from typing import Any

from bastion import coverage
from bastion.errors import LimitExceeded
from bastion.findings import Confidence, Location, Severity, Stage
from bastion.rules import Rule
from bastion.scan.base import MALFORMED, ScanContext
from bastion.scan.hdf5_superblock import BadSuperblock, read_superblock
from bastion.scan.source import CorruptInput, Source, bytes_source
from bastion.scan.ziparchive import ZipReader
from bastion.scan.zipmembers import member_source, scan_zip_member

LAMBDA_LAYER = Rule(
    id="KER001",
    title="Keras Lambda layer carries Python bytecode",
    severity=Severity.CRITICAL,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="A Lambda layer stores a marshalled Python function; loading the model with "
    "safe_mode off (or any legacy HDF5 loader, CVE-2025-9905) runs it.",
    remediation="Replace Lambda layers by registered custom layers whose code you ship and "
    "review; load with safe_mode=True.",
)
OUTSIDE_KERAS = Rule(
    id="KER002",
    title="Keras config references code outside Keras",
    severity=Severity.HIGH,
    confidence=Confidence.MEDIUM,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="The config names a module or registered object outside the keras package; "
    "deserialising imports it and calls it with config-controlled arguments "
    "(CVE-2025-1550).",
    remediation="Make sure the referenced module is your own, reviewed code; otherwise reject "
    "the model.",
)
KERAS_GADGET = Rule(
    id="KER003",
    title="Keras config calls a dangerous in-framework function",
    severity=Severity.CRITICAL,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="The config invokes a Keras/TensorFlow function that disables safe mode, "
    "downloads or reads files, or deserialises a pickle (CVE-2025-1550, "
    "CVE-2025-8747, CVE-2025-49655) — safe_mode does not stop these.",
    remediation="Reject the model.",
)
NESTED_MODEL = Rule(
    id="KER004",
    title="Keras config embeds a serialized sub-model or module",
    severity=Severity.MEDIUM,
    confidence=Confidence.MEDIUM,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="A layer carries a serialized model or framework module (e.g. "
    "TorchModuleWrapper). It is scanned as well; its loader may not honour safe_mode.",
    remediation="Review the embedded object.",
)

# the rules this module's checks emit (listed in bastion.catalogue)
RULES = (LAMBDA_LAYER, OUTSIDE_KERAS, KERAS_GADGET, NESTED_MODEL)

_KERAS_MODULES = (
    "keras",
    "keras.src",
    "tf_keras",
    "tensorflow.keras",
    "keras_hub",
    "keras_nlp",
    "keras_cv",
)
# Name segments (of module.class_name.registered_name) that make a config entry a gadget.
_GADGETS = frozenset(
    {
        "enable_unsafe_deserialization",
        "get_file",
        "load_model",
        "load_weights",
        "read_file",
        "write_file",
        "gfile",
        "file_utils",
        "exec",
        "eval",
        "system",
        "popen",
        "load",
        "loads",
        "load_from_bytes",
        "import_module",
        "deserialize_keras_object",
        "saving_lib",
        "legacy_h5_format",
        "pickle",
        "os",
        "subprocess",
        "io_utils",
        "urllib",
        "requests",
    }
)
# A function reference ({"class_name": "function", "module": M, "config": NAME}) is resolved by
# keras to a public API function (or, in Keras < 3.9, to any importable function) and called
# with config-controlled arguments (a Lambda layer passes its `arguments`; CVE-2025-8747 and
# CVE-2025-9906 used keras.utils.get_file and keras.config.enable_unsafe_deserialization).
# Allowed: the keras API modules whose functions only compute on tensors.
_PURE_FUNCTION_MODULES = {
    "activations": "activation functions",
    "losses": "loss functions",
    "metrics": "metric functions",
    "ops": "tensor operations",
    "initializers": "weight initializers",
    "regularizers": "weight regularizers",
    "constraints": "weight constraints",
}
_NOT_PURE_NAMES = frozenset({"get", "deserialize", "serialize"})  # resolve further objects
# Python builtins a "builtins" function reference may name: older Keras resolved
# builtins.NAME directly (eval, exec, __import__, open, ...); these are harmless.
_SAFE_BUILTINS = frozenset(
    {
        "abs",
        "max",
        "min",
        "pow",
        "round",
        "sum",
        "len",
        "float",
        "int",
        "bool",
        "str",
        "list",
        "tuple",
        "dict",
        "set",
    }
)
# Keras classes whose from_config reads files or loads code named by the config.
_FILE_LAYERS: dict[str, tuple[tuple[str, ...], Severity, str]] = {
    "TFSMLayer": (("filepath",), Severity.CRITICAL, "loads and runs the SavedModel at"),
    "StringLookup": (("vocabulary",), Severity.HIGH, "reads its vocabulary from"),
    "IntegerLookup": (("vocabulary",), Severity.HIGH, "reads its vocabulary from"),
    "IndexLookup": (("vocabulary",), Severity.HIGH, "reads its vocabulary from"),
    "TextVectorization": (("vocabulary",), Severity.HIGH, "reads its vocabulary from"),
    "BytePairTokenizer": (("vocabulary", "merges"), Severity.HIGH, "reads its vocabulary from"),
    "WordPieceTokenizer": (("vocabulary",), Severity.HIGH, "reads its vocabulary from"),
    "SentencePieceTokenizer": (("proto",), Severity.HIGH, "reads its model from"),
}
_DATA_CLASSES = frozenset(
    {
        "__tensor__",
        "__numpy__",
        "__keras_tensor__",
        "__typespec__",
        "__bytes__",
        "__ellipsis__",
        "__slice__",
    }
)
MAX_NODES = 500_000


def scan_keras_zip(ctx: ScanContext, source: Source, reader: ZipReader) -> None:
    ctx.formats.append("keras")
    for entry in reader.directory.entries:
        if entry.name == "config.json":
            child = member_source(ctx, source, reader, entry)
            if child is None:
                continue
            data = child.read_all(ctx.limits.max_metadata, "Keras config.json")
            analyse_keras_json(ctx, child.location, data, "config.json")
        else:
            scan_zip_member(ctx, source, reader, entry)


def analyse_keras_json(ctx: ScanContext, location: Location, text: str | bytes, what: str) -> None:
    """Parse a Keras config document and analyse it; invalid JSON is a malformed artifact."""
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as exc:
        ctx.add(MALFORMED.finding(location, f"{what} is not JSON: {exc}", evidence=str(exc)[:200]))
        return
    analyse_keras_config(ctx, location, config)


def _text(node: dict[str, Any], key: str) -> str | None:
    value = node.get(key)
    return value if isinstance(value, str) else None


def analyse_keras_config(ctx: ScanContext, location: Location, config: Any) -> None:
    """Walk a Keras serialization tree iteratively and report risky constructs."""
    stack: list[tuple[Any, str]] = [(config, "$")]
    visited = 0
    while stack:
        node, path = stack.pop()
        visited += 1
        if visited > MAX_NODES:
            ctx.limit_hit(location, f"Keras config with more than {MAX_NODES} nodes")
            return
        if isinstance(node, list):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        stack.extend(
            (value, f"{path}.{key}")
            for key, value in node.items()
            if isinstance(value, (dict, list))
        )
        _judge_node(ctx, location.model_copy(update={"pointer": path[:200]}), node)


def _judge_node(ctx: ScanContext, where: Location, node: dict[str, Any]) -> None:
    class_name = node.get("class_name")
    module = _text(node, "module")
    registered = _text(node, "registered_name")
    inner = node.get("config")
    if class_name == "__lambda__" or (class_name == "Lambda" and _lambda_code(node) is not None):
        code = _lambda_code(node)
        ctx.add(
            LAMBDA_LAYER.finding(
                where, "Lambda function stored as Python bytecode", evidence=(code or "")[:120]
            )
        )
    if not isinstance(class_name, str) or class_name in _DATA_CLASSES:
        return
    if class_name == "function":
        if isinstance(inner, str):
            _function_reference(ctx, where, module, inner)
        return
    if (
        class_name == "Lambda"
        and isinstance(inner, dict)
        and inner.get("function_type") == "function"
        and isinstance(inner.get("function"), str)
    ):
        # legacy (Keras 2 / tf.keras) Lambda: the function is NAME looked up in sys.modules[M]
        _function_reference(
            ctx, where, _text(inner, "module") or "builtins", str(inner["function"])
        )
    elif class_name == "Lambda" and _lambda_code(node) is None:
        # a function in any other form (source text, an unknown dict): a Lambda is code, and
        # what bastion cannot judge is not clean
        function = inner.get("function") if isinstance(inner, dict) else None
        ctx.add(
            LAMBDA_LAYER.finding(
                where,
                "Lambda layer whose function bastion cannot judge (not bytecode, not a "
                "reference to a known function)",
                evidence=str(function)[:120],
            )
        )
    joined = ".".join(v for v in (class_name, module, registered) if v)
    gadget = next((g for g in joined.split(".") if g in _GADGETS), None)
    if gadget is not None:
        ctx.add(
            KERAS_GADGET.finding(where, f"config calls {joined}", evidence=f"{module}.{class_name}")
        )
    elif module is not None and _in_keras(module):
        if class_name[:1].islower():  # a keras API *function* named as a class
            _function_reference(ctx, where, module, class_name)
        elif class_name in _FILE_LAYERS and isinstance(inner, dict):
            _file_layer(ctx, where, class_name, inner)
    elif registered is not None and ">" in registered:
        _registered_class(ctx, where, module, class_name, registered)
    elif module is None:  # legacy (HDF5, Keras 2) configs: names resolve among keras' own
        if class_name in _FILE_LAYERS and isinstance(inner, dict):
            _file_layer(ctx, where, class_name, inner)
    elif module == "builtins":
        if class_name not in ("dict", "list", "tuple", "set", "str", "int", "float", "bool"):
            ctx.add(
                OUTSIDE_KERAS.finding(
                    where, f"references builtins.{class_name}", evidence=f"builtins.{class_name}"
                )
            )
    elif module is not None:
        ctx.add(
            OUTSIDE_KERAS.finding(
                where,
                f"references {module}.{class_name}: Keras < 3.9 "
                "imports the module and instantiates it",
                evidence=f"{module}.{class_name}",
            )
        )
    if class_name == "TorchModuleWrapper":
        _embedded_module(ctx, where, node)


def _in_keras(module: str) -> bool:
    return any(module == root or module.startswith(root + ".") for root in _KERAS_MODULES)


def _keras_api_module(module: str) -> str:
    """The API module a keras module path belongs to: keras.src.activations.activations and
    keras.activations are both "activations"."""
    for root in ("keras.src.", "keras.", "tf_keras.src.", "tf_keras.", "tensorflow.keras."):
        if module.startswith(root):
            return module[len(root) :].split(".", 1)[0]
    return ""


def _function_reference(ctx: ScanContext, where: Location, module: str | None, name: str) -> None:
    """Judge a function the loader resolves and later calls with config-controlled arguments."""
    reference = f"{module}.{name}" if module else name
    if ">" in name or not module:
        # resolved only from the objects the user's code registered (package>name)
        ctx.add(
            OUTSIDE_KERAS.finding(
                where,
                f"registered custom function {name[:120]}: "
                "resolved from the user's registered objects",
                evidence=reference[:200],
                severity=Severity.LOW,
            )
        )
        return
    if module == "builtins":
        import builtins

        if hasattr(builtins, name) and name not in _SAFE_BUILTINS:
            ctx.add(
                KERAS_GADGET.finding(
                    where,
                    f"config calls Python's builtins.{name} (Keras "
                    "< 3.9 resolves it and calls it with config "
                    "arguments)",
                    evidence=reference[:200],
                )
            )
        elif name in _NOT_PURE_NAMES:
            ctx.add(
                KERAS_GADGET.finding(
                    where,
                    f"config calls keras' {name}() of a built-in module, which resolves "
                    "further objects",
                    evidence=reference[:200],
                )
            )
        return  # otherwise keras looks NAME up in its own activations/losses/metrics/...
    api = _keras_api_module(module) if _in_keras(module) else ""
    if api in _PURE_FUNCTION_MODULES and name not in _NOT_PURE_NAMES and not name.startswith("_"):
        return
    ctx.add(
        KERAS_GADGET.finding(
            where,
            f"config calls {reference[:160]} with config-controlled "
            "arguments; safe_mode does not stop function references "
            "(CVE-2025-8747, CVE-2025-9906, CVE-2025-1550)",
            evidence=reference[:200],
        )
    )


def _registered_class(
    ctx: ScanContext, where: Location, module: str | None, class_name: str, registered: str
) -> None:
    """A class the user's code registered (register_keras_serializable writes package>Name):
    Keras >= 3.9 takes it from the registry only; older Keras imports `module`."""
    top = (module or "").split(".", 1)[0]
    if top in sys.stdlib_module_names or top == "builtins":
        ctx.add(
            OUTSIDE_KERAS.finding(
                where,
                f"registered name {registered[:80]} points at the standard library module {module}",
                evidence=f"{module}.{class_name}",
            )
        )
        return
    ctx.add(
        OUTSIDE_KERAS.finding(
            where,
            f"custom registered class {registered[:120]} (from "
            f"{module}): runs the user's registered code",
            evidence=registered[:200],
            severity=Severity.LOW,
        )
    )


def _file_layer(ctx: ScanContext, where: Location, class_name: str, config: dict[str, Any]) -> None:
    fields, severity, what = _FILE_LAYERS[class_name]
    for field in fields:
        value = config.get(field)
        if class_name == "TFSMLayer" or (isinstance(value, str) and value):
            ctx.add(
                KERAS_GADGET.finding(
                    where,
                    f"{class_name} {what} {str(value)[:160]!r}",
                    evidence=f"{class_name}.{field}={str(value)[:120]}",
                    severity=severity,
                )
            )


def _lambda_code(node: dict[str, Any]) -> str | None:
    config = node.get("config")
    if not isinstance(config, dict):
        return None
    if isinstance(config.get("code"), str):
        return str(config["code"])
    function = config.get("function")
    if isinstance(function, dict):
        inner = function.get("config")
        if isinstance(inner, dict) and isinstance(inner.get("code"), str):
            return str(inner["code"])
        if function.get("class_name") == "__lambda__":
            return ""
    if isinstance(function, list) and function and isinstance(function[0], str):
        return function[0]  # legacy HDF5: [base64 bytecode, defaults, closure]
    return None


def _embedded_module(ctx: ScanContext, where: Location, node: dict[str, Any]) -> None:
    config = node.get("config")
    payload = config.get("module") if isinstance(config, dict) else None
    if isinstance(payload, dict):
        payload = payload.get("config") if isinstance(payload.get("config"), str) else None
    ctx.add(
        NESTED_MODEL.finding(
            where, "TorchModuleWrapper embeds a pickled torch module", evidence="TorchModuleWrapper"
        )
    )
    if not isinstance(payload, str):
        return
    try:
        data = base64.b64decode(payload, validate=False)
    except (ValueError, binascii.Error):
        return
    child = bytes_source(
        data,
        "<TorchModuleWrapper.module>",
        where.model_copy(update={"members": (*where.members, "<TorchModuleWrapper.module>")}),
    )
    ctx.scan(child)


class Hdf5Scanner:
    name = "hdf5"
    formats = ("hdf5",)

    def scan(self, ctx: ScanContext, source: Source, fmt: str) -> None:
        try:
            import h5py
        except ImportError:
            ctx.skip(
                source.location,
                "HDF5 file not opened: h5py is not installed",
                coverage.FORMAT_NEEDS_EXTRA,
                "keras",
            )
            ctx.incomplete = True
            return
        handle = source.open()
        try:
            try:
                read_superblock(handle, source.size)
            except BadSuperblock as exc:
                # never handed to libhdf5: some corrupt superblocks make it loop in C
                ctx.add(
                    MALFORMED.finding(
                        source.location, f"corrupt HDF5 superblock: {exc}", evidence=str(exc)[:200]
                    )
                )
                return
            handle.seek(0)
            try:
                h5 = h5py.File(handle, "r")
            except Exception as exc:  # h5py raises OSError and others on hostile files
                ctx.add(
                    MALFORMED.finding(
                        source.location, f"unreadable HDF5 file: {exc}", evidence=str(exc)[:200]
                    )
                )
                return
            with h5:
                try:
                    _pickled_attributes(ctx, source, h5)
                    configs = {
                        key: h5.attrs.get(key) for key in ("model_config", "training_config")
                    }
                except (OSError, RuntimeError, KeyError, ValueError) as exc:
                    # libhdf5 on a corrupt file ("Object visitation failed", "bad symbol
                    # table node signature"): malformed, never clean
                    ctx.add(
                        MALFORMED.finding(
                            source.location,
                            f"corrupt HDF5 structure: {exc}",
                            evidence=str(exc)[:200],
                        )
                    )
                    return
                for key, raw in configs.items():
                    if raw is None:
                        continue
                    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
                    if len(text) > ctx.limits.max_metadata:
                        ctx.limit_hit(source.location, f"{key} is too large")
                        continue
                    ctx.formats.append("keras-h5")
                    analyse_keras_json(
                        ctx, source.location.model_copy(update={"pointer": key}), text, key
                    )
        finally:
            handle.close()


MAX_HDF5_OBJECTS = 100_000
MAX_OBJECT_ROWS = 10_000


def _pickled_attributes(ctx: ScanContext, source: Source, h5: Any) -> None:
    """PyTables (pandas.read_hdf, HDFStore) unpickles every byte-string attribute that ends
    with "." and every row of an object VLArray (PSEUDOATOM "object"): scan those as pickles."""
    import numpy as np

    from bastion.scan.pickle import scan_pickle

    objects: list[tuple[str, Any]] = [("/", h5)]

    def collect(name: str, obj: Any) -> None:
        if len(objects) > MAX_HDF5_OBJECTS:
            raise LimitExceeded(f"HDF5 file with more than {MAX_HDF5_OBJECTS} objects")
        objects.append((name, obj))

    h5.visititems(collect)
    budget = ctx.limits.max_pickle

    def scan_bytes(data: bytes, pointer: str) -> None:
        nonlocal budget
        budget -= len(data)
        if budget < 0:
            raise LimitExceeded("pickled HDF5 attributes over the pickle budget")
        where = source.location.model_copy(
            update={"members": (*source.location.members, pointer[:200])}
        )
        ctx.formats.append("pickle")
        scan_pickle(ctx, bytes_source(data, pointer[:200], where), speculative=True)

    attributes = 0
    for path, obj in objects:
        ctx.check_time()
        for name in list(obj.attrs):
            attributes += 1
            if attributes > MAX_HDF5_OBJECTS * 10:
                raise LimitExceeded(f"HDF5 file with more than {attributes - 1} attributes")
            value = _string_attribute(obj, name)
            if value is None:
                continue
            if value.endswith(b".") and value not in (b"0", b"0."):
                scan_bytes(value, f"<HDF5 attribute {path}@{name}>")
        pseudo = obj.attrs.get("PSEUDOATOM") if hasattr(obj, "shape") else None
        if isinstance(pseudo, (bytes, np.bytes_)) and bytes(pseudo) == b"object":
            rows = obj.shape[0] if obj.shape else 0
            if rows > MAX_OBJECT_ROWS:
                raise LimitExceeded(f"object array {path} has {rows} pickled rows")
            for index in range(rows):
                row = obj[index]
                data = row.tobytes() if isinstance(row, np.ndarray) else bytes(row)
                scan_bytes(data, f"<HDF5 object row {path}[{index}]>")


def _string_attribute(obj: Any, name: str) -> bytes | None:
    """The raw bytes of a scalar string attribute, fixed or variable length, whatever its
    charset (PyTables hands every such ASCII attribute to pickle.loads when it ends in ".");
    None for other attribute types. A string attribute that cannot be read raises."""
    import h5py
    import numpy as np

    attribute = obj.attrs.get_id(name)
    string_type = attribute.get_type()
    if string_type.get_class() != h5py.h5t.STRING or attribute.shape not in ((), (1,)):
        return None
    if string_type.is_variable_str():
        utf8 = string_type.get_cset() == h5py.h5t.CSET_UTF8
        memory = h5py.string_dtype("utf-8" if utf8 else "ascii")
        buffer = np.empty(attribute.shape, dtype=memory)
        read_type = h5py.h5t.py_create(memory)
    else:  # read the stored bytes as they are
        buffer = np.empty(attribute.shape, dtype=f"S{max(1, string_type.get_size())}")
        read_type = string_type
    try:
        attribute.read(buffer, mtype=read_type)
    except Exception as exc:  # h5py raises several types on hostile attributes
        raise CorruptInput(f"HDF5 string attribute {name!r} cannot be read: {exc}") from exc
    value = buffer.reshape(-1)[0]
    data = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogateescape")
    return bytes(data).rstrip(b"\x00")


def is_keras_zip(names: list[str]) -> bool:
    """A Keras v3 `.keras` archive: config.json at the root with metadata or weights."""
    root = {n for n in names if "/" not in n}
    return "config.json" in root and (
        "metadata.json" in root or "model.weights.h5" in root or "model.weights.npz" in root
    )


class KerasZip:
    """Keras v3 `.keras` archives: config.json judged as Keras reads it, members scanned."""

    name = "keras"
    exclusive = True

    def claims(self, source: Source, reader: ZipReader) -> bool:
        return is_keras_zip([e.name for e in reader.directory.entries])

    def scan(self, ctx: ScanContext, source: Source, reader: ZipReader) -> None:
        scan_keras_zip(ctx, source, reader)
