"""Membership inference: a real signal on an overfit model, none on a regularised one, and the
attacks are scored on the same rows."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import credit_frame, fitted

from bastion.config import ProbeSettings
from bastion.findings import Location
from bastion.probe.inputs import Table, split_table
from bastion.probe.membership import roc_summary, run_membership
from bastion.probe.model import wrap

LOC = Location(path="model.joblib")


@pytest.fixture(scope="module")
def split() -> tuple[Table, Table]:
    frame = credit_frame(800, seed=5)
    return split_table(frame.iloc[:400], "outcome", "train"), split_table(
        frame.iloc[400:], "outcome", "test"
    )


def _attack(model: Any, split: tuple[Table, Table]) -> Any:
    train, test = split
    assert train.labels is not None and test.labels is not None
    return run_membership(
        wrap(model),
        train.features,
        train.labels,
        test.features,
        test.labels,
        ProbeSettings(),
        LOC,
    )


def test_overfit_model_leaks_membership(split: tuple[Table, Table]) -> None:
    overfit = fitted(split[0], "rf", n_estimators=30)
    result = _attack(overfit, split)
    attacks = result.metrics["attacks"]
    assert set(attacks) >= {
        "loss_threshold",
        "confidence_threshold",
        "shadow_models",
        "label_only",
        "art_black_box",
        "calibrated_loss",
    }
    assert attacks["loss_threshold"]["auc"] > 0.65
    # calibrating each row against shadows that never saw it separates better than raw loss
    assert attacks["calibrated_loss"]["auc"] > attacks["loss_threshold"]["auc"]
    # scores carry more than decisions: the loss attack beats the label-only one
    assert attacks["loss_threshold"]["auc"] > attacks["label_only"]["auc"]
    assert attacks["art_black_box"]["auc"] > 0.55
    assert [f.rule_id for f in result.findings] == ["PRB010"]
    assert result.metrics["train_accuracy"] > result.metrics["test_accuracy"]


def test_regularised_model_does_not(split: tuple[Table, Table]) -> None:
    regularised = fitted(split[0], "lr", C=0.05)
    result = _attack(regularised, split)
    assert result.metrics["best_auc"] < 0.6
    assert result.findings == []


def test_roc_summary_on_known_scores() -> None:
    perfect = roc_summary([0.9, 0.8, 0.7], [0.1, 0.2, 0.3])
    assert perfect["auc"] == 1.0 and perfect["tpr_at_0.1%_fpr"] == 1.0
    chance = roc_summary([0.5] * 10, [0.5] * 10)
    assert chance["auc"] == 0.5 and chance["tpr_at_1%_fpr"] == 0.0
