"""Attack round 2, allowlist entries not safe for the use they were granted (A2-03, A2-04, A2-14,
A2-20, A2-22, A2-24): the generator granted uses by naming rules, not by what the code does.
tools/gen_allowlist.py now reads each candidate's bytecode (and, for classes, the methods the
loader runs on restore) and leaves out anything that execs, imports by name, unpickles, loads
native code, runs processes or opens files. Each payload is rebuilt here with a harmless marker;
where practical the real loader is shown to run it (subprocess, tmp dir) and bastion must fail the
gate. The benign side: the libraries' ordinary numeric objects and scipy distributions as
RandomizedSearchCV keeps them still pass."""

from __future__ import annotations

import importlib.util
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import gate_fails, scan_data

from bastion.scan.pickle_globals import classify

ROOT = Path(__file__).resolve().parents[2]
TSV = ROOT / "src" / "bastion" / "scan" / "pickle_allowlist.tsv"


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def g(module: str, name: str) -> bytes:
    """SHORT_BINUNICODE module, SHORT_BINUNICODE name, STACK_GLOBAL."""
    return s(module) + s(name) + b"\x93"


def s(text: str) -> bytes:
    raw = text.encode()
    if len(raw) < 256:
        return b"\x8c" + bytes([len(raw)]) + raw
    return b"X" + len(raw).to_bytes(4, "little") + raw


def newobj_partial(module: str, name: str) -> bytes:
    """functools.partial built by NEWOBJ around an allowlisted function (the A2-01a channel)."""
    return g("functools", "partial") + g(module, name) + b"\x85\x81"


def touch(marker: Path) -> str:
    return f"__import__('pathlib').Path({str(marker)!r}).write_text('bastion-marker')"


def run_loader(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def a2_03(marker: Path) -> bytes:
    name = f"x(): pass\n{touch(marker)}\ndef y"
    body = b"\x80\x04" + newobj_partial("scipy.optimize._nonlin", "_nonlin_wrapper")
    return body + s(name) + g("scipy.optimize._nonlin", "BroydenFirst") + b"\x86R."


def a2_04(marker: Path) -> bytes:
    import copyreg

    import scipy.stats

    dist = scipy.stats.norm
    state = dict(dist.__getstate__())
    state["_parse_arg_template"] = touch(marker) + "\n" + dist._parse_arg_template

    class Pickler(pickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            if obj is dist:
                return (copyreg.__newobj__, (type(dist),), state)
            return NotImplemented

    import io

    buf = io.BytesIO()
    Pickler(buf, protocol=4).dump({"param_distributions": {"alpha": dist}, "n_iter": 10})
    return buf.getvalue()


def a2_14(marker: Path) -> bytes:
    inner = pickle.dumps(0, protocol=2)[:2] + b"S'" + b"a" * 5000 + b"'\n0"
    inner += f"cbuiltins\nexec\n(S{touch(marker)!r}\ntR.".encode()
    body = b"\x80\x04" + g("torch.utils.data.datapipes.datapipe", "_DataPipeSerializationWrapper")
    return body + b")\x81" + b"B" + len(inner).to_bytes(4, "little") + inner + b"\x89\x86b."


def a2_20() -> bytes:
    body = b"\x80\x04}" + s("coef") + b"]G?\xb9\x99\x99\x99\x99\x99\x9aas" + s("tok")
    body += newobj_partial("torch", "_preload_cuda_lib") + s("/proc/self/cwd") + s("vocab.spm")
    return body + b"\x86Rs."


def a2_22(marker: Path) -> bytes:
    body = b"\x80\x04}" + s("coef") + b"]G?\xb9\x99\x99\x99\x99\x99\x9aas" + s("meta")
    body += newobj_partial("numpy._core._multiarray_tests", "npy_import_entry_point")
    body += s("builtins:exec") + b"\x85R"
    return body + s(touch(marker)) + b"\x85Rs."


def a2_24() -> bytes:
    body = b"\x80\x04}" + s("coef") + b"]G?\xb9\x99\x99\x99\x99\x99\x9aas" + s("doc")
    return body + g("numpy", "info") + b"(" + s("coef") + b"KLN" + s("unittest.__main__") + b"tRs."


def test_a2_03_nonlin_wrapper_execs_its_argument(tmp_path: Path) -> None:
    pytest.importorskip("scipy")
    marker = tmp_path / "marker"
    (tmp_path / "m.pkl").write_bytes(a2_03(marker))
    run_loader(
        "import pickle\ntry: pickle.load(open('m.pkl','rb'))\nexcept Exception: pass", tmp_path
    )
    assert marker.exists(), "the real loader did not run the payload"
    assert gate_fails(scan_data(a2_03(marker), "model.pkl"))


def test_a2_04_scipy_distribution_setstate_execs_the_state(tmp_path: Path) -> None:
    pytest.importorskip("scipy")
    marker = tmp_path / "marker"
    (tmp_path / "m.pkl").write_bytes(a2_04(marker))
    r = run_loader(
        "import pickle; d = pickle.load(open('m.pkl','rb'))\n"
        "print(d['param_distributions']['alpha'].mean())",
        tmp_path,
    )
    assert marker.exists() and r.returncode == 0, r.stderr[-300:]
    assert gate_fails(scan_data(a2_04(marker), "search.pkl"))


def test_a2_14_datapipe_wrapper_unpickles_its_state(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    marker = tmp_path / "marker"
    (tmp_path / "m.pkl").write_bytes(a2_14(marker))
    run_loader("import pickle; print(pickle.load(open('m.pkl','rb')))", tmp_path)
    assert marker.exists(), "the real loader did not run the payload"
    assert gate_fails(scan_data(a2_14(marker), "pipe.pkl"))


def test_a2_20_preload_cuda_lib_is_not_allowed() -> None:
    # the loader proof needs a compiled shared object; the gate is what matters here
    assert gate_fails(scan_data(a2_20(), "model.pkl"))
    assert not classify("torch", "_preload_cuda_lib").allowed


def test_a2_22_entry_point_resolver(tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    marker = tmp_path / "marker"
    (tmp_path / "m.pkl").write_bytes(a2_22(marker))
    run_loader("import pickle; print(pickle.load(open('m.pkl','rb')))", tmp_path)
    assert marker.exists(), "the real loader did not run the payload"
    assert gate_fails(scan_data(a2_22(marker), "model.pkl"))


def _a2_24_folder(tmp_path: Path) -> Path:
    marker = tmp_path / "marker"
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(a2_24())
    (folder / "test_model.py").write_text(
        "import unittest\n\nclass TestModel(unittest.TestCase):\n    def test_shapes(self):\n"
        f"        open({str(marker)!r}, 'w').write('bastion-marker')\n"
    )
    return folder


def test_a2_24_numpy_info_imports_toplevel(tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    folder = _a2_24_folder(tmp_path)
    run_loader("import pickle; pickle.load(open('model.pkl','rb'))", folder)
    assert (tmp_path / "marker").exists(), "the real loader did not run the shipped test"
    assert gate_fails(scan_data(a2_24(), "model.pkl"))


def test_a2_24_safe_load_refuses(tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    folder = _a2_24_folder(tmp_path)
    r = run_loader(
        "import bastion; from pathlib import Path\n"
        "try: bastion.safe_load(Path('model.pkl'))\n"
        "except Exception as exc: print('refused', type(exc).__name__)",
        folder,
    )
    assert "refused" in r.stdout, (r.stdout + r.stderr)[-400:]
    assert not (tmp_path / "marker").exists()


REFUSED = [
    ("scipy.optimize._nonlin", "_nonlin_wrapper"),
    ("scipy.stats._distn_infrastructure", "rv_generic._attach_argparser_methods"),
    ("torch.utils.data.datapipes.datapipe", "_DataPipeSerializationWrapper"),
    ("torch", "_preload_cuda_lib"),
    ("torch", "_preload_cuda_deps"),
    ("numpy._core._multiarray_tests", "npy_import_entry_point"),
    ("numpy", "info"),
]


@pytest.mark.parametrize(("module", "name"), REFUSED)
def test_never_allowed_and_not_generated(module: str, name: str) -> None:
    verdict = classify(module, name)
    assert not verdict.allowed and verdict.category is not None
    assert f"\n{module}\t{name}\t" not in TSV.read_text(encoding="utf-8")


def _generator() -> Any:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gen_allowlist
    finally:
        sys.path.remove(str(ROOT / "tools"))
    return gen_allowlist


def test_generator_reads_what_the_code_does() -> None:
    """The refusals come from the code, not from the names: the attack's functions and restore
    methods are found; ordinary numeric functions and classes are not."""
    for module in ("numpy", "scipy", "torch", "sklearn"):
        pytest.importorskip(module)
    import numpy
    import scipy.optimize._nonlin as nonlin
    import scipy.stats
    import sklearn.linear_model
    import torch
    from torch.utils.data.datapipes.datapipe import _DataPipeSerializationWrapper

    gen = _generator()
    assert "exec" in gen.HAZARDS.of(nonlin._nonlin_wrapper, "scipy")
    assert "pydoc" in gen.HAZARDS.of(numpy.info, "numpy") or "__import__" in gen.HAZARDS.of(
        numpy.info, "numpy"
    )
    assert "ctypes" in gen.HAZARDS.of(torch._preload_cuda_lib, "torch")
    assert "exec" in gen.class_hazard(type(scipy.stats.norm), "scipy", callable_=False)
    assert gen.class_hazard(_DataPipeSerializationWrapper, "torch", callable_=False)
    assert gen.HAZARDS.of(numpy.mean, "numpy") is None
    assert gen.HAZARDS.of(torch.nn.functional.gelu, "torch") is None
    assert gen.class_hazard(sklearn.linear_model.LogisticRegression, "sklearn", True) is None
    assert gen.class_hazard(torch.nn.Linear, "torch", callable_=False) is None


BENIGN = [
    ("numpy", "mean", "c"),
    ("numpy._core.multiarray", "_reconstruct", "c"),
    ("sklearn.linear_model._logistic", "LogisticRegression", "c"),
    ("torch.nn.modules.linear", "Linear", "n"),
    ("scipy.stats._continuous_distns", "norm_gen", "n"),
    ("scipy.stats._distn_infrastructure", "rv_continuous_frozen", "n"),
]


@pytest.mark.parametrize(("module", "name", "use"), BENIGN)
def test_ordinary_objects_stay_allowed(module: str, name: str, use: str) -> None:
    assert classify(module, name).permits(use)


def test_scipy_distributions_as_pickled_pass() -> None:
    """RandomizedSearchCV keeps scipy distributions: their generated template is accepted."""
    stats = pytest.importorskip("scipy.stats")
    data = pickle.dumps(
        {
            "alpha": stats.norm,
            "C": stats.loguniform(1e-3, 1e2),
            "k": stats.randint(1, 4),
            "g": stats.gamma(2.0),
        },
        protocol=4,
    )
    assert not gate_fails(scan_data(data, "search.pkl"))
