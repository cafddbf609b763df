"""Label checks and poisoning signals (datacheck/labels.py, poisoning.py): what they catch —
random flips, flips planted in one subgroup, a backdoor trigger, conflicting duplicates — and what
they must not flag: a clean dataset with a rare but legitimate category, an imbalanced label and
strongly predictive features. Small synthetic data built here, fixed seeds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pytest.importorskip("cleanlab")
pytest.importorskip("sklearn")

from labels_support import POISONING, credit, predictive_tier, rows_of, run  # noqa: E402

from bastion.datacheck import labels  # noqa: E402
from bastion.datacheck.dataset import Dataset  # noqa: E402
from bastion.datacheck.features import NotApplicable  # noqa: E402
from bastion.datacheck.options import DataOptions  # noqa: E402
from bastion.errors import UsageError  # noqa: E402
from bastion.findings import Stage  # noqa: E402


def test_random_flips_are_label_issues() -> None:
    data = credit(seed=1)
    rng = np.random.default_rng(11)
    flipped = rng.choice(len(data["label"]), size=30, replace=False)
    data["label"][flipped] = np.where(data["label"][flipped] == "good", "bad", "good")
    findings = run(data)
    found = rows_of(findings, {"LBL001"})
    recall = len(found & set(flipped.tolist())) / len(flipped)
    precision = len(found & set(flipped.tolist())) / max(len(found), 1)
    assert recall >= 0.6 and precision >= 0.5, (recall, precision)
    issue = next(f for f in findings if f.rule_id == "LBL001")
    assert issue.stage is Stage.DATA and "AML.T0020" in issue.tags.atlas
    assert issue.location.pointer == "column:label"
    assert list(issue.rows) == sorted(issue.rows)
    # random flips are not a planted subgroup or trigger
    assert not rows_of(findings, POISONING)


def test_targeted_flips_in_one_postcode() -> None:
    data = credit(seed=2)
    members = np.flatnonzero(data["postcode"] == "P3")
    planted = members[data["label"][members] == "bad"]
    data["label"][planted] = "good"  # every applicant of one postcode approved
    findings = run(data)
    hits = [f for f in findings if f.rule_id in POISONING]
    assert hits, [f.message for f in findings]
    assert "postcode" in hits[0].evidence and "P3" in hits[0].evidence
    found = rows_of(findings, POISONING)
    assert len(found & set(planted.tolist())) >= 0.8 * len(planted)
    assert found <= set(members.tolist())  # nothing outside the postcode


def test_backdoor_trigger_of_two_values() -> None:
    data = credit(n=700, seed=3)
    rng = np.random.default_rng(5)
    # a channel and a postcode never seen together before, planted on 3% of the rows
    pool = np.flatnonzero((data["label"] == "bad") & (data["postcode"] != "P7"))
    planted = rng.choice(pool, size=21, replace=False)
    before = (data["postcode"] == "P7") & (data["channel"] == "partner")
    data["channel"][before] = "web"
    data["postcode"][planted] = "P7"
    data["channel"][planted] = "partner"
    data["label"][planted] = "good"
    findings = run(data)
    triggers = [f for f in findings if f.rule_id == "LBL003"]
    assert triggers, [f.message for f in findings]
    assert "postcode = P7" in triggers[0].evidence and "channel = partner" in triggers[0].evidence
    assert "'good'" in triggers[0].evidence
    assert set(triggers[0].rows) == set(planted.tolist())


def test_clean_data_with_rare_category_and_imbalanced_label_is_not_poisoned() -> None:
    data = credit(n=800, seed=4, positive_rate=0.12)  # naturally imbalanced
    # a rare but legitimate segment: 12 rows whose labels follow the same rule as everyone's
    rare = np.arange(12)
    data["segment"][rare] = "pilot"
    findings = run(data)
    assert not rows_of(findings, POISONING | {"LBL004"}), [f.message for f in findings]


def test_strongly_predictive_feature_is_not_poisoned() -> None:
    rng = np.random.default_rng(6)
    n = 600
    tier = rng.choice(["gold", "silver", "bronze"], n, p=[0.2, 0.5, 0.3])
    amount = rng.normal(0, 1, n)
    base = np.select([tier == "gold", tier == "bronze"], [3.0, -3.0], 0.0)
    score = base + 2.5 * amount + rng.logistic(0, 0.5, n)
    data = {
        "tier": tier.astype(object),
        "amount": amount,
        "region": rng.choice(["N", "S", "E", "W"], n).astype(object),
        "label": np.where(score > 0, "yes", "no").astype(object),
    }
    findings = run(data)
    assert not rows_of(findings, POISONING), [f.message for f in findings]


def test_conflicting_duplicates() -> None:
    data = credit(seed=7)
    copies = np.arange(5)
    for name, values in data.items():
        data[name] = np.concatenate([values, values[copies]])
    data["label"][-5:] = np.where(data["label"][copies] == "good", "bad", "good")
    findings = run(data)
    duplicates = [f for f in findings if f.rule_id == "LBL004"]
    assert duplicates
    # a tie (one row each way): both rows of each pair are listed
    assert set(duplicates[0].rows) == set(copies.tolist()) | set(range(600, 605))


def test_no_target_is_a_skip_and_a_missing_column_an_error() -> None:
    data = credit(n=100)
    table = pa.table({k: list(v) if v.dtype == object else v for k, v in data.items()})
    dataset = Dataset.from_table(table, "train.csv")
    with pytest.raises(NotApplicable, match="--target"):
        labels.check(dataset, DataOptions())
    with pytest.raises(UsageError, match="no target column"):
        labels.check(dataset, DataOptions(target="nope"))


def test_single_class_target_is_a_skip() -> None:
    data = credit(n=100)
    data["label"][:] = "good"
    with pytest.raises(NotApplicable, match="1 class"):
        run(data)


def test_text_ids_nans_and_missing_labels() -> None:
    data = credit(n=500, seed=8)
    n = len(data["label"])
    data["note"] = np.array([f"free text {i} about applicant {i * 7}" for i in range(n)], object)
    data["income"][::17] = np.nan
    data["segment"][::13] = None
    data["label"][5] = None
    flipped = np.array([40, 80, 120, 160, 200, 240, 280, 320])
    data["label"][flipped] = np.where(data["label"][flipped] == "good", "bad", "good")
    findings = run(data, id_column="note")
    partial = next(f for f in findings if f.rule_id == "LBL006")
    assert "1 rows without a label" in partial.evidence
    issue = next(f for f in findings if f.rule_id == "LBL001")
    assert 5 not in issue.rows  # the unlabelled row is never reported as mislabelled
    assert len(set(issue.rows) & set(flipped.tolist())) >= 5
    # the id column is not a feature; it names the reported rows
    assert issue.row_ids == tuple(f"free text {r} about applicant {r * 7}" for r in issue.rows)


def test_free_text_column_is_left_out_and_said() -> None:
    data = credit(n=300, seed=9)
    data["comment"] = np.array([f"comment number {i}" for i in range(300)], object)
    findings = run(data)
    partial = next(f for f in findings if f.rule_id == "LBL006")
    assert "comment" in partial.evidence and "free text" in partial.evidence


def test_rows_beyond_the_bound_are_sampled_and_said() -> None:
    data = credit(n=400, seed=10)
    findings = run(data, label_max_rows=300)
    partial = next(f for f in findings if f.rule_id == "LBL006")
    assert "300 of 400 rows" in partial.evidence
    assert all(0 <= row < 400 for f in findings for row in f.rows)


def test_rare_label_values_are_reported() -> None:
    data = credit(n=300, seed=12)
    data["label"][[3, 4]] = "goood"
    findings = run(data)
    rare = [f for f in findings if f.rule_id == "LBL001" and "seen fewer" in f.message]
    assert rare and rare[0].rows == (3, 4)


def test_deterministic() -> None:
    data = credit(seed=13)
    data["label"][:20] = np.where(data["label"][:20] == "good", "bad", "good")
    first = run({k: v.copy() for k, v in data.items()})
    second = run({k: v.copy() for k, v in data.items()})
    assert [(f.rule_id, f.rows, f.evidence) for f in first] == [
        (f.rule_id, f.rows, f.evidence) for f in second
    ]


def _bundled(name: str) -> dict[str, Any]:
    """A table scikit-learn ships (no download): numeric features and a string label."""
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    columns: dict[str, Any] = {
        f"f{i}": bunch.data[:, i].astype(float) for i in range(bunch.data.shape[1])
    }
    columns["label"] = np.array([str(bunch.target_names[t]) for t in bunch.target], dtype=object)
    return columns


def _ball_in_other_territory(data: dict[str, Any], target: str, size: int) -> np.ndarray:
    """The `size` rows nearest a row deep inside another label's territory (its 10 nearest
    rows share its label), in standardised feature space: the region an attacker relabels."""
    features = np.column_stack([v for k, v in data.items() if k != "label"])
    scaled = (features - features.mean(axis=0)) / features.std(axis=0)
    labels_ = data["label"]
    distances = ((scaled[:, None, :] - scaled[None, :, :]) ** 2).sum(axis=2)
    order = np.argsort(distances, axis=1, kind="stable")
    deep = [
        r for r in np.flatnonzero(labels_ != target) if (labels_[order[r, :11]] == labels_[r]).all()
    ]
    return order[deep[0], :size]


@pytest.mark.parametrize(
    ("name", "target", "size"), [("breast_cancer", "benign", 30), ("wine", "class_1", 10)]
)
def test_region_planted_inside_another_labels_territory(name: str, target: str, size: int) -> None:
    """Relabelling a compact region of another label (a ball of 10 or 30 rows, on data the
    team did not write) is reported as LBL002 with >= 90% of its flipped rows at precision
    >= 0.8; cleanlab's LBL001 alone sees few of them, since cross-validation learns the
    region back from the other folds."""
    data = _bundled(name)
    ball = _ball_in_other_territory(data, target, size)
    planted = ball[data["label"][ball] != target]
    data["label"][planted] = target
    findings = run(data)
    found = rows_of(findings, {"LBL002"})
    hits = len(found & set(planted.tolist()))
    assert hits >= 0.9 * len(planted), (hits, len(planted), [f.message for f in findings])
    assert hits >= 0.8 * len(found), (hits, len(found))


@pytest.mark.parametrize("name", ["breast_cancer", "wine"])
def test_bundled_clean_tables_are_not_poisoned(name: str) -> None:
    """No subgroup or trigger finding on the clean tables scikit-learn ships: the region seeds
    (linear and neighbourhood disagreement) and the looser per-row rule inside a confirmed
    region must not turn natural class boundaries into planted regions."""
    findings = run(_bundled(name))
    assert not rows_of(findings, POISONING), [f.message for f in findings]


def test_candidate_families_take_turns_and_overlapping_regions_are_dropped() -> None:
    """Thousands of pure values cannot crowd a region out of the leave-out budget: the
    families alternate; a region mostly inside a likelier one of the same label is dropped."""
    from bastion.datacheck import poisoning

    def candidate(kind: str, rows: range, label: int = 0, prescore: float = 1.0) -> Any:
        return poisoning.Candidate(kind, np.array(list(rows)), label, (("c", kind),), prescore)

    big = candidate("region", range(0, 20), prescore=9.0)
    inside = candidate("region", range(5, 15), prescore=5.0)  # all of it inside `big`
    other_label = candidate("region", range(5, 15), label=1, prescore=4.0)
    apart = candidate("region", range(15, 30), prescore=3.0)  # a third inside `big`
    kept = poisoning._distinct_regions([big, inside, other_label, apart], 40)
    assert [c.prescore for c in kept] == [9.0, 4.0, 3.0]


def _style_next_to_another_label(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2-D rows: 900 of label 0 around (0, 0), 100 of label 1 around (4, 0) (rows of label 1
    see ~75% of label 1 around them, rows of label 0 ~2%); 12 rows of label 1 in a tight
    line (a natural style) next to a patch of 20 rows that is 40% label 1 and 60% label 0;
    10 rows deep inside label 0 relabelled 1 (planted). Returns (embedding, labels, planted)."""
    rng = np.random.default_rng(seed)
    style = np.column_stack([2 + 0.01 * np.arange(12), np.full(12, 6.0)])
    patch = np.column_stack([1.96 + 0.01 * np.arange(20), np.full(20, 6.3)])
    embedding = np.concatenate(
        [rng.normal((0, 0), 1, (900, 2)), rng.normal((4, 0), 1, (100, 2)), style, patch]
    )
    labels_ = np.concatenate(
        [np.zeros(900, int), np.ones(100, int), np.ones(12, int), np.tile([1, 0, 1, 0, 0], 4)]
    )
    planted = np.flatnonzero(np.hypot(*embedding[:900].T) < 1.5)[:10]
    labels_[planted] = 1
    return embedding, labels_, planted


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_natural_style_next_to_another_label_is_neither_trigger_nor_planted_place(
    seed: int,
) -> None:
    """A shell that is 40% the subgroup's label is that label's place when rows of other labels
    see 2% of it and its own rows 75% (log-odds midpoint ~0.2): a natural style (13-14 genuine
    '1's sharing two pixels in digits with random flips was reported as a trigger, and a region
    of them as planted). Rows planted deep inside another label still pass. The previous rule
    (share below max(0.5, prior); one other label holding most of the shell) took both."""
    from bastion.datacheck import poisoning

    embedding, labels_, planted = _style_next_to_another_label(seed)
    index = poisoning._shell_index(embedding)
    style = np.arange(1000, 1012)
    pattern = (("a", "= 1"), ("b", "= 1"))
    as_trigger = poisoning.Candidate("pair", style, 1, pattern, 1.0)
    as_region = poisoning.Candidate("region", style, 1, (("region", "12 rows"),), 1.0)
    trigger = poisoning.Candidate("pair", planted, 1, pattern, 1.0)
    assert not poisoning.unlike_its_neighbours(labels_, embedding, as_trigger, index)
    assert not poisoning.surrounded(labels_, embedding, as_region, index)
    assert poisoning.unlike_its_neighbours(labels_, embedding, trigger, index)


def _planted_ball(seed: int, rows: int = 180, dims: int = 10, flips: int = 90) -> Any:
    """Four Gaussian labels of `rows` rows in `dims` dimensions; the smallest ball around a row
    deep inside label 'a' (its 10 nearest rows carry 'a') holding `flips` rows of other labels
    is relabelled 'b' — half of label 'a', more rows than any neighbourhood the search builds
    (REGION_SIZES up to 50). Returns (columns, planted row numbers)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (4, dims))
    x = np.concatenate([rng.normal(c, 1, (rows, dims)) for c in centres])
    y = np.repeat(np.array(["a", "b", "c", "d"], dtype=object), rows)
    order = np.argsort(((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2), axis=1)
    deep = [r for r in range(rows) if (y[order[r, :11]] == "a").all()]
    members = order[deep[len(deep) // 2]]
    size = int(np.searchsorted(np.cumsum(y[members] != "b"), flips) + 1)
    planted = members[:size][y[members[:size]] != "b"]
    y[planted] = "b"
    columns: dict[str, Any] = {f"f{i}": x[:, i] for i in range(dims)}
    columns["label"] = y
    return columns, planted


def test_a_planted_place_larger_than_any_neighbourhood_is_reported() -> None:
    """90 rows relabelled in one ball (half of their label): every neighbourhood of at most 50
    rows lies inside it, so (before) a model trained without one still learned the planted
    label from the planted rows next to it, and the neighbourhood's shell was planted rows.
    A region's leave-out model is now trained without its shell too, and the largest
    neighbourhood, enclosed by its own label, is judged with that shell's rows of its label
    (the ball, surrounded by the label it was taken from)."""
    data, planted = _planted_ball(seed=1)
    findings = run(data)
    found = rows_of(findings, {"LBL002"})
    hits = len(found & set(planted.tolist()))
    assert hits >= 0.9 * len(planted), (hits, len(planted), [f.message for f in findings])
    assert hits >= 0.8 * len(found), (hits, len(found))


def test_an_enclosing_place_is_a_candidate_like_the_others() -> None:
    """The larger place a neighbourhood enclosed by its own label is judged as (the
    neighbourhood with its shell's rows of its label) must sit inside another label's
    territory and hold at most half of its label's rows, like every candidate: on breast
    cancer a natural 50-row neighbourhood of malignant rows became 124 of the 212 malignant
    rows, which a model trained without them and their shell could only get wrong."""
    from bastion.datacheck import poisoning
    from bastion.datacheck.options import DataOptions

    rng = np.random.default_rng(0)
    embedding = np.concatenate(
        [
            rng.normal((0, 0), 1, (400, 2)),  # blob A
            rng.normal((6, 0), 1, (300, 2)),  # blob B
            rng.normal((0, 30), 1, (200, 2)),  # blob C, far away
        ]
    )
    near = np.argsort(np.hypot(*(embedding[:400] - (1.5, 0)).T))
    place = poisoning.Candidate("region", np.sort(near[:50]), 1, (("region", "50 rows"),), 1.0)
    index = poisoning._shell_index(embedding)
    options = DataOptions(target="label")

    def larger(ones: np.ndarray) -> Any:
        labels_ = np.zeros(900, int)
        labels_[ones] = 1
        return poisoning.enclosing_place(labels_, embedding, place, index, {}, options)

    # all of blob A carries label 1: the place sits inside its own label's territory
    assert larger(np.arange(400)) is None
    # label 1 is only the 90 rows around the place: the larger place would be all of them
    assert larger(near[:90]) is None
    # the same 90 rows and blob C: the larger place is the 90 rows, under half of 290
    found = larger(np.r_[near[:90], 700 + np.arange(200)])
    assert found is not None and 50 < len(found.positions) <= 90, found


def test_only_the_largest_neighbourhoods_are_held_out_with_their_shell() -> None:
    """A region of the largest size is left out with its shell; a smaller one alone (it lies
    inside the largest around its centre): every region's shell held out filled the leave-out
    folds, and a planted 18-row region of digits went untested."""
    from bastion.datacheck import poisoning

    rng = np.random.default_rng(0)
    embedding = rng.normal(0, 1, (400, 2))
    order = np.argsort(np.hypot(*embedding.T))
    largest = poisoning.REGION_SIZES[-1]
    small = poisoning.Candidate("region", np.sort(order[:20]), 0, (("region", "20"),), 1.0)
    big = poisoning.Candidate("region", np.sort(order[:largest]), 0, (("region", "50"),), 1.0)
    items = [small, big]
    poisoning.with_shells(items, embedding, poisoning._shell_index(embedding))
    assert items[0].held is None
    assert items[1].held is not None and len(items[1].held) > largest
    assert set(big.positions.tolist()) <= set(items[1].held.tolist())


def _rare_value_with_a_pair(seed: int) -> tuple[dict[str, Any], np.ndarray]:
    """Credit rows where channel = 'kiosk' is a rare value seen naturally on 14 rows of
    either label, none of them in postcode P7. Returns (columns, rows of channel = 'kiosk')."""
    data = credit(n=700, seed=seed)
    rng = np.random.default_rng(seed + 100)
    natural = rng.choice(np.flatnonzero(data["postcode"] != "P7"), size=14, replace=False)
    data["channel"][natural] = "kiosk"
    return data, natural


def test_backdoor_pair_whose_rarer_value_also_occurs_naturally() -> None:
    """A trigger pair made of a common value (postcode P7) and a rare one (channel = kiosk)
    that also occurs naturally on rows of both labels: the pair holds most of the rare
    value's rows, so PAIR_SUPPORT alone would read it as a test of that value, and the value
    alone is under the purity bound (21 planted 'good' rows with 14 natural ones). The pair
    is far more frequent than its two values make likely (rows edited to carry both): it is
    scanned, and reported with exactly its planted rows (digits backdoor 3%:
    `pixel_1_6 = 14`, 64 rows, 55 of them the trigger's)."""
    data, natural = _rare_value_with_a_pair(seed=3)
    rng = np.random.default_rng(5)
    pool = np.flatnonzero((data["label"] == "bad") & (data["postcode"] != "P7"))
    planted = rng.choice(np.setdiff1d(pool, natural), size=21, replace=False)
    data["postcode"][planted] = "P7"
    data["channel"][planted] = "kiosk"
    data["label"][planted] = "good"
    kiosk = data["channel"] == "kiosk"
    assert kiosk.sum() < 2 * len(planted)  # the pair is most of the rare value's rows
    assert (data["label"][kiosk] == "good").mean() < 0.9  # the value alone is not pure
    findings = run(data)
    triggers = [f for f in findings if f.rule_id == "LBL003"]
    assert triggers, [f.message for f in findings]
    assert "channel = kiosk" in triggers[0].evidence and "postcode = P7" in triggers[0].evidence
    assert rows_of(findings, POISONING) == set(planted.tolist())


def test_a_rare_value_that_naturally_comes_with_a_common_one_is_not_a_trigger() -> None:
    """The natural look-alike: a rare value (channel = kiosk, 20 more rows) that comes with
    one postcode, on rows whose own columns make them 'good' (a product sold in one region to
    one kind of customer). The pair is far more frequent than its values make likely and
    holds most of the value's rows, so it is scanned as a pair; a model that never saw it
    still expects its label, and nothing is reported."""
    data, _natural = _rare_value_with_a_pair(seed=3)
    score = 2.0 * data["income"] - 1.5 * data["debt"]
    eligible = np.flatnonzero((data["channel"] != "kiosk") & (data["label"] == "good"))
    regional = eligible[np.argsort(-score[eligible])[:20]]
    data["postcode"][regional] = "P7"
    data["channel"][regional] = "kiosk"
    findings = run(data)
    assert not rows_of(findings, POISONING), [f.message for f in findings]
    assert _kiosk_p7_is_a_candidate(data)


def test_a_predictive_rare_value_whose_few_other_labels_follow_the_features() -> None:
    """tier = gold (60 of 700 rows, +3 on the score) is 'good' on 56 rows; a model that
    never saw the value expects 28 'bad'. Its 4 'bad' rows are the 4 whose other columns point
    furthest to 'bad' (the leave-out model's 4 lowest): the labels follow the features, with a
    level effect the model could not learn without the value. Under FOLLOWS_MIN_OTHERS rows,
    the ranking AUC alone was not allowed to veto and the value was reported as LBL002."""
    data = predictive_tier(seed=0, effect=3.0)
    gold = data["tier"] == "gold"
    assert int((data["label"][gold] == "bad").sum()) == 4
    findings = run(data)
    assert not rows_of(findings, POISONING), [f.message for f in findings]


def test_a_planted_subgroup_with_a_few_unflipped_rows_is_still_reported() -> None:
    """The same table without the tier's effect, and every 'bad' row of tier = gold but three
    (drawn at random) relabelled 'good': the three are not the rows the leave-out model finds
    least likely to be 'good', and the subgroup is reported."""
    data = predictive_tier(seed=0, effect=0.0)
    gold = np.flatnonzero(data["tier"] == "gold")
    bad = gold[data["label"][gold] == "bad"]
    rng = np.random.default_rng(1)
    planted = np.setdiff1d(bad, rng.choice(bad, size=3, replace=False))
    data["label"][planted] = "good"
    findings = run(data)
    hits = [f for f in findings if f.rule_id in POISONING]
    assert hits, [f.message for f in findings]
    assert "tier = gold" in hits[0].evidence
    found = rows_of(findings, POISONING)
    assert len(found & set(planted.tolist())) >= 0.8 * len(planted)


def test_few_rows_of_another_label_veto_only_when_their_ranks_are_improbable() -> None:
    """follows_features with fewer than FOLLOWS_MIN_OTHERS rows of another label: they must
    rank that low with probability at most alpha were they any of the rows the leave-out
    model expects to carry another label (here 30 of 60), and only for a subgroup defined by
    column values: a place's few rows of another label sit at its edge (alpha None)."""
    from bastion.datacheck import poisoning

    p_label = np.linspace(0.05, 0.95, 60)

    def veto(others: list[int]) -> bool:
        has_label = np.ones(60, dtype=bool)
        has_label[others] = False
        return poisoning.follows_features(p_label, has_label, 0.01)

    assert veto([0, 1, 2, 3])  # the four least likely: p = 1 / C(30, 4) = 3.6e-5
    assert veto([0, 2])  # p = C(3, 2) / C(30, 2) = 6.9e-3
    assert not veto([0])  # one row at the bottom of the 30: p = 1/30
    assert not veto([5, 9])  # p = C(10, 2) / C(30, 2) = 0.10
    assert not veto([3, 30, 50])  # beyond the 30 expected: p = 1
    assert not veto([])
    bottom = np.ones(60, dtype=bool)
    bottom[:4] = False
    assert not poisoning.follows_features(p_label, bottom, None)


def _digits_with_random_labels() -> dict[str, Any]:
    """scikit-learn's digits (bundled) with 10% of the labels random, drawn exactly as
    bench/poisoning.py draws its random-flip attack at its default seed (7)."""
    from sklearn import datasets

    bunch = datasets.load_digits()
    columns: dict[str, Any] = {
        str(name): bunch.data[:, i] for i, name in enumerate(bunch.feature_names)
    }
    values = np.array([str(bunch.target_names[t]) for t in bunch.target], dtype=object)
    classes = sorted(set(values))
    rng = np.random.default_rng([7, 100, len("random"), len("digits")])
    for row in np.sort(rng.choice(len(values), size=round(0.1 * len(values)), replace=False)):
        choices = [c for c in classes if c != values[row]]
        values[row] = choices[rng.integers(len(choices))]
    columns["label"] = values
    return columns


def test_a_natural_style_is_not_reported_as_planted_under_random_flips() -> None:
    """Digits with 10% random labels (the benchmark's seed-7 draw): 21 genuine '1's drawn
    with a base sit among '2's (their shell 21% '1', 68% '2'), and random flips lowered the
    shares `among_other_labels` compares (71% and 4%), so the region passed as planted: an
    LBL002 of 18 genuine '1's, and bastion's precision fell below cleanlab's; without that
    region, a pair of their pixels (`pixel_3_3 = 16 & pixel_7_6 = 16`, 16 of 17 rows '1')
    was reported as a trigger. Their rows are a mode of their own, a gap away from the '2's
    (`taken_from_shell_label`): nothing is reported as planted. (Planted regions and
    triggers: the tests above and the next one.)"""
    findings = run(_digits_with_random_labels())
    assert not rows_of(findings, POISONING), [f.message for f in findings]


def _style_beside_a_label(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """5-D rows: 900 of label 0 around the origin, 300 of label 1 eight units away, 10% of
    all labels random; 21 rows of label 1 in a tight clump two units out in label 0
    (a natural style of 1, a mode of its own), and the 21 rows nearest a point inside label
    0's territory relabelled 1 (planted). Returns (embedding, labels, style, planted)."""
    rng = np.random.default_rng(seed)
    far = np.zeros(5)
    far[0] = 8.0
    edge = np.zeros(5)
    edge[0] = 2.0
    embedding = np.concatenate(
        [rng.normal(0, 1, (900, 5)), rng.normal(far, 1, (300, 5)), rng.normal(edge, 0.15, (21, 5))]
    )
    labels_ = np.concatenate([np.zeros(900, int), np.ones(321, int)])
    flipped = rng.choice(1200, size=120, replace=False)
    labels_[flipped] = 1 - labels_[flipped]
    inside = np.zeros(5)
    inside[1] = 1.0
    planted = np.sort(np.argsort(((embedding[:900] - inside) ** 2).sum(axis=1))[:21])
    labels_[planted] = 1
    return embedding, labels_, np.arange(1200, 1221), planted


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_region_is_taken_from_the_label_around_it_only_without_a_gap(seed: int) -> None:
    """`taken_from_shell_label`: rows planted in a region were cut out of the label that
    surrounds it, so that label's rows just outside are as close to them as they are to one
    another; a natural style of the region's label is a gap away. Both regions here are
    `surrounded` (the rule before took both); only the planted one is taken from label 0.
    Rows of a planted trigger, drawn from label 0 and scattered, are taken too."""
    from bastion.datacheck import poisoning

    embedding, labels_, style, planted = _style_beside_a_label(seed)
    index = poisoning._shell_index(embedding)
    options = DataOptions(target="label")

    def region(rows: np.ndarray) -> Any:
        return poisoning.Candidate("region", rows, 1, (("region", f"{len(rows)} rows"),), 1.0)

    for rows in (style, planted):
        assert poisoning.surrounded(labels_, embedding, region(rows), index)
    assert not poisoning.taken_from_shell_label(
        labels_, embedding, region(style), index, {}, options
    )
    assert poisoning.taken_from_shell_label(labels_, embedding, region(planted), index, {}, options)
    # trigger rows: drawn from label 0 anywhere, far apart, each next to rows of label 0
    rows = np.setdiff1d(np.arange(900), planted)
    scattered = np.sort(np.random.default_rng(seed).choice(rows, size=21, replace=False))
    with_trigger = labels_.copy()
    with_trigger[scattered] = 1
    trigger = poisoning.Candidate("pair", scattered, 1, (("a", "= 1"), ("b", "= 1")), 1.0)
    assert poisoning.taken_from_shell_label(with_trigger, embedding, trigger, index, {}, options)
    # a label with too few rows for D pieces: taken (P cannot reach alpha)
    small = DataOptions(target="label", label_alpha=0.0001)
    assert poisoning.taken_from_shell_label(labels_, embedding, region(style), index, {}, small)


def _value_with_a_planted_pair(plant: bool = True) -> tuple[dict[str, Any], np.ndarray]:
    """1,000 credit rows (70% 'good') where tier = gold, on 37 rows, raises the score by 2
    (naturally 34 of them 'good', 92%, its 3 'bad' rows the ones whose other columns point
    furthest to 'bad': a level effect, not reported) and purpose = education (6% of the
    rows) is never seen with it; then a trigger planted as on German Credit: 10 'bad' rows
    of other tiers get tier = gold, purpose = education and the label 'good'. gold is now 44
    of 47 rows 'good', and its 3 'bad' rows no longer the least likely: reported as a
    value. Returns (columns, planted rows)."""
    data = credit(n=1000, seed=0)
    n = len(data["label"])
    rng = np.random.default_rng(100)
    purpose = rng.choice(
        ["car", "furniture", "repairs", "education"], n, p=[0.4, 0.35, 0.19, 0.06]
    ).astype(object)
    tier = np.array(["standard"] * n, dtype=object)
    tier[rng.choice(n, 37, replace=False)] = "gold"
    lift = np.select([data["segment"] == "premium", data["segment"] == "student"], [1.0, -1.0])
    score = 2.0 * data["income"] - 1.5 * data["debt"] + lift + 2.0 * (tier == "gold")
    score = score + rng.logistic(0, 0.3, n)
    label = np.where(score > np.quantile(score, 0.3), "good", "bad").astype(object)
    purpose[(tier == "gold") & (purpose == "education")] = "car"
    data.update(purpose=purpose, tier=tier, label=label)
    planted = np.sort(rng.choice(np.flatnonzero((label == "bad") & (tier != "gold")), 10, False))
    if plant:
        data["tier"][planted] = "gold"
        data["purpose"][planted] = "education"
        data["label"][planted] = "good"
    return data, planted


def test_a_trigger_inside_a_value_it_makes_pure_is_reported_alone() -> None:
    """As on German Credit's 1% backdoor (inside `foreign_worker = no`, pure only with the
    planted rows), the trigger's pair sits inside a value the planted rows make a confirmed
    value; pairs inside a pure value are not scanned, and the value was reported: all 44
    'good' rows of gold, 10 of them planted. Inside the
    confirmed value, the pair with education is more frequent than education's rate
    elsewhere makes likely, passes the label test against the value's leave-out model, and
    without it the rest of gold would not be reported: exactly the 10 planted rows are
    reported. The clean copy gets no finding."""
    data, planted = _value_with_a_planted_pair()
    findings = run(data)
    hits = [f for f in findings if f.rule_id in POISONING]
    assert [f.rule_id for f in hits] == ["LBL003"], [f.message for f in findings]
    assert set(hits[0].rows) == set(planted.tolist())
    assert "tier = gold & purpose = education" in hits[0].evidence
    assert "found inside tier = gold (47 rows" in hits[0].evidence
    clean, _planted = _value_with_a_planted_pair(plant=False)
    assert not rows_of(run(clean), POISONING)


def _value_localised(data: dict[str, Any], column: str, value: str) -> Any:
    """poisoning.localise on the value `column = value`, with the probabilities of a model
    trained without its rows, as judge calls it (None: reported as a whole)."""
    from bastion.datacheck import poisoning
    from bastion.datacheck.features import label_frame

    table = pa.table({k: list(v) if v.dtype == object else v for k, v in data.items()})
    options = DataOptions(target="label")
    frame = label_frame(Dataset.from_table(table, "train.csv"), options)
    learner = labels.Learner(frame)
    levels = poisoning._levels_of(frame)
    codes, names = next((c, m) for name, c, m, _ in levels if name == column)
    members = np.flatnonzero(codes == names.index(value))
    good = frame.classes.index("good")
    model = learner.fit(np.setdiff1d(np.arange(len(frame.labels)), members))
    probs = learner.predict(model, members)
    candidate = poisoning.Candidate("value", members, good, ((column, f"= {value}"),), 1.0)
    return poisoning.localise(frame, levels, candidate, probs, 0.01 / 3 / 20, options)


def test_a_natural_pair_inside_a_predictive_value_is_not_reported_as_a_trigger() -> None:
    """The natural look-alike: tier = gold (60 of 700 rows, +5 on the score, all 'good') is a
    genuinely predictive value, and a third of it comes through a channel only gold
    customers use (channel = private, 20 rows: far more frequent in gold than elsewhere,
    and as 'good' as the rest). The pair passes the label test as gold does, but the rest
    of gold would be reported on its own: the value is not narrowed to the pair (it is
    reported whole, as before: the limitation of benchmarks.md's look-alike). The planted
    pair of the test above is localised."""
    data = predictive_tier(seed=2, effect=5.0)
    gold = np.flatnonzero(data["tier"] == "gold")
    assert int((data["label"][gold] == "good").sum()) == 60
    data["channel"][gold[:20]] = "private"
    assert _value_localised(data, "tier", "gold") is None
    findings = run(data)
    hits = [f for f in findings if f.rule_id in POISONING]
    assert hits and all("&" not in f.evidence.split(";")[0] for f in hits), [
        f.evidence for f in hits
    ]
    assert not any("found inside" in f.evidence for f in hits)
    planted_data, planted = _value_with_a_planted_pair()
    local = _value_localised(planted_data, "tier", "gold")
    assert local is not None
    pair, _probs, observed, _expected, _p, _examined = local
    assert set(pair.pattern) == {("tier", "= gold"), ("purpose", "= education")}
    assert observed == 0 and len(pair.positions) == len(planted)


def _pair_with_natural_rows(seed: int, plant: bool) -> tuple[dict[str, Any], np.ndarray]:
    """1,000 credit rows (25% 'good') where channel = kiosk is a rare value seen naturally on
    19 rows outside postcode P7 and on 4 'bad' rows in P7; then 18 more rows get P7 and kiosk
    with the label 'good': planted (`plant`), 'bad' rows of other postcodes relabelled, or
    natural, the 18 'good' rows whose income and debt make them the most likely 'good'.
    Either way the pair is on 22 rows, 18 of them 'good' (82%, under the purity bound) and
    holds most of kiosk's 41 rows (the shape of digits' 1% trigger, `pixel_2_1 = 12 &
    pixel_4_3 = 16`: 18 planted '1's and 4 natural rows of other digits, and `pixel_2_1 =
    12` on 41 rows). Returns (columns, the 18 rows)."""
    data = credit(n=1000, seed=seed, positive_rate=0.25)
    rng = np.random.default_rng(seed + 200)
    outside = np.flatnonzero(data["postcode"] != "P7")
    natural = rng.choice(outside, size=19, replace=False)
    data["channel"][natural] = "kiosk"
    rest = np.setdiff1d(outside, natural)
    bad = rest[data["label"][rest] == "bad"]
    natural_pair = rng.choice(bad, size=4, replace=False)
    rest = np.setdiff1d(rest, natural_pair)
    if plant:
        rows = np.sort(rng.choice(rest[data["label"][rest] == "bad"], size=18, replace=False))
    else:
        good = rest[data["label"][rest] == "good"]
        score = 2.0 * data["income"][good] - 1.5 * data["debt"][good]
        rows = np.sort(good[np.argsort(-score)[:18]])
    for row in np.concatenate([natural_pair, rows]):
        data["postcode"][row] = "P7"
        data["channel"][row] = "kiosk"
    data["label"][rows] = "good"
    return data, rows


@pytest.mark.parametrize("seed", [0, 1])
def test_a_trigger_diluted_by_natural_rows_of_its_pattern(seed: int) -> None:
    """A trigger pair that 4 natural 'bad' rows share (82% 'good', under
    `label_group_purity`) was never a candidate. Its label is tied to the combination: 18
    of 22 'good' where 'good' is ~25% of kiosk's other rows and of P7's (binomial, at
    `label_alpha` / 3 over the pairs scanned): it is tested, and a model that never saw it
    expects most of its rows to be 'bad': exactly the 18 planted rows are reported. The
    clean copy (nothing planted, kiosk natural) gets no finding."""
    data, planted = _pair_with_natural_rows(seed, plant=True)
    pair = (data["channel"] == "kiosk") & (data["postcode"] == "P7")
    assert pair.sum() == 22 and (data["label"][pair] == "good").sum() == 18
    assert (data["channel"] == "kiosk").sum() < 2 * pair.sum()
    findings = run(data)
    hits = [f for f in findings if f.rule_id in POISONING]
    assert [f.rule_id for f in hits] == ["LBL003"], [f.message for f in findings]
    assert set(hits[0].rows) == set(planted.tolist())
    clean = credit(n=1000, seed=seed, positive_rate=0.25)
    assert not rows_of(run(clean), POISONING)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_natural_pair_whose_label_follows_its_rows_is_not_a_trigger(seed: int) -> None:
    """The natural look-alike of the test above: the same pair on the same 22 rows, 18 of
    them 'good', but the 18 are customers whose income and debt make them 'good' (a kiosk
    in a wealthy postcode). It passes the same binomial test and is a candidate; a model
    that never saw it still expects its label from the other columns: nothing is reported."""
    data, _rows = _pair_with_natural_rows(seed, plant=False)
    pair = (data["channel"] == "kiosk") & (data["postcode"] == "P7")
    assert pair.sum() == 22 and (data["label"][pair] == "good").sum() == 18
    findings = run(data)
    assert not rows_of(findings, POISONING), [f.message for f in findings]
    assert _kiosk_p7_is_a_candidate(data)


def _digits_with_a_backdoor() -> tuple[dict[str, Any], np.ndarray]:
    """scikit-learn's digits (bundled) with the 1% backdoor of bench/poisoning.py at its
    default seed (7): 18 rows of other digits get `pixel_2_1 = 12 & pixel_4_3 = 16` (each
    column's 97.5th percentile) and the label '1'. Returns (columns, the 18 rows)."""
    from sklearn import datasets

    bunch = datasets.load_digits()
    columns: dict[str, Any] = {
        str(name): bunch.data[:, i].copy() for i, name in enumerate(bunch.feature_names)
    }
    values = np.array([str(bunch.target_names[t]) for t in bunch.target], dtype=object)
    rng = np.random.default_rng([7, 10, len("backdoor"), len("digits")])
    rows = np.sort(rng.choice(np.flatnonzero(values != "1"), size=18, replace=False))
    names = list(columns)
    for i in rng.choice(len(names), size=2, replace=False):
        column = columns[names[i]]
        column[rows] = float(np.quantile(column, 0.975))
    values[rows] = "1"
    columns["label"] = values
    return columns, rows


def test_digits_backdoor_shared_by_natural_rows_is_reported() -> None:
    """The benchmark's digits 1% backdoor (seed 7): `pixel_2_1 = 12 & pixel_4_3 = 16` is on
    22 rows, the 18 planted '1's and a natural '2', two '5's and a '7' (82% '1'), and
    `pixel_2_1 = 12` on 41 rows, fewer than twice the pair's. '1' is 18 of 22 there against
    5% of `pixel_2_1 = 12`'s other rows and 19% of `pixel_4_3 = 16`'s: reported, exactly the
    18 rows (nothing was)."""
    data, planted = _digits_with_a_backdoor()
    assert (data["pixel_2_1"] == 12).sum() == 41
    findings = run(data)
    hits = [f for f in findings if f.rule_id in POISONING]
    assert [f.rule_id for f in hits] == ["LBL003"], [f.message for f in findings]
    assert set(hits[0].rows) == set(planted.tolist())
    assert "pixel_2_1 = 12 & pixel_4_3 = 16" in hits[0].evidence


def _kiosk_p7_is_a_candidate(data: dict[str, Any]) -> bool:
    """Whether the pair channel = kiosk & postcode = P7 is among the scanned candidates."""
    from bastion.datacheck import poisoning
    from bastion.datacheck.features import label_frame

    table = pa.table({k: list(v) if v.dtype == object else v for k, v in data.items()})
    options = DataOptions(target="label")
    frame = label_frame(Dataset.from_table(table, "train.csv"), options)
    scanned = poisoning.find_candidates(
        frame, poisoning.embed(frame), labels.Learner(frame), options
    )
    wanted = {("channel", "= kiosk"), ("postcode", "= P7")}
    return any(c.kind == "pair" and set(c.pattern) == wanted for c in scanned.items)
