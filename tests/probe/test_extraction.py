"""Extraction: fidelity grows with queries, hardening is measured, and the finding follows the
threshold."""

from __future__ import annotations

from typing import Any

from conftest import credit_spec

from bastion.config import ProbeSettings
from bastion.findings import Location
from bastion.probe.extraction import run_extraction
from bastion.probe.inputs import Table
from bastion.probe.model import wrap
from bastion.probe.spec import validate_change

LOC = Location(path="model.joblib")


def test_a_simple_model_is_copied(credit: tuple[Table, Table], credit_lr: Any) -> None:
    _, test = credit
    spec = credit_spec(test)
    model = wrap(credit_lr)
    result = run_extraction(
        model, spec, test.features, test.labels, ProbeSettings(queries=400), LOC
    )
    metrics = result.metrics
    assert set(metrics["curves"]) == {"random", "data_like", "active"}
    for curve in metrics["curves"].values():
        assert [p["queries"] for p in curve] == [50, 100, 200, 400]
    data_like = metrics["curves"]["data_like"]
    assert data_like[-1]["fidelity"] >= data_like[0]["fidelity"] - 0.05
    assert metrics["best_fidelity"] > 0.85  # a linear model over six features copies well
    hardening = metrics["hardening"]
    assert set(hardening) == {"labels", "scores", "rounded_0.1", "top_1"}
    # two classes: the top score and its class carry everything the scores do
    assert hardening["top_1"] == hardening["scores"]
    assert metrics["recommendation"]["output"] in metrics["hardening"]
    assert [f.rule_id for f in result.findings] == ["PRB020"]
    # the attacker's budget is what was spent: 3 strategies + hardening, plus the hold-out
    assert model.queries == 4 * 400 + metrics["holdout_rows"]


def test_threshold_above_the_fidelity_passes(credit: tuple[Table, Table], credit_lr: Any) -> None:
    _, test = credit
    settings = ProbeSettings(queries=100, max_extraction_fidelity=1.0)
    result = run_extraction(
        wrap(credit_lr), credit_spec(test), test.features, test.labels, settings, LOC
    )
    assert result.findings == []


def test_random_queries_stay_inside_the_spec(credit: tuple[Table, Table]) -> None:
    import numpy as np

    from bastion.probe.extraction import random_rows

    _, test = credit
    spec = credit_spec(test)
    rows = random_rows(spec, test.features, 50, np.random.default_rng(0))
    assert list(rows.dtypes) == list(test.features.dtypes)
    mutable = spec.with_overrides()
    relaxed = mutable.model_copy(
        update={
            "features": tuple(
                f.model_copy(update={"immutable": False, "direction": 0}) for f in mutable.features
            )
        }
    )
    base = test.features.to_numpy(dtype=object)[0]
    for row in rows.to_numpy(dtype=object):
        assert validate_change(relaxed, base, row) == []


def test_top_k_hardening_on_three_classes() -> None:
    """Three classes: top-1 hides the runner-up's score, top-2 shows it; labels show least.
    Each hardening is a fidelity in [0, 1] and top-k output keeps only k scores."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from bastion.probe.extraction import top_k
    from bastion.probe.spec import infer

    scores = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
    assert np.allclose(top_k(scores, 1), [[0.6, 0.2, 0.2], [0.25, 0.5, 0.25]])
    assert np.allclose(top_k(scores, 2), [[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
    rng = np.random.default_rng(1)
    x = pd.DataFrame(rng.normal(size=(600, 3)), columns=["a", "b", "c"])
    y = np.array(["low", "mid", "high"])[
        np.digitize(x["a"] + 0.5 * x["b"] + rng.normal(0, 0.3, 600), [-0.6, 0.6])
    ]
    model = wrap(LogisticRegression(max_iter=500).fit(x.iloc[:300], y[:300]))
    spec = infer(x, favourable="high")
    result = run_extraction(model, spec, x.iloc[300:], y[300:], ProbeSettings(queries=300), LOC)
    hardening = result.metrics["hardening"]
    assert set(hardening) == {"labels", "scores", "rounded_0.1", "top_1", "top_2"}
    assert all(0.0 <= v <= 1.0 for v in hardening.values())
    assert hardening["scores"] >= hardening["labels"] - 0.05
