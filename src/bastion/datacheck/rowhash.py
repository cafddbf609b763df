"""Per-row digests of a dataset, computed batch by batch: the ground truth of the manifest and of
`data diff`.

Each row is encoded canonically (every cell as text, string cells length-prefixed, nulls marked,
cells in column order) by vectorised Arrow kernels, then hashed with BLAKE2b-256 — a
cryptographic hash, so a tampered row cannot keep its digest. The order-independent fingerprint
of a dataset is the SHA-256 of its sorted row digests (with the key digest in front when an id
column is given). Small 16-bit cell hints (CRC-32 of each cell) say which columns of a modified
row changed; they are an index, not a proof, and are kept up to a bound of cells."""

from __future__ import annotations

import hashlib
import itertools
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bastion.errors import DataInputError

if TYPE_CHECKING:
    import numpy

    from bastion.datacheck.dataset import Dataset

DIGEST_BYTES = 12  # stored per row (the fingerprint uses the full 32 bytes)
KEY_BYTES = 8
MAX_CELL_HINTS = 4_000_000  # cells whose hints are kept (rows x columns)
MAX_RETYPES = 32  # columns re-read as text after mixed types, per dataset


class RowIndex:
    """Digests of every row of one dataset version, in row order."""

    def __init__(
        self,
        columns: list[str],
        types: list[str],
        digests: numpy.ndarray,
        keys: numpy.ndarray | None,
        hints: numpy.ndarray | None,
        fingerprint: str,
        key_values: list[str] | None = None,
    ) -> None:
        self.columns = columns
        self.types = types
        self.digests = digests  # (rows,) of S12
        self.keys = keys  # (rows,) of S8, when an id column was given
        self.hints = hints  # (rows, columns) of uint16, within the bound
        self.fingerprint = fingerprint
        self.key_values = key_values  # the id values themselves (data, never a manifest)

    @property
    def rows(self) -> int:
        return len(self.digests)


def _canonical_cells(batch: Any) -> list[Any]:
    """Each column as canonical text cells (null-marked), vectorised."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cells = []
    for column in batch.columns:
        kind = column.type
        if pa.types.is_dictionary(kind):
            column = column.cast(kind.value_type)
            kind = column.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            text = column
            length = pc.cast(pc.binary_length(text), pa.string())
            cell = pc.binary_join_element_wise(length, text, ":")
            cells.append(pc.fill_null(cell, "-"))
            continue
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            text = pa.array(
                [None if v is None else v.hex() for v in column.to_pylist()], type=pa.string()
            )
        elif pa.types.is_nested(kind):
            import json

            text = pa.array(
                [
                    None if v is None else json.dumps(v, sort_keys=True, default=str)
                    for v in column.to_pylist()
                ],
                type=pa.string(),
            )
            length = pc.cast(pc.binary_length(text), pa.string())
            cells.append(pc.fill_null(pc.binary_join_element_wise(length, text, ":"), "-"))
            continue
        else:
            try:
                text = pc.cast(column, pa.string())
            except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
                text = pa.array(
                    [None if v is None else str(v) for v in column.to_pylist()], type=pa.string()
                )
        cells.append(pc.fill_null(text, ""))  # a number, date or bool is never empty text
    return cells


def _buffers(array: Any) -> tuple[list[int], memoryview]:
    import numpy as np
    import pyarrow as pa

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_large_string(array.type):
        array = array.cast(pa.string())
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[
        array.offset : array.offset + len(array) + 1
    ]
    data = array.buffers()[2]
    view = memoryview(data) if data is not None else memoryview(b"")
    return offsets.tolist(), view


def _digests(joined: Any) -> list[bytes]:
    offsets, view = _buffers(joined)
    blake = hashlib.blake2b
    return [blake(view[a:b], digest_size=32).digest() for a, b in itertools.pairwise(offsets)]


def _hints(cells: list[Any]) -> Any:
    import numpy as np

    columns = []
    for cell in cells:
        offsets, view = _buffers(cell)
        crc = zlib.crc32
        columns.append(
            np.fromiter(
                (crc(view[a:b]) & 0xFFFF for a, b in itertools.pairwise(offsets)),
                dtype=np.uint16,
                count=len(offsets) - 1,
            )
        )
    return np.stack(columns, axis=1) if columns else np.zeros((0, 0), dtype=np.uint16)


def index_rows(
    dataset: Dataset,
    id_column: str | None = None,
    keep_key_values: bool = False,
    progress: Callable[[int], None] | None = None,
) -> RowIndex:
    """Digests of every row, streamed batch by batch. Raises DataInputError (from the reader)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = dataset.columns
    if id_column is not None and id_column not in columns:
        raise DataInputError(
            f"{dataset.name}: no id column {id_column!r}", kind="usage", column=id_column
        )
    keep_hints = True
    full: list[bytes] = []
    keys: list[bytes] = []
    key_values: list[str] = []
    hint_parts: list[Any] = []
    total_cells = 0
    for _start, batch in dataset.batches():
        if not batch.num_rows:
            continue
        cells = _canonical_cells(batch)
        if cells:
            joined = pc.binary_join_element_wise(*cells, ",")
        else:
            joined = pa.array([""] * batch.num_rows, type=pa.string())
        if id_column is not None:
            key_cells = cells[columns.index(id_column)]
            key_full = _digests(key_cells)
            keys.extend(d[:KEY_BYTES] for d in key_full)
            if keep_key_values:
                raw = batch.column(columns.index(id_column))
                key_values.extend("" if v is None else str(v) for v in raw.to_pylist())
            # the row digest covers the key too (it is a cell of the row)
        full.extend(_digests(joined))
        total_cells += batch.num_rows * len(cells)
        if keep_hints and total_cells <= MAX_CELL_HINTS:
            hint_parts.append(_hints(cells))
        else:
            keep_hints = False
            hint_parts = []
        if progress is not None:
            progress(len(full))
    if id_column is not None:
        pairs = sorted(k + d for k, d in zip(keys, full, strict=True))
    else:
        pairs = sorted(full)
    fingerprint = hashlib.sha256()
    fingerprint.update(f"bastion-rows-v1;id={id_column or ''};".encode())
    for item in pairs:
        fingerprint.update(item)
    digests = np.array([d[:DIGEST_BYTES] for d in full], dtype=f"S{DIGEST_BYTES}")
    key_array = np.array(keys, dtype=f"S{KEY_BYTES}") if id_column is not None else None
    hints = None
    if keep_hints:
        hints = (
            np.concatenate(hint_parts)
            if hint_parts
            else np.zeros((0, len(columns)), dtype=np.uint16)
        )
    return RowIndex(
        columns=list(columns),
        types=[str(f.type) for f in dataset.schema],
        digests=digests,
        keys=key_array,
        hints=hints,
        fingerprint=fingerprint.hexdigest(),
        key_values=key_values if keep_key_values and id_column is not None else None,
    )


def settle_types(
    dataset: Dataset,
    attempt: Callable[[Dataset], Any],
) -> tuple[Dataset, Any, list[DataInputError]]:
    """Run `attempt` (a full pass) on the dataset; when a column turns out to mix types, re-read
    that column as text and run it again. Returns the dataset as finally read, the result, and
    the mixed-types errors that were worked around. Other reader errors propagate."""
    worked_around: list[DataInputError] = []
    while True:
        try:
            return dataset, attempt(dataset), worked_around
        except DataInputError as exc:
            if (
                exc.kind != "mixed-types"
                or exc.column is None
                or len(worked_around) >= MAX_RETYPES
                or not hasattr(dataset.source, "with_text_columns")
                or exc.column in getattr(dataset.source, "text_columns", ())
            ):
                raise
            worked_around.append(exc)
            dataset = dataset.with_text_columns([exc.column])


def file_digest(dataset: Dataset) -> str | None:
    """SHA-256 of the file as stored, or None for data in memory."""
    if dataset.path is None:
        return None
    digest = hashlib.sha256()
    with open(dataset.path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
