"""Keras config references judged by what keras 3's deserialize_keras_object does with them
(issue #7 classes 8 and the registered-custom-layer false positive): a function reference is
called with config-controlled arguments, so only pure keras API functions pass; a class
registered by the user's code (package>Name) is resolved from the registry, not imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from helpers import gate_fails, rules, scan_data, scan_file

from bastion.findings import Severity


def function_ref(module: str, name: str) -> dict[str, Any]:
    return {
        "module": module,
        "class_name": "function",
        "config": name,
        "registered_name": "function",
    }


def lambda_calling(
    function: dict[str, Any], arguments: dict[str, Any], inputs: object = "x"
) -> dict[str, Any]:
    """The layout of the published PoCs (io-no/CVE-Reports#5): a Lambda whose function is a
    reference, its `arguments` passed as keyword arguments and its input from inbound_nodes."""
    return {
        "module": "keras.layers",
        "class_name": "Lambda",
        "config": {"name": "gadget", "function": function, "arguments": arguments},
        "build_config": {"input_shape": [None, 10]},
        "name": "gadget",
        "inbound_nodes": [{"args": [], "kwargs": {"inputs": inputs}}],
    }


def functional(*layers: dict[str, Any]) -> dict[str, Any]:
    return {
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


def keras_archive(config: dict[str, Any]) -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            "metadata.json",
            json.dumps({"keras_version": "3.15.1", "date_saved": "2026-01-01@00:00:00"}),
        )
        archive.writestr("config.json", json.dumps(config))
    return buffer.getvalue()


def _run(tmp_path: Path, code: str) -> str:
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    return proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "module,name",
    [
        ("keras.utils", "get_file"),  # CVE-2025-8747
        ("keras.config", "enable_unsafe_deserialization"),  # CVE-2025-9906
        ("keras.models", "load_model"),  # CVE-2025-9906 step 2
        ("keras.src.utils.file_utils", "get_file"),
        ("keras.config", "set_floatx"),  # not on keras' own denylist: proven below
        ("keras.utils", "plot_model"),  # writes an image to `to_file`
        ("keras.saving", "load_weights"),
        ("keras.activations", "deserialize"),  # resolves further objects
        ("subprocess", "Popen"),  # CVE-2025-1550 (Keras < 3.9 imports any module)
        ("builtins", "exec"),  # older Keras resolved builtins.NAME
        ("builtins", "deserialize"),  # keras.activations.deserialize via the built-in modules
        ("os", "system"),
    ],
)
def test_function_references_outside_pure_modules_are_gadgets(module: str, name: str) -> None:
    config = functional(lambda_calling(function_ref(module, name), {}))
    result = scan_data(keras_archive(config), "model.keras")
    assert "KER003" in rules(result, Severity.CRITICAL), (module, name, result.findings)


@pytest.mark.parametrize(
    "module,name",
    [
        ("keras.activations", "relu"),
        ("keras.src.activations.activations", "gelu"),
        ("keras.losses", "mean_squared_error"),
        ("keras.ops", "tanh"),
        ("builtins", "relu"),
        ("keras.metrics", "binary_accuracy"),
    ],
)
def test_pure_function_references_pass(module: str, name: str) -> None:
    layer = {
        "module": "keras.layers",
        "class_name": "Dense",
        "config": {"units": 2, "activation": function_ref(module, name)},
        "registered_name": None,
    }
    result = scan_data(keras_archive(functional(layer)), "model.keras")
    assert not gate_fails(result), result.findings


def test_function_named_as_a_class_is_a_function_reference() -> None:
    """keras returns a public API function found under `module`.`class_name` as is; inside a
    Lambda's `function` it is then called."""
    ref = {
        "module": "keras.config",
        "class_name": "set_floatx",
        "config": {},
        "registered_name": None,
    }
    result = scan_data(keras_archive(functional(lambda_calling(ref, {}))), "model.keras")
    assert "KER003" in rules(result, Severity.CRITICAL)


def test_real_keras_calls_a_function_reference_under_safe_mode(tmp_path: Path) -> None:
    """Proof with keras 3.15 (safe_mode=True, the default): a Lambda's function reference to a
    public API function not on keras' own denylist runs at load with the config's input."""
    config = functional(lambda_calling(function_ref("keras.config", "set_floatx"), {}, "float16"))
    (tmp_path / "poc.keras").write_bytes(keras_archive(config))
    assert "KER003" in rules(scan_file(tmp_path / "poc.keras"), Severity.CRITICAL)
    out = _run(
        tmp_path,
        "import keras\ntry:\n keras.saving.load_model('poc.keras')\n"
        "except Exception:\n pass\nprint('floatx', keras.config.floatx())",
    )
    assert "floatx float16" in out, out


def test_legacy_lambda_named_function_is_a_reference() -> None:
    """tf.keras / Keras 2 Lambda: function_type 'function' looks NAME up in sys.modules[M]."""
    layer = {
        "class_name": "Lambda",
        "config": {
            "function": "system",
            "module": "os",
            "function_type": "function",
            "arguments": {},
        },
    }
    config = {"class_name": "Sequential", "config": {"layers": [layer]}}
    result = scan_data(keras_archive(config), "model.keras")
    assert "KER003" in rules(result, Severity.CRITICAL)


@pytest.mark.parametrize(
    "class_name,config,severity",
    [
        ("TFSMLayer", {"filepath": "/tmp/evil_savedmodel"}, Severity.CRITICAL),
        ("StringLookup", {"vocabulary": "/home/user/.ssh/id_rsa"}, Severity.HIGH),
        ("TextVectorization", {"vocabulary": "gs://bucket/secret"}, Severity.HIGH),
    ],
)
def test_layers_that_read_files_named_by_the_config(
    class_name: str, config: dict[str, Any], severity: Severity
) -> None:
    layer = {
        "module": "keras.layers",
        "class_name": class_name,
        "config": config,
        "registered_name": None,
    }
    result = scan_data(keras_archive(functional(layer)), "model.keras")
    assert "KER003" in rules(result, severity)


def test_lookup_layer_with_inline_vocabulary_passes() -> None:
    layer = {
        "module": "keras.layers",
        "class_name": "StringLookup",
        "config": {"vocabulary": ["a", "b"]},
        "registered_name": None,
    }
    assert not gate_fails(scan_data(keras_archive(functional(layer)), "model.keras"))


# --- registered custom objects: the false positive ------------------------------------------

_CUSTOM = """
import keras

@keras.saving.register_keras_serializable(package="acme")
class Scale(keras.layers.Layer):
    def __init__(self, factor=2.0, **kw):
        super().__init__(**kw)
        self.factor = factor
    def call(self, x):
        return x * self.factor
    def get_config(self):
        return {**super().get_config(), "factor": self.factor}

@keras.saving.register_keras_serializable(package="acme")
def doubled_relu(x):
    return keras.ops.relu(x) * 2
"""


def test_registered_custom_layer_passes_the_gate(tmp_path: Path) -> None:
    (tmp_path / "acme_layers.py").write_text(_CUSTOM)
    out = _run(
        tmp_path,
        "import keras, acme_layers\n"
        "m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, "
        "activation=acme_layers.doubled_relu), acme_layers.Scale(3.0)])\n"
        "m.compile(loss='mse', metrics=['mae'])\nm.save('custom.keras')\n"
        "keras.saving.load_model('custom.keras')\nprint('reloaded')",
    )
    assert "reloaded" in out, out
    result = scan_file(tmp_path / "custom.keras")
    assert not gate_fails(result), result.findings
    assert "KER002" in rules(result, Severity.LOW)  # visible, fails only under --strict


def test_registered_name_pointing_at_the_standard_library_is_flagged() -> None:
    layer = {
        "module": "subprocess",
        "class_name": "Popen",
        "config": {"args": ["echo"]},
        "registered_name": "acme>Popen",
    }
    result = scan_data(keras_archive(functional(layer)), "model.keras")
    assert gate_fails(result, Severity.HIGH)


def test_unregistered_module_outside_keras_still_flagged() -> None:
    """CVE-2025-1550: Keras < 3.9 imports `module` for an unregistered class."""
    layer = {"module": "acme.layers", "class_name": "Dense2", "config": {}, "registered_name": None}
    result = scan_data(keras_archive(functional(layer)), "model.keras")
    assert "KER002" in rules(result, Severity.HIGH)


def test_legacy_config_layer_reading_a_file() -> None:
    """Legacy (HDF5) configs carry no module: keras resolves StringLookup among its own
    layers and reads the vocabulary path."""
    layer = {"class_name": "StringLookup", "config": {"vocabulary": "/etc/shadow"}}
    config = {"class_name": "Sequential", "config": {"layers": [layer]}}
    assert "KER003" in rules(scan_data(keras_archive(config), "model.keras"), Severity.HIGH)


def test_a_lambda_in_any_other_form_is_not_clean() -> None:
    """ModelAudit's malicious_lambda.h5 sample: a Lambda whose function is source text."""
    import json as _json

    from helpers import gate_fails, scan_data

    config = {
        "class_name": "Sequential",
        "config": {
            "name": "m",
            "layers": [
                {
                    "class_name": "Lambda",
                    "config": {"function": "lambda x: eval('print(\"security test\")')"},
                }
            ],
        },
    }
    data = _json.dumps({"class_name": "Sequential", "config": config["config"]}).encode()
    assert gate_fails(scan_data(data, "config.json"))
