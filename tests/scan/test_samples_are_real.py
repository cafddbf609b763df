"""The malicious samples are genuine: the real loaders run their (harmless) payload.
Each load happens in a throw-away subprocess; the payload only echoes a marker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from corpus import Sample

LOADERS = {
    "pickle": "import pickle,sys\nf=open(sys.argv[1],'rb')\n"
    "while True:\n    try: pickle.load(f)\n    except EOFError: break\n",
    "joblib": "import joblib,sys; joblib.load(sys.argv[1])",
    "torch": "import torch,sys; torch.load(sys.argv[1], weights_only=False)",
    "numpy": "import numpy,sys; numpy.load(sys.argv[1], allow_pickle=True)",
}
CASES = [
    ("pickle/os_system_p0.pkl", "pickle"),
    ("pickle/os_system_p5.pkl", "pickle"),
    ("pickle/memo_stack_global.pkl", "pickle"),
    ("pickle/dup_stack_global.pkl", "pickle"),
    ("pickle/py2_builtin_eval.pkl", "pickle"),
    ("pickle/inst.pkl", "pickle"),
    ("pickle/obj.pkl", "pickle"),
    ("pickle/getattr_import.pkl", "pickle"),
    ("pickle/dotted_name.pkl", "pickle"),
    ("pickle/broken_after_payload.pkl", "pickle"),
    ("pickle/truncated.pkl", "pickle"),
    ("pickle/exception_oriented.pkl", "pickle"),
    ("pickle/stacked.pkl", "pickle"),
    ("pickle/nested_raw.pkl", "pickle"),
    ("pickle/nested_base64.pkl", "pickle"),
    ("pickle/nested_latin1.pkl", "pickle"),
    ("pickle/marshal_function.pkl", "pickle"),
    ("joblib/payload_after_array.joblib", "joblib"),
    ("joblib/object_array.joblib", "joblib"),
    ("joblib/evil.xz.joblib", "joblib"),
    ("torch/evil.pt", "torch"),
    ("torch/legacy.pt", "torch"),
    ("torch/bad_crc.pt", "torch"),
    ("numpy/object_array.npy", "numpy"),
]


@pytest.mark.parametrize("name,loader", CASES)
def test_real_loader_runs_the_payload(
    malicious: list[Sample], corpus_dir: Path, name: str, loader: str, tmp_path: Path
) -> None:
    path = corpus_dir / "malicious" / name
    proc = subprocess.run(
        [sys.executable, "-c", LOADERS[loader], str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "BASTION_POC" in proc.stdout, proc.stderr[-2000:]
