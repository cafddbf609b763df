"""The values of a dataset's id column (`--id`) for given rows, for findings' `row_ids`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy

    from bastion.datacheck.dataset import Dataset


def row_ids(dataset: Dataset, id_column: str, rows: numpy.ndarray) -> tuple[str, ...]:
    """The id column's values, as text, of the given rows (sorted, 0-based), read batch by
    batch; empty when the dataset has no such column."""
    import numpy as np

    rows = np.asarray(rows, dtype=np.int64)
    if id_column not in dataset.schema.names or not len(rows):
        return ()
    found: list[str] = []
    for start, batch in dataset.batches([id_column]):
        end = start + batch.num_rows
        lo, hi = np.searchsorted(rows, [start, end])
        if hi > lo:
            picked = batch.column(0).take(rows[lo:hi] - start)
            found.extend("" if v is None else str(v) for v in picked.to_pylist())
        if hi >= len(rows):
            break
    return tuple(found)


def redact_id(value: str) -> str:
    """An id value that is personal data, as its shape only (letters a/A, digits 9)."""
    from bastion.datacheck.csvfile import value_shape

    return "redacted " + value_shape(value, limit=12) if value else ""
