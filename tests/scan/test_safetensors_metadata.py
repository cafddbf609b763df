"""safetensors `__metadata__` (issue #7, class 9): a pickle carried in a metadata value is
decoded and scanned, a credential is reported redacted. The files are written by the real
safetensors library, which reads the metadata back unchanged: what the next consumer gets."""

from __future__ import annotations

import base64
import json
import os
import pickle
import struct
import zlib
from pathlib import Path

import pytest
from helpers import gate_fails, rules, scan_data, scan_file

from bastion.findings import Severity

safetensors_torch = pytest.importorskip("safetensors.torch")
torch = pytest.importorskip("torch")


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo bastion-marker",))


PICKLE = pickle.dumps(_Payload(), protocol=2)


def _save(path: Path, metadata: dict[str, str]) -> None:
    safetensors_torch.save_file({"w": torch.zeros(2, 2)}, str(path), metadata=metadata)


@pytest.mark.parametrize(
    "value",
    [
        base64.b64encode(PICKLE).decode(),
        PICKLE.hex(),
        base64.b64encode(zlib.compress(PICKLE)).decode(),
    ],
    ids=["base64", "hex", "zlib-base64"],
)
def test_pickle_in_metadata_is_scanned(value: str, tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    _save(path, {"format": "pt", "preprocessor": value})
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:  # the real reader hands the value on
        assert handle.metadata()["preprocessor"] == value
    result = scan_file(path)
    assert "PKL001" in rules(result, Severity.CRITICAL), result.findings
    assert "CFG001" in rules(result) and gate_fails(result)


def test_secret_in_metadata_is_reported_redacted(tmp_path: Path) -> None:
    pytest.importorskip("detect_secrets")
    token = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"
    path = tmp_path / "model.safetensors"
    _save(path, {"format": "pt", "hub_token": token})
    result = scan_file(path)
    found = [f for f in result.findings if f.rule_id == "CFG002"]
    assert found and found[0].location.pointer == "hub_token", result.findings
    assert token not in json.dumps([f.model_dump() for f in result.findings], default=str)


def test_metadata_written_by_training_tools_is_clean(tmp_path: Path) -> None:
    path = tmp_path / "lora.safetensors"
    _save(
        path,
        {
            "format": "pt",
            "ss_network_module": "networks.lora",
            "ss_network_dim": "16",
            "ss_tag_frequency": json.dumps({"img": {"a photo": 3, "cat": 2}}),
            "ss_sd_model_hash": "0123456789abcdef0123456789abcdef01234567",
            "modelspec.title": "My LoRA",
            "modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
            "sshs_model_hash": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        },
    )
    result = scan_file(path)
    assert rules(result, Severity.LOW) == set(), result.findings


def test_malformed_metadata_still_has_its_values_checked() -> None:
    header = json.dumps(
        {
            "__metadata__": {"n": 1, "p": base64.b64encode(PICKLE).decode()},
            "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
        }
    ).encode()
    result = scan_data(struct.pack("<Q", len(header)) + header + b"\0" * 4, "m.safetensors")
    assert {"SFT001", "PKL001"} <= rules(result)


def test_json_document_inside_a_metadata_value_is_checked(tmp_path: Path) -> None:
    # training tools store JSON documents as metadata strings (ss_dataset_dirs, ss_tag_frequency)
    path = tmp_path / "lora.safetensors"
    inner = json.dumps(
        {"dirs": {"img": {"n_repeats": 1, "hook": base64.b64encode(PICKLE).decode()}}}
    )
    _save(path, {"format": "pt", "ss_dataset_dirs": inner})
    result = scan_file(path)
    assert "PKL001" in rules(result, Severity.CRITICAL), result.findings
    assert any(
        "ss_dataset_dirs<json>.dirs.img.hook" in (f.location.pointer or "")
        for f in result.findings
        if f.rule_id == "CFG001"
    )
