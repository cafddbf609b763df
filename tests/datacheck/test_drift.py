"""Drift between versions: a shifted feature, a moved category mix, more missing values and a
moved label are flagged and ranked; a resample of the same distribution is not."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from bastion.datacheck import drift as D
from bastion.datacheck.dataset import Dataset
from bastion.datacheck.options import DataOptions

OPTIONS = DataOptions(target="approved", id_column="id", batch_rows=1000)


def version(
    n: int,
    seed: int,
    *,
    income_shift: float = 0.0,
    regions: tuple[float, float, float] = (0.5, 0.3, 0.2),
    missing_age: float = 0.02,
    approval: float = 0.35,
) -> pa.Table:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n).astype(float)
    age[rng.random(n) < missing_age] = np.nan
    return pa.table(
        {
            "id": np.arange(n),
            "income": rng.lognormal(10 + income_shift, 0.5, n),
            "age": pa.array(age, from_pandas=True),
            "region": rng.choice(["north", "south", "east"], n, p=list(regions)),
            "comment": [f"free text {v}" for v in rng.integers(0, 10**9, n)],
            "approved": (rng.random(n) < approval).astype(np.int64),
        }
    )


def check(old: pa.Table, new: pa.Table, options: DataOptions = OPTIONS) -> list[Any]:
    return D.check_pair(
        Dataset.from_table(old, "v1.parquet", options=options),
        Dataset.from_table(new, "v2.parquet", options=options),
        options,
    )


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_resampled_same_distribution_is_not_drift(seed: int) -> None:
    assert check(version(20_000, 1), version(20_000, seed)) == []


def test_small_versions_are_not_drift() -> None:
    assert check(version(50, 1), version(50, 2)) == []


def test_shifted_feature_is_flagged_and_ranked() -> None:
    old = version(20_000, 1)
    new = version(20_000, 2, income_shift=0.5, regions=(0.3, 0.3, 0.4))
    found = check(old, new)
    assert [(f.rule_id, f.location.pointer) for f in found] == [
        ("DRF001", "column:income"),
        ("DRF002", "column:region"),
    ]
    income, region = found
    assert "rank 1 of 2" in income.message and "rank 2 of 2" in region.message
    assert "PSI" in income.evidence and "KS statistic" in income.evidence
    assert income.location.path == "v2.parquet"
    assert income.tags.atlas == ("AML.T0020",)


def test_small_shift_is_caught_by_ks_alone() -> None:
    # a 0.25-standard-deviation shift: PSI below 0.2 but a clear KS statistic
    found = check(version(20_000, 1), version(20_000, 2, income_shift=0.125))
    assert [f.location.pointer for f in found] == ["column:income"]
    assert "KS statistic" in found[0].evidence


def test_missing_values_and_label_shift() -> None:
    old = version(20_000, 1)
    new = version(20_000, 2, missing_age=0.2, approval=0.5)
    found = {(f.rule_id, f.location.pointer): f for f in check(old, new)}
    assert set(found) == {("DRF004", "column:approved"), ("DRF003", "column:age")}
    assert found[("DRF004", "column:approved")].severity.value == "high"


def test_planted_rows_shift_a_feature() -> None:
    # poisoning by injection: 3,000 new rows (13%), high incomes in one region, all approved.
    # Drift sees an injection this large; a few planted rows are the label checks' business.
    old = version(20_000, 1)
    base = version(20_000, 2)
    rng = np.random.default_rng(7)
    count = 3000
    planted = pa.table(
        {
            "id": np.arange(20_000, 20_000 + count),
            "income": rng.lognormal(11.5, 0.1, count),
            "age": pa.array(rng.integers(18, 80, count).astype(float)),
            "region": ["east"] * count,
            "comment": ["planted"] * count,
            "approved": np.ones(count, dtype=np.int64),
        }
    )
    found = check(old, pa.concat_tables([base, planted.cast(base.schema)]))
    assert [f.location.pointer for f in found][:2] == ["column:income", "column:region"]


def test_sample_bound_is_respected_and_still_detects() -> None:
    options = OPTIONS.model_copy(update={"drift_sample_rows": 2000})
    assert check(version(30_000, 1), version(30_000, 2), options) == []
    found = check(version(30_000, 1), version(30_000, 2, income_shift=0.5), options)
    assert [f.location.pointer for f in found] == ["column:income"]
    assert "2,000 vs 2,000 values" in found[0].evidence


def test_high_cardinality_text_and_changed_types_are_not_compared() -> None:
    old = version(5000, 1)
    new = version(5000, 2)
    new = new.set_column(new.schema.get_field_index("region"), "region", pa.array(np.arange(5000)))
    assert check(old, new) == []


def test_psi() -> None:
    same = np.array([10.0, 20.0, 30.0])
    assert D.psi(same, same) == 0.0
    assert D.psi(same, np.array([30.0, 20.0, 10.0])) > 0.5
