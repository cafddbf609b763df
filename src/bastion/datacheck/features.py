"""The rows the label checks model: a dataset's columns turned into numeric and categorical
feature arrays, and its target into class codes, read within a row bound.

Rows: at most `DataOptions.label_max_rows`; above it a deterministic sample (fixed seed) of that
many rows is read in two streamed passes (count, then take), so memory stays bounded whatever the
file's size, and the checks say they ran on a sample. Rows whose target is missing are left out.

Columns: numbers, booleans, dates and times are numeric (NaN where missing); text and dictionary
columns become categories — their values seen at least `MIN_LEVEL_ROWS` times, the 64 most
frequent at most, every other value one "(other)" level — so a free-text or identifier column
adds no per-row level a model could memorise, while a value repeated in many rows (a possible
trigger) is kept. A text column with no repeated value, and nested or binary columns, are left
out and named in `excluded`. Cell values are never interpreted beyond this."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from bastion.errors import BastionError, UsageError

if TYPE_CHECKING:
    import numpy
    import pyarrow

    from bastion.datacheck.dataset import Dataset
    from bastion.datacheck.options import DataOptions

MAX_LEVELS = 64  # categories kept per text column (the rest is "(other)")
MIN_LEVEL_ROWS = 5  # a text value seen fewer times is "(other)"
OTHER = "(other)"
SAMPLE_SEED = 20_260_409


class NotApplicable(BastionError):
    """The label checks do not apply to this dataset (no target column given, or a target with a
    single class); the engine reports a Skip with this message as its reason."""


class LabelFrame(NamedTuple):
    """Features and labels of the rows the label checks model.

    rows: the 0-based data-row index of each modelled row (sorted); labels: class codes 0..K-1;
    classes: the class names (text); numeric: float matrix (NaN = missing) with numeric_names;
    categorical: int matrix of level codes (-1 = missing) with categorical_names and the
    levels of each; excluded: columns not modelled, with why; total_rows: data rows in the
    dataset; row_ids: the id column's values for `rows` when an id column is given."""

    rows: numpy.ndarray
    labels: numpy.ndarray
    classes: tuple[str, ...]
    numeric: numpy.ndarray
    numeric_names: tuple[str, ...]
    categorical: numpy.ndarray
    categorical_names: tuple[str, ...]
    levels: tuple[tuple[str, ...], ...]
    excluded: tuple[tuple[str, str], ...]
    total_rows: int
    missing_target: int
    row_ids: tuple[str, ...] | None

    @property
    def sampled(self) -> bool:
        return len(self.rows) + self.missing_target < self.total_rows

    def ids(self, positions: numpy.ndarray) -> tuple[str, ...]:
        """The id values of modelled rows at these positions (empty without an id column)."""
        if self.row_ids is None:
            return ()
        return tuple(self.row_ids[int(p)] for p in positions)


def label_frame(dataset: Dataset, options: DataOptions) -> LabelFrame:
    """The modelled rows of `dataset`. Raises NotApplicable without a usable target, UsageError
    when the target or id column does not exist."""
    target = options.target
    if not target:
        raise NotApplicable("label checks need the label column: give --target COLUMN")
    names = list(dataset.schema.names)
    if target not in names:
        raise UsageError(
            f"{dataset.name}: no target column {target!r}",
            hint=f"its columns are: {', '.join(names[:20])}",
        )
    id_column = options.id_column if options.id_column in names else None
    table, total = _read_bounded(dataset, options.label_max_rows)
    return frame_from_table(table, target, id_column, total, options)


def _read_bounded(dataset: Dataset, limit: int) -> tuple[pyarrow.Table, int]:
    """(the rows to model with a column `__row__` holding their data-row index, the dataset's
    row count): every row up to `limit`, else a fixed-seed sample of `limit` rows."""
    import numpy as np
    import pyarrow as pa

    total = dataset.num_rows
    if total is None:
        total = sum(batch.num_rows for _start, batch in dataset.batches(dataset.schema.names[:1]))
    if total <= limit:
        table = dataset.table()
        return table.append_column("__row__", pa.array(np.arange(total, dtype=np.int64))), total
    rng = np.random.default_rng(SAMPLE_SEED)
    wanted = np.sort(rng.choice(total, size=limit, replace=False)).astype(np.int64)
    parts = []
    for start, batch in dataset.batches():
        lo, hi = np.searchsorted(wanted, [start, start + batch.num_rows])
        if hi > lo:
            taken = batch.take(pa.array(wanted[lo:hi] - start))
            parts.append(taken.append_column("__row__", pa.array(wanted[lo:hi])))
        if hi >= len(wanted):
            break
    schema = dataset.schema.append(pa.field("__row__", pa.int64()))
    return pa.Table.from_batches(parts, schema=schema), total


def frame_from_table(
    table: pyarrow.Table,
    target: str,
    id_column: str | None,
    total_rows: int,
    options: DataOptions,
) -> LabelFrame:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if "__row__" in table.column_names:
        row_index = table.column("__row__").to_numpy().astype(np.int64)
        table = table.drop_columns(["__row__"])
    else:
        row_index = np.arange(table.num_rows, dtype=np.int64)
    label_text = _as_text(table.column(target))
    present = np.asarray(pc.is_valid(label_text).to_numpy(zero_copy_only=False), dtype=bool)
    label_values = np.asarray(label_text.to_pylist(), dtype=object)
    missing_target = int((~present).sum())
    keep = np.flatnonzero(present)
    classes = tuple(sorted({str(v) for v in label_values[keep]}))
    if len(classes) < 2:
        only = f" ({classes[0][:40]!r})" if classes else ""
        raise NotApplicable(
            f"the target column {target!r} has {len(classes)} class{only}: "
            "label checks need at least two"
        )
    lookup = {name: code for code, name in enumerate(classes)}
    labels = np.fromiter((lookup[str(v)] for v in label_values[keep]), dtype=np.int64)

    numeric: list[numpy.ndarray] = []
    numeric_names: list[str] = []
    categorical: list[numpy.ndarray] = []
    categorical_names: list[str] = []
    levels: list[tuple[str, ...]] = []
    excluded: list[tuple[str, str]] = []
    taken = pa.array(keep)
    for name in table.column_names:
        if name in (target, id_column):
            continue
        column = table.column(name).take(taken)
        kind = _kind(column.type)
        if kind == "numeric":
            numeric.append(_as_float(column))
            numeric_names.append(name)
        elif kind == "text":
            coded = _as_levels(column)
            if coded is None:
                excluded.append((name, "free text or identifiers (no value repeats)"))
            else:
                categorical.append(coded[0])
                levels.append(coded[1])
                categorical_names.append(name)
        else:
            excluded.append((name, f"unsupported type {column.type}"))
    n = len(keep)
    ids = None
    if id_column is not None:
        ids = tuple(
            "" if v is None else str(v)[:200]
            for v in table.column(id_column).take(taken).to_pylist()
        )
    return LabelFrame(
        rows=row_index[keep],
        labels=labels,
        classes=classes,
        numeric=np.column_stack(numeric) if numeric else np.zeros((n, 0)),
        numeric_names=tuple(numeric_names),
        categorical=(
            np.column_stack(categorical).astype(np.int64)
            if categorical
            else np.zeros((n, 0), dtype=np.int64)
        ),
        categorical_names=tuple(categorical_names),
        levels=tuple(levels),
        excluded=tuple(excluded),
        total_rows=total_rows,
        missing_target=missing_target,
        row_ids=ids,
    )


def _kind(kind: pyarrow.DataType) -> str:
    import pyarrow.types as pt

    if pt.is_dictionary(kind):
        return "text"
    if pt.is_integer(kind) or pt.is_floating(kind) or pt.is_boolean(kind) or pt.is_decimal(kind):
        return "numeric"
    if pt.is_temporal(kind):
        return "numeric"
    if pt.is_string(kind) or pt.is_large_string(kind):
        return "text"
    return "other"


def _as_text(column: pyarrow.ChunkedArray) -> pyarrow.ChunkedArray:
    """Labels as text: numbers print as numbers (1.0 and 1 stay distinct only if the column
    holds both types, which Arrow does not allow in one column)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pt

    if pt.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pt.is_floating(column.type):
        values = column.to_numpy(zero_copy_only=False)
        import numpy as np

        whole = np.isfinite(values) & (values == np.round(values)) & (np.abs(values) < 2**53)
        if whole[~np.isnan(values)].all():
            text = [None if np.isnan(v) else str(int(v)) for v in values]
            return pa.chunked_array([pa.array(text, type=pa.string())])
    if not (pt.is_string(column.type) or pt.is_large_string(column.type)):
        column = pc.cast(column, pa.string())
    return column


def _as_float(column: pyarrow.ChunkedArray) -> numpy.ndarray:
    import numpy as np
    import pyarrow as pa
    import pyarrow.types as pt

    kind = column.type
    if pt.is_temporal(kind):
        if pt.is_timestamp(kind) or pt.is_date(kind):
            column = column.cast(pa.timestamp("s")) if pt.is_date(kind) else column
            column = column.cast(pa.int64())
        else:
            column = column.cast(pa.int64())
    elif pt.is_boolean(kind) or pt.is_decimal(kind):
        column = column.cast(pa.float64())
    values = column.to_numpy(zero_copy_only=False)
    out = np.array(values, dtype=np.float64, copy=True)
    out[~np.isfinite(out)] = np.nan
    return out


def _as_levels(column: pyarrow.ChunkedArray) -> tuple[numpy.ndarray, tuple[str, ...]] | None:
    """(level codes, level names) of a text column: values seen at least MIN_LEVEL_ROWS times
    (the MAX_LEVELS most frequent), the rest "(other)", missing -1; None when no value repeats
    that often."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pt

    if pt.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    counts = pc.value_counts(column.combine_chunks() if column.num_chunks else column)
    pairs = [
        (int(c), str(v))
        for v, c in zip(
            counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
        )
        if v is not None and int(c) >= MIN_LEVEL_ROWS
    ]
    if not pairs:
        return None
    pairs.sort(key=lambda p: (-p[0], p[1]))
    kept = sorted(v for _c, v in pairs[:MAX_LEVELS])
    names = (*kept, OTHER)
    index = pc.index_in(column, value_set=pa.array(kept, type=pa.string()))
    codes = np.asarray(pc.fill_null(index, -2).to_numpy(zero_copy_only=False), dtype=np.int64)
    codes[codes == -2] = len(kept)  # not a kept value: "(other)"
    missing = np.asarray(pc.is_null(column).to_numpy(zero_copy_only=False), dtype=bool)
    codes[missing] = -1
    return codes, names
