"""k-anonymity of a table over its quasi-identifiers: rows are grouped by their combination of
values (age, postcode, sex, birth date, …); a row in a group of k rows can be told apart from at
most k − 1 others by someone who knows those attributes. Missing values count as one value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import pyarrow


class KAnonymity(NamedTuple):
    columns: tuple[str, ...]
    rows: int
    classes: int  # distinct combinations
    min_k: int  # size of the smallest group (the table's k)
    unique_rows: int  # rows alone in their group (k = 1)
    below: tuple[int, ...]  # rows in groups smaller than the threshold, in row order


def k_anonymity(
    columns: Mapping[str, pyarrow.ChunkedArray | pyarrow.Array], threshold: int
) -> KAnonymity:
    """Group the rows by the given columns (equal length) and measure k."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    names = tuple(columns)
    arrays = [_comparable(columns[name]) for name in names]
    count = len(arrays[0]) if arrays else 0
    if not count:
        return KAnonymity(names, 0, 0, 0, 0, ())
    # one integer code per column (dictionary indices; null as its own code), combined into one
    # key per row by successive np.unique — exact, whatever the columns' types and cardinality
    key = np.zeros(count, dtype=np.int64)
    for array in arrays:
        encoded = pc.dictionary_encode(array, null_encoding="encode")
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.unify_dictionaries().combine_chunks()
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        width = int(codes.max()) + 1 if len(codes) else 1
        _, key = np.unique(key * width + codes, return_inverse=True)
        key = key.astype(np.int64)
    sizes = np.bincount(key)
    per_row = sizes[key]
    below = np.flatnonzero(per_row < threshold)
    return KAnonymity(
        columns=names,
        rows=count,
        classes=len(sizes),
        min_k=int(sizes.min()),
        unique_rows=int((per_row == 1).sum()),
        below=tuple(int(i) for i in below),
    )


def _comparable(array: pyarrow.ChunkedArray | pyarrow.Array) -> pyarrow.ChunkedArray:
    """Values that group as equal when they are equal: strings trimmed and case-folded (a
    postcode written "sw1a 1aa" and "SW1A 1AA" is one place), everything else as it is."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.Array):
        array = pa.chunked_array([array])
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        array = pc.utf8_lower(pc.utf8_trim_whitespace(array))
    return array
