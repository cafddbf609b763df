"""Model adapters on real files: an ONNX export of a pipeline (skl2onnx) through safe_load,
XGBoost JSON/UBJSON and LightGBM text files, a pickled XGBClassifier behind the named
allowance, and a PyTorch module handed over from Python. Each gives the library's own
predictions, and the evasion search on it reports only valid, real flips."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import CATEGORICAL, NUMERIC, credit_spec

from bastion.config import ProbeSettings, Settings
from bastion.errors import UnsafeArtifactError
from bastion.findings import Location
from bastion.probe.evasion import run_evasion
from bastion.probe.inputs import Table
from bastion.probe.model import BoosterModel, Model, OnnxModel, TorchModel, load_model, wrap
from bastion.probe.spec import infer, validate_change

SETTINGS = Settings(workers=1)
NUMBERS = ["income", "debt", "age", "accounts"]


def _evade(model: Model, table: Table, spec: Any, rows: int = 12) -> dict[str, Any]:
    out = model.query(table.features)
    options = ProbeSettings(max_rows=rows, budgets=(1.0, 3.0), queries_per_row=400)
    result = run_evasion(
        model,
        spec,
        table.features,
        None,
        out.labels,
        out.scores,
        "good",
        options,
        Location(path="m"),
    )
    metrics: dict[str, Any] = result.metrics
    assert metrics["invalid_dropped"] == 0
    rows_ = table.features.to_numpy(dtype=object)
    for flip in metrics["cheapest_flips"]:
        after = list(rows_[flip["row"]])
        for change in flip["changes"]:
            after[spec.names.index(change["feature"])] = change["to"]
        assert validate_change(spec, rows_[flip["row"]], after) == []
    return metrics


def test_onnx_export_of_a_pipeline_through_safe_load(
    credit: tuple[Table, Table], credit_lr: Any, tmp_path: Path
) -> None:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    _, test = credit
    inputs = [(c, FloatTensorType([None, 1])) for c in NUMERIC] + [
        (c, StringTensorType([None, 1])) for c in CATEGORICAL
    ]
    onx = to_onnx(credit_lr, initial_types=inputs, options={"zipmap": False})
    path = tmp_path / "credit.onnx"
    path.write_bytes(onx.SerializeToString())
    model = load_model(path, SETTINGS)
    assert isinstance(model, OnnxModel) and not model.positional
    out = model.query(test.features)
    assert set(model.classes) == {"bad", "good"}
    agreement = np.mean(out.labels == credit_lr.predict(test.features))
    assert agreement >= 0.99  # float32 inside the graph may move a row on the boundary
    assert out.scores is not None
    reference = credit_lr.predict_proba(test.features)
    assert np.allclose(out.scores, reference, atol=1e-4)
    metrics = _evade(model, test, credit_spec(test))
    assert metrics["success_rate"] > 0.5


def test_a_tampered_onnx_file_is_refused(tmp_path: Path) -> None:
    # an ONNX graph whose tensor points at a file outside the model folder fails the scan
    import onnx
    from onnx import TensorProto, helper

    tensor = helper.make_tensor("w", TensorProto.FLOAT, [1], [0.0])
    tensor.data_location = TensorProto.EXTERNAL
    del tensor.float_data[:]
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../../../etc/passwd"
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [tensor],
    )
    path = tmp_path / "evil.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    assert onnx.load(str(path), load_external_data=False)
    with pytest.raises(UnsafeArtifactError):
        load_model(path, SETTINGS)


@pytest.fixture(scope="module")
def numeric_credit(credit: tuple[Table, Table]) -> tuple[Table, Table]:
    train, test = credit
    return (
        Table("train", train.features[NUMBERS], train.labels),
        Table("test", test.features[NUMBERS], test.labels),
    )


def _numeric_spec(table: Table) -> Any:
    return infer(table.features, favourable="good").with_overrides(
        immutable=["age"], monotone={"debt": -1, "accounts": 1}
    )


@pytest.mark.parametrize("suffix", [".json", ".ubj"])
def test_xgboost_files(numeric_credit: tuple[Table, Table], tmp_path: Path, suffix: str) -> None:
    xgboost = pytest.importorskip("xgboost")
    train, test = numeric_credit
    assert train.labels is not None
    clf = xgboost.XGBClassifier(n_estimators=30, max_depth=3, n_jobs=1)
    clf.fit(train.features, (train.labels == "good").astype(int))
    path = tmp_path / f"model{suffix}"
    clf.save_model(path)
    model = load_model(path, SETTINGS, classes=("bad", "good"))
    assert isinstance(model, BoosterModel) and model.kind == "xgboost"
    assert model.feature_names == NUMBERS
    out = model.query(test.features)
    expected = np.where(clf.predict(test.features) == 1, "good", "bad")
    assert list(out.labels) == list(expected)
    assert out.scores is not None
    assert np.allclose(out.scores, clf.predict_proba(test.features), atol=1e-6)
    metrics = _evade(model, test, _numeric_spec(test))
    assert metrics["success_rate"] > 0.3


def test_lightgbm_text_file(numeric_credit: tuple[Table, Table], tmp_path: Path) -> None:
    lightgbm = pytest.importorskip("lightgbm")
    train, test = numeric_credit
    assert train.labels is not None
    clf = lightgbm.LGBMClassifier(n_estimators=30, num_leaves=8, verbose=-1, n_jobs=1)
    clf.fit(train.features, (train.labels == "good").astype(int))
    path = tmp_path / "model.txt"
    clf.booster_.save_model(str(path))
    model = load_model(path, SETTINGS, classes=("bad", "good"))
    assert isinstance(model, BoosterModel) and model.kind == "lightgbm"
    out = model.query(test.features)
    expected = np.where(clf.predict(test.features) == 1, "good", "bad")
    assert list(out.labels) == list(expected)
    metrics = _evade(model, test, _numeric_spec(test))
    assert metrics["success_rate"] > 0.3


def test_pickled_xgbclassifier_needs_the_named_allowance(
    numeric_credit: tuple[Table, Table], tmp_path: Path
) -> None:
    xgboost = pytest.importorskip("xgboost")
    train, test = numeric_credit
    clf = xgboost.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1)
    assert train.labels is not None
    clf.fit(train.features, (train.labels == "good").astype(int))
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(clf))
    with pytest.raises(UnsafeArtifactError, match=r"--allow-global xgboost\.core\.Booster"):
        load_model(path, SETTINGS)
    model = load_model(path, SETTINGS, allow_globals=["xgboost.core.Booster"])
    assert model.classes == ("0", "1")
    expected = [str(v) for v in clf.predict(test.features)]
    assert list(model.query(test.features).labels) == expected


def test_pytorch_module(numeric_credit: tuple[Table, Table]) -> None:
    torch = pytest.importorskip("torch")
    _, test = numeric_credit
    frame = test.features
    mean = frame.mean().to_numpy()
    std = frame.std().to_numpy()
    weights = np.array([1.2, -1.0, 0.05, 0.3]) / std
    layer = torch.nn.Linear(4, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weights[None, :], dtype=torch.float32))
        layer.bias.copy_(torch.tensor([-(weights @ mean)], dtype=torch.float32))
    model = wrap(layer, "linear", classes=("bad", "good"))
    assert isinstance(model, TorchModel)
    out = model.query(frame)
    logits = frame.to_numpy(dtype=float) @ weights - weights @ mean
    assert list(out.labels) == list(np.where(logits > 0, "good", "bad"))
    labels = np.where(logits > 0, "good", "bad")
    metrics = _evade(model, Table("t", frame, labels), _numeric_spec(test))
    assert metrics["success_rate"] > 0.5
    for flip in metrics["cheapest_flips"]:
        after = frame.iloc[flip["row"]].to_dict()
        for change in flip["changes"]:
            after[change["feature"]] = change["to"]
        row = pd.DataFrame([after])[NUMBERS].to_numpy(dtype=float)
        assert (row @ weights - weights @ mean)[0] > -1e-5


def test_labels_read_off_scores_only_for_argmax_classifiers(credit: tuple[Table, Table]) -> None:
    """Listed classifiers skip the second predict(): their labels still equal predict()'s; a
    classifier whose predict() is not the top score (SVC with probability=True) is asked."""
    import importlib

    from sklearn.svm import SVC

    from bastion.probe.model import _ARGMAX_CLASSIFIERS, EstimatorModel

    for dotted in _ARGMAX_CLASSIFIERS:  # every entry names a class that exists
        module, _, name = dotted.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), name), type), dotted
    train, test = credit
    frame = pd.concat([train.features, test.features])[NUMBERS]
    labels = np.concatenate([train.labels, test.labels])  # type: ignore[list-item]
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    for estimator in (
        LogisticRegression(max_iter=500),
        RandomForestClassifier(n_estimators=20, random_state=0),
        HistGradientBoostingClassifier(max_iter=20),
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0),
    ):
        fitted_model = estimator.fit(frame, labels)
        model = EstimatorModel(fitted_model)
        assert model._argmax
        assert list(model.query(frame).labels) == list(fitted_model.predict(frame))
    svc = EstimatorModel(SVC(probability=True, random_state=0).fit(frame.iloc[:300], labels[:300]))
    assert not svc._argmax
    assert list(svc.query(frame).labels) == list(svc.estimator.predict(frame))
