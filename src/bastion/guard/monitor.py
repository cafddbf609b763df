"""Security monitoring of live queries: model extraction and probing per API key, and drift.

`QueryMonitor.observe(key_id, rows, scores)` sees every row a key sends (the model's numeric
feature matrix, one row per query) and the scores the model returned, and answers with the
`Alert`s that this batch raised. Per key, in bounded memory:

- **extraction (PRADA)** — Juuti et al., "PRADA: Protecting against DNN Model Stealing
  Attacks" (EuroS&P 2019). For each query, the distance to the nearest earlier query of the
  same key and predicted class (features standardised by the training profile) joins the key's
  distance sample; the growing set keeps only queries farther than the set's mean minus one
  standard deviation of its own distances, as in the paper. Natural queries give distances
  that look normally distributed; synthetic ones (perturbations of seeds, recombinations, line
  searches) do not. The Shapiro–Wilk statistic W of the latest `distance_window` distances is
  tested every `check_every` queries once `min_distances` are in; W < `prada_delta` alerts.
  An exact repeat of an earlier query carries no new information to an extractor (and honest
  clients retry): it is left out of the sample.
- **boundary-hugging** — the share of the key's recent answers within `boundary_margin` of the
  decision threshold (or, for several classes, a top-two margin under twice that), against
  the share the training data has there: a one-sided binomial test, alerting at p <
  `boundary_alpha` when the share is also at least `boundary_ratio` times the training share.
  Decision-boundary attacks (line searches between two classes) live there.
- **sweeps** — the share of queries that differ from the key's previous query in exactly one
  feature: a feature swept while the others stay fixed (sensitivity probing, counterfactual
  search). Real applicants differ from the one before in many features at once.
- **off-distribution** — the key's recent queries, binned like the training profile, against
  it (the largest per-feature PSI): uniformly random queries, which PRADA's distances do not
  necessarily expose, are far from the data in every feature.

Across all keys, sliding windows of the last `drift_window` rows and scores are compared with
the training profile: **drift** (PSI per feature, `bastion.datacheck.drift.psi`) and
**prediction shift** (PSI of the score distribution, and the positive rate).

An alert for a (key, kind) is not repeated before `realert_after` more queries of that key;
at most `max_keys` keys are tracked (least recently seen dropped first), each holding at most
`max_stored` queries of `float32` features, so memory stays under max_keys x (max_stored x
features x 4 + windows) bytes."""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.errors import ConfigError, InputError
from bastion.findings import Confidence, Severity, Stage
from bastion.records import Checked, Record, RecordError
from bastion.rules import Rule

if TYPE_CHECKING:
    import numpy

__all__ = ["RULES", "Alert", "MonitorSettings", "QueryMonitor", "TrainingProfile", "rule_for_alert"]

_REVIEW = (
    "Look at the key's traffic in the audit log (`bastion audit export --since ...`) and who "
    "holds the key (`bastion guard keys list`). If it is not a known batch client, revoke or "
    "rotate the key and lower its daily budget; answer with labels only or rounded scores "
    "(output hardening) so that what leaks per query is less."
)
EXTRACTION = Rule(
    id="GRD101",
    title="A key's queries look like model extraction (PRADA)",
    severity=Severity.HIGH,
    confidence=Confidence.MEDIUM,
    stage=Stage.MONITORING,
    profile="runtime-extraction",
    description="The distances between a key's successive queries (each to the nearest earlier "
    "query of the same predicted class) stopped following a normal distribution: the "
    "Shapiro-Wilk statistic fell below the threshold (PRADA, Juuti et al. 2019). Natural "
    "traffic spreads like the data; synthetic queries built to copy a model (perturbations of "
    "a few seeds, augmentation along the model's gradient, line searches) cluster. Whoever "
    "sends them is building a substitute model through the inference API (ATLAS "
    "AML.T0024.002).",
    remediation=_REVIEW,
)
RECOMBINATION = Rule(
    id="GRD102",
    title="A key recombines real records into queries",
    severity=Severity.HIGH,
    confidence=Confidence.MEDIUM,
    stage=Stage.MONITORING,
    profile="runtime-extraction",
    description="Many of a key's distinct queries repeat, exactly, the values of the training "
    "data's highest-cardinality features (amounts, ages, durations) from an earlier query of "
    "the same key while differing elsewhere, far more often than distinct training rows do "
    "(binomial test). That is how a pool of real records is stretched into a larger query set "
    "to copy a model: each pool row reused with some features swapped.",
    remediation=_REVIEW,
)
BOUNDARY = Rule(
    id="GRD103",
    title="A key probes the decision boundary",
    severity=Severity.MEDIUM,
    confidence=Confidence.MEDIUM,
    stage=Stage.MONITORING,
    profile="runtime-probing",
    description="A far larger share of a key's answers than of the training data's lies within "
    "the margin of the decision threshold (binomial test). Line searches between two classes "
    "and evasion searches (the smallest change that flips a decision) live there: the key is "
    "tracing the decision boundary, to copy it or to find the cheapest way across it.",
    remediation=_REVIEW,
)
SWEEP = Rule(
    id="GRD104",
    title="A key sweeps one feature at a time",
    severity=Severity.MEDIUM,
    confidence=Confidence.MEDIUM,
    stage=Stage.MONITORING,
    profile="runtime-probing",
    description="Many of a key's queries differ from the one before in exactly one feature: a "
    "feature is varied while the others stay fixed. That is sensitivity probing (how much does "
    "income move the score?) and counterfactual search, not applicants: consecutive real "
    "records differ in many features at once.",
    remediation=_REVIEW,
)
OFF_DISTRIBUTION = Rule(
    id="GRD105",
    title="A key's queries are far from the training data",
    severity=Severity.MEDIUM,
    confidence=Confidence.MEDIUM,
    stage=Stage.MONITORING,
    profile="runtime-extraction",
    description="The distribution of a key's recent queries, feature by feature, is far from "
    "the training data's (population stability index over the training deciles). Uniformly "
    "random queries, the cheapest extraction strategy, look like this; so does a client "
    "sending data of another population (then it is a contract problem, not an attack).",
    remediation=_REVIEW,
)
DRIFT = Rule(
    id="GRD110",
    title="Live inputs drifted from the training data",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.MONITORING,
    profile="runtime-drift",
    description="Over a sliding window of all traffic, features moved away from their training "
    "distribution (population stability index at or above the threshold). The model is being "
    "used on data it was not trained for: its accuracy and the guard's OOD and extraction "
    "thresholds no longer hold, and a shift can be an attacker's doing as well as the world's.",
    remediation="Compare recent inputs with the training data (`bastion data check` on an "
    "export of recent rows, drift rules DRF001-DRF004); retrain or re-profile when the change "
    "is legitimate, investigate the sources when it is not.",
)
PREDICTION_SHIFT = Rule(
    id="GRD111",
    title="The model's answers shifted",
    severity=Severity.MEDIUM,
    confidence=Confidence.HIGH,
    stage=Stage.MONITORING,
    profile="runtime-drift",
    description="Over a sliding window of all traffic, the distribution of the model's scores "
    "(and its positive rate) moved away from its scores on the training data. Either the inputs "
    "changed, or the model served is not the one profiled.",
    remediation="Check which model digest the audit events name; compare the positive rate with "
    "the business's expectation; re-profile after a legitimate change.",
)
RULES: tuple[Rule, ...] = (
    EXTRACTION,
    RECOMBINATION,
    BOUNDARY,
    SWEEP,
    OFF_DISTRIBUTION,
    DRIFT,
    PREDICTION_SHIFT,
)
_BY_KIND = {
    "extraction": EXTRACTION,
    "recombination": RECOMBINATION,
    "boundary-hugging": BOUNDARY,
    "sweep": SWEEP,
    "off-distribution": OFF_DISTRIBUTION,
    "drift": DRIFT,
    "prediction-shift": PREDICTION_SHIFT,
}


def rule_for_alert(kind: str) -> Rule | None:
    """The rule an alert of this kind is a finding of (None for a kind this bastion does not
    know, e.g. from a newer guard)."""
    return _BY_KIND.get(kind)


KINDS = (
    "extraction",
    "recombination",
    "boundary-hugging",
    "sweep",
    "off-distribution",
    "drift",
    "prediction-shift",
)
ALL_KEYS = "*"  # the key_id of alerts about all traffic (drift, prediction shift)
PROFILE_BINS = 10
MAX_PROFILE_BYTES = 4 * 1024 * 1024
MAX_FEATURES = 4096
MAX_JOINT_BINS = 400  # bins of all features past which the profile keeps no joint counts


class Alert(Record):
    """One detection: what (`kind`), whose traffic (`key_id`, ALL_KEYS for drift), the
    statistic and the threshold it crossed, and a message for people (no feature values)."""

    kind: str
    key_id: str
    score: float
    threshold: float
    message: str
    queries: int = 0  # the key's (or the window's) query count when it fired
    feature: str | None = None


class MonitorSettings(Checked):
    """Thresholds and bounds ([monitor] in guard.toml). Defaults were tuned on German Credit
    (docs/benchmarks.md): no false alert in 10,000 replayed benign queries, every synthetic
    extraction attack flagged within 2,000 queries."""

    max_keys: int = 1024
    max_stored: int = 512
    distance_window: int = 1000
    min_distances: int = 100
    prada_delta: float = 0.92
    prada_margin: float = 0.03
    check_every: int = 20
    boundary_margin: float = 0.05
    boundary_window: int = 200
    boundary_min: int = 50
    boundary_alpha: float = 1e-6
    boundary_ratio: float = 2.0
    sweep_window: int = 200
    sweep_min: int = 50
    sweep_share: float = 0.25
    repeat_window: int = 500
    repeat_min: int = 100
    repeat_alpha: float = 1e-6
    repeat_ratio: float = 3.0
    offdist_window: int = 200
    offdist_psi: float = 1.0
    drift_window: int = 1000
    drift_every: int = 250
    drift_psi: float = 0.25
    prediction_psi: float = 0.25
    threshold: float = 0.5
    realert_after: int = 1000

    def _validate(self) -> None:
        for name in (
            "max_keys",
            "max_stored",
            "distance_window",
            "check_every",
            "boundary_window",
            "sweep_window",
            "offdist_window",
            "repeat_window",
            "drift_window",
            "drift_every",
            "realert_after",
        ):
            if getattr(self, name) < 1:
                raise RecordError(name, "must be at least 1")
        if not 3 <= self.min_distances <= self.distance_window <= 5000:
            raise RecordError("distance_window", "3 <= min_distances <= distance_window <= 5000")
        for name in ("prada_delta", "boundary_alpha", "repeat_alpha", "sweep_share", "threshold"):
            if not 0 < getattr(self, name) < 1:
                raise RecordError(name, "must be between 0 and 1")
        for name in ("boundary_margin", "offdist_psi", "drift_psi", "prediction_psi"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise RecordError(name, "must be a positive number")
        for name in ("boundary_ratio", "repeat_ratio"):
            if getattr(self, name) < 1:
                raise RecordError(name, "must be at least 1")


class FeatureBins(Record):
    """A feature's training distribution: inner bin edges (deciles) and the count per bin."""

    name: str
    edges: tuple[float, ...]
    counts: tuple[float, ...]


class TrainingProfile(Record):
    """What the monitor knows of the training data: per-feature centre and scale (for
    distances), bins (for PSI), and the distribution of the model's scores on it."""

    features: tuple[str, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    bins: tuple[FeatureBins, ...]
    rows: int
    score_edges: tuple[float, ...] = ()
    score_counts: tuple[float, ...] = ()
    positive_rate: float | None = None
    near_boundary: float | None = None  # share of training scores near the threshold
    threshold: float = 0.5
    margin: float = 0.05
    repeat_features: tuple[int, ...] = ()  # the high-cardinality features partial repeats use
    repeat_rate: float = 0.0  # share of distinct training rows that are partial repeats
    natural_w: float | None = None  # the lowest Shapiro-Wilk W of training rows replayed
    # what the training data looks like within one slice of a feature, for traffic ordered by
    # it (see `_ordered`): the joint bin counts of every pair of features (flat, B x B over
    # the B bins of all features, in `bins` order), and per bin the counts of the score bins
    # (B x score bins) and of the scores near the boundary (B); empty past MAX_JOINT_BINS
    joint: tuple[float, ...] = ()
    score_joint: tuple[float, ...] = ()
    near_joint: tuple[float, ...] = ()

    @classmethod
    def fit(
        cls,
        rows: numpy.ndarray,
        scores: numpy.ndarray | None = None,
        *,
        features: Sequence[str] | None = None,
        threshold: float = 0.5,
        margin: float = 0.05,
    ) -> TrainingProfile:
        import numpy as np

        x = _matrix(rows)
        if x.shape[0] < 20:
            raise InputError("a training profile needs at least 20 rows")
        names = tuple(str(f) for f in (features if features is not None else range(x.shape[1])))
        if features is None:
            names = tuple(f"x{n}" for n in names)
        if len(names) != x.shape[1]:
            raise InputError(f"{len(names)} feature names for {x.shape[1]} columns")
        center = np.nanmedian(x, axis=0)
        scale = np.nanstd(x, axis=0)
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        bins = []
        for j, name in enumerate(names):
            column = x[:, j][np.isfinite(x[:, j])]
            edges = _edges(column)
            bins.append(
                FeatureBins(
                    name=name,
                    edges=tuple(float(e) for e in edges),
                    counts=tuple(float(c) for c in _counts(column, edges)),
                )
            )
        extra: dict[str, Any] = {}
        if scores is not None:
            s = _scores(scores, x.shape[0])
            margins = _boundary_distance(s, threshold)
            top = s if s.ndim == 1 else s.max(axis=1)
            edges = _edges(top)
            extra = {
                "score_edges": tuple(float(e) for e in edges),
                "score_counts": tuple(float(c) for c in _counts(top, edges)),
                "positive_rate": float(np.mean(s >= threshold)) if s.ndim == 1 else None,
                "near_boundary": float(np.mean(margins < margin)),
            }
        if sum(len(b.counts) for b in bins) <= MAX_JOINT_BINS:
            binned = _Window(1, [np.asarray(b.edges, dtype=np.float64) for b in bins])
            scored = None
            if scores is not None:
                where = np.searchsorted(edges, top, side="right")
                scored = (where, len(edges) + 1, margins < margin)
            extra |= _slice_counts(x, binned, scored)
        repeat_features = _repeat_features(x)
        extra["repeat_features"] = repeat_features
        extra["repeat_rate"] = _repeat_rate(x, repeat_features)
        z = ((x - center) / scale).astype(np.float32)
        z = np.nan_to_num(z, nan=0.0, posinf=1e6, neginf=-1e6)
        labels = None if scores is None else _labels(_scores(scores, x.shape[0]), threshold)
        extra["natural_w"] = _natural_w(z, labels, MonitorSettings())
        return cls(
            features=names,
            center=tuple(float(c) for c in center),
            scale=tuple(float(s) for s in scale),
            bins=tuple(bins),
            rows=int(x.shape[0]),
            threshold=threshold,
            margin=margin,
            **extra,
        )

    def save(self, path: Path) -> None:
        path.write_text(self.model_dump_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> TrainingProfile:
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_PROFILE_BYTES + 1)
        except OSError as exc:
            raise InputError(f"cannot read the profile {path}: {exc.strerror}") from None
        if len(data) > MAX_PROFILE_BYTES:
            raise ConfigError(f"the profile {path} is larger than {MAX_PROFILE_BYTES} bytes")
        try:
            profile = cls.model_validate_json(data)
        except RecordError as exc:
            raise ConfigError(f"{path} is not a monitoring profile: {exc}") from None
        profile.check()
        return profile

    def check(self) -> None:
        """Refuse a profile whose parts disagree (a hand-edited or hostile file)."""
        n = len(self.features)
        if not 0 < n <= MAX_FEATURES:
            raise ConfigError(f"a profile has 1 to {MAX_FEATURES} features, not {n}")
        if not (len(self.center) == len(self.scale) == len(self.bins) == n):
            raise ConfigError("the profile's centre, scale and bins do not match its features")
        numbers = [*self.center, *self.scale, *self.score_edges, *self.score_counts]
        for item in self.bins:
            if len(item.counts) != len(item.edges) + 1 or len(item.edges) > 64:
                raise ConfigError(f"the bins of {item.name!r} are malformed")
            if list(item.edges) != sorted(item.edges):
                raise ConfigError(f"the bin edges of {item.name!r} are not sorted")
            numbers += [*item.edges, *item.counts]
        if not all(math.isfinite(v) for v in numbers) or min(self.scale) <= 0:
            raise ConfigError("the profile holds non-finite numbers or a zero scale")
        if self.score_edges and len(self.score_counts) != len(self.score_edges) + 1:
            raise ConfigError("the profile's score bins are malformed")
        if not all(0 <= j < n for j in self.repeat_features) or len(self.repeat_features) > 8:
            raise ConfigError("the profile's repeat features are malformed")
        if not 0 <= self.repeat_rate <= 1:
            raise ConfigError("the profile's repeat rate is not a share")
        total = sum(len(item.counts) for item in self.bins)
        if self.joint and (total > MAX_JOINT_BINS or len(self.joint) != total * total):
            raise ConfigError("the profile's joint bin counts are malformed")
        if (self.score_joint or self.near_joint) and not self.joint:
            raise ConfigError("the profile's slice counts come without joint bin counts")
        if self.score_joint and len(self.score_joint) != total * len(self.score_counts):
            raise ConfigError("the profile's score counts per bin are malformed")
        if self.near_joint and len(self.near_joint) != total:
            raise ConfigError("the profile's boundary counts per bin are malformed")
        for part in (self.joint, self.score_joint, self.near_joint):
            if not all(math.isfinite(v) and v >= 0 for v in part):
                raise ConfigError("the profile's slice counts hold negative or non-finite numbers")


def _slice_counts(
    x: numpy.ndarray,
    binned: _Window,
    scored: tuple[numpy.ndarray, int, numpy.ndarray] | None,
    chunk: int = 8192,
) -> dict[str, tuple[float, ...]]:
    """The profile's joint counts (see TrainingProfile.joint), in chunks of rows so that the
    one-hot bins of a large training set are never held at once. `scored` is each row's score
    bin, the number of score bins and whether the row is near the boundary."""
    import numpy as np

    total = len(binned.counts)
    joint = np.zeros((total, total))
    score_joint = np.zeros((total, scored[1])) if scored is not None else None
    near_joint = np.zeros(total)
    for start in range(0, x.shape[0], chunk):
        flat = binned.bins_of(x[start : start + chunk])
        onehot = np.zeros((flat.shape[0], total))
        np.put_along_axis(onehot, flat, 1.0, axis=1)
        joint += onehot.T @ onehot
        if scored is not None and score_joint is not None:
            score_bins, width, near = scored
            rows = np.arange(flat.shape[0])
            score_onehot = np.zeros((flat.shape[0], width))
            score_onehot[rows, score_bins[start : start + chunk]] = 1.0
            score_joint += onehot.T @ score_onehot
            near_joint += onehot.T @ near[start : start + chunk].astype(np.float64)
    out = {"joint": tuple(float(v) for v in joint.ravel())}
    if score_joint is not None:
        out["score_joint"] = tuple(float(v) for v in score_joint.ravel())
        out["near_joint"] = tuple(float(v) for v in near_joint)
    return out


REPEAT_FEATURES = 3
REPEAT_MIN_DISTINCT = 20


def _repeat_features(x: numpy.ndarray) -> tuple[int, ...]:
    """The (up to three) features with the most distinct values, if they have at least
    REPEAT_MIN_DISTINCT: amounts, ages, durations — what real applicants rarely share."""
    import numpy as np

    distinct = [len(np.unique(x[:, j][np.isfinite(x[:, j])])) for j in range(x.shape[1])]
    ranked = sorted(range(x.shape[1]), key=lambda j: (-distinct[j], j))
    return tuple(int(j) for j in ranked[:REPEAT_FEATURES] if distinct[j] >= REPEAT_MIN_DISTINCT)


def _signature(features: Sequence[int]) -> Any:
    """A function of a row's values (a list) giving the exact values of the repeat features,
    together (a tuple)."""
    import operator

    if not features:
        return lambda values: ()
    if len(features) == 1:
        (j,) = features
        return lambda values: (values[j],)
    return operator.itemgetter(*features)


def _repeat_rate(x: numpy.ndarray, features: tuple[int, ...], window: int = 512) -> float:
    """The share of distinct rows, in a shuffled pass over the training data, that share the
    exact values of all repeat features with one of the `window` rows before them."""
    import numpy as np

    if len(features) < 2:
        return 0.0
    order = np.random.default_rng(0).permutation(x.shape[0])
    tracker = _Repeats(window, features)
    flags = [f for f in (tracker.step(x[i]) for i in order) if f is not None]
    return float(np.mean(flags)) if flags else 0.0


class _Repeats:
    """Exact rows and repeat-feature values of the last `window` queries: whether a query is
    an exact repeat (None), a partial repeat (True: it has every repeat feature's value of an
    earlier query, and differs elsewhere) or new (False)."""

    def __init__(self, window: int, features: Sequence[int]) -> None:
        self.window = window
        self.signature = _signature(features)
        self.order: collections.deque[tuple[bytes, tuple[float, ...]]] = collections.deque()
        # counts, each above zero (a key is deleted when its count falls to zero); an exact
        # repeat is never stored, so every stored row is there once
        self.rows: set[bytes] = set()
        self.signatures: dict[tuple[float, ...], int] = {}

    def step(self, row: numpy.ndarray) -> bool | None:
        """`row`: one float64 row."""
        exact = row.tobytes()  # C order whatever the row's strides: the row's exact values
        rows = self.rows
        if exact in rows:
            return None
        signatures = self.signatures
        signature = self.signature(row.tolist())
        partial = signature in signatures
        self.order.append((exact, signature))
        rows.add(exact)
        signatures[signature] = signatures.get(signature, 0) + 1
        if len(self.order) > self.window:
            old, old_signature = self.order.popleft()
            rows.discard(old)
            left = signatures[old_signature] - 1
            if left:
                signatures[old_signature] = left
            else:
                del signatures[old_signature]
        return partial


def _matrix(rows: Any) -> numpy.ndarray:
    import numpy as np

    x = np.asarray(rows, dtype=np.float64)
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2:
        raise InputError(f"rows must be a 2-D array, not {x.ndim}-D")
    return x


def _scores(scores: Any, n: int) -> numpy.ndarray:
    import numpy as np

    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim == 2 and s.shape[1] == 2:  # binary probabilities: the positive class
        s = s[:, 1]
    if s.shape[0] != n or s.ndim not in (1, 2):
        raise InputError(f"{s.shape[0]} scores for {n} rows")
    return s


def _labels(s: numpy.ndarray, threshold: float) -> numpy.ndarray:
    import numpy as np

    labels = (s >= threshold) if s.ndim == 1 else np.argmax(s, axis=1)
    return np.asarray(labels, dtype=np.int64)


NATURAL_ROWS = 2000
NATURAL_PASSES = 3


def _natural_w(
    z: numpy.ndarray, labels: numpy.ndarray | None, settings: MonitorSettings
) -> float | None:
    """The lowest Shapiro-Wilk W that PRADA's distance sample reaches when training rows are
    replayed as one key's queries (a few shuffled passes, checked as the monitor checks): the
    data's own departure from normality, which an alert threshold must stay below."""
    import numpy as np

    rng = np.random.default_rng(0)
    lowest: float | None = None
    for _ in range(NATURAL_PASSES):
        order = rng.permutation(z.shape[0])[:NATURAL_ROWS]
        groups: dict[int, _Group] = {}
        distances: collections.deque[float] = collections.deque(maxlen=settings.distance_window)
        since = 0
        for i in order:
            label = 0 if labels is None else int(labels[i])
            group = groups.setdefault(label, _Group(z.shape[1], settings.max_stored))
            distance = group.nearest(z[i])
            if distance == 0.0:
                continue
            if distance is not None:
                distances.append(distance)
                since += 1
            group.add(z[i], distance)
            if len(distances) >= settings.min_distances and since >= settings.check_every:
                since = 0
                w = _shapiro(np.fromiter(distances, dtype=np.float64))
                lowest = w if lowest is None else min(lowest, w)
    return lowest


def _boundary_distance(s: numpy.ndarray, threshold: float) -> numpy.ndarray:
    """How far each answer is from a decision: |score - threshold| for one score, half the gap
    between the two best classes for several."""
    import numpy as np

    if s.ndim == 1:
        return np.asarray(np.abs(s - threshold))
    top = np.sort(s, axis=1)
    return np.asarray((top[:, -1] - top[:, -2]) / 2)


def _edges(values: numpy.ndarray) -> numpy.ndarray:
    import numpy as np

    if len(values) == 0:
        return np.array([])
    return np.unique(np.quantile(values, np.linspace(0, 1, PROFILE_BINS + 1)[1:-1]))


def _counts(values: numpy.ndarray, edges: numpy.ndarray) -> numpy.ndarray:
    import numpy as np

    # a value equal to an edge falls in the upper bin, as in datacheck.drift
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)


class _Window:
    """Bin counts of the last `size` values of several features. A row added is only stored:
    the bins of the rows added since the counts were last read are found when they are read
    (once per check, not per row), all at once (edges padded with +inf), and the counts are
    one flat array, recounted from the bins of the rows in the window."""

    def __init__(self, size: int, edges: Sequence[numpy.ndarray]) -> None:
        import numpy as np

        width = max((len(e) for e in edges), default=0)
        self.size = size
        self.padded = np.full((len(edges), max(width, 1)), np.inf)
        for j, e in enumerate(edges):
            self.padded[j, : len(e)] = e
        sizes = [len(e) + 1 for e in edges]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.bounds = [(int(o), int(o) + n) for o, n in zip(self.offsets, sizes, strict=True)]
        self._counts = np.zeros(int(sum(sizes)), dtype=np.int64)
        self.values = np.zeros((size, len(edges)), dtype=np.float64)  # the rows, as sent
        self.ring = np.zeros((size, len(edges)), dtype=np.int64)  # their bins, once counted
        self.filled = 0
        self.position = 0
        self.seen = 0
        self.counted = 0  # `seen` when the bins and counts were last brought up to date

    def bins_of(self, x: numpy.ndarray) -> numpy.ndarray:
        """Each value's bin, as an index into the flat `counts` (one column per feature)."""
        import numpy as np

        # NaN compares false everywhere: it lands in the lowest bin, as a missing value would
        flat = (x[:, :, None] >= self.padded[None]).sum(axis=2) + self.offsets
        return np.asarray(flat, dtype=np.int64)

    @property
    def counts(self) -> numpy.ndarray:
        """The count of each bin (flat, one block per feature) over the rows in the window."""
        self._count()
        return self._counts

    def _count(self) -> None:
        import numpy as np

        new = self.seen - self.counted
        if not new:
            return
        if new >= self.filled:
            where: Any = slice(0, self.filled)
        else:  # the positions of the last `new` rows, in the ring
            where = np.arange(self.position - new, self.position) % self.size
        self.ring[where] = self.bins_of(self.values[where])
        self._counts = np.bincount(self.ring[: self.filled].ravel(), minlength=len(self._counts))
        self.counted = self.seen

    def recent(self) -> numpy.ndarray:
        """The flat bins of the rows in the window, oldest first."""
        import numpy as np

        self._count()
        if self.filled < self.size:
            return self.ring[: self.filled]
        return np.concatenate([self.ring[self.position :], self.ring[: self.position]])

    def add(self, x: numpy.ndarray) -> None:
        for row in x:
            if self.filled < self.size:
                self.filled += 1
            self.values[self.position] = row
            self.position = (self.position + 1) % self.size
            self.seen += 1

    def proportions(self, expected: Sequence[Sequence[float]]) -> numpy.ndarray:
        """Expected bin counts as the floored proportions `psi` compares with, flat like
        `counts` (computed once per profile, not per check)."""
        import numpy as np

        from bastion.datacheck.drift import PSI_FLOOR

        parts = [np.asarray(e, dtype=np.float64) for e in expected]
        return np.concatenate([np.maximum(e / max(e.sum(), 1), PSI_FLOOR) for e in parts])

    def psi(self, expected: Sequence[Sequence[float]] | numpy.ndarray) -> list[float]:
        """The PSI of each feature (as `datacheck.drift.psi` defines it) against expected
        counts or their `proportions`, all features in one pass: every feature's bins hold
        one count per row in the window, so they share one total."""
        import numpy as np

        from bastion.datacheck.drift import PSI_FLOOR

        p = expected if isinstance(expected, np.ndarray) else self.proportions(expected)
        q = np.maximum(self.counts / max(self.filled, 1), PSI_FLOOR)
        return [float(v) for v in np.add.reduceat((q - p) * np.log(q / p), self.offsets)]


# Ordered traffic. A batch client that sends its rows sorted by a column (or grouped: one
# branch, then the next) is legitimate, but a window of its queries is a slice of the data, not
# a sample of it: every comparison with the training data's distribution (off-distribution,
# boundary share, drift, score shift) would fire. A feature is *ordered* in a window when
# consecutive rows move between its bins almost always in one direction (at least
# ORDER_MIN_MOVES moves, at most 1/ORDER_RATIO of them against the others), or when they
# change bins ORDER_RATIO times less often than independent rows would (runs: sorted within
# a bin, grouped, or constant) while independent rows would change at least ORDER_MIN_MOVES
# times. Then the window is compared with the training rows *of the same slice*: each
# feature's expected bins are those of the training rows in the window's bins of the most
# shifted ordered feature, weighted like the window (joint counts kept in the profile), and
# the ordered features themselves are left out. Uniformly random queries sorted by one
# feature still differ from the data's slice in every other feature.
ORDER_MIN_ROWS = 40
ORDER_MIN_MOVES = 10
ORDER_RATIO = 20


class _Slices:
    """The training data's bins within each bin of each feature (from the profile's joint
    counts): P(bin of any feature | bin b), the score bins and the share near the boundary."""

    def __init__(self, profile: TrainingProfile, window: _Window) -> None:
        import numpy as np

        from bastion.datacheck.drift import PSI_FLOOR

        total = len(window.counts)
        joint = np.asarray(profile.joint, dtype=np.float64).reshape(total, total)
        count = np.diag(joint).copy()
        marginal = np.concatenate(
            [count[lo:hi] / max(count[lo:hi].sum(), 1) for lo, hi in window.bounds]
        )
        empty = count == 0
        safe = np.where(empty, 1.0, count)
        # a bin no training row fell in: its slice is the whole data
        self.given = np.where(empty[:, None], marginal[None], joint / safe[:, None])
        self.bounds = window.bounds
        self.offsets = window.offsets
        self.ends = np.asarray([hi - 1 for _, hi in window.bounds], dtype=np.int64)
        self.floor = PSI_FLOOR
        self.near: numpy.ndarray | None = None
        self.scores: numpy.ndarray | None = None
        if profile.near_joint:
            base = profile.near_boundary or 0.0
            near = np.asarray(profile.near_joint, dtype=np.float64)
            self.near = np.where(empty, base, near / safe)
        if profile.score_joint:
            width = len(profile.score_counts)
            scores = np.asarray(profile.score_joint, dtype=np.float64).reshape(total, width)
            overall = np.asarray(profile.score_counts) / max(sum(profile.score_counts), 1)
            self.scores = np.where(empty[:, None], overall[None], scores / safe[:, None])

    def of(
        self, window: _Window, marginal: list[float], change: numpy.ndarray, edge_runs: bool
    ) -> _Slice | None:
        """The slice the window's rows are ordered by, or None when they are not ordered.
        Unless `edge_runs`, a feature whose every value in the window is in its lowest or
        highest bin is not taken as ordered: for all traffic that is what a shift past the
        training range looks like, and drift must see it."""
        import numpy as np

        recent = window.recent()
        if len(recent) < ORDER_MIN_ROWS:
            return None
        steps = np.diff(recent, axis=0)
        up = np.count_nonzero(steps > 0, axis=0)
        down = np.count_nonzero(steps < 0, axis=0)
        moves = up + down
        independent = change * (len(recent) - 1)
        ordered = ((moves >= ORDER_MIN_MOVES) & (np.minimum(up, down) * ORDER_RATIO <= moves)) | (
            (independent >= ORDER_MIN_MOVES) & (moves * ORDER_RATIO <= independent)
        )
        if not edge_runs:
            first, last = recent[0], recent[-1]
            edge = (recent == first).all(axis=0) & ((first == self.offsets) | (last == self.ends))
            ordered &= ~edge
        if not ordered.any():
            return None
        feature = max(np.flatnonzero(ordered), key=lambda j: marginal[j])
        lo, hi = self.bounds[feature]
        weights = window.counts[lo:hi] / max(window.filled, 1)
        expected = np.maximum(weights @ self.given[lo:hi], self.floor)
        near = float(weights @ self.near[lo:hi]) if self.near is not None else None
        scores = (
            np.maximum(weights @ self.scores[lo:hi], self.floor)
            if self.scores is not None
            else None
        )
        return _Slice(int(feature), ordered, expected, near, scores)


class _Slice:
    """A window's ordering: the feature it is ordered by (the most shifted one), every ordered
    feature, and what the training rows of the same slice look like."""

    def __init__(
        self,
        feature: int,
        ordered: numpy.ndarray,
        expected: numpy.ndarray,
        near: float | None,
        scores: numpy.ndarray | None,
    ) -> None:
        import numpy as np

        self.feature = feature
        self.ordered = ordered
        self.weights = np.where(ordered, 0.0, 1.0).astype(np.float32)
        self.expected = expected
        self.near = near
        self.scores = scores

    def psi(self, window: _Window) -> list[float]:
        """The window's PSI per feature against the slice; 0 for the ordered features."""
        values = window.psi(self.expected)
        return [0.0 if self.ordered[j] else v for j, v in enumerate(values)]


class _Flags:
    """The last `size` yes/no flags, and how many of them are yes (kept as they come and go,
    not summed on every test)."""

    __slots__ = ("flags", "yes")

    def __init__(self, size: int) -> None:
        self.flags: collections.deque[bool] = collections.deque(maxlen=size)
        self.yes = 0

    def __len__(self) -> int:
        return len(self.flags)

    def append(self, flag: bool) -> None:
        flags = self.flags
        if len(flags) == flags.maxlen:
            self.yes -= flags[0]
        flags.append(flag)
        self.yes += flag


class _Ring:
    """The last `size` numbers, oldest first, as one contiguous float64 array without a copy:
    each is written twice, at its slot and `size` after it."""

    __slots__ = ("buffer", "filled", "position", "size")

    def __init__(self, size: int) -> None:
        import numpy as np

        self.buffer = np.zeros(2 * size, dtype=np.float64)
        self.size = size
        self.position = 0
        self.filled = 0

    def __len__(self) -> int:
        return self.filled

    def append(self, value: float) -> None:
        buffer, position = self.buffer, self.position
        buffer[position] = buffer[position + self.size] = value
        self.position = (position + 1) % self.size
        if self.filled < self.size:
            self.filled += 1

    def values(self) -> numpy.ndarray:
        start = (self.position - self.filled) % self.size
        return self.buffer[start : start + self.filled]


class _KeyState:
    def __init__(self, monitor: QueryMonitor) -> None:
        s = monitor.settings
        self.queries = 0
        self.groups: dict[int, _Group] = {}
        self.distances = _Ring(s.distance_window)
        self.since_check = 0
        self.previous: numpy.ndarray | None = None
        self.near = _Flags(s.boundary_window)
        self.sweeps = _Flags(s.sweep_window)
        self.window = _Window(s.offdist_window, monitor.edges)
        self.offdist_checked = 0
        self.boundary_checked = 0
        self.slice: _Slice | None = None  # set while the key's recent queries are ordered
        self.repeats = _Repeats(s.max_stored, monitor.profile.repeat_features)
        self.partial = _Flags(s.repeat_window)
        self.last_alert: dict[str, int] = {}


class _Group:
    """PRADA's growing set for one predicted class: stored queries (bounded) and the distances
    that admitted them."""

    def __init__(self, features: int, capacity: int) -> None:
        import numpy as np

        self.points = np.empty((capacity, features), dtype=np.float32)
        self.count = 0
        self.admitted: collections.deque[float] = collections.deque(maxlen=capacity)
        self.threshold = 0.0

    def nearest(self, x: numpy.ndarray, weights: numpy.ndarray | None = None) -> float | None:
        import numpy as np

        n = min(self.count, len(self.points))
        if n == 0:
            return None
        diff = self.points[:n] - x
        if weights is not None:
            diff *= weights
        return float(np.sqrt(np.einsum("ij,ij->i", diff, diff).min()))

    def add(self, x: numpy.ndarray, distance: float | None) -> None:
        import numpy as np

        if distance is not None:
            if distance <= self.threshold:
                return
            self.admitted.append(distance)
            spread = np.asarray(self.admitted)
            self.threshold = max(self.threshold, float(spread.mean() - spread.std()))
        self.points[self.count % len(self.points)] = x  # the oldest goes when full
        self.count += 1


class QueryMonitor:
    """Per-key extraction and probing detection plus global drift; thread-safe."""

    def __init__(self, profile: TrainingProfile, settings: MonitorSettings | None = None) -> None:
        import numpy as np

        profile.check()
        self.profile = profile
        self.settings = settings or MonitorSettings()
        self.center = np.asarray(profile.center, dtype=np.float64)
        self.scale = np.asarray(profile.scale, dtype=np.float64)
        self.edges = [np.asarray(b.edges, dtype=np.float64) for b in profile.bins]
        self.expected = [b.counts for b in profile.bins]
        self._keys: collections.OrderedDict[str, _KeyState] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._drift = _Window(self.settings.drift_window, self.edges)
        self._proportions = self._drift.proportions(self.expected)  # the PSI's expected side
        self._score_edges = np.asarray(profile.score_edges, dtype=np.float64)
        self._score_window = _Window(self.settings.drift_window, [self._score_edges])
        self._positives: collections.deque[bool] = collections.deque(
            maxlen=self.settings.drift_window
        )
        self._global_alert: dict[str, int] = {}
        self.dropped_keys = 0
        self._slices = _Slices(profile, self._drift) if profile.joint else None
        # per feature: the chance that two training rows fall in different bins
        self._change = np.array(
            [1.0 - float(np.sum((np.asarray(e) / max(sum(e), 1)) ** 2)) for e in self.expected]
        )
        self._global_slice: _Slice | None = None
        self._p_values: dict[tuple[int, int, float], float] = {}  # see `_binomial`

    @property
    def prada_threshold(self) -> float:
        """`prada_delta`, lowered for data whose natural distances are not normal (the
        training rows replayed scored `natural_w`) to `prada_margin` under that."""
        natural = self.profile.natural_w
        delta = self.settings.prada_delta
        return delta if natural is None else min(delta, natural - self.settings.prada_margin)

    @property
    def keys_tracked(self) -> int:
        return len(self._keys)

    def observe(
        self, key_id: str, rows: numpy.ndarray, scores: numpy.ndarray | None = None
    ) -> list[Alert]:
        x = _matrix(rows)
        if x.shape[1] != len(self.profile.features):
            raise InputError(
                f"rows have {x.shape[1]} features, the profile {len(self.profile.features)}"
            )
        s = _scores(scores, x.shape[0]) if scores is not None else None
        alerts: list[Alert] = []
        n = x.shape[0]
        with self._lock:
            state = self._state(key_id)
            z = self._standardise(x)
            classes, near = self._classes(s, n)
            repeats = bool(self.profile.repeat_features)
            fresh = []  # not an exact repeat of one of the key's recent queries
            for i in range(n):
                state.queries += 1
                if self._sweep_step(state, z[i]):  # a retry (the query before, again) is
                    self._prada_step(state, z[i], classes[i])  # no new distance either
                partial = state.repeats.step(x[i])
                if partial is None:  # a repeat (a retry, a row sent twice) is not a new sample
                    continue  # of the key's traffic: the windows count each row once
                fresh.append(i)
                if repeats:
                    state.partial.append(partial)
                if near is not None:
                    state.near.append(near[i])
            state.window.add(x if len(fresh) == n else x[fresh])
            alerts += self._key_alerts(key_id, state)
            alerts += self._global_alerts(x, s)
        return alerts

    # -- per key ------------------------------------------------------------------------------

    def _state(self, key_id: str) -> _KeyState:
        state = self._keys.get(key_id)
        if state is None:
            state = _KeyState(self)
            self._keys[key_id] = state
            while len(self._keys) > self.settings.max_keys:
                self._keys.popitem(last=False)
                self.dropped_keys += 1
        else:
            self._keys.move_to_end(key_id)
        return state

    def _standardise(self, x: numpy.ndarray) -> numpy.ndarray:
        import numpy as np

        z = (x - self.center) / self.scale
        # the sum is finite when every value is (rare: nan_to_num costs more than the check,
        # and it leaves finite values, whose sum overflowed, as they are)
        if not math.isfinite(np.add.reduce(z, axis=None)):
            z = np.nan_to_num(z, nan=0.0, posinf=1e6, neginf=-1e6)
        return z.astype(np.float32)

    def _classes(self, s: numpy.ndarray | None, n: int) -> tuple[list[int], list[bool] | None]:
        """Each row's predicted class, and whether its answer is near the decision boundary
        (None without scores)."""
        threshold = self.settings.threshold
        margin = self.settings.boundary_margin
        if s is None:
            return [0] * n, None
        if s.ndim == 1:  # as `_labels` and `_boundary_distance` decide, in Python floats
            values = s.tolist()
            return [int(v >= threshold) for v in values], [
                abs(v - threshold) < margin for v in values
            ]
        return (
            _labels(s, threshold).tolist(),
            (_boundary_distance(s, threshold) < margin).tolist(),
        )

    def _prada_step(self, state: _KeyState, z: numpy.ndarray, label: int) -> None:
        group = state.groups.get(label)
        if group is None:
            group = state.groups[label] = _Group(len(z), self.settings.max_stored)
        # features the key's traffic is ordered by are left out of the distances: in a sorted
        # batch the nearest earlier query is always close in them, whatever the data
        distance = group.nearest(z, state.slice.weights if state.slice is not None else None)
        if distance is not None and distance == 0.0:
            return  # an exact repeat tells an extractor nothing new
        if distance is not None:
            state.distances.append(distance)
            state.since_check += 1
        group.add(z, distance)

    def _sweep_step(self, state: _KeyState, z: numpy.ndarray) -> bool:
        """Whether the query differs from the key's previous one."""
        import numpy as np

        changed = 1
        if state.previous is not None:
            changed = int(np.count_nonzero(np.abs(z - state.previous) > 1e-6))
            if changed:  # a retry (nothing changed) is neither a sweep nor a new applicant
                state.sweeps.append(changed == 1)
        state.previous = z
        return changed > 0

    def _quiet(self, state: _KeyState, kind: str) -> bool:
        """Whether an alert of this kind would not be raised now (one was, within
        `realert_after` queries): then the statistic need not be computed."""
        last = state.last_alert.get(kind)
        return last is not None and state.queries - last < self.settings.realert_after

    def _fire(self, state: _KeyState, alert: Alert) -> list[Alert]:
        last = state.last_alert.get(alert.kind)
        if last is not None and state.queries - last < self.settings.realert_after:
            return []
        state.last_alert[alert.kind] = state.queries
        return [alert]

    def _key_alerts(self, key_id: str, state: _KeyState) -> list[Alert]:
        s = self.settings
        alerts: list[Alert] = []
        if len(state.distances) >= s.min_distances and state.since_check >= s.check_every:
            state.since_check = 0
            w = 1.0 if self._quiet(state, "extraction") else _shapiro(state.distances.values())
            delta = self.prada_threshold
            if w < delta:
                alerts += self._fire(
                    state,
                    Alert(
                        kind="extraction",
                        key_id=key_id,
                        score=w,
                        threshold=delta,
                        queries=state.queries,
                        message=f"the distances between this key's successive queries stopped "
                        f"looking like natural traffic (Shapiro-Wilk W {w:.3f} < "
                        f"{delta:.3f} over {len(state.distances)} queries): a pattern of "
                        "model extraction (PRADA)",
                    ),
                )
        # tested once per `check_every` queries, not on every one: the windows of successive
        # queries overlap almost entirely, and testing each of them multiplied the chances of
        # a false alert on a long-lived key (a 10,000-row batch of real rows tripped it)
        due = state.queries // s.check_every != state.boundary_checked // s.check_every
        if due and len(state.near) >= s.boundary_min and self.profile.near_boundary is not None:
            state.boundary_checked = state.queries
            base = self.profile.near_boundary
            if state.slice is not None and state.slice.near is not None:
                base = state.slice.near  # the share the training rows of that slice have there
            p_value, share = self._binomial(state, "boundary-hugging", state.near, base)
            if p_value < s.boundary_alpha:
                alerts += self._fire(
                    state,
                    Alert(
                        kind="boundary-hugging",
                        key_id=key_id,
                        score=share,
                        threshold=max(base, 1e-3) * s.boundary_ratio,
                        queries=state.queries,
                        message=f"{share:.0%} of this key's last {len(state.near)} answers were "
                        f"within {s.boundary_margin} of the decision threshold (training data"
                        f"{' of the same slice' if base != self.profile.near_boundary else ''}: "
                        f"{base:.1%}; binomial p {p_value:.1g}): the "
                        "decision boundary is being traced",
                    ),
                )
        if len(state.partial) >= s.repeat_min:
            p_value, share = self._binomial(
                state, "recombination", state.partial, self.profile.repeat_rate
            )
            if p_value < s.repeat_alpha:
                names = ", ".join(
                    repr(self.profile.features[j]) for j in self.profile.repeat_features
                )
                alerts += self._fire(
                    state,
                    Alert(
                        kind="recombination",
                        key_id=key_id,
                        score=share,
                        threshold=max(self.profile.repeat_rate, 1e-3) * s.repeat_ratio,
                        queries=state.queries,
                        message=f"{share:.0%} of this key's last {len(state.partial)} distinct "
                        f"queries reuse the exact values of {names} from an earlier, "
                        f"different query (training data: {self.profile.repeat_rate:.1%}; "
                        f"binomial p {p_value:.1g}): rows recombined from a pool of real "
                        "records",
                    ),
                )
        if len(state.sweeps) >= s.sweep_min:
            share = state.sweeps.yes / len(state.sweeps)
            if share >= s.sweep_share:
                alerts += self._fire(
                    state,
                    Alert(
                        kind="sweep",
                        key_id=key_id,
                        score=share,
                        threshold=s.sweep_share,
                        queries=state.queries,
                        message=f"{share:.0%} of this key's last {len(state.sweeps)} queries "
                        "changed a single feature of the query before: one feature is being "
                        "swept while the others stay fixed",
                    ),
                )
        # the PSI of every feature costs a few microseconds each: once per `check_every` rows
        due = state.window.seen // s.check_every != state.offdist_checked // s.check_every
        if due and state.window.filled >= ORDER_MIN_ROWS:
            state.offdist_checked = state.window.seen
            marginal = state.window.psi(self._proportions)
            state.slice = self._slice(state.window, marginal, edge_runs=True)
            if state.window.filled >= s.offdist_window:
                alerts += self._offdist(key_id, state, marginal)
        return alerts

    def _binomial(
        self, state: _KeyState, kind: str, flags: _Flags, base: float
    ) -> tuple[float, float]:
        """`_binomial` of the flags for an alert of this kind: p is 1 while such an alert
        would not be raised anyway (`_quiet`), and each p-value is computed once (the flags
        move by one at a time: the same count of the same window comes back)."""
        ratio = self.settings.boundary_ratio
        if kind == "recombination":
            ratio = self.settings.repeat_ratio
        k, n = flags.yes, len(flags)
        share = k / n
        rate = min(max(base, 1e-3), 0.999)
        if share < rate * ratio or self._quiet(state, kind):
            return 1.0, share
        key = (k, n, rate)
        p_value = self._p_values.get(key)
        if p_value is None:
            if len(self._p_values) >= 4096:
                self._p_values.clear()
            p_value = self._p_values[key] = _binomial(k, n, base, ratio)[0]
        return p_value, share

    def _slice(self, window: _Window, marginal: list[float], edge_runs: bool) -> _Slice | None:
        if self._slices is None:
            return None
        return self._slices.of(window, marginal, self._change, edge_runs)

    def _offdist(self, key_id: str, state: _KeyState, values: list[float]) -> list[Alert]:
        s = self.settings
        where = ""
        if state.slice is not None:
            values = state.slice.psi(state.window)
            where = (
                f" within the slice of {self.profile.features[state.slice.feature]!r} they "
                "are ordered by"
            )
        worst = max(range(len(values)), key=values.__getitem__)
        if values[worst] < s.offdist_psi:
            return []
        return self._fire(
            state,
            Alert(
                kind="off-distribution",
                key_id=key_id,
                score=values[worst],
                threshold=s.offdist_psi,
                queries=state.queries,
                feature=self.profile.features[worst],
                message=f"this key's last {s.offdist_window} queries are far from the "
                f"training data{where} (PSI {values[worst]:.2f} on feature "
                f"{self.profile.features[worst]!r}; "
                f"{sum(v >= s.offdist_psi for v in values)} features over "
                f"{s.offdist_psi}): synthetic queries",
            ),
        )

    # -- all traffic --------------------------------------------------------------------------

    def _global_alerts(self, x: numpy.ndarray, s: numpy.ndarray | None) -> list[Alert]:
        import numpy as np

        settings = self.settings
        before = self._drift.seen
        self._drift.add(x)
        alerts: list[Alert] = []
        if s is not None and len(self._score_edges):
            top = s if s.ndim == 1 else s.max(axis=1)
            self._score_window.add(top.reshape(-1, 1))
            if s.ndim == 1:
                self._positives.extend((s >= settings.threshold).tolist())
        due = before // settings.drift_every != self._drift.seen // settings.drift_every
        if not due or self._drift.filled < settings.drift_window:
            return alerts
        values = self._drift.psi(self._proportions)
        self._global_slice = self._slice(self._drift, values, edge_runs=False)
        if self._global_slice is not None:
            values = self._global_slice.psi(self._drift)
        drifted = sorted(
            (i for i, v in enumerate(values) if v >= settings.drift_psi), key=lambda i: -values[i]
        )
        if drifted:
            names = ", ".join(
                f"{self.profile.features[i]!r} ({values[i]:.2f})" for i in drifted[:5]
            )
            alerts += self._fire_global(
                Alert(
                    kind="drift",
                    key_id=ALL_KEYS,
                    score=values[drifted[0]],
                    threshold=settings.drift_psi,
                    queries=self._drift.seen,
                    feature=self.profile.features[drifted[0]],
                    message=f"live inputs drifted from the training data in {len(drifted)} "
                    f"features over the last {settings.drift_window} rows (PSI: {names})",
                )
            )
        if self._score_window.filled >= settings.drift_window and self.profile.score_counts:
            sliced = self._global_slice
            if sliced is not None and sliced.scores is not None:
                (index,) = self._score_window.psi(sliced.scores)
            else:
                (index,) = self._score_window.psi([self.profile.score_counts])
            rate = float(np.mean(self._positives)) if self._positives else None
            if index >= settings.prediction_psi:
                moved = (
                    f"; positive rate {self.profile.positive_rate:.1%} -> {rate:.1%}"
                    if rate is not None and self.profile.positive_rate is not None
                    else ""
                )
                alerts += self._fire_global(
                    Alert(
                        kind="prediction-shift",
                        key_id=ALL_KEYS,
                        score=index,
                        threshold=settings.prediction_psi,
                        queries=self._drift.seen,
                        message=f"the model's scores over the last {settings.drift_window} rows "
                        f"moved away from its scores on the training data (PSI {index:.2f})"
                        + moved,
                    )
                )
        return alerts

    def _fire_global(self, alert: Alert) -> list[Alert]:
        last = self._global_alert.get(alert.kind)
        if last is not None and self._drift.seen - last < self.settings.realert_after:
            return []
        self._global_alert[alert.kind] = self._drift.seen
        return [alert]


def _shapiro(values: numpy.ndarray) -> float:
    """The Shapiro-Wilk W of the values (oldest first) as `scipy.stats.shapiro` computes it:
    its algorithm (swilk) called directly, without the wrapper that costs three times as
    much as the test (its axis and NaN handling; the values are one finite sample here)."""
    import warnings

    import numpy as np

    if np.ptp(values) == 0:
        return 0.0  # every distance the same: nothing natural about that
    swilk = _swilk()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if swilk is None:
            from scipy.stats import shapiro

            return float(shapiro(values).statistic)
        n = len(values)
        y = np.sort(values)
        y -= values[n // 2]  # as scipy.stats.shapiro does (scipy gh-15777)
        w, _, _ = swilk(y, np.zeros(n // 2, dtype=np.float64), 0)
        return float(w)


_SWILK: list[Any] = []


def _swilk() -> Any:
    """scipy's swilk, or None where this scipy does not have it where 1.17 does."""
    if not _SWILK:
        try:
            from scipy.stats._ansari_swilk_statistics import swilk
        except ImportError:
            swilk = None
        _SWILK.append(swilk)
    return _SWILK[0]


def _binomial(k: int, n: int, base: float, ratio: float) -> tuple[float, float]:
    """(one-sided binomial p-value of k True flags out of n at the base rate, their share); p
    is 1 unless the share is at least `ratio` times the base rate (floored at 0.1%)."""
    from scipy.stats import binom

    share = k / n
    rate = min(max(base, 1e-3), 0.999)
    if share < rate * ratio:
        return 1.0, share
    return float(binom.sf(k - 1, n, rate)), share
