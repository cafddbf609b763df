"""bastion's constraint-aware evasion search: the cheapest valid change to one row's raw
features that makes the model give the favourable decision.

The search runs over the raw features in front of the model's pipeline (one-hot encoders,
scalers and all), so every candidate it sends is a row a person could submit: immutable features
are never touched, directed features move only their way, integers stay integers, categories
stay categories, values stay within bounds, and the total cost stays within `max_cost`.

1. With scores, a greedy coordinate search: from the current point, every single-feature move
   on a cost grid (numeric features to cost fractions of `max_cost` either way their direction
   allows, categorical features to every allowed category) is scored in one batch; the first
   batch holding a flip ends the walk at its cheapest flip, otherwise the walk takes the move
   with the best score gain per unit of cost.
2. With labels only, or when the greedy walk stalls (flat scores, as trees give), random sparse
   changes of one to three features at growing cost radii; the first radius holding flips
   hands its cheapest ones on.
3. Every flip is then pruned: changed features are reverted where the flip survives without
   them, and each remaining numeric change is shrunk on a grid (twice refined) to the smallest
   fraction that still flips.

No library does this: ART's attacks move an encoded numeric vector (constraints are projected
after the fact and most projected points no longer flip; see docs/benchmarks.md), DiCE's
counterfactuals honour constraints but minimise a different, much costlier objective."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from bastion.probe.model import Model, QueryBudgetExceeded
from bastion.probe.spec import FeatureSpec, ProbeSpec

if TYPE_CHECKING:
    import numpy
    import pandas

GRID = (0.05, 0.15, 0.3, 0.5, 0.75, 1.0)  # fractions of max_cost a numeric move may cost
RADII = (0.25, 0.5, 1.0)  # fractions of max_cost for the random search
SHRINK_STEPS = 8  # grid points per refinement when shrinking a numeric change
EPS = 1e-9


class Flip(NamedTuple):
    """A valid change of one row that flips the decision."""

    before: tuple[Any, ...]
    after: tuple[Any, ...]
    cost: float
    score_before: float | None
    score_after: float | None


class Outcome(NamedTuple):
    flip: Flip | None
    queries: int


class Space:
    """The spec's features with the data's dtypes: builds candidate frames and moves."""

    def __init__(self, spec: ProbeSpec, dtypes: dict[str, Any]) -> None:
        self.spec = spec
        self.features: tuple[FeatureSpec, ...] = spec.features
        self.names = spec.names
        self.dtypes = dtypes
        self.mutable = [i for i, f in enumerate(self.features) if f.mutable]

    def frame(self, rows: Sequence[Sequence[Any]]) -> pandas.DataFrame:
        import pandas as pd

        frame = pd.DataFrame(list(rows), columns=self.names)
        for name, dtype in self.dtypes.items():
            if frame[name].dtype != dtype:
                frame[name] = frame[name].astype(dtype)
        return frame

    def part(self, index: int, before: Any, after: Any) -> float:
        """The cost of one feature's change."""
        feature = self.features[index]
        if feature.kind == "categorical":
            return 0.0 if str(before) == str(after) else feature.cost
        if before == after:
            return 0.0
        return feature.cost * abs(float(after) - float(before))

    def numeric_range(self, index: int, original: float) -> tuple[float, float]:
        feature = self.features[index]
        low = -math.inf if feature.lower is None else feature.lower
        high = math.inf if feature.upper is None else feature.upper
        low, high = min(low, original), max(high, original)
        if feature.direction > 0:
            low = original
        elif feature.direction < 0:
            high = original
        return low, high

    def numeric_value(self, index: int, original: float, delta: float) -> float | None:
        """original + delta, clipped to the allowed range and, for integers, rounded away from
        the original (a smaller step would not be a move); None when nothing changes."""
        feature = self.features[index]
        low, high = self.numeric_range(index, original)
        value = min(max(original + delta, low), high)
        if feature.kind == "integer":
            value = math.ceil(value - EPS) if value > original else math.floor(value + EPS)
            if value > high:
                value = math.floor(high)
            if value < low:
                value = math.ceil(low)
        if value == original or not math.isfinite(value):
            return None
        return float(value)

    def categories(self, index: int, original: Any) -> list[str]:
        """The categories a categorical feature may switch to from `original`."""
        feature = self.features[index]
        allowed = list(feature.categories)
        text = str(original)
        if feature.direction and text in allowed:
            rank = allowed.index(text)
            allowed = allowed[rank:] if feature.direction > 0 else allowed[: rank + 1]
        return [c for c in allowed if c != text]

    def cast(self, index: int, value: Any) -> Any:
        """A candidate value in the column's own type (integers as ints)."""
        if self.features[index].kind == "categorical":
            return value
        dtype = str(self.dtypes.get(self.names[index], "float64"))
        if dtype.startswith(("int", "uint", "Int", "UInt")) or dtype == "bool":
            return round(value)
        return float(value)


def _is_missing(value: Any) -> bool:
    try:
        return value is None or (isinstance(value, float) and math.isnan(value))
    except TypeError:
        return False


class Searcher:
    """The search for one model, spec and favourable class."""

    def __init__(
        self,
        model: Model,
        space: Space,
        favourable: str,
        max_cost: float,
        queries_per_row: int,
        seed: int = 0,
    ) -> None:
        import numpy as np

        self.model = model
        self.space = space
        self.favourable = favourable
        self.fav_index = model.class_index(favourable) if model.gives_scores else None
        self.max_cost = max_cost
        self.cap = queries_per_row
        self.rng = np.random.default_rng(seed)
        self.used = 0

    # -- querying within the row's budget --

    def _ask(self, rows: list[list[Any]]) -> tuple[numpy.ndarray, numpy.ndarray | None]:
        import numpy as np

        room = self.cap - self.used
        if room <= 0:
            raise QueryBudgetExceeded("row budget")
        if len(rows) > room:
            keep = sorted(self.rng.choice(len(rows), size=room, replace=False))
            rows = [rows[i] for i in keep]
            self._kept = keep
        else:
            self._kept = list(range(len(rows)))
        self.used += len(rows)
        out = self.model.query(self.space.frame(rows))
        flipped = np.array([label == self.favourable for label in out.labels])
        scores = None
        if out.scores is not None and self.fav_index is not None:
            scores = out.scores[:, self.fav_index]
        return flipped, scores

    # -- moves --

    def _moves(self, original: list[Any], current: list[Any], spent: float) -> list[list[Any]]:
        space = self.space
        rows: list[list[Any]] = []
        seen: set[tuple[int, Any]] = set()
        for i in space.mutable:
            feature = space.features[i]
            base_part = space.part(i, original[i], current[i])
            if _is_missing(original[i]):
                continue
            if feature.kind == "categorical":
                values: list[Any] = space.categories(i, original[i])
                if str(current[i]) != str(original[i]):
                    values = [original[i], *values]
            else:
                values = []
                if current[i] != original[i]:
                    values.append(original[i])
                for fraction in GRID:
                    step = fraction * self.max_cost / feature.cost
                    for sign in (1.0, -1.0):
                        value = space.numeric_value(i, float(original[i]), sign * step)
                        if value is not None:
                            values.append(space.cast(i, value))
            for value in values:
                if (i, value) in seen or value == current[i]:
                    continue
                seen.add((i, value))
                total = spent - base_part + space.part(i, original[i], value)
                if total <= self.max_cost + EPS:
                    row = list(current)
                    row[i] = value
                    rows.append(row)
        return rows

    def _cost(self, original: Sequence[Any], row: Sequence[Any]) -> float:
        return sum(
            self.space.part(i, original[i], row[i])
            for i in range(len(row))
            if not (_is_missing(original[i]) and _is_missing(row[i]))
        )

    # -- strategies --

    def _greedy(self, original: list[Any], score: float) -> list[Any] | None:
        current, spent = list(original), 0.0
        while self.used < self.cap:
            rows = self._moves(original, current, spent)
            if not rows:
                return None
            flipped, scores = self._ask(rows)
            rows = [rows[i] for i in self._kept]
            costs = [self._cost(original, r) for r in rows]
            hits = [i for i in range(len(rows)) if flipped[i]]
            if hits:
                return rows[min(hits, key=lambda i: costs[i])]
            assert scores is not None
            best, best_gain = None, 0.0
            for i in range(len(rows)):
                gain = float(scores[i]) - score
                if gain <= EPS:
                    continue
                rate = gain / max(costs[i] - spent, 1e-3 * self.max_cost)
                if best is None or rate > best_gain:
                    best, best_gain = i, rate
            if best is None:
                return None  # stalled: no single move raises the score
            current, spent, score = rows[best], costs[best], float(scores[best])
        return None

    def _random(self, original: list[Any]) -> list[list[Any]]:
        import numpy as np

        space = self.space
        usable = [i for i in space.mutable if not _is_missing(original[i])]
        if not usable:
            return []
        for radius in RADII:
            budget = radius * self.max_cost
            rows: list[list[Any]] = []
            for _ in range(max(1, min(60, (self.cap - self.used) // (2 * len(RADII))))):
                count = int(self.rng.integers(1, min(3, len(usable)) + 1))
                chosen = self.rng.choice(usable, size=count, replace=False)
                shares = self.rng.dirichlet(np.ones(count)) * budget * self.rng.uniform(0.3, 1.0)
                row = list(original)
                for i, share in zip(chosen, shares, strict=True):
                    feature = space.features[i]
                    if feature.kind == "categorical":
                        options = space.categories(i, original[i])
                        if options and feature.cost <= share + EPS:
                            row[i] = options[int(self.rng.integers(len(options)))]
                        continue
                    low, high = space.numeric_range(i, float(original[i]))
                    signs = [s for s in (1.0, -1.0) if (high if s > 0 else low) != original[i]]
                    if not signs:
                        continue
                    sign = signs[int(self.rng.integers(len(signs)))]
                    value = space.numeric_value(i, float(original[i]), sign * share / feature.cost)
                    if value is not None:
                        row[i] = space.cast(i, value)
                if row != original and self._cost(original, row) <= self.max_cost + EPS:
                    rows.append(row)
            if not rows or self.used >= self.cap:
                continue
            flipped, _ = self._ask(rows)
            rows = [rows[i] for i in self._kept]
            hits = sorted(
                (r for r, f in zip(rows, flipped, strict=True) if f),
                key=lambda r: self._cost(original, r),
            )
            if hits:
                return hits[:3]
        return []

    def _prune(self, original: list[Any], row: list[Any]) -> list[Any]:
        space = self.space
        # 1. revert whole features while the flip survives, cheapest result first
        while self.used < self.cap:
            changed = [i for i in range(len(row)) if space.part(i, original[i], row[i]) > 0]
            if len(changed) <= 1:
                break
            candidates = []
            for i in changed:
                trial = list(row)
                trial[i] = original[i]
                candidates.append(trial)
            flipped, _ = self._ask(candidates)
            kept = [candidates[k] for k, ok in zip(self._kept, flipped, strict=True) if ok]
            if not kept:
                break
            row = min(kept, key=lambda r: self._cost(original, r))
        # 2. shrink each numeric change to the smallest fraction that still flips
        for i in range(len(row)):
            feature = space.features[i]
            if feature.kind == "categorical" or space.part(i, original[i], row[i]) == 0:
                continue
            full = float(row[i]) - float(original[i])
            low_t, high_t = 0.0, 1.0  # the change at high_t flips; at low_t it did not
            for _ in range(2):
                if self.used >= self.cap:
                    return row
                trials, fractions = [], []
                for k in range(1, SHRINK_STEPS):
                    t = low_t + (high_t - low_t) * k / SHRINK_STEPS
                    value = space.numeric_value(i, float(original[i]), t * full)
                    if value is None:
                        continue
                    trial = list(row)
                    trial[i] = space.cast(i, value)
                    trials.append(trial)
                    fractions.append(t)
                if not trials:
                    break
                flipped, _ = self._ask(trials)
                results = [
                    (fractions[k], trials[k], bool(f))
                    for k, f in zip(self._kept, flipped, strict=True)
                ]
                hits = [(t, trial) for t, trial, f in results if f]
                if hits:
                    high_t, row = min(hits, key=lambda h: h[0])
                low_t = max([t for t, _, f in results if not f and t < high_t], default=low_t)
        return row

    def search(self, original: Sequence[Any], score: float | None) -> Outcome:
        """The cheapest flip found for one declined row within its query budget."""
        self.used = 0
        start = list(original)
        found: list[list[Any]] = []
        try:
            if score is not None and self.fav_index is not None:
                hit = self._greedy(start, score)
                if hit is not None:
                    found.append(hit)
            if not found:
                found = self._random(start)
            best: list[Any] | None = None
            for hit in found:
                pruned = self._prune(start, hit)
                if best is None or self._cost(start, pruned) < self._cost(start, best):
                    best = pruned
        except QueryBudgetExceeded:
            best = min(found, key=lambda r: self._cost(start, r)) if found else None
        if best is None:
            return Outcome(None, self.used)
        flip = Flip(tuple(start), tuple(best), self._cost(start, best), score, None)
        return Outcome(flip, self.used)
