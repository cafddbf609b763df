"""Python shipped with a model (white-box attack A1-17, A1-18, A1-23): each folder below loads
normally *and* runs a marker when loaded from inside it, which the tests prove with the real
interpreter; bastion must fail the gate on it. And ordinary projects must not be flagged."""

from __future__ import annotations

import importlib.util
import os
import pickle
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest

import bastion
from bastion.config import Settings
from bastion.policy import evaluate

SHIM = """import importlib, os, sys
os.close(os.open({marker!r}, os.O_CREAT | os.O_WRONLY))
here = sys.path.pop(0)
del sys.modules["joblib"]
real = importlib.import_module("joblib")
sys.modules["joblib"] = real
sys.path.insert(0, here)
globals().update(vars(real))
"""
LOAD = "import joblib; print(joblib.load('model.pkl'))"


def run_in(folder: Path, code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def rules_of(folder: Path) -> dict[str, set[str]]:
    report = bastion.scan(folder)
    assert evaluate(report, Settings()).exit_code == 1
    return {r.path: {f.rule_id for f in r.findings} for r in report.results}


def model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    (folder / "config.json").write_text('{"model_type": "linear"}')
    return folder


def test_a_module_shadowing_the_loader_is_reported(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    marker = tmp_path / "marker-shadow"
    (folder / "joblib.py").write_text(SHIM.format(marker=str(marker)))
    proof = run_in(folder, LOAD)
    assert proof.returncode == 0 and "weights" in proof.stdout and marker.exists()
    assert "COD012" in rules_of(folder)["joblib.py"]


@pytest.mark.parametrize(
    "name",
    [
        "sitecustomize.py",
        "pickle.py",
        "torch/__init__.py",
        "evil.pth",
        "numpy.cpython-311-x86_64-linux-gnu.so",
    ],
)
def test_every_kind_of_shadowing_file(tmp_path: Path, name: str) -> None:
    folder = model_folder(tmp_path)
    (folder / name).parent.mkdir(exist_ok=True)
    (folder / name).write_text("import os\n")
    assert "COD012" in rules_of(folder)[name]


def test_unchecked_hash_bytecode_runs_instead_of_its_source(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    marker = tmp_path / "marker-pyc"
    helper = folder / "helpers.py"
    helper.write_text(f"import os\nos.close(os.open({str(marker)!r}, os.O_CREAT))\n")
    cached = importlib.util.cache_from_source(str(helper))
    py_compile.compile(
        str(helper), cfile=cached, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
    )
    helper.write_text("VERSION = 1  # harmless-looking source\n")
    proof = run_in(folder, "import helpers")
    assert proof.returncode == 0 and marker.exists()
    found = rules_of(folder)
    pyc = next(p for p in found if p.endswith(".pyc"))
    assert pyc.startswith("__pycache__/") and "COD013" in found[pyc]


def test_sourceless_bytecode_is_reported(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    source = tmp_path / "loader.py"
    source.write_text("X = 1\n")
    py_compile.compile(str(source), cfile=str(folder / "loader.pyc"))
    proof = run_in(folder, "import loader; print(loader.X)")
    assert proof.stdout.strip() == "1"  # Python imports a .pyc with no source
    assert "COD013" in rules_of(folder)["loader.pyc"]


def test_a_pickle_of_a_class_shipped_beside_it_is_high(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    marker = tmp_path / "marker-class"
    package = folder / "mlpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    body = "class Scorer:\n    def __call__(self, xs):\n        return sum(xs) / len(xs)\n"
    (package / "model.py").write_text(body)
    written = run_in(
        folder, "import pickle, mlpkg.model as m\npickle.dump(m.Scorer(), open('model.pkl', 'wb'))"
    )
    assert written.returncode == 0, written.stderr
    # the class is rebuilt (NEWOBJ/reduce_ex), never called with the pickle's arguments; then
    # the shipped module gains a top-level payload
    (package / "model.py").write_text(
        f"import os\nos.close(os.open({str(marker)!r}, os.O_CREAT))\n" + body
    )
    proof = run_in(folder, "import joblib; print(joblib.load('model.pkl')([2, 4]))")
    assert proof.stdout.strip() == "3.0" and marker.exists()
    assert "PKL009" in rules_of(folder)["model.pkl"]


def test_ordinary_projects_are_not_flagged(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "checkpoints").mkdir(parents=True)  # .pth is also PyTorch's checkpoint suffix
    (project / "checkpoints" / "rng_state.pth").write_bytes(pickle.dumps({"rng": [1, 2]}))
    (project / "src" / "credit").mkdir(parents=True)
    (project / "test").mkdir()
    for name in (
        "train.py",
        "src/credit/__init__.py",
        "src/credit/types.py",
        "src/credit/io.py",
        "test/test_model.py",
    ):
        (project / name).write_text("X = 1\n")
    (project / "models").mkdir()
    (project / "models" / "model.pkl").write_bytes(pickle.dumps({"w": [1.0]}))
    # an ordinary bytecode cache, as running the project writes it
    for name in ("train.py", "src/credit/types.py"):
        py_compile.compile(str(project / name))
    report = bastion.scan(project)
    rules = {f.rule_id for f in report.findings}
    assert not rules & {"COD012", "COD013", "PKL009"}


def test_a_sourceless_pyc_named_like_the_loader(tmp_path: Path) -> None:
    """A1-27: joblib.pyc with no joblib.py is imported from the folder."""
    folder = model_folder(tmp_path)
    marker = tmp_path / "marker-sourceless"
    shim = tmp_path / "joblib.py"
    shim.write_text(SHIM.format(marker=str(marker)))
    py_compile.compile(str(shim), cfile=str(folder / "joblib.pyc"))
    proof = run_in(folder, LOAD)
    assert "weights" in proof.stdout and marker.exists()
    assert {"COD012", "COD013"} <= rules_of(folder)["joblib.pyc"]


def test_shadowing_a_dependency_of_the_loader_and_from_a_parent_folder(tmp_path: Path) -> None:
    """A1-30: `import joblib` imports lz4 (not a name loading code imports itself), and a shim
    at the repository root shadows for `cd repo && python -c ...models/model.pkl`."""
    folder = model_folder(tmp_path)
    (folder / "lz4.py").write_text("import os\n")
    assert "COD012" in rules_of(folder)["lz4.py"]
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    (repo / "models" / "model.pkl").write_bytes(pickle.dumps([1.0]))
    (repo / "joblib.py").write_text("import os\n")
    assert "COD012" in rules_of(repo)["joblib.py"]


def test_timestamp_bytecode_beside_model_files(tmp_path: Path) -> None:
    """A1-31: a timestamp pyc whose recorded mtime and size match the shipped source runs
    instead of it (archives restore mtimes); CPython never compares the content."""
    folder = model_folder(tmp_path)
    marker = tmp_path / "marker-timestamp"
    helper = folder / "helpers.py"
    payload = f"import os\nos.close(os.open({str(marker)!r}, os.O_CREAT))\nVALUE = 1\n"
    benign = "VALUE = 1  # " + "." * (len(payload) - 14) + "\n"  # the same size
    assert len(benign) == len(payload)
    helper.write_text(payload)
    os.utime(helper, (1_700_000_000, 1_700_000_000))
    py_compile.compile(str(helper), cfile=importlib.util.cache_from_source(str(helper)))
    helper.write_text(benign)
    os.utime(helper, (1_700_000_000, 1_700_000_000))
    proof = run_in(folder, "import helpers")
    assert proof.returncode == 0 and marker.exists()
    found = rules_of(folder)
    assert "COD013" in found[next(p for p in found if p.endswith(".pyc"))]


def test_shipped_class_in_a_namespace_package_as_bytecode_or_extension(tmp_path: Path) -> None:
    """A1-32: no __init__.py, the module is compiled (a .pyc here; an extension module the
    same way), and the pickle only instantiates its class."""
    folder = model_folder(tmp_path)
    package = folder / "mlpkg"
    package.mkdir()
    (package / "model.py").write_text("class Scorer:\n    pass\n")
    written = run_in(
        folder, "import pickle, mlpkg.model as m\npickle.dump(m.Scorer(), open('model.pkl', 'wb'))"
    )
    assert written.returncode == 0, written.stderr
    py_compile.compile(str(package / "model.py"), cfile=str(package / "model.pyc"))
    (package / "model.py").unlink()
    assert (
        run_in(folder, "import pickle; print(pickle.load(open('model.pkl', 'rb')))").returncode == 0
    )
    assert "PKL009" in rules_of(folder)["model.pkl"]
    (package / "model.pyc").unlink()
    (package / "model.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    found = rules_of(folder)
    assert "PKL009" in found["model.pkl"]
    assert "COD014" in found["mlpkg/model.cpython-311-x86_64-linux-gnu.so"]


def test_an_init_file_beside_the_weights_does_not_hide_a_shadowing_module(
    tmp_path: Path,
) -> None:
    """A1-37: an empty __init__.py made the model folder a 'package' and switched COD012 off."""
    folder = model_folder(tmp_path)
    (folder / "__init__.py").write_text("")
    marker = tmp_path / "marker-init"
    (folder / "joblib.py").write_text(SHIM.format(marker=str(marker)))
    proof = run_in(folder, LOAD)
    assert "weights" in proof.stdout and marker.exists()
    assert "COD012" in rules_of(folder)["joblib.py"]


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_shipped_code_inside_an_archive(tmp_path: Path, kind: str) -> None:
    """A1-33: model.tar.gz holding model/joblib.py passed; extracted, it runs on load."""
    import tarfile
    import zipfile

    folder = model_folder(tmp_path)
    marker = tmp_path / "marker-archive"
    (folder / "joblib.py").write_text(SHIM.format(marker=str(marker)))
    archive = tmp_path / f"model.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as out:
            for file in sorted(folder.iterdir()):
                out.write(file, f"model/{file.name}")
    else:
        with tarfile.open(archive, "w:gz") as out:
            out.add(folder, "model")
    report = bastion.scan(archive)
    assert evaluate(report, Settings()).exit_code == 1
    shadowing = [f for f in report.findings if f.rule_id == "COD012"]
    assert shadowing and shadowing[0].location.members[-1] == "model/joblib.py"
    extracted = tmp_path / "extracted"
    if kind == "zip":
        with zipfile.ZipFile(archive) as opened:
            opened.extractall(extracted)
    else:
        with tarfile.open(archive) as opened_tar:
            opened_tar.extractall(extracted, filter="data")
    proof = run_in(extracted / "model", LOAD)
    assert "weights" in proof.stdout and marker.exists()


def test_an_ordinary_model_archive_is_not_flagged(tmp_path: Path) -> None:
    import zipfile

    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("model/model.pkl", pickle.dumps({"w": [1.0]}))
        out.writestr("model/config.json", "{}")
        out.writestr("model/README.md", "# model\n")
        out.writestr("src/train.py", "import joblib\n")
    report = bastion.scan(archive)
    assert not {f.rule_id for f in report.findings} & {"COD012", "COD013", "COD014", "PKL009"}
