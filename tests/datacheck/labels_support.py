"""Tables shared by the label-check tests and bench/poisoning_lookalike.py (which imports this
module by its bare name, as the guard benches import tests/guard/guard_support.py)."""

from __future__ import annotations

from typing import Any

import numpy as np


def predictive_tier(
    seed: int, effect: float, gold: int = 60, positive_rate: float = 0.6, n: int = 700
) -> dict[str, Any]:
    """Credit-like rows (income, debt, a segment that shifts the score by ±1, a postcode and a
    channel that do not) with a `tier` column whose value 'gold' (on `gold` random rows)
    genuinely raises the score by `effect`; the label is 'good' for the top `positive_rate`
    share of the score. A rare value that truly predicts the label, which no other column
    shows."""
    rng = np.random.default_rng(seed)
    income = rng.normal(0, 1, n)
    debt = rng.normal(0, 1, n)
    segment = rng.choice(["retail", "premium", "student"], n, p=[0.6, 0.25, 0.15])
    postcode = rng.choice([f"P{i}" for i in range(10)], n)
    channel = rng.choice(["web", "branch", "phone", "partner"], n)
    tier = np.array(["standard"] * n, dtype=object)
    tier[rng.choice(n, gold, replace=False)] = "gold"
    lift = np.select([segment == "premium", segment == "student"], [1.0, -1.0], 0.0)
    score = 2.0 * income - 1.5 * debt + lift + effect * (tier == "gold")
    score = score + rng.logistic(0, 0.3, n)
    label = np.where(score > np.quantile(score, 1 - positive_rate), "good", "bad")
    return {
        "income": income,
        "debt": debt,
        "segment": segment.astype(object),
        "postcode": postcode.astype(object),
        "channel": channel.astype(object),
        "tier": tier,
        "label": label.astype(object),
    }
