"""Out-of-distribution rows: how far a request row is from the training data.

The detector works on the encoded rows of `features.Encoder` (standardised numbers, one-hot
categories). Two methods:

- `mahalanobis` (default): the distance to the training mean under a Ledoit-Wolf shrunk
  covariance (scikit-learn), which stays invertible with one-hot columns. Scoring is one
  matrix product per request; the profile is plain numbers and is saved as JSON
  (`bastion guard profile`), so the guard needs no training data at start.
- `isolation-forest`: scikit-learn's IsolationForest (score = -score_samples); fitted at start
  from the training data, never saved (it would have to be pickled).

The threshold is a quantile (default 0.999) of *out-of-fold* scores: the detector is fitted on
one half of the training rows and scores the other, both ways, so the threshold is what unseen
normal rows score, not what the rows it was fitted on score (in-sample distances are smaller
and would flag too much). A fixed threshold in guard.toml overrides it."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bastion.datacheck.contract import Contract, prepare
from bastion.errors import ConfigError, InputError
from bastion.guard.features import Encoder, coerce_row, fit_encoder
from bastion.records import Record, RecordError

if TYPE_CHECKING:
    import numpy

FORMAT = "bastion-guard-ood"
MAX_TRAINING_ROWS = 50_000
MAX_PROFILE_BYTES = 64 * 1024 * 1024
MIN_ROWS = 20


class OodProfile(Record):
    format: str = FORMAT
    version: int = 1
    method: Literal["mahalanobis"] = "mahalanobis"
    encoder: Encoder
    mean: tuple[float, ...]
    precision: tuple[tuple[float, ...], ...]
    quantiles: dict[str, float]  # out-of-fold score quantiles: "0.99", "0.999", "max"
    rows: int

    def save(self, path: Path) -> None:
        path.write_text(self.model_dump_json(), encoding="utf-8")


def load_profile(path: Path) -> OodProfile:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the OOD profile {path}: {exc.strerror}") from exc
    if len(raw) > MAX_PROFILE_BYTES:
        raise ConfigError(f"{path} is too large to be an OOD profile")
    try:
        profile = OodProfile.model_validate_json(raw)
    except (RecordError, ValueError) as exc:
        raise ConfigError(f"{path} is not a bastion OOD profile: {exc}") from exc
    width = profile.encoder.width
    if len(profile.mean) != width or any(len(r) != width for r in profile.precision):
        raise ConfigError(f"{path}: the profile's matrices do not match its encoder")
    return profile


def training_rows(
    path: Path, contract: Contract, target: str = "", max_rows: int = MAX_TRAINING_ROWS
) -> list[dict[str, Any]]:
    """Up to `max_rows` rows of a training data file (any format `bastion data` reads), read as
    the contract's types."""
    from bastion.datacheck.options import DataOptions
    from bastion.datacheck.read import open_dataset

    dataset = open_dataset(path, DataOptions())
    wanted = [c for c in contract.columns if c != target and c in dataset.columns]
    if not wanted:
        raise InputError(f"{path} has none of the contract's columns")
    table = dataset.table(columns=wanted, max_rows=max_rows)
    columns = [c for c in prepare(contract) if c.name != target]
    return [coerce_row(columns, row) for row in table.to_pylist()]


def _quantiles(scores: numpy.ndarray) -> dict[str, float]:
    import numpy as np

    return {
        "0.9": float(np.quantile(scores, 0.9)),
        "0.99": float(np.quantile(scores, 0.99)),
        "0.999": float(np.quantile(scores, 0.999)),
        "max": float(scores.max()),
    }


def _mahalanobis_fit(x: numpy.ndarray) -> tuple[numpy.ndarray, numpy.ndarray]:
    from sklearn.covariance import LedoitWolf

    model = LedoitWolf().fit(x)
    return model.location_, model.precision_


def _mahalanobis(x: numpy.ndarray, mean: numpy.ndarray, precision: numpy.ndarray) -> Any:
    import numpy as np

    centred = x - mean
    # (x - m) P (x - m)^T per row: one matrix product, then a row-wise dot
    return np.sqrt(np.maximum(((centred @ precision) * centred).sum(axis=1), 0.0))


def _mahalanobis_worst(x: numpy.ndarray, mean: numpy.ndarray, precision: numpy.ndarray) -> float:
    """The largest of `_mahalanobis`: a request's one row as two vector products (half the
    numpy calls of the batch form, which a one-row request pays in call overhead)."""
    if len(x) != 1:
        return float(_mahalanobis(x, mean, precision).max())
    centred = x[0] - mean
    return math.sqrt(max(float(centred @ precision @ centred), 0.0))


def fit_profile(
    contract: Contract, rows: Sequence[Mapping[str, Any]], target: str = ""
) -> OodProfile:
    """A Mahalanobis profile of training rows (coerced), with out-of-fold thresholds."""
    import numpy as np

    if len(rows) < MIN_ROWS:
        raise InputError(f"an OOD profile needs at least {MIN_ROWS} training rows")
    encoder = fit_encoder(contract, rows, target)
    if encoder.width == 0:
        raise InputError("the contract has no numeric or categorical column to profile")
    x = encoder.encode(rows)
    order = np.random.default_rng(0).permutation(len(x))
    halves = (order[: len(x) // 2], order[len(x) // 2 :])
    scores = []
    for fit_part, score_part in (halves, halves[::-1]):
        mean, precision = _mahalanobis_fit(x[fit_part])
        scores.append(_mahalanobis(x[score_part], mean, precision))
    mean, precision = _mahalanobis_fit(x)
    return OodProfile(
        encoder=encoder,
        mean=tuple(float(v) for v in mean),
        precision=tuple(tuple(float(v) for v in row) for row in precision),
        quantiles=_quantiles(np.concatenate(scores)),
        rows=len(x),
    )


class OodDetector:
    """Scores encoded rows; `threshold` from the settings' quantile or fixed value."""

    def __init__(
        self,
        encoder: Encoder,
        scorer: Any,
        quantiles: dict[str, float],
        method: str,
        worst: Any = None,
    ) -> None:
        self.encoder = encoder
        self._scorer = scorer
        self._worst = worst
        self.quantiles = quantiles
        self.method = method
        self._thresholds: dict[float, float] = {}

    @classmethod
    def from_profile(cls, profile: OodProfile) -> OodDetector:
        import numpy as np

        mean = np.asarray(profile.mean)
        precision = np.asarray(profile.precision)
        return cls(
            profile.encoder,
            lambda x: _mahalanobis(x, mean, precision),
            dict(profile.quantiles),
            "mahalanobis",
            worst=lambda x: _mahalanobis_worst(x, mean, precision),
        )

    @classmethod
    def isolation_forest(
        cls, contract: Contract, rows: Sequence[Mapping[str, Any]], target: str = ""
    ) -> OodDetector:
        import numpy as np
        from sklearn.ensemble import IsolationForest

        if len(rows) < MIN_ROWS:
            raise InputError(f"an OOD detector needs at least {MIN_ROWS} training rows")
        encoder = fit_encoder(contract, rows, target)
        x = encoder.encode(rows)
        order = np.random.default_rng(0).permutation(len(x))
        halves = (order[: len(x) // 2], order[len(x) // 2 :])
        scores = []
        for fit_part, score_part in (halves, halves[::-1]):
            forest = IsolationForest(n_estimators=100, random_state=0).fit(x[fit_part])
            scores.append(-forest.score_samples(x[score_part]))
        forest = IsolationForest(n_estimators=100, random_state=0).fit(x)
        return cls(
            encoder,
            lambda data: -forest.score_samples(data),
            _quantiles(np.concatenate(scores)),
            "isolation-forest",
        )

    def threshold(self, quantile: float, fixed: float | None) -> float:
        if fixed is not None:
            return fixed
        found = self._thresholds.get(quantile)
        if found is None:  # the nearest stored quantile, once per setting (not per request)
            key = min(
                (k for k in self.quantiles if k != "max"),
                key=lambda k: abs(float(k) - quantile),
            )
            found = self._thresholds[quantile] = self.quantiles[key]
            if len(self._thresholds) > 16:  # a few values over a process's reloads
                self._thresholds.pop(next(iter(self._thresholds)))
        return found

    def score(self, encoded: numpy.ndarray) -> Any:
        return self._scorer(encoded)

    def worst(self, encoded: numpy.ndarray) -> float:
        """The highest score of the rows (what a request is judged by)."""
        if self._worst is not None:
            return float(self._worst(encoded))
        return float(self._scorer(encoded).max())


def profile_summary(profile: OodProfile) -> str:
    return json.dumps(
        {"rows": profile.rows, "features": profile.encoder.width, **profile.quantiles}
    )
