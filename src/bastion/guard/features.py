"""Request rows as numbers: the one encoding the OOD detector and the query monitor share.

Rows arrive as mappings of column to value, already checked and read as the contract's types
(`coerce_row`). The encoding is fixed by the contract: integer and number columns are
standardised with the training data's mean and standard deviation, booleans are 0/1, a text
column with categories is one-hot over those categories (an unknown value is all zeros), and
other text and date columns are left out (they carry no distance a detector could use)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bastion.datacheck import constraints as cs
from bastion.datacheck.contract import Contract, PreparedColumn
from bastion.records import Record

if TYPE_CHECKING:
    import numpy


NOT_FINITE = 1e6  # the standardised value of a NaN or infinite input: far out, still finite


class Encoder(Record):
    """Column layout and standardisation of the encoded vector."""

    numeric: tuple[str, ...]  # integer, number and boolean columns, in contract order
    means: tuple[float, ...]
    scales: tuple[float, ...]
    categorical: tuple[tuple[str, tuple[str, ...]], ...]  # (column, categories)

    @property
    def width(self) -> int:
        return len(self.numeric) + sum(len(cats) for _, cats in self.categorical)

    def names(self) -> list[str]:
        out = list(self.numeric)
        for column, categories in self.categorical:
            out += [f"{column}={c}" for c in categories]
        return out

    def encode(self, rows: Sequence[Mapping[str, Any]]) -> numpy.ndarray:
        """(len(rows), width) float64; a missing numeric value is the training mean. For
        many calls, `compile()` once and call its `encode`."""
        return self.compile().encode(rows)

    def compile(self) -> CompiledEncoder:
        return CompiledEncoder(self)


class CompiledEncoder:
    """An encoder's arrays and category positions, built once (the guard encodes every
    request's rows with one)."""

    def __init__(self, encoder: Encoder) -> None:
        import numpy as np

        self.encoder = encoder
        self.width = encoder.width
        self.numeric = encoder.numeric
        self.means = np.asarray(encoder.means, dtype=np.float64)
        self.scales = np.asarray(encoder.scales, dtype=np.float64)
        self.numeric_pairs = tuple(
            zip(encoder.numeric, map(float, encoder.means), map(float, encoder.scales), strict=True)
        )
        slots: list[tuple[str, dict[Any, int]]] = []
        offset = len(encoder.numeric)
        for column, categories in encoder.categorical:
            slots.append((column, {c: offset + k for k, c in enumerate(categories)}))
            offset += len(categories)
        self.slots = tuple(slots)

    def names(self) -> list[str]:
        return self.encoder.names()

    def encode(self, rows: Sequence[Mapping[str, Any]]) -> numpy.ndarray:
        """(len(rows), width) float64; a missing numeric value is the training mean.

        Each row is built as a list of Python floats and the array made once: a request holds
        a row or a few, where a dozen small numpy operations cost more than the arithmetic.
        The values are numpy's: (value - mean) / scale in float64; a value that is missing or
        text (one the contract refused) is 0 (the mean); one that is not finite once
        standardised (NaN, an infinity, an integer past float's range: rows a contract in
        flag mode lets through) is ±NOT_FINITE, far beyond any training value, so that the OOD
        detector scores the row far out instead of at the mean."""
        import numpy as np

        numeric = self.numeric_pairs
        slots, width = self.slots, self.width
        isfinite = math.isfinite
        out = []
        for row in rows:
            vector = []
            for column, mean, scale in numeric:
                value = row.get(column)
                if value is None or isinstance(value, str):
                    vector.append(0.0)
                    continue
                try:
                    standard = (float(value) - mean) / scale
                except (OverflowError, TypeError, ValueError):  # an int past float's range
                    big = isinstance(value, int)
                    standard = (math.inf if value > 0 else -math.inf) if big else math.nan
                if not isfinite(standard):
                    standard = -NOT_FINITE if standard < 0 else NOT_FINITE
                vector.append(standard)
            if slots:
                vector.extend([0.0] * (width - len(vector)))
                for column, slot in slots:
                    value = row.get(column)
                    index = slot.get(value) if isinstance(value, str) else None
                    if index is not None:  # an unknown category is all zeros
                        vector[index] = 1.0
            out.append(vector)
        if not out:
            return np.zeros((0, width))
        return np.array(out, dtype=np.float64).reshape(len(out), width)


def feature_columns(contract: Contract, target: str = "") -> list[str]:
    """The request's columns: the contract's, in order, without the label column."""
    return [name for name in contract.columns if name != target]


def coerce_row(columns: Sequence[PreparedColumn], row: Mapping[str, Any]) -> dict[str, Any]:
    """A row that passed `validate_row`, its values read as the contract's types."""
    out: dict[str, Any] = {}
    for column in columns:
        value = row.get(column.name)
        if cs.is_null(value):
            out[column.name] = None
            continue
        try:
            out[column.name] = cs.coerce_value(column.spec.type, value)
        except cs.Invalid:
            out[column.name] = None
    return out


def fit_encoder(contract: Contract, rows: Iterable[Mapping[str, Any]], target: str = "") -> Encoder:
    """Means and scales of the numeric columns over training rows (already coerced)."""
    numeric = [
        name
        for name, spec in contract.columns.items()
        if name != target and spec.type in ("integer", "number", "boolean")
    ]
    categorical = tuple(
        (name, tuple(spec.enum))
        for name, spec in contract.columns.items()
        if name != target and spec.type == "string" and spec.enum
    )
    sums = [0.0] * len(numeric)
    squares = [0.0] * len(numeric)
    counts = [0] * len(numeric)
    for row in rows:
        for j, column in enumerate(numeric):
            value = row.get(column)
            if value is None or isinstance(value, str):
                continue
            number = float(value)
            if math.isfinite(number):
                sums[j] += number
                squares[j] += number * number
                counts[j] += 1
    means, scales = [], []
    for j in range(len(numeric)):
        mean = sums[j] / counts[j] if counts[j] else 0.0
        variance = squares[j] / counts[j] - mean * mean if counts[j] else 0.0
        means.append(mean)
        scales.append(math.sqrt(variance) if variance > 1e-12 else 1.0)
    return Encoder(
        numeric=tuple(numeric), means=tuple(means), scales=tuple(scales), categorical=categorical
    )
