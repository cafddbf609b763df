"""Excel workbooks (.xlsx/.xlsm) as a batch source, with openpyxl in read-only mode (the
[excel] extra; defusedxml guards its XML parsing). The first worksheet is the dataset and its
first row the header; the zip's declared sizes are checked before anything is inflated (Python's
zipfile never inflates a member past its declared size)."""

from __future__ import annotations

import zipfile
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.datacheck.csvfile import value_shape
from bastion.errors import DataInputError, MissingExtra

if TYPE_CHECKING:
    import pyarrow

    from bastion.datacheck.options import DataOptions

MAX_MEMBERS = 10_000


def _openpyxl() -> Any:
    try:
        import openpyxl
    except ImportError as exc:
        raise MissingExtra("openpyxl", "excel") from exc
    return openpyxl


class ExcelSource:
    format = "excel"

    def __init__(self, path: Path, *, name: str, options: DataOptions) -> None:
        self.path = path
        self.name = name
        self.options = options
        self.notes: list[str] = []
        _openpyxl()
        self._check_zip()
        self._schema = self._infer_schema()

    def _check_zip(self) -> None:
        try:
            with zipfile.ZipFile(self.path) as archive:
                members = archive.infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise DataInputError(f"{self.name}: not a readable workbook ({exc})") from exc
        if len(members) > MAX_MEMBERS:
            raise DataInputError(
                f"{self.name}: {len(members):,} zip members (bound: {MAX_MEMBERS:,})",
                kind="limit",
            )
        total = sum(m.file_size for m in members)
        if total > self.options.max_decompressed:
            raise DataInputError(
                f"{self.name}: its members inflate to {total:,} bytes (bound: "
                f"{self.options.max_decompressed:,}; decompression bomb?)",
                kind="decompressed-size",
            )

    def _rows(self) -> Generator[tuple[Any, ...], None, None]:
        openpyxl = _openpyxl()
        try:
            book = openpyxl.load_workbook(
                self.path, read_only=True, data_only=True, keep_links=False
            )
        except Exception as exc:  # openpyxl raises many types on broken workbooks
            raise DataInputError(
                f"{self.name}: not a readable workbook ({type(exc).__name__}: {str(exc)[:160]})",
            ) from exc
        try:
            sheets = book.worksheets
            if not sheets:
                raise DataInputError(f"{self.name}: a workbook without worksheets", kind="empty")
            if len(sheets) > 1 and not self.notes:
                self.notes.append(
                    f"only the first worksheet ({sheets[0].title!r}) was read; "
                    f"{len(sheets) - 1} more not checked"
                )
            width = None
            for row in sheets[0].iter_rows(values_only=True):
                if width is None:
                    width = len(row)
                    if width > self.options.max_columns:
                        raise DataInputError(
                            f"{self.name}: {width:,} columns (bound: {self.options.max_columns:,})",
                            kind="too-many-columns",
                        )
                yield tuple(row)
        except DataInputError:
            raise
        except Exception as exc:
            raise DataInputError(
                f"{self.name}: unreadable worksheet ({type(exc).__name__}: {str(exc)[:160]})",
            ) from exc
        finally:
            book.close()

    def _header(self, first: tuple[Any, ...]) -> list[str]:
        names: list[str] = []
        seen: set[str] = set()
        for index, cell in enumerate(first):
            base = str(cell).strip() if cell is not None else ""
            name = base or f"column_{index + 1}"
            suffix = 2
            while name in seen:
                name = f"{base or 'column'}_{suffix}"
                suffix += 1
            seen.add(name)
            names.append(name)
        return names

    def _infer_schema(self) -> pyarrow.Schema:
        import pyarrow as pa

        rows = self._rows()
        first = next(rows, None)
        if first is None:
            raise DataInputError(f"{self.name}: an empty worksheet", kind="empty", row=0)
        self.names = self._header(first)
        sample = []
        for row in rows:
            sample.append(row)
            if len(sample) >= 1000:
                break
        rows.close()
        fields = []
        self.text_columns: set[str] = set()
        for index, name in enumerate(self.names):
            values = [row[index] if index < len(row) else None for row in sample]
            try:
                arrow_type = pa.array(values).type
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                arrow_type = pa.string()
                self.text_columns.add(name)
                self.notes.append(f"column {name!r} mixes types in its first rows: read as text")
            if pa.types.is_null(arrow_type):
                arrow_type = pa.string()
            fields.append(pa.field(name, arrow_type))
        return pa.schema(fields)

    @property
    def schema(self) -> pyarrow.Schema:
        return self._schema

    def read(self, columns: Sequence[str] | None, batch_rows: int) -> Iterator[pyarrow.RecordBatch]:
        rows = self._rows()
        next(rows, None)  # the header
        wanted = list(columns) if columns is not None else list(self.names)
        indexes = [self.names.index(c) for c in wanted]
        schema = self._schema
        start = 0
        pending: list[tuple[Any, ...]] = []
        for row in rows:
            if len(row) > len(self.names) and any(v is not None for v in row[len(self.names) :]):
                raise DataInputError(
                    f"{self.name}: data row {start + len(pending):,} has cells beyond the "
                    f"{len(self.names)} header columns",
                    kind="ragged",
                    row=start + len(pending),
                )
            pending.append(row)
            if len(pending) >= batch_rows:
                yield self._batch(pending, indexes, wanted, schema, start)
                start += len(pending)
                pending = []
        if pending:
            yield self._batch(pending, indexes, wanted, schema, start)

    def _batch(
        self,
        rows: list[tuple[Any, ...]],
        indexes: list[int],
        names: list[str],
        schema: pyarrow.Schema,
        start: int,
    ) -> pyarrow.RecordBatch:
        import pyarrow as pa

        arrays = []
        for index, name in zip(indexes, names, strict=True):
            values = [row[index] if index < len(row) else None for row in rows]
            arrow_type = schema.field(name).type
            if name in self.text_columns:
                values = [None if v is None else str(v) for v in values]
            try:
                arrays.append(pa.array(values, type=arrow_type))
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
                row = next((i for i, v in enumerate(values) if not _fits(v, arrow_type)), 0)
                shown = value_shape(str(values[row])) if values else ""
                raise DataInputError(
                    f"{self.name}: column {name!r} is {arrow_type} in its first rows but data "
                    f"row {start + row:,} holds {shown}",
                    kind="mixed-types",
                    row=start + row,
                    column=name,
                ) from exc
        return pa.RecordBatch.from_arrays(arrays, names=names)


def _fits(value: Any, arrow_type: Any) -> bool:
    import pyarrow as pa

    try:
        pa.array([value], type=arrow_type)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return False
    return True
