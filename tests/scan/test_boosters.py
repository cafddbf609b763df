"""XGBoost JSON/UBJSON and LightGBM text models: written by the real libraries they are
recognised, checked structurally and loaded by safe_load; broken structure (what a crafted file
hands a native parser) is FMT004 and refused. Pickled XGBoost/LightGBM estimators load only with
a named allowance, and the booster bytes they carry are checked the same way."""

from __future__ import annotations

import pickle
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bastion
from bastion.config import Settings
from bastion.errors import UnsafeArtifactError
from bastion.findings import (
    Confidence,
    Finding,
    Location,
    Report,
    Severity,
    Stage,
    TargetResult,
    ToolInfo,
)
from bastion.scan.boosters import check_lightgbm, check_xgboost, parse_ubj
from bastion.scan.engine import scan_bytes
from bastion.scan.safe_load import Permits
from bastion.scan.source import CorruptInput

xgboost = pytest.importorskip("xgboost")
lightgbm = pytest.importorskip("lightgbm")

SETTINGS = Settings(workers=1)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int) + (x[:, 2] > 1).astype(int)
    return x, y


@pytest.fixture(scope="module")
def models(data: tuple[np.ndarray, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    x, y = data
    root = tmp_path_factory.mktemp("boosters")
    binary = (y > 0).astype(int)
    xgb = xgboost.XGBClassifier(n_estimators=4, max_depth=3, n_jobs=1).fit(x, binary)
    xgb.save_model(root / "binary.json")
    xgb.save_model(root / "binary.ubj")
    multi = xgboost.XGBClassifier(n_estimators=3, max_depth=2, n_jobs=1).fit(x, y)
    multi.save_model(root / "multi.ubj")
    dart = xgboost.XGBClassifier(n_estimators=3, booster="dart", n_jobs=1).fit(x, binary)
    dart.save_model(root / "dart.json")
    lgb = lightgbm.LGBMClassifier(n_estimators=4, num_leaves=6, verbose=-1, n_jobs=1)
    lgb.fit(x, binary)
    lgb.booster_.save_model(str(root / "binary.txt"))
    cats = x.copy()
    cats[:, 4] = np.abs(np.round(cats[:, 4] * 3)) % 5
    lgb_cat = lightgbm.LGBMClassifier(n_estimators=3, verbose=-1, n_jobs=1, min_child_samples=5)
    lgb_cat.fit(cats, y, categorical_feature=[4])
    lgb_cat.booster_.save_model(str(root / "multi_cat.txt"))
    pickle.dump(xgb, (root / "xgb.pkl").open("wb"))
    import joblib

    joblib.dump(lgb, root / "lgb.joblib")
    return root


def _scan(data: bytes, name: str) -> TargetResult:
    return scan_bytes(data, name, SETTINGS).results[0]


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("binary.json", "xgboost_json"),
        ("binary.ubj", "xgboost_ubj"),
        ("multi.ubj", "xgboost_ubj"),
        ("dart.json", "xgboost_json"),
        ("binary.txt", "lightgbm_text"),
        ("multi_cat.txt", "lightgbm_text"),
    ],
)
def test_library_written_models_are_recognised_clean_and_load(
    models: Path, data: tuple[np.ndarray, np.ndarray], name: str, fmt: str
) -> None:
    result = _scan((models / name).read_bytes(), name)
    assert result.format == fmt
    assert result.findings == () and result.errors == () and not result.incomplete
    booster = bastion.safe_load(models / name, SETTINGS)
    x, _ = data
    if fmt == "lightgbm_text":
        reference = lightgbm.Booster(model_file=str(models / name)).predict(x[:20])
        assert np.allclose(booster.predict(x[:20]), reference)
    else:
        reference = xgboost.Booster(model_file=str(models / name))
        matrix = xgboost.DMatrix(x[:20])
        assert np.allclose(booster.predict(matrix), reference.predict(matrix))


def _xgb_document(models: Path) -> dict[str, Any]:
    import json

    document: dict[str, Any] = json.loads((models / "binary.json").read_text())
    return document


def _tree(document: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = document["learner"]["gradient_booster"]["model"]["trees"][0]
    return tree


def _internal(tree: dict[str, Any]) -> int:
    return next(i for i, c in enumerate(tree["left_children"]) if c != -1)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda t: t["left_children"].__setitem__(_internal(t), 10_000), "out of range"),
        (lambda t: t["right_children"].__setitem__(_internal(t), 0), "out of range"),
        (lambda t: t["split_indices"].__setitem__(_internal(t), 99), "splits on feature"),
        (lambda t: t["split_conditions"].pop(), "entries for"),
        (lambda t: t["tree_param"].__setitem__("num_nodes", "1000000"), "entries for"),
        (lambda t: t["right_children"].__setitem__(0, t["left_children"][0]), "out of range"),
        (lambda t: t["left_children"].__setitem__(_internal(t), -1), "one child"),
    ],
)
def test_broken_xgboost_trees_are_malformed(models: Path, damage: Any, message: str) -> None:
    document = _xgb_document(models)
    damage(_tree(document))
    with pytest.raises(CorruptInput, match=message):
        check_xgboost(document)


def test_a_cycle_between_nodes_is_caught(models: Path) -> None:
    document = _xgb_document(models)
    tree = _tree(document)
    left, right = tree["left_children"], tree["right_children"]
    inner = [i for i, c in enumerate(left) if c != -1]
    # the second split points back at the first one's child: a node reached twice
    left[inner[1]] = left[inner[0]]
    with pytest.raises(CorruptInput, match=r"reached twice|out of range|not reached"):
        check_xgboost(document)
    assert right  # the arrays were really there


def test_broken_ubj_model_is_refused_by_safe_load(models: Path, tmp_path: Path) -> None:
    data = (models / "binary.ubj").read_bytes()
    start = data.index(b"left_children") + len(b"left_children")
    assert data[start : start + 5] == b"[$l#L"  # a typed int32 array with an int64 count
    (count,) = struct.unpack(">q", data[start + 5 : start + 13])
    body = start + 13
    values = list(struct.unpack(f">{count}i", data[body : body + 4 * count]))
    values[0] = 50_000  # the root's left child past the node array
    patched = data[:body] + struct.pack(f">{count}i", *values) + data[body + 4 * count :]
    path = tmp_path / "model.ubj"
    path.write_bytes(patched)
    result = _scan(patched, "model.ubj")
    assert [f.rule_id for f in result.findings] == ["FMT004"]
    assert "out of range" in result.findings[0].message
    with pytest.raises(UnsafeArtifactError):
        bastion.safe_load(path, SETTINGS)


@pytest.mark.parametrize(
    "data",
    [
        b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner[$d#L\x7f\xff\xff\xff\xff\xff\xff\xff",
        b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner[$Z#L\x00\x00\x00\x00\x00\x00\xff\xff}",
        b"{L\x00\x00\x00\x00\x00\x00\x00\x07learnerSL\x7f\xff\xff\xff\xff\xff\xff\xff",
        b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner" + b"[" * 5000,
        b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner{L\x00\x00\x00\x00\x00\x00\x00\x01a",
    ],
    ids=["huge-count", "valueless-count", "huge-string", "deep", "truncated"],
)
def test_hostile_ubjson_is_bounded(data: bytes) -> None:
    with pytest.raises(CorruptInput):
        parse_ubj(data)
    result = _scan(data, "model.ubj")
    assert result.format == "xgboost_ubj"
    assert [f.rule_id for f in result.findings] == ["FMT004"]


@pytest.mark.parametrize(
    ("pattern", "replacement", "message"),
    [
        (rb"left_child=(\d+)", b"left_child=77", "out of range"),
        (rb"split_feature=(\d+)", b"split_feature=42", "on feature 42"),
        (rb"right_child=(-?\d+)", b"right_child=-99", "leaf 98 out of range"),
        (rb"num_leaves=(\d+)", b"num_leaves=2", "leaf values for 2 leaves"),
        (rb"end of trees[\s\S]*", b"", "no 'end of trees'"),  # truncated
        (rb"max_feature_idx=(\d+)", b"max_feature_idx=x", "not an integer"),
    ],
)
def test_broken_lightgbm_models_are_malformed(
    models: Path, pattern: bytes, replacement: bytes, message: str
) -> None:
    text = (models / "binary.txt").read_bytes()
    broken = re.sub(pattern, replacement, text, count=1)
    assert broken != text
    with pytest.raises(CorruptInput, match=message):
        check_lightgbm(broken.decode())
    result = _scan(broken, "model.txt")
    assert result.format == "lightgbm_text"
    assert [f.rule_id for f in result.findings] == ["FMT004"]


def test_pickled_estimators_need_a_named_allowance(models: Path) -> None:
    with pytest.raises(UnsafeArtifactError) as caught:
        bastion.safe_load(models / "xgb.pkl", SETTINGS)
    assert "--allow-global xgboost.core.Booster" in caught.value.message
    model = bastion.safe_load(models / "xgb.pkl", SETTINGS, allow_globals=["xgboost.core.Booster"])
    assert type(model).__name__ == "XGBClassifier"
    with pytest.raises(UnsafeArtifactError):  # an allowance for another name does not help
        bastion.safe_load(models / "lgb.joblib", SETTINGS, allow_globals=["xgboost.core.Booster"])
    lgb = bastion.safe_load(
        models / "lgb.joblib", SETTINGS, allow_globals=["lightgbm.basic.Booster"]
    )
    assert type(lgb).__name__ == "LGBMClassifier"


def test_a_broken_booster_inside_a_pickle_is_refused_even_when_allowed(
    models: Path, tmp_path: Path
) -> None:
    data = (models / "lgb.joblib").read_bytes()
    found = re.search(rb"left_child=(\d+) ", data)
    assert found is not None
    broken = data[: found.start(1)] + b"9" * len(found.group(1)) + data[found.end(1) :]
    path = tmp_path / "lgb.joblib"
    path.write_bytes(broken)
    with pytest.raises(UnsafeArtifactError) as caught:
        bastion.safe_load(path, SETTINGS, allow_globals=["lightgbm.basic.Booster"])
    rules = {f.rule_id for f in caught.value.report.findings}
    assert rules == {"PKL007", "FMT004"}


def _report(rule: str, qualname: str, severity: Severity) -> Report:
    finding = Finding(
        rule_id=rule,
        severity=severity,
        confidence=Confidence.HIGH,
        stage=Stage.ARTIFACT,
        location=Location(path="m.pkl"),
        message="m",
        evidence=qualname,
    )
    return Report(
        tool=ToolInfo(version="test"),
        targets=("m.pkl",),
        results=(TargetResult(path="m.pkl", findings=(finding,)),),
    )


def test_an_allowance_covers_only_below_gate_instantiation() -> None:
    # named, but the scan saw it called (PKL003): never resolved
    permits = Permits(_report("PKL003", "mypkg.Loader", Severity.HIGH), ["mypkg.Loader"])
    with pytest.raises(pickle.UnpicklingError):
        permits.check("mypkg", "Loader")
    # named and instantiated only (PKL007): resolved
    Permits(_report("PKL007", "mypkg.Model", Severity.LOW), ["mypkg.Model"]).check("mypkg", "Model")
    # not named: refused, and the refusal says how to allow it
    with pytest.raises(pickle.UnpicklingError, match=r"--allow-global mypkg\.Model"):
        Permits(_report("PKL007", "mypkg.Model", Severity.LOW)).check("mypkg", "Model")
    # a dangerous name is never resolved, even named and even with only a PKL007 finding
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        Permits(_report("PKL007", "os.system", Severity.LOW), ["os.system"]).check("os", "system")
    # a class listed for instantiation only resolves when the scan named it in no finding...
    Permits(_report("PKL007", "xgboost.core.Booster", Severity.LOW)).check(
        "xgboost.sklearn", "XGBClassifier"
    )
    # ...but not without a scan report (the unpickler alone cannot see the use)
    with pytest.raises(pickle.UnpicklingError):
        Permits().check("xgboost.sklearn", "XGBClassifier")
    # ...nor when the scan reported it misused
    with pytest.raises(pickle.UnpicklingError):
        Permits(_report("PKL003", "xgboost.sklearn.XGBClassifier", Severity.HIGH)).check(
            "xgboost.sklearn", "XGBClassifier"
        )
