"""A small credit table built in code (fixed seed) and models trained on it: numeric, integer,
categorical and immutable features in front of real scikit-learn pipelines."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from bastion.probe.inputs import Table, split_table
from bastion.probe.spec import ProbeSpec, infer


def credit_frame(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = rng.normal(3000, 900, rows).clip(500, 8000).round(0)
    debt = rng.normal(1200, 600, rows).clip(0, 5000).round(0)
    age = rng.integers(18, 75, rows)
    accounts = rng.integers(0, 6, rows)
    housing = rng.choice(["own", "rent", "free"], rows, p=[0.5, 0.4, 0.1])
    sex = rng.choice(["female", "male"], rows)
    logit = (
        (income - 3000) / 700
        - (debt - 1200) / 500
        + 0.3 * (accounts - 2.5)
        + np.where(housing == "own", 0.8, 0.0)
        + 0.01 * (age - 45)
        + rng.normal(0, 0.8, rows)
    )
    return pd.DataFrame(
        {
            "income": income,
            "debt": debt,
            "age": age,
            "accounts": accounts,
            "housing": housing,
            "sex": sex,
            "outcome": np.where(logit > 0, "good", "bad"),
        }
    )


NUMERIC = ["income", "debt", "age", "accounts"]
CATEGORICAL = ["housing", "sex"]


def pipeline(kind: str = "lr", **params: Any) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    prepare = ColumnTransformer(
        [
            ("numeric", StandardScaler(), NUMERIC),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
        ]
    )
    estimator: Any
    if kind == "lr":
        estimator = LogisticRegression(max_iter=500, **params)
    elif kind == "gb":
        estimator = HistGradientBoostingClassifier(max_iter=40, random_state=0, **params)
    else:
        estimator = RandomForestClassifier(random_state=0, **params)
    return Pipeline([("prepare", prepare), ("model", estimator)])


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> Any:
    """Small batches: thread pools cost more than they give (and CI has two cores)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="session")
def credit() -> tuple[Table, Table]:
    frame = credit_frame()
    return split_table(frame.iloc[:400], "outcome", "train"), split_table(
        frame.iloc[400:], "outcome", "test"
    )


def fitted(train: Table, kind: str = "lr", **params: Any) -> Any:
    return pipeline(kind, **params).fit(train.features, train.labels)


@pytest.fixture(scope="session")
def credit_lr(credit: tuple[Table, Table]) -> Any:
    return fitted(credit[0], "lr")


@pytest.fixture(scope="session")
def credit_gb(credit: tuple[Table, Table]) -> Any:
    return fitted(credit[0], "gb")


def credit_spec(table: Table) -> ProbeSpec:
    return infer(table.features, favourable="good").with_overrides(
        immutable=["age", "sex"], monotone={"debt": -1, "accounts": 1}
    )
