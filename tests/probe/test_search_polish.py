"""The evasion search's polishing: a flip is brought to the decision boundary (on a tree, the
split threshold), traded toward cheaper features, never made dearer, never made invalid, and
the row's query cap holds throughout."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import credit_spec

from bastion.probe.inputs import Table, dtypes_of
from bastion.probe.model import Model, Output, wrap
from bastion.probe.search import FINE, Searcher, Space
from bastion.probe.spec import ProbeSpec, change_cost, infer, validate_change


class Counted(Model):
    """A model that counts every row it is sent (and can hide its scores)."""

    def __init__(self, inner: Model, scores: bool = True) -> None:
        super().__init__("counted", inner.classes)
        self.inner = inner
        self.scores = scores
        self.rows = 0

    @property
    def gives_scores(self) -> bool:
        return self.scores

    def _predict(self, frame: pd.DataFrame) -> Output:
        self.rows += len(frame)
        out = self.inner.query(frame)
        return Output(out.labels, out.scores if self.scores else None)


class Rule(Model):
    """favourable ("good") exactly when a + 3·b >= 1: labels only."""

    def __init__(self) -> None:
        super().__init__("rule", ["bad", "good"])

    @property
    def gives_scores(self) -> bool:
        return False

    def _predict(self, frame: pd.DataFrame) -> Output:
        good = frame["a"].to_numpy(float) + 3 * frame["b"].to_numpy(float) >= 1
        return Output(np.where(good, "good", "bad").astype(object), None)


def _stump(seed: int = 0) -> tuple[Any, pd.DataFrame, float]:
    """A one-split tree on x (the other feature is noise) and its threshold."""
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x": rng.uniform(0, 10, 300), "noise": rng.uniform(0, 10, 300)})
    y = np.where(frame["x"] > 4.3, "good", "bad")
    tree = DecisionTreeClassifier(max_depth=1, random_state=0).fit(frame, y)
    assert tree.tree_.feature[0] == 0
    return tree, frame, float(tree.tree_.threshold[0])


@pytest.mark.parametrize("scores", [True, False])
def test_polish_ends_at_the_split_threshold_of_a_tree(scores: bool) -> None:
    """Flat scores: the decision only changes where x crosses the threshold, so the cheapest
    flip is x moved just past it. The search must land within FINE · max_cost of it (a grid
    of the change, as before, overshoots by up to 1/64 of the first flip's move)."""
    tree, frame, threshold = _stump()
    spec = infer(frame, favourable="good")
    max_cost = 2.0
    model = Counted(wrap(tree), scores=scores)
    searcher = Searcher(model, Space(spec, dtypes_of(frame)), "good", max_cost, 1000, seed=0)
    x_cost = spec.feature("x").cost
    declined = frame[(frame["x"] <= threshold) & (frame["x"] > threshold - 1.5 / x_cost)]
    assert len(declined) >= 10
    for values in declined.head(12).to_numpy(dtype=object).tolist():
        score = float(tree.predict_proba(frame.iloc[:1])[0, 1]) if scores else None
        model.rows = 0
        outcome = searcher.search(values, score)
        assert outcome.flip is not None
        optimum = (threshold - values[0]) * x_cost
        overshoot = outcome.flip.cost - optimum
        assert 0 < overshoot <= 1.01 * FINE * max_cost, (values, outcome.flip.cost, optimum)
        assert outcome.flip.after[1] == values[1]  # the noise feature is left alone
        assert outcome.queries == model.rows <= 1000


def test_polish_trades_a_dear_change_for_a_cheaper_one() -> None:
    """Given the flip a = 1 (cost 1), the cheapest flip is b = 1/3 alone (cost 1/3): the
    trade stage drops a and makes up for it with b, then brings b to the boundary."""
    frame = pd.DataFrame({"a": np.linspace(-2, 2, 50), "b": np.linspace(-2, 2, 50)})
    spec = infer(frame, favourable="good")
    spec = spec.model_copy(
        update={"features": tuple(f.model_copy(update={"cost": 1.0}) for f in spec.features)}
    )
    searcher = Searcher(Rule(), Space(spec, dtypes_of(frame)), "good", 2.0, 1000, seed=0)
    outcome = searcher.polish([0.0, 0.0], [1.0, 0.0])
    assert outcome.flip is not None
    assert outcome.flip.after[0] == 0.0
    assert outcome.flip.cost == pytest.approx(1 / 3, abs=1e-5)
    assert outcome.queries <= 1000


def test_polish_refuses_what_is_not_a_valid_flip(credit: tuple[Table, Table]) -> None:
    _, test = credit
    spec = credit_spec(test)

    class Never(Model):
        def _predict(self, frame: pd.DataFrame) -> Output:
            return Output(np.array(["bad"] * len(frame), dtype=object), None)

        @property
        def gives_scores(self) -> bool:
            return False

    searcher = Searcher(
        Never("never", ["bad", "good"]), Space(spec, dtypes_of(test.features)), "good", 2, 100
    )
    row = list(test.features.to_numpy(dtype=object)[0])
    aged = list(row)
    aged[spec.names.index("age")] = row[spec.names.index("age")] + 1  # immutable
    assert searcher.polish(row, aged)[:2] == (None, 0)
    assert searcher.polish(row, row[:-1])[:2] == (None, 0)
    richer = list(row)
    richer[spec.names.index("income")] = row[spec.names.index("income")] + 10.0
    outcome = searcher.polish(row, richer)  # valid, but the model never says "good"
    assert outcome.flip is None and outcome.queries == 1


def _random_flips(
    spec: ProbeSpec, model: Model, test: Table, max_cost: float, count: int
) -> list[tuple[list[Any], list[Any]]]:
    """Valid flips drawn at random (one to three mutable features moved, within max_cost) for
    declined rows: rough starting points, as another tool would hand over."""
    space = Space(spec, dtypes_of(test.features))
    rng = np.random.default_rng(5)
    rows = test.features.to_numpy(dtype=object)
    labels = model.query(test.features).labels
    pairs: list[tuple[list[Any], list[Any]]] = []
    for index in np.flatnonzero(labels != "good"):
        original = list(rows[index])
        trials = []
        for _ in range(40):
            trial = list(original)
            chosen = rng.choice(space.mutable, size=int(rng.integers(1, 4)), replace=False)
            for i in chosen:
                feature = space.features[i]
                if feature.kind == "categorical":
                    options = space.categories(i, original[i])
                    if options:
                        trial[i] = options[int(rng.integers(len(options)))]
                    continue
                share = rng.uniform(0.1, 1.0) * max_cost / len(chosen) / feature.cost
                value = space.numeric_value(i, float(original[i]), rng.choice([-1, 1]) * share)
                if value is not None:
                    trial[i] = space.cast(i, value)
            if trial != original and change_cost(spec, original, trial) <= max_cost:
                trials.append(trial)
        if not trials:
            continue
        flipped = model.query(space.frame(trials)).labels == "good"
        hits = [t for t, f in zip(trials, flipped, strict=True) if f]
        if hits:
            pairs.append((original, hits[0]))
        if len(pairs) == count:
            break
    return pairs


@pytest.mark.parametrize("kind", ["credit_lr", "credit_gb"])
@pytest.mark.parametrize("scores", [True, False])
def test_polish_never_raises_the_cost_and_keeps_every_flip_valid(
    credit: tuple[Table, Table], kind: str, scores: bool, request: pytest.FixtureRequest
) -> None:
    _, test = credit
    spec = credit_spec(test)
    estimator = request.getfixturevalue(kind)
    model = Counted(wrap(estimator), scores=scores)
    max_cost, cap = 3.0, 400
    pairs = _random_flips(spec, model, test, max_cost, count=12)
    assert len(pairs) >= 8
    searcher = Searcher(model, Space(spec, dtypes_of(test.features)), "good", max_cost, cap)
    cheaper = 0
    for original, start in pairs:
        model.rows = 0
        outcome = searcher.polish(original, start)
        assert outcome.flip is not None
        assert outcome.queries == model.rows <= cap
        after = list(outcome.flip.after)
        assert validate_change(spec, original, after) == []
        cost = change_cost(spec, original, after)
        assert cost == pytest.approx(outcome.flip.cost)
        assert cost <= change_cost(spec, original, start) + 1e-12
        cheaper += cost < change_cost(spec, original, start) - 1e-6
        frame = pd.DataFrame([after], columns=spec.names).astype(test.features.dtypes)
        assert str(estimator.predict(frame)[0]) == "good"
    assert cheaper >= len(pairs) // 2  # random starts leave room: most get cheaper


@pytest.mark.parametrize("cap", [10, 25, 60, 1000])
def test_the_row_query_cap_holds(credit: tuple[Table, Table], credit_gb: Any, cap: int) -> None:
    """However small the cap, the search sends at most that many rows per declined row, and
    what it reports is a valid flip the model was seen to make."""
    _, test = credit
    spec = credit_spec(test)
    model = Counted(wrap(credit_gb))
    space = Space(spec, dtypes_of(test.features))
    searcher = Searcher(model, space, "good", 2.0, cap, seed=1)
    out = wrap(credit_gb).query(test.features)
    rows = test.features.to_numpy(dtype=object)
    fav = model.class_index("good")
    assert out.scores is not None
    for index in np.flatnonzero(out.labels != "good")[:12]:
        model.rows = 0
        outcome = searcher.search(list(rows[index]), float(out.scores[index, fav]))
        assert outcome.queries == model.rows <= cap
        if outcome.flip is not None:
            after = list(outcome.flip.after)
            assert validate_change(spec, list(rows[index]), after) == []
            assert outcome.flip.cost <= 2.0 + 1e-9
            assert credit_gb.predict(space.frame([after]))[0] == "good"
