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
3. The cheapest few first flips (greedy's last batch, or the random radius's) are polished:
   changed features are reverted where the flip survives without them; each numeric change is
   shrunk to the smallest fraction on a grid that still flips, then narrowed between it and the
   largest smaller fraction that does not (on a tree model the decision changes at a split
   threshold, and the search ends there); then a coordinate descent drops one changed
   feature (or halves its change) and makes up for it with the smallest move of one other
   feature, taken only when the total cost falls. The cheapest flip seen is kept at every step,
   so the cost never rises, and the row's query cap bounds it all; the winner's changes are
   narrowed once more, finely, at the end.

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
SHRINK_STEPS = 8  # grid points when shrinking a numeric change, before the narrowing
SPLIT = 4  # the bracket is cut in SPLIT parts per batch (SPLIT - 1 queries, one call)
TOLERANCE = 1e-3  # while polishing, the narrowing stops this close (· max_cost) to the boundary
FINE = 1e-6  # and on the final flip, this close
STARTS = 3  # first flips polished per row (the cheapest first)
TRADE_GRID = (0.25, 0.5, 0.75, 0.95)  # shares of the saving a compensating move may spend
TRADE_ROUNDS = 4  # improving trades per polished flip at most
EPS = 1e-9
MAX_MAGNITUDE = float(2**53)  # a searched number stays within ±this: beyond, floats skip integers


class Flip(NamedTuple):
    """A valid change of one row that flips the decision."""

    before: tuple[Any, ...]
    after: tuple[Any, ...]
    cost: float
    score_before: float | None
    score_after: float | None


class Outcome(NamedTuple):
    flip: Flip | None
    queries: int  # rows sent for this row: re-sends and retries included
    refused: int = 0  # candidate rows the model refused (or raised on): counted as no flip


class Space:
    """The spec's features with the data's dtypes: builds candidate frames and moves."""

    def __init__(self, spec: ProbeSpec, dtypes: dict[str, Any]) -> None:
        self.spec = spec
        self.features: tuple[FeatureSpec, ...] = spec.features
        self.names = spec.names
        self.dtypes = dtypes
        self.mutable = [i for i, f in enumerate(self.features) if f.mutable]
        # a numeric feature over an integer column moves in whole steps (the frame casts it)
        self.whole = [
            f.kind == "integer"
            or (
                f.kind == "numeric"
                and str(dtypes.get(f.name, "float64")).startswith(("int", "uint", "Int", "UInt"))
            )
            for f in self.features
        ]

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
        """Where feature `index` may move from `original`: within the spec's bounds (never
        outside them, even when the original lies outside: then only into them), and only
        its direction's way. An empty range (low > high) means the feature cannot move."""
        feature = self.features[index]
        low = -MAX_MAGNITUDE if feature.lower is None else max(feature.lower, -MAX_MAGNITUDE)
        high = MAX_MAGNITUDE if feature.upper is None else min(feature.upper, MAX_MAGNITUDE)
        if self.whole[index]:
            low, high = float(math.ceil(low)), float(math.floor(high))
        if feature.direction > 0:
            low = max(low, original)
        elif feature.direction < 0:
            high = min(high, original)
        return low, high

    def movable(self, index: int, original: Any) -> bool:
        """Whether feature `index` can change at all from `original`."""
        if _is_missing(original):
            return False
        if self.features[index].kind == "categorical":
            return bool(self.categories(index, original))
        try:
            origin = float(original)
        except (TypeError, ValueError):
            return False
        low, high = self.numeric_range(index, origin)
        return low <= high and (low != origin or high != origin)

    def numeric_value(self, index: int, original: float, delta: float) -> float | None:
        """original + delta, clipped to the allowed range and, for integers, rounded away from
        the original (a smaller step would not be a move); None when nothing changes."""
        low, high = self.numeric_range(index, original)
        if not (low <= high and math.isfinite(original)) or math.isnan(delta):
            return None
        value = min(max(original + delta, low), high)
        if self.whole[index]:
            value = math.ceil(value - EPS) if value > original else math.floor(value + EPS)
            value = min(max(value, low), high)
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

    def changed(self, original: Sequence[Any], row: Sequence[Any]) -> bool:
        """Whether `row` changes anything in `original` (a row with no change is never a
        candidate: the original's own decision is known)."""
        return any(self.part(i, original[i], row[i]) > 0 for i in range(len(row)))


def _apply(base: list[Any], moves: list[tuple[int, Any]]) -> list[list[Any]]:
    """`base` with each single-feature move applied, one row per move."""
    rows = []
    for i, value in moves:
        row = list(base)
        row[i] = value
        rows.append(row)
    return rows


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
        self._kept: list[int] = []  # which of the rows last asked about were sent
        self._original: list[Any] = []  # the row being searched
        self.refused = 0  # candidates the model refused for the current row
        self._best: list[Any] | None = None  # the cheapest flip seen for the current row
        self._best_cost = math.inf

    # -- querying within the row's budget --

    def _ask(self, rows: list[list[Any]]) -> tuple[numpy.ndarray, numpy.ndarray | None]:
        import numpy as np

        room = self.cap - self.used
        if room <= 0:
            raise QueryBudgetExceeded("row budget")
        # a row with no change is not a candidate (on a model that is not deterministic it
        # could come back favourable: a "flip" changing nothing)
        keep = [k for k, row in enumerate(rows) if self.space.changed(self._original, row)]
        if len(keep) > room:
            keep = [keep[k] for k in sorted(self.rng.choice(len(keep), size=room, replace=False))]
        self._kept = keep
        rows = [rows[k] for k in keep]
        if not rows:
            empty = np.zeros(0, dtype=bool)
            return empty, (np.zeros(0) if self.fav_index is not None else None)
        before = self.model.queries
        try:
            out = self.model.query(self.space.frame(rows), partial=True, allowance=room)
        finally:
            self.used += self.model.queries - before
        refused = (
            np.asarray(out.refused, dtype=bool)
            if out.refused is not None
            else np.zeros(len(rows), dtype=bool)
        )
        self.refused += int(refused.sum())
        flipped = np.array([label == self.favourable for label in out.labels]) & ~refused
        scores = None
        if out.scores is not None and self.fav_index is not None:
            scores = np.where(refused, np.nan, out.scores[:, self.fav_index])
        return flipped, scores

    def _sample(self, moves: list[Any]) -> list[Any]:
        """At most the row's remaining queries of `moves` (a seeded sample), taken before the
        candidate rows are built: a wide row's moves would otherwise each copy the row."""
        room = self.cap - self.used
        if len(moves) <= room:
            return moves
        if room <= 0:
            raise QueryBudgetExceeded("row budget")
        return [moves[k] for k in sorted(self.rng.choice(len(moves), size=room, replace=False))]

    # -- moves --

    def _moves(self, original: list[Any], current: list[Any], spent: float) -> list[list[Any]]:
        """Every single-feature move from `current` within the budget (a sample of them when
        the row's remaining queries are fewer), as rows."""
        space = self.space
        moves: list[tuple[int, Any]] = []
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
                    moves.append((i, value))
        return _apply(current, self._sample(moves))

    def _cost(self, original: Sequence[Any], row: Sequence[Any]) -> float:
        return sum(
            self.space.part(i, original[i], row[i])
            for i in range(len(row))
            if not (_is_missing(original[i]) and _is_missing(row[i]))
        )

    # -- strategies --

    def _greedy(self, original: list[Any], score: float) -> list[list[Any]]:
        current, spent = list(original), 0.0
        while self.used < self.cap:
            rows = self._moves(original, current, spent)
            if not rows:
                return []
            flipped, scores = self._ask(rows)
            rows = [rows[i] for i in self._kept]
            costs = [self._cost(original, r) for r in rows]
            hits = sorted((i for i in range(len(rows)) if flipped[i]), key=lambda i: costs[i])
            if hits:
                return [rows[i] for i in hits[:STARTS]]
            assert scores is not None
            best, best_gain = None, 0.0
            for i in range(len(rows)):
                gain = float(scores[i]) - score
                if not gain > EPS:  # no gain, or a refused row (NaN)
                    continue
                rate = gain / max(costs[i] - spent, 1e-3 * self.max_cost)
                if best is None or rate > best_gain:
                    best, best_gain = i, rate
            if best is None:
                return []  # stalled: no single move raises the score
            current, spent, score = rows[best], costs[best], float(scores[best])
        return []

    def _random(self, original: list[Any]) -> list[list[Any]]:
        import numpy as np

        space = self.space
        usable = [i for i in space.mutable if space.movable(i, original[i])]
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
                    origin = float(original[i])
                    low, high = space.numeric_range(i, origin)
                    if low > high:
                        continue
                    signs = [s for s in (1.0, -1.0) if (high > origin if s > 0 else low < origin)]
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
                return hits[:STARTS]
        return []

    # -- polishing a flip --

    def _flips(self, rows: list[list[Any]]) -> list[tuple[list[Any], bool]]:
        """The rows sent (a sample of them when the row's budget is short) and whether each
        gets the favourable decision."""
        flipped, _ = self._ask(rows)
        return [(rows[k], bool(f)) for k, f in zip(self._kept, flipped, strict=True)]

    def _keep(self, original: list[Any], row: list[Any]) -> None:
        """A row the model was seen to flip becomes the best so far when it is cheaper."""
        cost = self._cost(original, row)
        if not self.space.changed(original, row):
            return
        if self._best is None or cost < self._best_cost - EPS:
            self._best, self._best_cost = list(row), cost

    def _changed(self, original: list[Any], row: list[Any]) -> list[int]:
        """The changed features, the dearest change first."""
        parts = [self.space.part(i, original[i], row[i]) for i in range(len(row))]
        return sorted((i for i in range(len(row)) if parts[i] > 0), key=lambda i: -parts[i])

    def _revert(self, original: list[Any], row: list[Any]) -> list[Any]:
        """Whole changes reverted while the flip survives without them, cheapest result first."""
        while self.used < self.cap:
            changed = self._changed(original, row)
            if len(changed) <= 1:
                break
            candidates = []
            for i in changed:
                trial = list(row)
                trial[i] = original[i]
                candidates.append(trial)
            kept = [trial for trial, ok in self._flips(candidates) if ok]
            if not kept:
                break
            row = min(kept, key=lambda r: self._cost(original, r))
            self._keep(original, row)
        return row

    def _at(
        self, original: list[Any], row: list[Any], i: int, full: float, t: float
    ) -> tuple[list[Any], float] | None:
        """`row` with feature i's change scaled to the fraction t of `full` (rounded away from
        the original for integers), and the fraction that rounding gives; None for no change."""
        space = self.space
        origin = float(original[i])
        value = space.numeric_value(i, origin, t * full)
        if value is None:
            return None
        trial = list(row)
        trial[i] = space.cast(i, value)
        return trial, (float(trial[i]) - origin) / full

    def _shrink(
        self, original: list[Any], row: list[Any], i: int, tolerance: float = TOLERANCE
    ) -> list[Any]:
        """Feature i's numeric change shrunk toward the original while the flip survives: the
        smallest fraction on a grid that flips (the score need not be monotone along the
        change), then a search of the bracket between it and the largest smaller grid fraction
        that does not, cut in SPLIT parts per batch (fewer calls than a bisection, which matters
        through an HTTP endpoint), down to tolerance · max_cost (or one integer step). On a
        tree model the decision changes at a split threshold, so the search ends there."""
        space = self.space
        feature = space.features[i]
        if feature.kind == "categorical" or space.part(i, original[i], row[i]) == 0:
            return row
        full = float(row[i]) - float(original[i])
        low_t, high_t = 0.0, 1.0  # the change at high_t flips; at low_t it does not
        cut = self._cut(original, row, i, full, low_t, high_t, SHRINK_STEPS)
        if cut is not None:
            row, low_t, high_t = cut
        scale = feature.cost * abs(full)
        step = tolerance * self.max_cost / scale if scale > 0 else 1.0
        while high_t - low_t > step and self.used < self.cap:
            cut = self._cut(original, row, i, full, low_t, high_t, SPLIT)
            if cut is None:
                break  # one integer step apart
            row, low_t, high_t = cut
        return row

    def _cut(
        self,
        original: list[Any],
        row: list[Any],
        i: int,
        full: float,
        low_t: float,
        high_t: float,
        parts: int,
    ) -> tuple[list[Any], float, float] | None:
        """One batch of `_shrink`: the bracket (low_t, high_t) cut in `parts`, the points sent
        together; the row at the smallest flipping fraction (kept) and the narrowed bracket,
        or None when no point lies strictly inside it."""
        points: dict[float, list[Any]] = {}
        for k in range(1, parts):
            made = self._at(original, row, i, full, low_t + (high_t - low_t) * k / parts)
            if made is not None and low_t < made[1] < high_t:
                points.setdefault(made[1], made[0])
        if not points:
            return None
        sent = self._flips(list(points.values()))
        fraction = {id(trial): t for t, trial in points.items()}
        hits = [fraction[id(trial)] for trial, ok in sent if ok]
        if hits:
            high_t = min(hits)
            row = points[high_t]
            self._keep(original, row)
        misses = [fraction[id(trial)] for trial, ok in sent if not ok]
        return row, max([t for t in misses if t < high_t], default=low_t), high_t

    def _compensations(
        self, original: list[Any], base: list[Any], skip: int, room: float
    ) -> list[list[Any]]:
        """Single moves of one feature other than `skip` from `base`, each adding less than
        `room` to its cost: numeric changes grown (or started) on TRADE_GRID, categories
        switched."""
        space = self.space
        moves: list[tuple[int, Any]] = []
        seen: set[tuple[int, Any]] = set()
        for j in space.mutable:
            if j == skip or _is_missing(original[j]):
                continue
            feature = space.features[j]
            if feature.kind == "categorical":
                if str(base[j]) != str(original[j]) or feature.cost >= room:
                    continue
                values: list[Any] = space.categories(j, original[j])
            else:
                origin, now = float(original[j]), float(base[j])
                signs = [1.0 if now > origin else -1.0] if now != origin else [1.0, -1.0]
                values = []
                for sign in signs:
                    for share in TRADE_GRID:
                        delta = now - origin + sign * share * room / feature.cost
                        value = space.numeric_value(j, origin, delta)
                        if value is not None:
                            values.append(space.cast(j, value))
            base_part = space.part(j, original[j], base[j])
            for value in values:
                if (j, value) in seen or value == base[j]:
                    continue
                seen.add((j, value))
                if space.part(j, original[j], value) - base_part < room:
                    moves.append((j, value))
        return _apply(base, self._sample(moves))

    def _trade(self, original: list[Any], row: list[Any]) -> list[Any]:
        """Coordinate descent on the cost: drop one changed feature (or halve its change) and
        make up for it with the smallest move of one other feature, taken when the total cost
        falls; the changed features are then shrunk again. The cost never rises."""
        space = self.space
        for _ in range(TRADE_ROUNDS):
            cost = self._cost(original, row)
            better: list[Any] | None = None
            for i in self._changed(original, row):
                bases = []
                dropped = list(row)
                dropped[i] = original[i]
                bases.append(dropped)
                if space.features[i].kind != "categorical":
                    full = float(row[i]) - float(original[i])
                    half = self._at(original, row, i, full, 0.5)
                    if half is not None and 0 < half[1] < 1:
                        bases.append(half[0])
                for base in bases:
                    room = cost - self._cost(original, base) - TOLERANCE * self.max_cost
                    if room <= 0 or self.used >= self.cap:
                        continue
                    trials = [base, *self._compensations(original, base, i, room)]
                    hits = [trial for trial, ok in self._flips(trials) if ok]
                    if not hits:
                        continue
                    found = min(hits, key=lambda r: self._cost(original, r))
                    self._keep(original, found)
                    for j in self._changed(original, found):
                        found = self._shrink(original, found, j)
                    if self._cost(original, found) < cost - EPS:
                        better = found
                        break
                if better is not None:
                    break
            if better is None:
                return row
            row = better
        return row

    def _polish(self, original: list[Any], row: list[Any]) -> None:
        """A first flip made as cheap as the search can: whole changes reverted, each numeric
        change shrunk to the boundary, then traded between features."""
        self._keep(original, row)
        row = self._revert(original, row)
        for i in self._changed(original, row):
            row = self._shrink(original, row, i)
        self._trade(original, row)

    def _outcome(self, start: list[Any], score: float | None) -> Outcome:
        """The best flip seen, its changes first brought to the boundary (FINE) while the row's
        budget lasts."""
        try:
            if self._best is not None:
                row = self._best
                for i in self._changed(start, row):
                    row = self._shrink(start, row, i, FINE)
        except QueryBudgetExceeded:
            pass  # the best flip seen so far stands
        best = self._best
        if best is None or not self.space.changed(start, best):
            return Outcome(None, self.used, self.refused)
        flip = Flip(tuple(start), tuple(best), self._cost(start, best), score, None)
        return Outcome(flip, self.used, self.refused)

    def search(self, original: Sequence[Any], score: float | None) -> Outcome:
        """The cheapest flip found for one declined row within its query budget."""
        self.used = 0
        self.refused = 0
        self._best, self._best_cost = None, math.inf
        start = list(original)
        self._original = start
        try:
            starts: list[list[Any]] = []
            if score is not None and self.fav_index is not None:
                starts = self._greedy(start, score)
            if not starts:
                starts = self._random(start)
            for hit in sorted(starts, key=lambda r: self._cost(start, r)):
                self._polish(start, hit)
        except QueryBudgetExceeded:
            pass  # the best flip seen so far stands
        return self._outcome(start, score)

    def polish(self, original: Sequence[Any], changed: Sequence[Any]) -> Outcome:
        """A flip found elsewhere (another tool's, a reviewer's) made as cheap as the search
        can within the row's query budget. No flip when `changed` is not a valid change of
        `original` under the spec, costs more than max_cost, or does not get the favourable
        decision."""
        from bastion.probe.spec import validate_change

        self.used = 0
        self.refused = 0
        self._best, self._best_cost = None, math.inf
        start, row = list(original), list(changed)
        self._original = start
        if (
            len(row) != len(start)
            or not self.space.changed(start, row)
            or validate_change(self.space.spec, start, row)
            or self._cost(start, row) > self.max_cost + EPS
        ):
            return Outcome(None, 0)
        try:
            if self._flips([row])[0][1]:
                self._polish(start, row)
        except QueryBudgetExceeded:
            pass
        return self._outcome(start, None)
