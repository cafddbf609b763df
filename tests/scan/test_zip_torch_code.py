"""Code inside PyTorch zip archives (white-box findings A1-22, A2-07): a torch.package archive
runs its packaged modules on load; TorchScript's parser joins `torch . from_file`, so the
risky-operator check reads dotted names the way that parser does. Loads run in subprocesses;
the only side effects are an echoed marker and reading a file bastion writes."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import scan_file

from bastion.scan.pytorch import dotted_names, risky_operator_calls

MARKER = "bastion-marker"

PACKAGE_BUILDER = """
import sys, pathlib, torch
root = pathlib.Path(sys.argv[1])
(root / "tinypkg").mkdir()
(root / "tinypkg" / "__init__.py").write_text("")
(root / "tinypkg" / "model.py").write_text(
    "import os\\nos.system('echo MARKER')\\nclass Scorer:\\n    pass\\n")
sys.path.insert(0, str(root))
from tinypkg.model import Scorer
with torch.package.PackageExporter(str(root / "model.pt")) as exporter:
    exporter.intern("tinypkg.**")
    exporter.save_pickle("tinypkg", "model.pkl", Scorer())
""".replace("MARKER", MARKER)


def test_torch_package_modules_are_code(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    subprocess.run([sys.executable, "-c", PACKAGE_BUILDER, str(tmp_path)], check=True,
                   capture_output=True, timeout=180)
    model = tmp_path / "model.pt"
    # loading it in a fresh process (the module is not importable there) runs the module
    proc = subprocess.run([sys.executable, "-c",
                           "import sys, torch\ntorch.package.PackageImporter(sys.argv[1])"
                           ".load_pickle('tinypkg', 'model.pkl')", str(model)],
                          capture_output=True, text=True, timeout=180, cwd=tmp_path / "..")
    assert MARKER in proc.stdout, proc.stderr[-1000:]
    result = scan_file(model)
    packaged = [f for f in result.findings if f.rule_id == "PT003"]
    assert packaged and packaged[0].severity.value == "high"
    assert any("tinypkg/model.py" in f.evidence for f in packaged)


def test_ordinary_checkpoint_is_not_a_package(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.zeros(2)}, tmp_path / "ckpt.pt")
    assert "PT003" not in {f.rule_id for f in scan_file(tmp_path / "ckpt.pt").findings}


def test_risky_operators_whatever_the_spacing() -> None:
    assert risky_operator_calls(b"return torch . from_file('/etc/hostname', False, 3)") == {
        "torch.from_file"}
    assert risky_operator_calls(b"y = ((torch)).from_file(a)") == {"torch.from_file"}
    assert risky_operator_calls(b"x = torch.\\\n  from_file(a)") == {"torch.from_file"}
    assert risky_operator_calls(b"z = ops . myns . op(x)") == {"ops.myns.op"}
    assert not risky_operator_calls(b"w = ops.aten.add(x, y)\nv = torch.add(\n  x)\n")
    assert "x.y" in dotted_names(b"a = 1.5 + x . y")


def test_spaced_from_file_in_a_real_torchscript_archive(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"abc")

    class Reader(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.from_file("PATH", False, 3, dtype=torch.uint8)

    scripted = torch.jit.script(Reader())
    original = tmp_path / "orig.pt"
    torch.jit.save(scripted, str(original))
    model = tmp_path / "model.pt"
    with zipfile.ZipFile(original) as source, zipfile.ZipFile(model, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.endswith(".debug_pkl"):
                continue  # torch tolerates missing debug info
            if "/code/" in info.filename and info.filename.endswith(".py"):
                data = data.replace(b"torch.from_file", b"torch . from_file")
                data = data.replace(b'"PATH"', repr(str(secret)).encode().replace(b"'", b'"'))
            target.writestr(info, data)
    proc = subprocess.run([sys.executable, "-c",
                           "import sys, torch\nm = torch.jit.load(sys.argv[1])\n"
                           "print(bytes(m(torch.zeros(1)).tolist()))", str(model)],
                          capture_output=True, text=True, timeout=180)
    assert "b'abc'" in proc.stdout, proc.stderr[-1000:]  # the real loader reads the file
    result = scan_file(model)
    assert "PT002" in {f.rule_id for f in result.findings}
