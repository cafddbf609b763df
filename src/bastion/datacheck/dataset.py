"""A dataset: a named table read in bounded batches, whatever the file format.

Every data check takes `Dataset`s. A dataset read from a file (datacheck/read.py) streams its
rows in Arrow record batches each time `batches()` is called, so a check that can work batch by
batch holds one batch in memory; `table()` gives the rows in memory, up to a configured row
limit. `Dataset.from_table` wraps an in-memory Arrow table (tests, the library API)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bastion.errors import LimitExceeded, UsageError

if TYPE_CHECKING:
    import pyarrow

    from bastion.datacheck.options import DataOptions

SPLITS = ("train", "valid", "test", "holdout")
CACHE_BYTES = 256 * 1024 * 1024  # a table read in full is kept for the next check up to this


class BatchSource(Protocol):
    """Where a dataset's rows come from. `read` yields record batches in row order (restarting
    from the first row on every call) and raises bastion.errors.DataInputError, with the data-row
    number, on malformed input."""

    format: str

    @property
    def schema(self) -> pyarrow.Schema: ...

    def read(
        self, columns: Sequence[str] | None, batch_rows: int
    ) -> Iterator[pyarrow.RecordBatch]: ...


class TableSource:
    """Rows already in memory."""

    format = "arrow-table"

    def __init__(self, table: pyarrow.Table) -> None:
        self.table = table

    @property
    def schema(self) -> pyarrow.Schema:
        return self.table.schema

    def read(self, columns: Sequence[str] | None, batch_rows: int) -> Iterator[pyarrow.RecordBatch]:
        table = self.table.select(list(columns)) if columns is not None else self.table
        yield from table.to_batches(max_chunksize=batch_rows)


class Dataset:
    """A named table: `name` is what findings show (the path relative to the scan root), `split`
    is train/valid/test/holdout when known."""

    def __init__(
        self,
        name: str,
        source: BatchSource,
        *,
        path: Path | None = None,
        split: str | None = None,
        size: int | None = None,
        options: DataOptions | None = None,
    ) -> None:
        if split is not None and split not in SPLITS:
            raise UsageError(f"unknown split {split!r}: one of {', '.join(SPLITS)}")
        if options is None:
            from bastion.datacheck.options import DataOptions

            options = DataOptions()
        self.name = name
        self.path = path
        self.split = split
        self.size = size  # bytes of the file, when read from one
        self.source = source
        self.options = options
        self.notes: tuple[str, ...] = ()  # what reading noticed and worked around
        self._cached: pyarrow.Table | None = None
        self._num_rows: int | None = None

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, format={self.format!r}, split={self.split!r})"

    @property
    def schema(self) -> pyarrow.Schema:
        return self.source.schema

    @property
    def format(self) -> str:
        return self.source.format

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    @property
    def num_rows(self) -> int | None:
        """The number of data rows, once known (in memory, or after one full pass)."""
        if self._num_rows is None and isinstance(self.source, TableSource):
            self._num_rows = self.source.table.num_rows
        return self._num_rows

    def batches(
        self, columns: Sequence[str] | None = None
    ) -> Iterator[tuple[int, pyarrow.RecordBatch]]:
        """(index of the batch's first data row, batch), in row order; bounded memory. Raises
        bastion.errors.DataInputError with the row number on malformed input."""
        columns = self._check_columns(columns)
        if self._cached is not None:
            source: BatchSource = TableSource(self._cached)
        else:
            source = self.source
        start = 0
        for batch in source.read(columns, self.options.batch_rows):
            yield start, batch
            start += batch.num_rows
        self._num_rows = start

    def table(
        self, columns: Sequence[str] | None = None, max_rows: int | None = None
    ) -> pyarrow.Table:
        """The rows in memory (the first `max_rows` when given). Raises LimitExceeded when more
        rows than the configured in-memory limit (DataOptions.max_rows_in_memory) are needed."""
        import pyarrow as pa

        columns = self._check_columns(columns)
        limit = self.options.max_rows_in_memory
        if self._cached is None and isinstance(self.source, TableSource):
            self._cached = self.source.table
        if self._cached is not None:
            table = self._cached
            if columns is not None:
                table = table.select(list(columns))
            if max_rows is not None:
                table = table.slice(0, max_rows)
            if table.num_rows > limit:
                raise self._too_many(limit)
            return table
        wanted = limit if max_rows is None else min(max_rows, limit + 1)
        parts: list[pa.RecordBatch] = []
        count = 0
        complete = True
        for _start, batch in self.batches(columns):
            if count + batch.num_rows > wanted:
                parts.append(batch.slice(0, wanted - count))
                count = wanted
                complete = False
                break
            parts.append(batch)
            count += batch.num_rows
        if max_rows is None and not complete:
            raise self._too_many(limit)
        if max_rows is not None and count > limit:
            raise self._too_many(limit)
        schema = (
            self.schema if columns is None else pa.schema([self.schema.field(c) for c in columns])
        )
        table = pa.Table.from_batches(parts, schema=schema)
        if columns is None and max_rows is None and table.nbytes <= CACHE_BYTES:
            self._cached = table
        return table

    def with_text_columns(self, columns: Sequence[str]) -> Dataset:
        """The same data with these columns read as text: what a reader does after a column
        turned out to hold values of more than one type. Only sources that infer types (CSV)
        can do it; for the others the DataInputError stands."""
        retype = getattr(self.source, "with_text_columns", None)
        if retype is None:
            raise UsageError(f"{self.name}: {self.format} columns cannot be re-read as text")
        copy = Dataset(
            self.name,
            retype(columns),
            path=self.path,
            split=self.split,
            size=self.size,
            options=self.options,
        )
        copy.notes = self.notes
        return copy

    def _too_many(self, limit: int) -> LimitExceeded:
        return LimitExceeded(
            f"{self.name}: more than {limit:,} rows to hold in memory",
            hint="raise max_rows_in_memory in the policy's [data] table, or check a sample",
        )

    def _check_columns(self, columns: Sequence[str] | None) -> list[str] | None:
        if columns is None:
            return None
        names = set(self.schema.names)
        missing = [c for c in columns if c not in names]
        if missing:
            raise UsageError(
                f"{self.name}: no column {missing[0]!r}",
                hint=f"its columns are: {', '.join(self.schema.names[:20])}",
            )
        return list(columns)

    @classmethod
    def from_table(
        cls,
        table: pyarrow.Table,
        name: str,
        split: str | None = None,
        *,
        path: Path | None = None,
        options: DataOptions | None = None,
    ) -> Dataset:
        """A dataset over rows already in memory."""
        return cls(name, TableSource(table), path=path, split=split, options=options)
