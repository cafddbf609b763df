"""safe_load: returns the object only for clean files, from the very bytes that were scanned."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from corpus import opcodes as op

import bastion
from bastion.config import Settings
from bastion.errors import UnsafeArtifactError, UsageError
from bastion.scan import safe_load as safe_load_module

SETTINGS = Settings(workers=1)


def test_loads_clean_files_of_each_format(tmp_path: Path) -> None:
    import joblib
    from safetensors.numpy import save_file
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(np.array([[0.0], [1.0]]), [0, 1])
    joblib.dump(model, tmp_path / "m.joblib")
    assert bastion.safe_load(tmp_path / "m.joblib", SETTINGS).predict([[1.0]])[0] == 1
    (tmp_path / "p.pkl").write_bytes(pickle.dumps({"a": [1, 2]}))
    assert bastion.safe_load(tmp_path / "p.pkl", SETTINGS) == {"a": [1, 2]}
    torch.save({"w": torch.ones(2)}, tmp_path / "t.pt")
    assert torch.equal(bastion.safe_load(tmp_path / "t.pt", SETTINGS)["w"], torch.ones(2))
    np.save(tmp_path / "a.npy", np.arange(3))
    assert bastion.safe_load(tmp_path / "a.npy", SETTINGS).tolist() == [0, 1, 2]
    save_file({"x": np.ones(2, dtype=np.float32)}, str(tmp_path / "s.safetensors"))
    assert bastion.safe_load(tmp_path / "s.safetensors", SETTINGS)["x"].tolist() == [1.0, 1.0]


def test_refuses_malicious_file_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    cmd = f"touch {marker}"
    data = b"\x80\x02cposix\nsystem\nX" + len(cmd).to_bytes(4, "little") + cmd.encode() + b"\x85R."
    (tmp_path / "evil.pkl").write_bytes(data)
    with pytest.raises(UnsafeArtifactError) as caught:
        bastion.safe_load(tmp_path / "evil.pkl", SETTINGS)
    assert caught.value.report.findings[0].rule_id == "PKL001"
    assert not marker.exists()


def test_loads_the_bytes_that_were_scanned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Swap the file for a malicious one right after the scan: the load must not see it."""
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps({"clean": True}))
    real_scan = safe_load_module.scan_bytes

    def scan_then_swap(data: bytes, name: str, settings: Settings):  # type: ignore[no-untyped-def]
        report = real_scan(data, name, settings)
        path.write_bytes(op.system_call())
        return report

    monkeypatch.setattr(safe_load_module, "scan_bytes", scan_then_swap)
    assert bastion.safe_load(path, SETTINGS) == {"clean": True}


def test_unsupported_format_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text('{"a": 1}')
    with pytest.raises(UsageError):
        bastion.safe_load(tmp_path / "c.json", SETTINGS)


def test_full_module_torch_save_is_refused_by_weights_only(tmp_path: Path) -> None:
    torch.save(torch.nn.Linear(2, 2), tmp_path / "full.pt")
    with pytest.raises(pickle.UnpicklingError):
        bastion.safe_load(tmp_path / "full.pt", SETTINGS)


def test_import_bastion_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, bastion; heavy = [m for m in ('torch', 'numpy', 'tensorflow', 'keras',"
        " 'onnx', 'h5py', 'bastion.scan') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
