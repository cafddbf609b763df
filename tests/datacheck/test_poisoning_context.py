"""A pure value of a column that is itself (almost) a function of the label is what the column
predicts, not planted labels (poisoning._as_its_column): gapminder's `country = Israel` -> Asia
when every country is one continent, tips' `day = Sat` -> Dinner when Thursday is all Lunch.
A planted value in a column whose other levels are mixed is still reported, and with too few
other levels to show the column's purity the value is judged as before. Generated data, fixed
seeds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pytest.importorskip("cleanlab")
pytest.importorskip("sklearn")

from labels_support import POISONING, credit, rows_of, run  # noqa: E402

from bastion.datacheck import poisoning  # noqa: E402


def _offices(seed: int, n: int = 720) -> dict[str, Any]:
    """Branch offices, each in one region (the target): 48 offices of about 15 rows, 12 per
    region; turnover and staff drift with the region, weakly, so a model that never saw an
    office cannot tell its region."""
    rng = np.random.default_rng(seed)
    regions = np.array(["north", "south", "east", "west"], dtype=object)
    office = rng.integers(0, 48, n)
    region = np.repeat(np.arange(4), 12)[office]
    return {
        "office": np.array([f"O{o:02d}" for o in office], dtype=object),
        "turnover": rng.normal(np.array([0.0, 0.4, -0.4, 0.8])[region], 1.0, n),
        "staff": rng.poisson(12 + 3 * region, n).astype(float),
        "channel": rng.choice(["web", "branch", "phone"], n).astype(object),
        "region": regions[region],
    }


@pytest.mark.parametrize("seed", [1, 2])
def test_a_column_that_decides_the_label_has_no_planted_value(seed: int) -> None:
    """Every office is one region: each office is pure and a model without it cannot know its
    region (before the column's context was weighed, 11 to 14 offices were reported as
    triggers); the office's purity is what the column predicts, nothing is reported."""
    data = _offices(seed)
    findings = run(data, target="region")
    assert not rows_of(findings, POISONING), [f.message for f in findings]


def test_a_planted_value_in_a_column_of_mixed_levels_is_still_reported() -> None:
    """postcode's ten levels are 'good' on about 60% of their rows: a new postcode planted on
    18 'bad' rows relabelled 'good' is surprising under them and is reported as a trigger."""
    data = credit(n=700, seed=3)
    rng = np.random.default_rng(8)
    planted = rng.choice(np.flatnonzero(data["label"] == "bad"), size=18, replace=False)
    data["postcode"][planted] = "P10"
    data["label"][planted] = "good"
    findings = run(data)
    triggers = [f for f in findings if f.rule_id == "LBL003"]
    assert triggers, [f.message for f in findings]
    assert "postcode = P10" in triggers[0].evidence
    assert rows_of(findings, POISONING) == set(planted.tolist())


def test_with_too_few_other_levels_a_pure_value_is_judged_as_before() -> None:
    """A branch column where most rows are at one of 400 small branches (too few rows each to
    be a level of their own), 25 'good' rows at HQ and 25 'bad' ones at an outlet, and a
    planted branch on 18 'bad' rows relabelled 'good': two other levels, both pure, do not
    show a column that decides the label (breast cancer's planted `worst concave points =
    0.1775` has one other repeated value, pure), so the planted value is still reported."""
    data = credit(n=700, seed=4)
    rng = np.random.default_rng(9)
    n = len(data["label"])
    branch = np.array([f"B{b:03d}" for b in rng.integers(0, 400, n)], dtype=object)
    good = rng.choice(np.flatnonzero(data["label"] == "good"), size=25, replace=False)
    bad = np.flatnonzero(data["label"] == "bad")
    outlet = rng.choice(bad, size=25, replace=False)
    planted = rng.choice(np.setdiff1d(bad, outlet), size=18, replace=False)
    branch[good] = "HQ"
    branch[outlet] = "outlet"
    branch[planted] = "kiosk"
    data["branch"] = branch
    data["label"][planted] = "good"
    findings = run(data)
    triggers = [f for f in findings if f.rule_id == "LBL003"]
    assert triggers, [f.message for f in findings]
    assert "branch = kiosk" in triggers[0].evidence
    assert rows_of(findings, POISONING) == set(planted.tolist())


def _column(levels: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, rows of the level's top label) per level."""
    return np.array([s for s, _ in levels]), np.array([t for _, t in levels])


def test_the_column_context_on_the_counts_that_motivated_it() -> None:
    """tips (target time): Thur 62 of 62 Lunch, Fri 12 of 19 Dinner, Sat 87 of 87 and Sun 76
    of 76 Dinner — Sat and Sun are what `day` predicts; gapminder: every country pure; a
    spike of diabetes' `bp` planted on 24 rows of label 1 among 21 other spikes about 65% one
    label — surprising; breast cancer's planted spike with one other spike (pure) — too few
    levels to tell; a level that mixes labels where the others are all pure is not their
    like."""
    sizes, tops = _column([(62, 62), (19, 12), (87, 87), (76, 76)])
    assert poisoning._as_its_column(sizes, tops, 2, 8, 0.01)
    assert poisoning._as_its_column(sizes, tops, 3, 8, 0.01)
    sizes, tops = _column([(12, 12)] * 60)
    assert poisoning._as_its_column(sizes, tops, 7, 8, 0.01)
    rng = np.random.default_rng(0)
    other = rng.integers(8, 12, 21)
    mixed = [(int(s), int(s - rng.binomial(s, 0.35))) for s in other]
    sizes, tops = _column([(24, 24), *mixed])
    assert not poisoning._as_its_column(sizes, tops, 0, 8, 0.01)
    sizes, tops = _column([(18, 17), (13, 13), (3, 3)])  # the third level is too small
    assert not poisoning._as_its_column(sizes, tops, 0, 8, 0.01)
    sizes, tops = _column([(18, 18), (13, 13), (20, 20), (30, 30)])
    assert poisoning._as_its_column(sizes, tops, 0, 8, 0.01)
    # a level that mixes labels where every other level is pure is not their like (a value
    # planted on a country's rows: gapminder's iso_num = 694, 102 planted rows and 11 natural)
    sizes, tops = _column([(113, 102), *[(12, 12)] * 60])
    assert not poisoning._as_its_column(sizes, tops, 0, 8, 0.01)
