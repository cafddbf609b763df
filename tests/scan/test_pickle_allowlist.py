"""The exact-object allowlist judged by use (issue #7 class 2): names are matched exactly (module +
qualified name, as pickle writes them), dotted paths only where listed, re-exports never count
as the package's own, and each resolved object is judged by what the loader does with it."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from corpus import opcodes as op
from helpers import rules, scan_data

from bastion.findings import Severity
from bastion.scan.pickle_globals import CORE, GENERATED, classify, denied_category

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def findings(data: bytes) -> dict[str, tuple[str, str]]:
    """evidence -> (rule, severity) of a scan of `data`."""
    result = scan_data(data, "x.pkl")
    return {f.evidence: (f.rule_id, f.severity.value) for f in result.findings}


def loads_in_subprocess(data: bytes, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Load `data` with the real unpickler in a child process (harmless payloads only)."""
    path = tmp_path / "p.pkl"
    path.write_bytes(data)
    code = "import pickle,sys; pickle.load(open(sys.argv[1], 'rb'))"
    return subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


# --- exact names, dotted paths, re-exports ------------------------------------------------------


def test_dotted_path_through_a_module_attribute_is_caught(tmp_path: Path) -> None:
    """protocol 4: ('torch', 'serialization.os.system') walks torch -> torch.serialization -> os
    -> system. The real loader runs it; bastion judges the path's suffix os.system."""
    data = (
        op.proto(4)
        + op.stack_global("torch", "serialization.os.system")
        + op.s(op.MARK_CMD)
        + b"\x85R."
    )
    ran = loads_in_subprocess(data, tmp_path)
    assert "BASTION_POC" in ran.stdout  # the real loader executes it
    assert findings(data)["torch.serialization.os.system"][1] == "critical"


@pytest.mark.parametrize(
    "module,name",
    [
        ("sklearn", "utils.fixes.subprocess.check_output"),
        ("numpy", "lib.format.pickle.loads"),
        ("pandas", "core.common.builtins.eval"),
        ("torch.nn.modules.linear", "torch.serialization.pickle.loads"),
    ],
)
def test_dotted_paths_reaching_dangerous_objects_are_dangerous(module: str, name: str) -> None:
    assert classify(module, name).category is not None


def test_unlisted_dotted_path_is_judged_as_a_call() -> None:
    """A dotted name that is not listed exactly may walk anywhere: never below HIGH."""
    data = op.proto(4) + op.stack_global("sklearn", "base.clone.__wrapped__.Unknown") + b"."
    assert findings(data)["sklearn.base.clone.__wrapped__.Unknown"][1] in ("high", "critical")
    data = (
        op.proto(4)
        + op.stack_global("sklearn.tree._classes", "DecisionTreeClassifier.x")
        + b")\x81."
    )
    assert findings(data)["sklearn.tree._classes.DecisionTreeClassifier.x"] == ("PKL003", "high")


def test_reexport_inside_an_allowed_package_is_not_the_packages_own(tmp_path: Path) -> None:
    """scipy._lib._tmpdirs does `from shutil import rmtree`: the name resolves to shutil.rmtree,
    which the generator never lists under scipy (its __module__ is shutil)."""
    assert GENERATED.get(("scipy._lib._tmpdirs", "rmtree")) is None
    target = tmp_path / "victim"
    target.mkdir()
    data = op.gadget("scipy._lib._tmpdirs", "rmtree", str(target))
    loads_in_subprocess(data, tmp_path)
    assert not target.exists()  # the real loader deletes the directory
    assert findings(data)["scipy._lib._tmpdirs.rmtree"][1] in ("high", "critical")


def test_exact_entries_come_from_the_objects_own_module() -> None:
    assert classify("sklearn.linear_model._logistic", "LogisticRegression").permits("cnr")
    assert not classify("sklearn.linear_model", "LogisticRegression").allowed  # a re-export path
    assert classify("torch.nn.modules.linear", "Linear").permits("nr")
    assert classify("numpy", "add").permits("cnr")


@pytest.mark.parametrize(
    "module,name",
    [
        ("pandas", "read_pickle"),
        ("pandas.io.pickle", "read_pickle"),
        ("numpy", "load"),
        ("numpy", "fromfile"),
        ("torch", "load"),
        ("joblib", "load"),
        ("scipy.io", "loadmat"),
        ("transformers", "AutoModel.from_pretrained"),
        ("pandas", "eval"),
        ("numpy.testing", "assert_equal"),
        ("huggingface_hub", "hf_hub_download"),
        ("transformers.utils.hub", "cached_file"),
        ("numpy.core", "_ufunc_reconstruct"),
    ],
)
def test_loaders_evaluators_and_downloads_are_never_allowed(module: str, name: str) -> None:
    verdict = classify(module, name)
    assert verdict.category is not None and not verdict.allowed


def test_generated_entries_never_include_denied_names() -> None:
    table = GENERATED.parse()
    assert len(table) > 10_000
    bad = [key for key in table if denied_category(*key) is not None]
    assert bad == []
    assert all(uses and set(uses) <= set("cnr") for uses, _reason in table.values())
    assert all(set(uses) <= set("cnr") and reason for uses, reason in CORE.values())


def test_generated_file_is_sorted_and_deterministic() -> None:
    text = (
        Path(__file__).resolve().parents[2] / "src/bastion/scan/pickle_allowlist.tsv"
    ).read_text()
    rows = [line.split("\t")[:2] for line in text.splitlines() if not line.startswith("#")]
    assert rows == sorted(rows)
    assert len({tuple(r) for r in rows}) == len(rows)


# --- judged by use --------------------------------------------------------------------------------


def test_reference_only_function_is_clean_when_stored_but_flagged_when_called() -> None:
    stored = (
        op.proto(4)
        + b"}"
        + op.s("metric")
        + op.stack_global("sklearn.metrics._classification", "accuracy_score")
        + b"s."
    )
    assert findings(stored) == {}
    called = (
        op.proto(4)
        + op.stack_global("sklearn.metrics._classification", "accuracy_score")
        + b"]]\x86R."
    )
    assert findings(called)["sklearn.metrics._classification.accuracy_score"] == ("PKL003", "high")


def test_partial_is_judged_by_its_target_as_a_call() -> None:
    import functools

    import numpy as np

    assert findings(pickle.dumps(functools.partial(np.log1p), protocol=4)) == {}
    assert findings(pickle.dumps(functools.partial(np.clip, a_min=0, a_max=1))) == {}
    evil = (
        op.proto(4)
        + op.stack_global("functools", "partial")
        + op.stack_global("os", "system")
        + b"\x85R."
    )
    assert findings(evil)["os.system"][1] == "critical"
    ref_only = (
        op.proto(4)
        + op.stack_global("functools", "partial")
        + op.stack_global("sklearn.metrics._classification", "accuracy_score")
        + b"\x85R."
    )
    assert findings(ref_only)["sklearn.metrics._classification.accuracy_score"][1] == "high"


def test_partial_state_replacing_the_target_is_judged_as_a_call() -> None:
    """partial.__setstate__((func, args, kwds, dict)) swaps the function a partial calls."""
    state = op.stack_global("sklearn.metrics._classification", "accuracy_score") + b")}N"
    data = (
        op.proto(4)
        + op.stack_global("functools", "partial")
        + op.stack_global("numpy", "add")
        + b"\x85R("
        + state
        + b"tb."
    )
    found = findings(data)
    assert found["sklearn.metrics._classification.accuracy_score"] == ("PKL003", "high")


def test_unknown_class_instantiated_is_low_but_unknown_call_is_high() -> None:
    new = op.proto(4) + op.stack_global("mypkg.models", "Net") + b")\x81}b."  # NEWOBJ + BUILD
    assert findings(new) == {"mypkg.models.Net": ("PKL007", "low")}
    called = op.proto(4) + op.stack_global("mypkg.models", "build") + op.s("x") + b"\x85R."
    assert findings(called) == {"mypkg.models.build": ("PKL003", "high")}
    reconstructor = (
        op.proto(2) + b"ccopy_reg\n_reconstructor\ncmypkg.models\nNet\n"
        b"c__builtin__\nobject\nN\x87R}b."
    )
    assert findings(reconstructor) == {"mypkg.models.Net": ("PKL007", "low")}


def test_reconstructor_base_other_than_object_is_a_call() -> None:
    data = op.proto(2) + b"ccopy_reg\n_reconstructor\ncmypkg\nA\ncmypkg\nB\nN\x87R."
    assert findings(data) == {"mypkg.A": ("PKL007", "low"), "mypkg.B": ("PKL003", "high")}


def test_dangerous_names_are_critical_in_any_use() -> None:
    referenced = op.proto(4) + b"]" + op.stack_global("os", "system") + b"a."
    assert findings(referenced)["os.system"] == ("PKL001", "critical")
    new = op.proto(4) + op.stack_global("subprocess", "Popen") + b")\x81."
    assert findings(new)["subprocess.Popen"] == ("PKL001", "critical")


def test_build_or_setitem_on_a_global_is_mutation() -> None:
    """BUILD on a class object sets class attributes (monkey-patching library code)."""
    build = (
        op.proto(4)
        + op.stack_global("collections", "OrderedDict")
        + b"N}"
        + op.s("__repr__")
        + op.stack_global("builtins", "print")
        + b"s\x86b."
    )
    found = findings(build)
    assert found["collections.OrderedDict"] == ("PKL001", "critical")
    setitem = (
        op.proto(4) + op.stack_global("torch.nn.modules.linear", "Linear") + op.s("k") + b"Ns."
    )
    assert findings(setitem)["torch.nn.modules.linear.Linear"][1] == "critical"


def test_getattr_on_a_global_with_a_constant_name_is_a_lookup() -> None:
    """pandas pickles zoneinfo zones as getattr(ZoneInfo, '_unpickle')(key, 1)."""
    data = (
        op.proto(4)
        + op.stack_global("builtins", "getattr")
        + op.stack_global("zoneinfo", "ZoneInfo")
        + op.s("_unpickle")
        + b"\x86R"
        + op.s("Europe/Paris")
        + b"K\x01\x86R."
    )
    assert findings(data) == {}
    evil = (
        op.proto(4)
        + op.stack_global("builtins", "getattr")
        + op.stack_global("torch", "serialization")
        + op.s("os")
        + b"\x86R."
    )
    assert findings(evil)  # torch.serialization.os: a module walked to
    dunder = (
        op.proto(4)
        + op.stack_global("builtins", "getattr")
        + op.stack_global("collections", "OrderedDict")
        + op.s("__init__")
        + b"\x86R."
    )
    assert findings(dunder)["collections.OrderedDict.__init__"][1] == "critical"
    computed = op.proto(4) + op.stack_global("builtins", "getattr") + b"]" + op.s("x") + b"\x86R."
    assert findings(computed)["builtins.getattr"][1] == "critical"


def test_numpy_ufunc_reconstruct_is_judged_by_what_it_resolves() -> None:
    ok = (
        op.proto(2)
        + b"cnumpy.core\n_ufunc_reconstruct\n"
        + b"X\x05\x00\x00\x00numpy"
        + b"X\x03\x00\x00\x00add\x86R."
    )
    assert findings(ok) == {}
    evil = (
        op.proto(2)
        + b"cnumpy.core\n_ufunc_reconstruct\n"
        + b"X\x02\x00\x00\x00os"
        + b"X\x06\x00\x00\x00system\x86R."
    )
    assert findings(evil)["os.system"] == ("PKL001", "critical")


def test_user_classes_of_a_whole_module_torch_save_are_low(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    module = tmp_path / "usermodels_b.py"
    module.write_text(
        "import torch\nclass Net(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n"
        "        self.fc = torch.nn.Linear(2, 2)\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import usermodels_b

        torch.save(usermodels_b.Net(), tmp_path / "full.pt")
    finally:
        sys.path.remove(str(tmp_path))
    result = scan_data((tmp_path / "full.pt").read_bytes(), "full.pt")
    assert {(f.rule_id, f.severity) for f in result.findings} == {("PKL007", Severity.LOW)}


def test_generator_check_mode_runs(tmp_path: Path) -> None:
    """The generator is importable and documents its policy (the full run imports every
    library and takes a minute; `python tools/gen_allowlist.py --check` compares)."""
    sys.path.insert(0, str(TOOLS))
    try:
        import gen_allowlist
    finally:
        sys.path.remove(str(TOOLS))
    assert gen_allowlist.EXCLUDED_MODULES.search("torch.hub")
    assert gen_allowlist.EXCLUDED_MODULES.search("pandas.io.pickle")
    assert not gen_allowlist.EXCLUDED_MODULES.search("sklearn.linear_model._logistic")
    assert gen_allowlist.HIGHER_ORDER.match("apply_along_axis")


def test_rules_of_a_benign_torch_state_dict() -> None:
    torch = pytest.importorskip("torch")
    import io

    buffer = io.BytesIO()
    torch.save(
        {"w": torch.ones(2), "q": torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.qint8)},
        buffer,
    )
    assert rules(scan_data(buffer.getvalue(), "s.pt")) == set()
