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
    subprocess.run(
        [sys.executable, "-c", PACKAGE_BUILDER, str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=180,
    )
    model = tmp_path / "model.pt"
    # loading it in a fresh process (the module is not importable there) runs the module
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, torch\ntorch.package.PackageImporter(sys.argv[1])"
            ".load_pickle('tinypkg', 'model.pkl')",
            str(model),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path / "..",
    )
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
        "torch.from_file"
    }
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
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, torch\nm = torch.jit.load(sys.argv[1])\n"
            "print(bytes(m(torch.zeros(1)).tolist()))",
            str(model),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert "b'abc'" in proc.stdout, proc.stderr[-1000:]  # the real loader reads the file
    result = scan_file(model)
    assert "PT002" in {f.rule_id for f in result.findings}


# --- A2-16/16b: TorchScript operators are judged by torch_pure_ops.txt (an allowlist) ---

SETSTATE_SAVE_BUILDER = """
import sys, torch
from typing import Tuple

class Mod(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.ones(2)

    @torch.jit.export
    def __getstate__(self) -> Tuple[torch.Tensor, bool]:
        return (self.w, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, bool]) -> None:
        self.w = state[0]
        self.training = state[1]
        torch.save(self.w, "MARKER_PATH")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w

torch.jit.save(torch.jit.script(Mod()), sys.argv[1])
"""


def test_torch_save_in_setstate_writes_a_file_at_load(tmp_path: Path) -> None:
    """A2-16b: torch.load of a TorchScript archive runs its TorchScript __setstate__, whose
    torch.save (aten::save) writes a file the attacker names."""
    pytest.importorskip("torch")
    marker = tmp_path / "written-by-load"
    model = tmp_path / "model.pt"
    builder = tmp_path / "build.py"  # torch.jit.script reads the class's source file
    builder.write_text(SETSTATE_SAVE_BUILDER.replace("MARKER_PATH", str(marker)))
    subprocess.run(
        [sys.executable, str(builder), str(model)], check=True, capture_output=True, timeout=180
    )
    assert not marker.exists()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, torch\ntorch.load(sys.argv[1], weights_only=False)",
            str(model),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-1000:]
    assert marker.exists()  # the real loader wrote the file while loading
    result = scan_file(model)
    risky = [f for f in result.findings if f.rule_id == "PT002"]
    assert risky and risky[0].severity.value == "high"
    assert any(f.evidence == "torch.save" for f in risky)


def test_file_operators_under_any_spelling() -> None:
    """A2-16: aten::save in forward, through an alias of the namespace, through ops.<ns>; and
    operators the registry does not hold (unknown) are flagged; names in strings are text."""
    assert risky_operator_calls(b"torch.save(x, '/tmp/p')\nreturn x") == {"torch.save"}
    assert risky_operator_calls(b't = torch\nt . save(x, "p")') == {"t.save"}
    assert risky_operator_calls(b"ops.aten.save(x, p)") == {"ops.aten.save"}
    assert risky_operator_calls(b"torch.ops.debugprims.load_tensor(n, s)") == {
        "torch.ops.debugprims.load_tensor"
    }
    assert risky_operator_calls(b"torch.not_a_registered_op(x)") == {"torch.not_a_registered_op"}
    assert risky_operator_calls(b"c = ops.c10d\nops.c10d.broadcast_(x)") == {
        "ops.c10d",
        "ops.c10d.broadcast_",
    }
    assert not risky_operator_calls(
        b'w = "torch.save is not called here"\nreturn torch.mul(x, ops.prim.NumToTensor(n))'
    )
    # a string the pattern cannot close hides nothing the parser would run
    assert risky_operator_calls(b'x = """doc\n"""; torch.save(w, "p")') == {"torch.save"}


def test_operator_table_covers_the_torch_registry() -> None:
    """torch_pure_ops.txt was generated (tools/gen_torch_ops.py) from the pinned torch: every
    registered aten/prim operator is either reviewed pure or denied; file operators are denied."""
    torch = pytest.importorskip("torch")
    from bastion.scan.pytorch import operator_table

    table = operator_table()
    assert {"save", "from_file", "load_tensor"} <= table.denied_names
    assert not {"aten::save", "aten::from_file"} & table.pure
    registered = {s.name for s in torch._C._jit_get_all_schemas()}
    for op in registered:
        namespace, _, name = op.partition("::")
        if namespace in {"aten", "prim"}:
            assert op in table.pure or name in table.denied_names, op


def test_ordinary_torchscript_calls_only_pure_operators(tmp_path: Path) -> None:
    """The benign side: scripted and traced ordinary modules (recurrent, attention, transformer,
    convolution, quantized, frozen) call no operator outside the table."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(10, 8)
            self.lstm = nn.LSTM(8, 8, batch_first=True)
            self.mha = nn.MultiheadAttention(8, 2)
            self.norm = nn.LayerNorm(8)

        def forward(self, x: torch.Tensor, names: list[str]) -> torch.Tensor:
            y, _ = self.lstm(self.emb(x))
            a, _ = self.mha(y, y, y)
            z = self.norm(a).mean(dim=1)
            print("shape", z.shape, ",".join(names).upper())
            if z.numel() < 0:
                raise ValueError("empty")
            return torch.nn.functional.gelu(z) + torch.softmax(z, -1)

    quantized = torch.ao.quantization.quantize_dynamic(
        nn.Sequential(nn.Linear(4, 4), nn.ReLU()), {nn.Linear}, dtype=torch.qint8
    )
    modules = [
        torch.jit.script(Mixed()),
        torch.jit.script(nn.Transformer(8, 2, 1, 1, 16)),
        torch.jit.script(quantized),
        torch.jit.freeze(torch.jit.script(nn.Sequential(nn.Linear(4, 4), nn.GELU()).eval())),
        torch.jit.trace(
            nn.Sequential(
                nn.Conv2d(3, 4, 3),
                nn.BatchNorm2d(4),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            ),
            torch.ones(1, 3, 8, 8),
        ),
    ]
    for number, module in enumerate(modules):
        path = tmp_path / f"m{number}.pt"
        torch.jit.save(module, str(path))
        result = scan_file(path)
        assert "PT002" not in {f.rule_id for f in result.findings}, [
            f.evidence for f in result.findings
        ]
