"""Leakage between splits: planted duplicates, near-duplicates, shared ids, a leaking feature and
time leakage are found with their rows; clean splits give nothing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from bastion.datacheck import leakage as L
from bastion.datacheck.dataset import Dataset
from bastion.datacheck.options import DataOptions

OPTIONS = DataOptions(target="default", id_column="customer", batch_rows=256)
START = dt.datetime(2023, 1, 1)


def credit_rows(n: int, seed: int, first_id: int, first_hour: int) -> dict[str, list[Any]]:
    """Credit applications: numbers, categories, free text, an event time, a noisy label."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10, 0.6, n).round(2)
    debt = rng.uniform(0, 1, n).round(4)
    years = rng.integers(0, 40, n)
    housing = rng.choice(["rent", "own", "mortgage", "other"], n).tolist()
    score = 0.8 * np.log(income) - 3 * debt + 0.03 * years + rng.normal(0, 1.0, n)
    default = (score < np.median(score)).astype(int)
    return {
        "customer": [f"C{first_id + i:07d}" for i in range(n)],
        "income": income.tolist(),
        "debt_ratio": debt.tolist(),
        "years_employed": years.tolist(),
        "housing": housing,
        "note": [f"Applicant {int(v)} requested review" for v in rng.integers(0, 10**9, n)],
        "applied_at": [START + dt.timedelta(hours=first_hour + i) for i in range(n)],
        "default": default.tolist(),
    }


def splits(train: dict[str, list[Any]], test: dict[str, list[Any]]) -> dict[str, Dataset]:
    return {
        "train": Dataset.from_table(pa.table(train), "train.csv", "train", options=OPTIONS),
        "test": Dataset.from_table(pa.table(test), "test.csv", "test", options=OPTIONS),
    }


@pytest.fixture()
def clean() -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    # a time-based split: training rows first, test rows after them
    return credit_rows(2000, 1, 0, 0), credit_rows(600, 2, 100_000, 5000)


def findings_by_rule(found: list[Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for f in found:
        assert f.rule_id not in result, f"two {f.rule_id} findings"
        result[f.rule_id] = f
    return result


def test_clean_splits_give_nothing(clean: Any) -> None:
    train, test = clean
    assert L.check_splits(splits(train, test), OPTIONS) == []


def test_planted_leaks_are_found_with_their_rows(clean: Any) -> None:
    train, test = clean
    features = ["income", "debt_ratio", "years_employed", "housing", "note", "applied_at"]
    # exact copies of training rows under new customer ids (rows 10 and 400)
    for row, source in ((10, 5), (400, 1500)):
        for column in [*features, "default"]:
            test[column][row] = train[column][source]
    # near-duplicates: tiny numeric noise, re-cased and re-punctuated text (rows 20 and 21)
    for row, source in ((20, 7), (21, 8)):
        for column in features:
            test[column][row] = train[column][source]
        test["income"][row] = train["income"][source] * (1 + 1e-5)
        test["note"][row] = train["note"][source].upper() + "!!"
    # the same customer in both splits (row 30)
    test["customer"][30] = train["customer"][99]
    found = findings_by_rule(L.check_splits(splits(train, test), OPTIONS))
    assert set(found) == {"LEK001", "LEK002", "LEK003", "LEK005"}
    assert found["LEK001"].rows == (10, 400)
    assert found["LEK001"].row_ids == (test["customer"][10], test["customer"][400])
    assert found["LEK001"].location.path == "test.csv"
    assert found["LEK002"].rows == (20, 21)
    assert found["LEK003"].rows == (30,)
    assert found["LEK003"].row_ids == (train["customer"][99],)
    # the copied rows carry training-time timestamps: older than the newest training row
    assert found["LEK005"].rows == (10, 20, 21, 400)
    assert found["LEK005"].severity.value == "high"


def test_target_leak_is_found(clean: Any) -> None:
    train, test = clean
    rng = np.random.default_rng(5)
    for data in (train, test):
        # recorded after the outcome: days in collections, zero unless the loan defaulted
        data["days_in_collections"] = [
            int(rng.integers(30, 400)) if d else 0 for d in data["default"]
        ]
        # the label again as text, with the categories renamed
        data["status_code"] = ["S-" + ("bad" if d else "good") for d in data["default"]]
    found = L.check_splits(splits(train, test), OPTIONS)
    leaks = sorted(f.location.pointer for f in found if f.rule_id == "LEK004")
    assert leaks == ["column:days_in_collections", "column:status_code"]
    assert all(f.rule_id == "LEK004" for f in found)


def test_honest_strong_feature_is_not_a_leak(clean: Any) -> None:
    train, test = clean
    # a strong but honest predictor (about 85% accurate) stays below the threshold
    rng = np.random.default_rng(9)
    for data in (train, test):
        data["risk_score"] = [d + rng.normal(0, 0.5) for d in data["default"]]
    found = L.check_splits(splits(train, test), OPTIONS)
    assert [f for f in found if f.rule_id == "LEK004"] == []


def test_regression_target_leak() -> None:
    rng = np.random.default_rng(3)
    n = 1500
    x = rng.normal(size=n)
    price = 100 + 10 * x + rng.normal(0, 5, n)
    table = pa.table({"x": x, "tax": price * 0.2, "price": price, "noise": rng.normal(size=n)})
    options = DataOptions(target="price")
    found = L.target_leakage(Dataset.from_table(table, "train.csv", "train"), options)
    assert [f.location.pointer for f in found] == ["column:tax"]
    assert "R²" in found[0].message


def test_random_split_in_time_is_only_informational() -> None:
    train = credit_rows(800, 1, 0, 0)
    test = credit_rows(200, 2, 10_000, 0)
    rng = np.random.default_rng(0)
    for data in (train, test):
        data["applied_at"] = [
            START + dt.timedelta(hours=int(h)) for h in rng.integers(0, 9000, len(data["income"]))
        ]
    found = findings_by_rule(L.check_splits(splits(train, test), OPTIONS))
    assert set(found) == {"LEK005"}
    assert found["LEK005"].severity.value == "info"


def test_birth_dates_are_not_event_times(clean: Any) -> None:
    train, test = clean
    for data in (train, test):
        data["date_of_birth"] = [dt.date(1960 + i % 40, 1, 1) for i in range(len(data["income"]))]
        data.pop("applied_at")
    assert L.check_splits(splits(train, test), OPTIONS) == []


def test_low_entropy_data_duplicates_are_low_severity() -> None:
    rng = np.random.default_rng(2)

    def rows(n: int, first: int) -> dict[str, list[Any]]:
        return {
            "customer": [f"C{first + i}" for i in range(n)],
            "a": rng.integers(0, 3, n).tolist(),
            "b": rng.choice(["x", "y"], n).tolist(),
            "default": rng.integers(0, 2, n).tolist(),
        }

    found = findings_by_rule(L.check_splits(splits(rows(500, 0), rows(100, 1000)), OPTIONS))
    assert found["LEK001"].severity.value == "low"
    assert len(found["LEK001"].rows) == 100


def test_ids_read_as_numbers_in_one_split_and_text_in_another() -> None:
    train = {"customer": [1, 2, 3, 4], "v": [0.1, 0.2, 0.3, 0.4]}
    test = {"customer": ["3", "9"], "v": [0.9, 0.8]}
    options = DataOptions(id_column="customer")
    found = L.check_splits(
        {
            "train": Dataset.from_table(pa.table(train), "train.csv", "train"),
            "test": Dataset.from_table(pa.table(test), "test.csv", "test"),
        },
        options,
    )
    assert [(f.rule_id, f.rows) for f in found] == [("LEK003", (0,))]


def test_dates_and_text_match_across_splits_and_near_text_is_normalised() -> None:
    """A date column read as Arrow dates in one split and as text in the other still matches
    row for row; near-duplicates fold case, width (NFKC) and punctuation."""
    days = [dt.date(2021, 1, 1) + dt.timedelta(days=3 * i) for i in range(300)]
    notes = [f"Customer {i} paid late" for i in range(300)]
    train = pa.table({"day": pa.array(days, pa.date32()), "note": notes, "x": list(range(300))})
    test = pa.table(
        {
            "day": [d.isoformat() for d in days[:40]] + [None] * 2,
            "note": notes[:20]
            + [f"ＣＵＳＴＯＭＥＲ {i} -- paid, LATE!" for i in range(20, 40)]
            + ["a", "b"],
            "x": [*range(40), 1000, 1001],
        }
    )
    findings = L.check_splits(
        {
            "train": Dataset.from_table(train, "train.parquet", split="train"),
            "test": Dataset.from_table(test, "test.csv", split="test"),
        },
        DataOptions(),
    )
    rows = {f.rule_id: f.rows for f in findings}
    assert rows["LEK001"] == tuple(range(20))
    assert rows["LEK002"] == tuple(range(20, 40))
