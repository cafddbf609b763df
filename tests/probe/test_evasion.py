"""Evasion: every reported flip is valid and real, cheap where an exact answer is known, and the
findings follow the policy's thresholds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import credit_spec

from bastion.config import ProbeSettings
from bastion.findings import Location
from bastion.probe.evasion import run_evasion
from bastion.probe.inputs import Table
from bastion.probe.model import EstimatorModel, Model, Output, wrap
from bastion.probe.spec import change_cost, infer, validate_change

LOC = Location(path="model.joblib")


def _evade(model: Model, table: Table, spec: Any, **options: Any) -> Any:
    out = model.query(table.features)
    settings = ProbeSettings(**{"max_rows": 40, **options})
    assert table.labels is not None
    return run_evasion(
        model, spec, table.features, table.labels, out.labels, out.scores, "good", settings, LOC
    )


def test_every_flip_is_valid_and_flips(credit: tuple[Table, Table], credit_lr: Any) -> None:
    _, test = credit
    spec = credit_spec(test)
    model = wrap(credit_lr)
    result = _evade(model, test, spec, budgets=(0.5, 1.0, 2.0))
    metrics = result.metrics
    assert metrics["probed"] == 40 and metrics["invalid_dropped"] == 0
    assert metrics["success_rate"] > 0.5  # a linear model with cheap levers: most flip
    flips = metrics["cheapest_flips"]
    assert flips
    rows = test.features.to_numpy(dtype=object)
    for flip in flips:
        after = list(rows[flip["row"]])
        for change in flip["changes"]:
            assert change["feature"] not in ("age", "sex")
            after[spec.names.index(change["feature"])] = change["to"]
        assert validate_change(spec, rows[flip["row"]], after) == []
        assert change_cost(spec, rows[flip["row"]], after) == pytest.approx(flip["cost"], abs=1e-5)
        frame = pd.DataFrame([after], columns=spec.names).astype(test.features.dtypes)
        assert credit_lr.predict(frame)[0] == "good"
        debt = [c for c in flip["changes"] if c["feature"] == "debt"]
        assert all(c["to"] <= c["from"] for c in debt)  # debt may only fall
    shares = [b["flippable_share"] for b in metrics["budgets"]]
    assert shares == sorted(shares)  # a larger budget never flips fewer
    robust = [b["robust_accuracy"] for b in metrics["budgets"]]
    assert robust[-1] < metrics["accuracy"]


def test_cost_matches_the_exact_optimum_of_a_linear_model() -> None:
    """For a linear model and an L1 cost, the cheapest flip moves the one feature with the best
    weight-to-cost ratio exactly to the boundary: the search must land within 5% of it."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (400, 3))
    y = np.where(x @ np.array([1.5, -0.7, 0.3]) + 0.2 > 0, "good", "bad")
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    frame["a"] *= 10  # different scales: the costs (1/std) must account for them
    lr = LogisticRegression(C=100).fit(frame, y)
    spec = infer(frame, favourable="good")
    spec = spec.model_copy(
        update={
            "features": tuple(
                f.model_copy(update={"lower": -1e4, "upper": 1e4}) for f in spec.features
            )
        }
    )
    table = Table("t", frame.iloc[:200], y[:200])
    result = _evade(wrap(lr), table, spec, budgets=(3.0,), max_rows=30)
    costs = np.array([f.cost for f in spec.features])
    weights = lr.coef_[0]
    margins = lr.decision_function(frame.iloc[:200])
    by_row = {f["row"]: f["cost"] for f in result.metrics["cheapest_flips"]}
    assert len(by_row) >= 20
    for row, cost in by_row.items():
        optimum = -margins[row] / np.max(np.abs(weights) / costs)
        assert optimum - 1e-6 <= cost <= optimum * 1.05 + 1e-3, (row, cost, optimum)


class LabelsOnly(Model):
    """A model behind an API that returns decisions only."""

    def __init__(self, inner: Any) -> None:
        super().__init__("labels-only", inner.classes_)
        self.inner = inner

    @property
    def gives_scores(self) -> bool:
        return False

    def _predict(self, frame: pd.DataFrame) -> Output:
        return Output(np.array([str(v) for v in self.inner.predict(frame)], dtype=object), None)


def test_labels_only_search_finds_valid_flips(credit: tuple[Table, Table], credit_gb: Any) -> None:
    _, test = credit
    spec = credit_spec(test)
    model = LabelsOnly(credit_gb)
    result = _evade(model, test, spec, budgets=(1.0, 2.0), max_rows=25, queries_per_row=300)
    metrics = result.metrics
    assert metrics["scores_used"] is False and metrics["invalid_dropped"] == 0
    assert metrics["success_rate"] > 0.3
    assert metrics["queries"] <= 25 * 300
    for flip in metrics["cheapest_flips"]:
        assert {c["feature"] for c in flip["changes"]}.isdisjoint({"age", "sex"})


def test_findings_follow_the_thresholds(credit: tuple[Table, Table], credit_lr: Any) -> None:
    _, test = credit
    spec = credit_spec(test)
    strict = _evade(
        wrap(credit_lr),
        test,
        spec,
        budgets=(2.0,),
        max_flippable_share=0.05,
        min_robust_accuracy=0.95,
    )
    assert {f.rule_id for f in strict.findings} == {"PRB001", "PRB002"}
    assert all(f.location.pointer == "evasion/budget=2" for f in strict.findings)
    lenient = _evade(
        wrap(credit_lr),
        test,
        spec,
        budgets=(2.0,),
        max_flippable_share=1.0,
        min_robust_accuracy=0.0,
    )
    assert lenient.findings == []


def test_a_model_with_no_mutable_lever_cannot_be_flipped(
    credit: tuple[Table, Table], credit_lr: Any
) -> None:
    _, test = credit
    spec = credit_spec(test).with_overrides(immutable=["income", "debt", "accounts", "housing"])
    result = _evade(wrap(credit_lr), test, spec, budgets=(5.0,), max_rows=10)
    # no candidate sent: each row's queries are its own prediction only
    assert result.metrics["success_rate"] == 0.0 and result.metrics["queries"] == 10
    assert isinstance(wrap(credit_lr), EstimatorModel)
