"""bastion with no extras installed (`pip install bastion-mlsec`): a project scan completes,
names every extra it would have needed in its skips (text and JSON), and gives the exit codes
docs/policy.md documents for those gaps. Run by `make test` in .venv-base; skipped in the main
venv, where the extras are installed."""

from __future__ import annotations

import base64
import importlib.util
import json
import pickle
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

EXTRA_MODULES = {
    "archives": "py7zr",
    "keras": "h5py",
    "code": "detect_secrets",
    "deps": "pip_requirements_parser",
    "signing": "model_signing",
}
INSTALLED = sorted(m for m in EXTRA_MODULES.values() if importlib.util.find_spec(m) is not None)
pytestmark = pytest.mark.skipif(
    bool(INSTALLED), reason=f"extras installed ({', '.join(INSTALLED)}): runs in .venv-base"
)

PREDICATE = "https://model_signing/signature/v1.0"


def safetensors_bytes() -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\x00\x00\x80\x3f"


def signature_bundle() -> str:
    """A model-signing bundle's shape (DSSE envelope, in-toto statement); verifying it needs
    model-signing."""
    statement = {"predicateType": PREDICATE, "predicate": {"resources": []}}
    payload = base64.b64encode(json.dumps(statement).encode()).decode()
    envelope = {"payloadType": "application/vnd.in-toto+json", "payload": payload}
    return json.dumps({"dsseEnvelope": envelope})


def notebook() -> str:
    cell = {
        "cell_type": "code",
        "id": "c0",
        "metadata": {},
        "execution_count": None,
        "outputs": [],
        "source": "x = 1\n",
    }
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [cell]})


def write(root: Path, files: dict[str, bytes | str]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
    return root


REPORTED_ONLY = {
    "model/weights.pkl": pickle.dumps({"lr": 0.1, "layers": [64, 32]}),
    "model/model.safetensors": safetensors_bytes(),
    "model/model.sig": signature_bundle(),
    "train.py": "import json\nprint(json.dumps({'epochs': 3}))\n",
    "explore.ipynb": notebook(),
    "requirements.txt": "requests==2.32.3\n",
    "README.md": "# demo\n",
}
ARTIFACTS_NEEDING_EXTRAS = {
    "bundle.7z": b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\x00" * 24,
    "classifier.h5": b"\x89HDF\r\n\x1a\n" + b"\x00" * 64,
}


@pytest.fixture()
def policy(tmp_path: Path) -> Path:
    folder = tmp_path / "policy"
    folder.mkdir()
    (folder / "release.pub").write_text("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n")
    (folder / "bastion.toml").write_text('[signing]\npublic_keys = ["release.pub"]\n')
    return folder / "bastion.toml"


def scan(root: Path, policy: Path, *options: str) -> tuple[int, dict[str, Any], str]:
    from bastion.cli.main import main

    out_json, out_text = root.parent / "report.json", root.parent / "report.txt"
    args = ["scan", str(root), "--no-store", "-q", "--policy", str(policy), *options]
    code = main([*args, "-f", "json", "-o", str(out_json)])
    assert main([*args, "-f", "text", "-o", str(out_text)]) == code
    return code, json.loads(out_json.read_text()), out_text.read_text()


def extras_named(document: dict[str, Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for result in document["results"]:
        for skip in result["skips"]:
            if skip["extra"]:
                out.setdefault(skip["extra"], set()).add(skip["code"])
    return out


def test_checks_that_need_extras_are_reported_not_blocking(tmp_path: Path, policy: Path) -> None:
    root = write(tmp_path / "project", REPORTED_ONLY)
    code, document, text = scan(root, policy)
    assert code == 0, document["verdict"]
    assert extras_named(document) == {
        "code": {"missing-extra"},  # secrets in train.py; the notebook without nbformat
        "deps": {"missing-extra"},
        "signing": {"missing-extra"},
    }
    for extra in ("code", "deps", "signing"):
        assert f"pip install 'bastion-mlsec[{extra}]'" in text
    assert "not checked (reported, not blocking)" in text
    kinds = {s["code"] for r in document["results"] for s in r["skips"]}
    assert "no-advisory-db" not in kinds  # the audit did not run at all: deps is what is missing
    assert scan(root, policy, "--strict")[0] == 1


def test_artifacts_that_need_extras_leave_the_verdict_undecided(
    tmp_path: Path, policy: Path
) -> None:
    root = write(tmp_path / "project", {**REPORTED_ONLY, **ARTIFACTS_NEEDING_EXTRAS})
    code, document, text = scan(root, policy)
    assert code == 2, document["verdict"]
    named = extras_named(document)
    assert named["archives"] == {"format-needs-extra"}
    assert named["keras"] == {"format-needs-extra"}
    assert set(named) == {"archives", "keras", "code", "deps", "signing"}
    assert document["verdict"]["status"] == "undecided"
    assert "pip install 'bastion-mlsec[archives]'" in text
    assert "pip install 'bastion-mlsec[keras]'" in text
    assert scan(root, policy, "--strict")[0] == 1


def test_a_malicious_pickle_still_fails(tmp_path: Path, policy: Path) -> None:
    payload = b"cos\nsystem\n(S'echo bastion-test'\ntR."  # never loaded
    root = write(tmp_path / "project", {**REPORTED_ONLY, "model/evil.pkl": payload})
    code, document, _text = scan(root, policy)
    assert code == 1
    assert any(f["severity"] == "critical" for r in document["results"] for f in r["findings"])


def test_the_console_script_runs(tmp_path: Path, policy: Path) -> None:
    root = write(tmp_path / "project", REPORTED_ONLY)
    bastion = Path(sys.executable).with_name("bastion")
    done = subprocess.run(
        [str(bastion), "scan", str(root), "--no-store", "--policy", str(policy), "-f", "text"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "bastion-mlsec[code]" in done.stdout and "Traceback" not in done.stderr
