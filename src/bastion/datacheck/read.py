"""Reading data files as Datasets: CSV/TSV (csvfile.py), Parquet, JSON Lines (and JSON arrays),
Arrow IPC/Feather, Excel (with the [excel] extra), each optionally gzip/bz2/xz/zstd-compressed;
single files or every data file under a folder, with the split (train/valid/test/holdout)
recognised by name.

The format is decided by content where the content says it (Parquet, Arrow, zip-based Excel,
compression), by name for the text formats. pyarrow is the engine: its readers stream record
batches, so memory stays bounded by the block and batch sizes whatever the file's size."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from bastion.datacheck.csvfile import CsvSource
from bastion.datacheck.dataset import Dataset, TableSource
from bastion.datacheck.streams import (
    COMPRESSED_SUFFIXES,
    MAX_JSON_DEPTH,
    ArrowLoan,
    JsonDepth,
    compression_of,
    open_bytes,
    read_head,
)
from bastion.errors import DataInputError, MissingExtra

if TYPE_CHECKING:
    import pyarrow

    from bastion.datacheck.options import DataOptions

EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".tab": "csv",
    ".psv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".feather": "arrow",
    ".arrow": "arrow",
    ".arrows": "arrow",
    ".ipc": "arrow",
    ".xlsx": "excel",
    ".xlsm": "excel",
    ".xls": "excel",
}
# train*, valid*, test*, holdout* (the rule), and val/dev as whole words
_SPLIT = re.compile(r"^(?:(train)|(valid)|(test)|(holdout)|(val|dev)(?![a-z]))")
_SPLIT_NAMES = ("train", "valid", "test", "holdout", "valid")
MAX_JSON_ARRAY_BYTES = 256 * 1024 * 1024  # a JSON array is parsed whole: this much at most
MAX_EXCEL_MEMBER_BYTES = 1024 * 1024 * 1024  # one inflated sheet of an Excel workbook
_JSON_ROW = re.compile(r"in row (\d+)")


class Named(NamedTuple):
    """What a file's name says: the format and the compression suffix, if any."""

    format: str | None
    compression: str | None


def name_format(path: Path) -> Named:
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    compression = None
    if suffixes and suffixes[-1] in COMPRESSED_SUFFIXES:
        compression = COMPRESSED_SUFFIXES[suffixes[-1]]
        suffixes = suffixes[:-1]
    fmt = EXTENSIONS.get(suffixes[-1]) if suffixes else None
    return Named(fmt, compression)


def is_data_file(path: Path) -> bool:
    """Whether a file's name says it is tabular data (folders are walked for these)."""
    return name_format(path).format is not None


def split_of(path: Path) -> str | None:
    """train/valid/test/holdout from the file name (train.csv, test_2024.parquet,
    validation.jsonl.gz) or else the nearest folder name (data/train/part-0.parquet)."""
    stem = path.name.split(".")[0].lower()
    for candidate in (stem, *(p.lower() for p in reversed(path.parent.parts[-3:]))):
        match = _SPLIT.match(candidate)
        if match:
            return _SPLIT_NAMES[match.lastindex - 1 if match.lastindex else 0]
    return None


def content_format(head: bytes) -> str | None:
    """The binary formats the first bytes identify (text formats return None)."""
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"ARROW1"):
        return "arrow"
    if head.startswith(b"\xff\xff\xff\xff") or head[4:8] == b"\xff\xff\xff\xff":
        return "arrow-stream"
    if head.startswith(b"FEA1"):
        return "feather-v1"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "ole"
    return None


def _text_format(head: bytes) -> str:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"{"):
        return "jsonl"
    if text.startswith(b"["):
        return "json"
    return "csv"


class Opened(NamedTuple):
    dataset: Dataset
    notes: tuple[str, ...]  # what reading noticed but could work around (name vs content, ...)


def open_dataset(
    path: Path,
    options: DataOptions,
    *,
    name: str | None = None,
    split: str | None = None,
) -> Dataset:
    """A Dataset over one data file. Raises DataInputError when the file cannot be read as a
    table (the error names the row where it can), MissingExtra for Excel without its engine."""
    name = name or str(path)
    try:
        size = path.stat().st_size
        head = read_head(path)
    except OSError as exc:
        raise DataInputError(f"{name}: cannot read ({exc.strerror})", kind="io") from exc
    compression = compression_of(head)
    named = name_format(path)
    if compression is not None:
        with open_bytes(
            path,
            name=name,
            compression=compression,
            cap=options.max_decompressed,
            max_ratio=options.max_compression_ratio,
            max_line=None,
        ) as stream:
            inner_head = stream.read(4096)
    else:
        inner_head = head
    fmt = content_format(inner_head)
    if fmt is None:
        fmt = named.format if named.format in ("csv", "jsonl", "json") else None
        if fmt is None:
            fmt = _text_format(inner_head)
        elif fmt == "json" and _text_format(inner_head) == "jsonl":
            fmt = "jsonl"  # a .json file of one object per line
    elif fmt == "zip":
        fmt = "excel"
    source = _source(path, fmt, compression, name, options, inner_head)
    dataset = Dataset(name, source, path=path, split=split, size=size, options=options)
    notes: list[str] = list(getattr(source, "notes", ()))
    if named.format is not None and named.format != _family(fmt):
        notes.append(
            f"the name says {named.format} but the content is {fmt}: read as {fmt} "
            "(loaders that go by the name read it differently)"
        )
    if named.compression is not None and named.compression != compression:
        notes.append(
            f"the name says {named.compression}-compressed but the content is "
            f"{compression or 'not compressed'}"
        )
    dataset.notes = tuple(notes)
    return dataset


def _family(fmt: str) -> str:
    return {"arrow-stream": "arrow", "feather-v1": "arrow", "jsonl": "jsonl"}.get(fmt, fmt)


def _source(
    path: Path,
    fmt: str,
    compression: str | None,
    name: str,
    options: DataOptions,
    head: bytes,
) -> Any:
    if fmt == "csv":
        return CsvSource(path, name=name, compression=compression, options=options)
    if fmt == "jsonl":
        return JsonLinesSource(path, name=name, compression=compression, options=options)
    if fmt == "json":
        return _json_array(path, name, compression, options)
    if compression is not None:
        raise DataInputError(
            f"{name}: a compressed {fmt} file (its reader needs random access)",
            kind="unsupported",
            hint="decompress it first; Parquet and Arrow compress their own columns",
        )
    if fmt == "parquet":
        return ParquetSource(path, name=name, options=options)
    if fmt in ("arrow", "arrow-stream"):
        return IpcSource(path, name=name, stream=fmt == "arrow-stream")
    if fmt == "excel":
        from bastion.datacheck.excel import ExcelSource

        return ExcelSource(path, name=name, options=options)
    if fmt == "ole":
        raise DataInputError(
            f"{name}: a legacy Excel (.xls) or other OLE file",
            kind="unsupported",
            hint="save it as .xlsx or CSV",
        )
    raise DataInputError(
        f"{name}: {fmt} is not supported",
        kind="unsupported",
        hint="write it as Parquet (pyarrow.feather/Parquet v2) or CSV",
    )


# -- Parquet ------------------------------------------------------------------------------------


def _arrow_error(name: str, exc: BaseException, start: int, what: str) -> DataInputError:
    kind = "memory" if isinstance(exc, MemoryError) else "malformed"
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return DataInputError(
        f"{name}: unreadable {what} after data row {start:,} ({type(exc).__name__}: {text})",
        kind=kind,
        row=start,
    )


_ARROW_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, MemoryError, TypeError)


def _arrow_errors() -> tuple[type[BaseException], ...]:
    import pyarrow as pa

    return (pa.ArrowException, *_ARROW_ERRORS)


class ParquetSource:
    """A Parquet file: its schema from the footer, row groups streamed as batches, each batch
    fully validated (a hostile file can carry offsets that point outside its buffers)."""

    format = "parquet"

    def __init__(self, path: Path, *, name: str, options: DataOptions) -> None:
        self.path = path
        self.name = name
        self.options = options
        try:
            file = self._file()
            self._schema = file.schema_arrow
            self.num_rows = file.metadata.num_rows
            file.close()
        except _arrow_errors() as exc:
            raise _arrow_error(name, exc, 0, "Parquet footer") from exc
        if len(self._schema) > options.max_columns:
            raise DataInputError(
                f"{name}: {len(self._schema):,} columns (bound: {options.max_columns:,})",
                kind="too-many-columns",
            )

    def _file(self) -> Any:
        import pyarrow.parquet as pq

        return pq.ParquetFile(
            str(self.path),
            thrift_string_size_limit=64 * 1024 * 1024,
            thrift_container_size_limit=1_000_000,
        )

    @property
    def schema(self) -> pyarrow.Schema:
        return self._schema

    def read(self, columns: Sequence[str] | None, batch_rows: int) -> Iterator[pyarrow.RecordBatch]:
        start = 0
        try:
            file = self._file()
        except _arrow_errors() as exc:
            raise _arrow_error(self.name, exc, 0, "Parquet") from exc
        try:
            batches = file.iter_batches(
                batch_size=batch_rows, columns=list(columns) if columns is not None else None
            )
            while True:
                try:
                    batch = next(batches)
                    batch.validate(full=True)
                except StopIteration:
                    break
                except _arrow_errors() as exc:
                    raise _arrow_error(self.name, exc, start, "Parquet data") from exc
                yield batch
                start += batch.num_rows
        finally:
            file.close()


# -- Arrow IPC / Feather ------------------------------------------------------------------------


class IpcSource:
    """An Arrow IPC file (Feather v2) or stream, memory-mapped; every batch fully validated."""

    format = "arrow"

    def __init__(self, path: Path, *, name: str, stream: bool) -> None:
        self.path = path
        self.name = name
        self.stream = stream
        try:
            with self._open() as reader:
                self._schema = reader.schema
        except _arrow_errors() as exc:
            raise _arrow_error(name, exc, 0, "Arrow IPC header") from exc

    def _open(self) -> Any:
        import pyarrow as pa
        import pyarrow.ipc as ipc

        source = pa.memory_map(str(self.path), "r")
        if self.stream:
            return ipc.open_stream(source)
        return ipc.open_file(source)

    @property
    def schema(self) -> pyarrow.Schema:
        return self._schema

    def read(self, columns: Sequence[str] | None, batch_rows: int) -> Iterator[pyarrow.RecordBatch]:
        start = 0
        try:
            reader = self._open()
        except _arrow_errors() as exc:
            raise _arrow_error(self.name, exc, 0, "Arrow IPC") from exc
        with reader:
            index = 0
            while True:
                try:
                    if self.stream:
                        try:
                            batch = reader.read_next_batch()
                        except StopIteration:
                            break
                    else:
                        if index >= reader.num_record_batches:
                            break
                        batch = reader.get_batch(index)
                        index += 1
                    batch.validate(full=True)
                    if batch.schema != self._schema:
                        raise ValueError("a record batch does not match the file's schema")
                    if columns is not None:
                        batch = batch.select(list(columns))
                except _arrow_errors() as exc:
                    raise _arrow_error(self.name, exc, start, "Arrow IPC data") from exc
                for offset in range(0, batch.num_rows, batch_rows):
                    yield batch.slice(offset, batch_rows)
                start += batch.num_rows


# -- JSON ---------------------------------------------------------------------------------------


class JsonLinesSource:
    """One JSON object per line, read by pyarrow's streaming JSON reader; the schema (from the
    first block) is then fixed, so a later field or a value of another type names its row."""

    format = "jsonl"

    def __init__(
        self,
        path: Path | None,
        *,
        name: str,
        compression: str | None,
        options: DataOptions,
        data: bytes | None = None,
    ) -> None:
        self.path = path
        self.name = name
        self.compression = compression
        self.options = options
        self.data = data  # the lines in memory (a JSON array converted)
        self._schema: pyarrow.Schema | None = None
        self._schema = self._infer_schema()

    def _open(self) -> io.BufferedIOBase:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return open_bytes(
            self.path,
            name=self.name,
            compression=self.compression,
            cap=self.options.max_decompressed,
            max_ratio=self.options.max_compression_ratio,
            max_line=self.options.max_line,
            json_depth=MAX_JSON_DEPTH,
        )

    def _open_reader(self, loan: ArrowLoan) -> None:
        import pyarrow.json as pjson

        kwargs: dict[str, Any] = {}
        if self._schema is not None:
            kwargs = {"explicit_schema": self._schema, "unexpected_field_behavior": "error"}
        loan.open(
            pjson.open_json,
            read_options=pjson.ReadOptions(block_size=self.options.max_line + 1024),
            parse_options=pjson.ParseOptions(newlines_in_values=False, **kwargs),
        )

    def _infer_schema(self) -> pyarrow.Schema:
        with ArrowLoan(self._open()) as loan:
            try:
                self._open_reader(loan)
                schema = loan.reader.schema
            except DataInputError:
                raise
            except _arrow_errors() as exc:
                raise self._error(exc, 0) from exc
        if len(schema) > self.options.max_columns:
            raise DataInputError(
                f"{self.name}: {len(schema):,} fields (bound: {self.options.max_columns:,})",
                kind="too-many-columns",
            )
        return schema

    @property
    def schema(self) -> pyarrow.Schema:
        assert self._schema is not None
        return self._schema

    def read(self, columns: Sequence[str] | None, batch_rows: int) -> Iterator[pyarrow.RecordBatch]:
        start = 0
        with ArrowLoan(self._open()) as loan:
            try:
                self._open_reader(loan)
                for batch in loan.batches():
                    if columns is not None:
                        batch = batch.select(list(columns))
                    for offset in range(0, batch.num_rows, batch_rows):
                        yield batch.slice(offset, batch_rows)
                    start += batch.num_rows
            except DataInputError as exc:
                if exc.row is None and exc.line is not None:
                    exc.row = exc.line - 1
                raise
            except _arrow_errors() as exc:
                raise self._error(exc, start) from exc

    def _error(self, exc: BaseException, start: int) -> DataInputError:
        text = str(exc)
        found = _JSON_ROW.search(text)
        row = start + int(found.group(1)) if found else start
        where = f"data row {row:,} (line {row + 1:,})" if found else f"after data row {start:,}"
        if "changed from" in text:
            column = re.search(r"Column\(([^)]*)\)", text)
            field = column.group(1).lstrip("/") if column else "?"
            kinds = re.search(r"changed from (\w+) to (\w+)", text)
            change = f"{kinds.group(1)} in earlier rows, {kinds.group(2)} here" if kinds else ""
            return DataInputError(
                f"{self.name}: field {field!r} changes type at {where} ({change})",
                kind="mixed-types",
                row=row,
                column=field or None,
            )
        if "unexpected field" in text.lower():
            return DataInputError(
                f"{self.name}: {where} has a field the first rows do not have",
                kind="ragged",
                row=row,
            )
        if "invalid utf8" in text.lower() or "utf-8" in text.lower():
            return DataInputError(
                f"{self.name}: {where} holds bytes that are not UTF-8 text",
                kind="encoding",
                row=row,
            )
        if "straddl" in text:
            return DataInputError(
                f"{self.name}: a line after data row {start:,} is longer than "
                f"{self.options.max_line:,} bytes",
                kind="line-too-long",
                row=start,
            )
        reason = text.splitlines()[0][:160] if text else type(exc).__name__
        reason = re.sub(r"\s*in row \d+", "", reason)
        return DataInputError(
            f"{self.name}: {where} is not a JSON object ({reason})",
            kind="malformed",
            row=row,
        )


def _json_array(
    path: Path, name: str, compression: str | None, options: DataOptions
) -> JsonLinesSource:
    """A file holding one JSON array of objects: parsed whole (up to MAX_JSON_ARRAY_BYTES) and
    read as JSON Lines, so it gets the same types and row-numbered errors."""
    cap = min(options.max_decompressed, MAX_JSON_ARRAY_BYTES)
    with open_bytes(
        path,
        name=name,
        compression=compression,
        cap=options.max_decompressed,
        max_ratio=options.max_compression_ratio,
        max_line=None,
    ) as stream:
        raw = stream.read(cap + 1)
    if len(raw) > cap:
        raise DataInputError(
            f"{name}: a JSON array larger than {cap:,} bytes (it is parsed whole)",
            kind="limit",
            hint="write it as JSON Lines (one object per line), which is streamed",
        )
    try:
        items = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        line = getattr(exc, "lineno", None)
        raise DataInputError(
            f"{name}: not valid JSON"
            + (f" (line {line:,}: {exc.msg})" if isinstance(exc, json.JSONDecodeError) else ""),
            kind="malformed",
            line=line,
        ) from exc
    if not isinstance(items, list):
        raise DataInputError(
            f"{name}: JSON holding a {type(items).__name__}, not an array of rows",
            kind="malformed",
        )
    lines = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise DataInputError(
                f"{name}: data row {index:,} is a JSON {type(item).__name__}, not an object",
                kind="malformed",
                row=index,
            )
        line = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
        try:
            lines.append(line.encode("utf-8"))
        except UnicodeEncodeError as exc:  # a lone surrogate ("\ud800"): not text
            raise DataInputError(
                f"{name}: data row {index:,} holds a \\u escape that is not a character "
                "(a lone surrogate)",
                kind="encoding",
                row=index,
            ) from exc
    data = b"\n".join(lines) + b"\n"
    del items, lines
    JsonDepth(name, MAX_JSON_DEPTH).feed(data)  # json.loads allowed ~1,000 levels
    if not data.strip():
        raise DataInputError(f"{name}: an empty JSON array", kind="empty", row=0)
    return _InMemoryJson(path, name=name, compression=None, options=options, data=data)


class _InMemoryJson(JsonLinesSource):
    format = "json"


def missing_excel() -> MissingExtra:
    return MissingExtra("openpyxl", "excel")


__all__ = [
    "EXTENSIONS",
    "IpcSource",
    "JsonLinesSource",
    "Opened",
    "ParquetSource",
    "TableSource",
    "is_data_file",
    "name_format",
    "open_dataset",
    "split_of",
]
