"""Per-row digests of a dataset, computed batch by batch: the ground truth of the manifest and of
`data diff`.

Each row is encoded canonically (every cell as text, string cells length-prefixed, nulls marked,
cells in column order) by vectorised Arrow kernels, then hashed with BLAKE2b-256 — a
cryptographic hash, so a tampered row cannot keep its digest. The order-independent fingerprint
of a dataset is the SHA-256 of its sorted row digests (with the key digest in front when an id
column is given). Per-cell digests — 8 bytes of BLAKE2b keyed with a random key drawn for each
manifest (and recorded in it), so a collision found for one manifest does not carry over to
another — say which columns of a modified row changed, and decide whether a row is unchanged
when the column sets of two versions differ; they are kept up to a bound of cells. Format-1
manifests carried 16-bit CRC hints instead: a value with the same hint is found in a fraction
of a second, so they are still computed to compare against such a manifest, never trusted
alone (the diff says so)."""

from __future__ import annotations

import hashlib
import itertools
import os
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bastion.errors import DataInputError

if TYPE_CHECKING:
    import numpy

    from bastion.datacheck.dataset import Dataset

DIGEST_BYTES = 12  # stored per row (the fingerprint uses the full 32 bytes)
KEY_BYTES = 8
MAX_CELL_HINTS = 4_000_000  # cells whose digests are kept (rows x columns)
CELL_DIGEST_BYTES = 8
CELL_KEY_BYTES = 16
KEYED = "blake2b-64-keyed"  # per-cell digests of format 2
CRC16 = "crc16"  # per-cell hints of format 1 (forgeable: read old manifests only)


class CellSpec:
    """How cells are digested: keyed BLAKE2b (with this key) or format 1's 16-bit CRC hints.
    Two row indexes compare cell by cell only when their specs are equal."""

    def __init__(self, kind: str = KEYED, key: bytes | None = None) -> None:
        if kind == KEYED and key is None:
            key = os.urandom(CELL_KEY_BYTES)
        self.kind = kind
        self.key = key if kind == KEYED else None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CellSpec) and self.kind == other.kind and self.key == other.key

    def __hash__(self) -> int:
        return hash((self.kind, self.key))


_session: list[CellSpec] = []


def session_spec() -> CellSpec:
    """The keyed spec of this process, drawn once: row indexes made in one run compare cell by
    cell; each run (each manifest recorded) has its own key."""
    if not _session:
        _session.append(CellSpec())
    return _session[0]


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
        cell_spec: CellSpec | None = None,
        file_sha256: str | None = None,
    ) -> None:
        self.columns = columns
        self.types = types
        self.digests = digests  # (rows,) of S12
        self.keys = keys  # (rows,) of S8, when an id column was given
        # (rows, columns) per-cell digests within the bound: uint64 (keyed BLAKE2b) or, to
        # compare with a format-1 manifest, uint16 (CRC hints)
        self.hints = hints
        self.cell_spec = cell_spec or CellSpec(CRC16)
        self.file_sha256 = file_sha256  # of the file as stored (None: data in memory)
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


def _cell_digests(cells: list[Any], spec: CellSpec, names: list[str]) -> Any:
    """(rows, columns) digests of each cell: keyed BLAKE2b-64 (the column's name is hashed in
    too, so one value has different digests in different columns) or format 1's CRC hints."""
    import numpy as np

    columns = []
    rows = 0
    for cell, name in zip(cells, names, strict=True):
        offsets, view = _buffers(cell)
        rows = len(offsets) - 1
        if spec.kind == CRC16:
            crc = zlib.crc32
            columns.append(
                np.fromiter(
                    (crc(view[a:b]) & 0xFFFF for a, b in itertools.pairwise(offsets)),
                    dtype=np.uint16,
                    count=rows,
                )
            )
            continue
        assert spec.key is not None
        base = hashlib.blake2b(
            key=spec.key, digest_size=CELL_DIGEST_BYTES, person=b"bastion-cell-v2"
        )
        base.update(name.encode("utf-8", "surrogatepass") + b"\0")
        digests = bytearray()
        for a, b in itertools.pairwise(offsets):
            one = base.copy()
            one.update(view[a:b])
            digests += one.digest()
        columns.append(np.frombuffer(bytes(digests), dtype="<u8", count=rows))
    dtype = np.uint16 if spec.kind == CRC16 else np.uint64
    return np.stack(columns, axis=1) if columns else np.zeros((rows, 0), dtype=dtype)


def index_rows(
    dataset: Dataset,
    id_column: str | None = None,
    keep_key_values: bool = False,
    progress: Callable[[int], None] | None = None,
    cell_spec: CellSpec | None = None,
) -> RowIndex:
    """Digests of every row, streamed batch by batch; per-cell digests by `cell_spec` (this
    process's key when None). Raises DataInputError (from the reader)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = dataset.columns
    spec = cell_spec or session_spec()
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
            hint_parts.append(_cell_digests(cells, spec, list(columns)))
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
            else np.zeros((0, len(columns)), dtype=np.uint16 if spec.kind == CRC16 else np.uint64)
        )
    return RowIndex(
        columns=list(columns),
        types=[str(f.type) for f in dataset.schema],
        digests=digests,
        keys=key_array,
        hints=hints,
        fingerprint=fingerprint.hexdigest(),
        key_values=key_values if keep_key_values and id_column is not None else None,
        cell_spec=spec,
        file_sha256=file_digest(dataset),
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
