"""A scikit-learn transformer class of "the user's own package", saved inside a pipeline."""

from __future__ import annotations

from typing import Any

from sklearn.base import BaseEstimator, TransformerMixin


class ClipOutliers(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    def __init__(self, quantile: float = 0.99) -> None:
        self.quantile = quantile

    def fit(self, x: Any, y: Any = None) -> ClipOutliers:
        import numpy as np

        self.high_ = np.quantile(x, self.quantile, axis=0)
        return self

    def transform(self, x: Any) -> Any:
        import numpy as np

        return np.minimum(x, self.high_)
