"""Tables shared by the label-check tests and bench/poisoning_lookalike.py (which imports this
module by its bare name, as the guard benches import tests/guard/guard_support.py)."""

from __future__ import annotations

from typing import Any

import numpy as np


def _features(rng: np.random.Generator, n: int) -> tuple[dict[str, Any], np.ndarray]:
    """Income, debt, a segment, a postcode and a channel, and the score the first three give
    (the segment shifts it by ±1)."""
    income = rng.normal(0, 1, n)
    debt = rng.normal(0, 1, n)
    segment = rng.choice(["retail", "premium", "student"], n, p=[0.6, 0.25, 0.15])
    postcode = rng.choice([f"P{i}" for i in range(10)], n)
    channel = rng.choice(["web", "branch", "phone", "partner"], n)
    lift = np.select([segment == "premium", segment == "student"], [1.0, -1.0], 0.0)
    columns = {
        "income": income,
        "debt": debt,
        "segment": segment.astype(object),
        "postcode": postcode.astype(object),
        "channel": channel.astype(object),
    }
    return columns, 2.0 * income - 1.5 * debt + lift


def _labelled(score: np.ndarray, positive_rate: float) -> np.ndarray:
    """'good' for the top `positive_rate` share of the score."""
    return np.where(score > np.quantile(score, 1 - positive_rate), "good", "bad").astype(object)


def credit(n: int = 600, seed: int = 0, positive_rate: float = 0.6) -> dict[str, Any]:
    """Credit-like rows: two numbers and a segment drive the label (additively), a postcode
    and a channel do not; `positive_rate` sets the share of 'good'."""
    rng = np.random.default_rng(seed)
    columns, score = _features(rng, n)
    score = score + rng.logistic(0, 0.3, n)
    return {**columns, "label": _labelled(score, positive_rate)}


def predictive_tier(
    seed: int, effect: float, gold: int = 60, positive_rate: float = 0.6, n: int = 700
) -> dict[str, Any]:
    """Credit rows with a `tier` column whose value 'gold' (on `gold` random rows) genuinely
    raises the score by `effect`; the label is 'good' for the top `positive_rate` share of the
    score. A rare value that truly predicts the label, which no other column shows."""
    rng = np.random.default_rng(seed)
    columns, score = _features(rng, n)
    tier = np.array(["standard"] * n, dtype=object)
    tier[rng.choice(n, gold, replace=False)] = "gold"
    score = score + effect * (tier == "gold") + rng.logistic(0, 0.3, n)
    return {**columns, "tier": tier, "label": _labelled(score, positive_rate)}


POISONING = {"LBL002", "LBL003"}  # the rules of planted flips and triggers


def run(columns: dict[str, Any], **options: Any) -> list[Any]:
    """The label checks' findings on a table of `columns` (target "label" unless given)."""
    import pyarrow as pa

    from bastion.datacheck import labels
    from bastion.datacheck.dataset import Dataset
    from bastion.datacheck.options import DataOptions

    table = pa.table(
        {
            k: list(v) if isinstance(v, np.ndarray) and v.dtype == object else v
            for k, v in columns.items()
        }
    )
    dataset = Dataset.from_table(table, "train.csv")
    return labels.check(dataset, DataOptions(target=options.pop("target", "label"), **options))


def rows_of(findings: list[Any], rules: set[str]) -> set[int]:
    """The rows the findings of `rules` name."""
    return {row for f in findings if f.rule_id in rules for row in f.rows}
