"""CSV (and TSV, any delimiter) as a batch source: encoding, dialect and header sniffed from the
first 64 KiB, rows streamed by pyarrow's CSV reader with the column types fixed after the first
block, and every reader failure turned into a DataInputError that names the row.

pyarrow's errors say what went wrong but not where (a ragged row, a value that does not convert,
bytes that are not text); on that path only, the file is read again with Python's csv module to
find the first offending data row and its line."""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.datacheck.streams import ArrowLoan, open_bytes
from bastion.errors import DataInputError

if TYPE_CHECKING:
    import pyarrow

    from bastion.datacheck.options import DataOptions

SAMPLE_BYTES = 64 * 1024
DELIMITERS = ",;\t|:"
_CONVERSION = re.compile(r"In CSV column #(\d+): (?:Row #\d+: )?CSV conversion error to ([^:]+):")
_RAGGED = re.compile(r"Expected (\d+) columns, got (\d+)")
_UNDECODED = re.compile("[\udc80-\udcff]")
MAX_LOCATE_ROWS = 50_000_000  # the error-path re-read gives up after this many rows


def value_shape(value: str, limit: int = 24) -> str:
    """A cell value as its shape only (letters a/A, digits 9, the rest kept), so evidence about a
    bad value never shows the value itself (it may be personal data)."""
    shape = []
    for char in value[:limit]:
        if char.isdigit():
            shape.append("9")
        elif char.isalpha():
            shape.append("A" if char.isupper() else "a")
        elif char.isprintable():
            shape.append(char)
        else:
            shape.append("?")
    more = "…" if len(value) > limit else ""
    return f"'{''.join(shape)}{more}' ({len(value)} chars)"


class CsvLayout:
    """What sniffing decided: encoding, dialect, header and column names."""

    def __init__(
        self,
        encoding: str,
        delimiter: str,
        quotechar: str,
        doublequote: bool,
        escapechar: str | None,
        header: bool,
        names: list[str],
        renamed: list[str],
    ) -> None:
        self.encoding = encoding
        self.delimiter = delimiter
        self.quotechar = quotechar
        self.doublequote = doublequote
        self.escapechar = escapechar
        self.header = header
        self.names = names
        self.renamed = renamed  # header cells that were empty or repeated, and were renamed


def sniff_encoding(sample: bytes) -> str:
    """BOMs first, then strict UTF-8 (a multi-byte character cut by the sample's end is fine),
    then charset-normalizer's best guess, else Windows-1252/Latin-1."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(sample).best()
        if best is not None and best.encoding:
            return str(codecs.lookup(best.encoding).name)
    except ImportError:  # pragma: no cover - charset-normalizer comes with the [data] extra
        pass
    try:
        sample.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def _decoded_sample(sample: bytes, encoding: str, complete: bool) -> str:
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(sample, final=complete)
    if not complete:  # drop the last, possibly cut, line
        cut = max(text.rfind("\n"), text.rfind("\r"))
        if cut > 0:
            text = text[: cut + 1]
    return text


def _sniff_dialect(text: str) -> csv.Dialect | type[csv.Dialect]:
    try:
        return csv.Sniffer().sniff(text, delimiters=DELIMITERS)
    except csv.Error:
        return csv.excel


def _has_header(text: str, dialect: csv.Dialect | type[csv.Dialect]) -> bool:
    """csv.Sniffer's vote, with a fallback the sniffer lacks: a first row whose cells are all
    names (no numbers) above rows that hold numbers is a header."""
    rows = []
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        for row in reader:
            if row:
                rows.append(row)
            if len(rows) >= 50:
                break
    except csv.Error:
        pass
    if len(rows) < 2:
        return bool(rows) and not any(_is_number(cell) for cell in rows[0])
    first, rest = rows[0], rows[1:]
    if any(_is_number(cell) for cell in first):
        return False
    try:
        if csv.Sniffer().has_header(text):
            return True
    except csv.Error:
        pass
    numeric_below = any(
        all(_is_number(row[i]) for row in rest if i < len(row) and row[i].strip())
        and any(i < len(row) and row[i].strip() for row in rest)
        for i in range(len(first))
    )
    return numeric_below or (len(set(first)) == len(first) and _looks_like_names(first, rest))


def _looks_like_names(first: list[str], rest: list[list[str]]) -> bool:
    """Every cell of the first row is an identifier-like name that never appears again in its
    column: with text-only columns this is how a reader tells a header."""
    for i, cell in enumerate(first):
        if not cell.strip():
            continue
        if not re.fullmatch(r"[A-Za-z_][\w .\-/()%]{0,80}", cell.strip()):
            return False
        if any(i < len(row) and row[i] == cell for row in rest):
            return False
    return True


def _is_number(cell: str) -> bool:
    try:
        float(cell.replace(",", "").strip())
        return bool(cell.strip())
    except ValueError:
        return False


def _column_names(first: list[str], header: bool, max_columns: int) -> tuple[list[str], list[str]]:
    count = len(first)
    if count > max_columns:
        raise DataInputError(
            f"{count:,} columns (bound: {max_columns:,})",
            kind="too-many-columns",
            hint="raise max_columns in the policy's [data] table",
        )
    if not header:
        return [f"column_{i + 1}" for i in range(count)], []
    names: list[str] = []
    renamed: list[str] = []
    seen: set[str] = set()
    for i, cell in enumerate(first):
        name = cell.strip()
        candidate = name or f"column_{i + 1}"
        suffix = 2
        while candidate in seen:
            candidate = f"{name or 'column'}_{suffix}"
            suffix += 1
        if candidate != name:
            renamed.append(f"{cell!r} -> {candidate!r}")
        seen.add(candidate)
        names.append(candidate)
    return names, renamed


def sniff_layout(sample: bytes, complete: bool, max_columns: int) -> CsvLayout:
    """Encoding, dialect, header and column names from the first bytes of the file."""
    encoding = sniff_encoding(sample)
    text = _decoded_sample(sample, encoding, complete)
    dialect = _sniff_dialect(text)
    header = _has_header(text, dialect)
    first: list[str] = []
    try:
        for row in csv.reader(io.StringIO(text), dialect):
            if row:
                first = row
                break
    except csv.Error as exc:
        raise DataInputError(f"the first row is not CSV ({exc})", row=0, line=1) from exc
    names, renamed = _column_names(first, header, max_columns)
    return CsvLayout(
        encoding=encoding,
        delimiter=str(dialect.delimiter),
        quotechar=str(dialect.quotechar or '"'),
        doublequote=bool(dialect.doublequote),
        escapechar=dialect.escapechar,
        header=header,
        names=names,
        renamed=renamed,
    )


class CsvSource:
    """A CSV file read by pyarrow in blocks; the column types are inferred from the first block
    and then fixed, so a later value of another type is a mixed-types error naming its row."""

    format = "csv"

    def __init__(
        self,
        path: Path,
        *,
        name: str,
        compression: str | None,
        options: DataOptions,
        text_columns: Sequence[str] = (),
        layout: CsvLayout | None = None,
    ) -> None:
        self.path = path
        self.name = name
        self.compression = compression
        self.options = options
        self.text_columns = tuple(text_columns)
        if layout is None:
            with self._open(line_bound=False) as stream:  # the schema pass bounds lines
                sample = stream.read(SAMPLE_BYTES + 1)
            complete = len(sample) <= SAMPLE_BYTES
            try:
                layout = sniff_layout(sample[:SAMPLE_BYTES], complete, options.max_columns)
            except DataInputError as exc:
                exc.message = f"{name}: {exc.message}"
                exc.args = (exc.message,)
                raise
        self.layout = layout
        self.notes: list[str] = []
        if layout.encoding not in ("utf-8", "utf-8-sig"):
            self.notes.append(f"not UTF-8: read as {layout.encoding} (sniffed)")
        if layout.renamed:
            self.notes.append(
                f"{len(layout.renamed)} header cell(s) empty or repeated, renamed: "
                + "; ".join(layout.renamed[:5])
            )
        if not layout.names:
            raise DataInputError(f"{name}: no columns (empty file?)", kind="empty", row=0)
        self._schema = self._infer_schema()

    # -- pyarrow options ----------------------------------------------------------------------
    def _open(self, line_bound: bool = True, count_quotes: bool = False) -> io.BufferedReader:
        return open_bytes(
            self.path,
            name=self.name,
            compression=self.compression,
            cap=self.options.max_decompressed,
            max_ratio=self.options.max_compression_ratio,
            max_line=self.options.max_line if line_bound else None,
            count_byte=self._quote_byte() if count_quotes else None,
        )

    def _quote_byte(self) -> bytes | None:
        """The quote character as the one byte it is in the file's encoding, or None when it is
        not one byte that no other character contains (UTF-16/32: then every read is
        confirmed by Python's csv module)."""
        if self.layout.encoding.replace("_", "-").startswith(("utf-16", "utf-32")):
            return None
        try:
            encoded = self.layout.quotechar.encode(self.layout.encoding)
        except (UnicodeError, LookupError):
            return None
        return encoded if len(encoded) == 1 and encoded[0] < 0x80 else None

    def _read_options(self) -> Any:
        import pyarrow.csv as pcsv

        return pcsv.ReadOptions(
            column_names=self.layout.names,
            skip_rows=1 if self.layout.header else 0,
            block_size=self.options.max_line + 1024,
            encoding="utf8",  # ArrowLoan transcodes (pyarrow would, from its own threads)
            use_threads=True,  # blocks parsed and converted on pyarrow's thread pool
        )

    def _parse_options(self) -> Any:
        import pyarrow.csv as pcsv

        layout = self.layout
        return pcsv.ParseOptions(
            delimiter=layout.delimiter,
            quote_char=layout.quotechar,
            double_quote=layout.doublequote,
            escape_char=layout.escapechar or False,
            newlines_in_values=True,
        )

    def _convert_options(
        self, column_types: dict[str, Any] | None, columns: Sequence[str] | None
    ) -> Any:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        types = dict(column_types or {})
        for column in self.text_columns:
            types[column] = pa.string()
        kwargs: dict[str, Any] = {"column_types": types}
        if columns is not None:
            kwargs["include_columns"] = list(columns)
        return pcsv.ConvertOptions(**kwargs)

    def _open_reader(
        self, loan: ArrowLoan, types: dict[str, Any] | None, columns: Sequence[str] | None
    ) -> None:
        import pyarrow.csv as pcsv

        loan.open(
            pcsv.open_csv,
            read_options=self._read_options(),
            parse_options=self._parse_options(),
            convert_options=self._convert_options(types, columns),
        )

    # -- schema -------------------------------------------------------------------------------
    def _infer_schema(self) -> pyarrow.Schema:
        import pyarrow as pa

        with ArrowLoan(self._open(), encoding=self.layout.encoding) as loan:
            try:
                self._open_reader(loan, None, None)
                schema = loan.reader.schema
            except DataInputError as exc:
                if exc.row is None and exc.line is not None:
                    exc.row = self._row_of_line(exc.line)
                raise
            except (pa.ArrowException, UnicodeError, OSError, ValueError, MemoryError) as exc:
                raise self._error(exc, 0, {}) from exc
        undecoded = [f.name for f in schema if pa.types.is_binary(f.type)]
        if undecoded:  # pyarrow falls back to bytes for cells that are not valid text
            raise self._locate_encoding(0, undecoded[0])
        return schema

    @property
    def schema(self) -> pyarrow.Schema:
        return self._schema

    def with_text_columns(self, columns: Sequence[str]) -> CsvSource:
        """The same file with these columns read as text (after a mixed-types error)."""
        return CsvSource(
            self.path,
            name=self.name,
            compression=self.compression,
            options=self.options,
            text_columns=tuple(dict.fromkeys((*self.text_columns, *columns))),
            layout=self.layout,
        )

    # -- reading ------------------------------------------------------------------------------
    def read(self, columns: Sequence[str] | None, batch_rows: int) -> Iterator[pyarrow.RecordBatch]:
        import pyarrow as pa

        types = {f.name: f.type for f in self._schema}
        start = 0
        stream = self._open(count_quotes=True)
        with ArrowLoan(stream, encoding=self.layout.encoding) as loan:
            try:
                self._open_reader(loan, types, columns)
                held = None  # the last batch waits until the quotes are known to be closed
                for batch in loan.batches():
                    if held is not None:
                        yield from _slices(held, batch_rows)
                    held = batch
                    start += batch.num_rows
                self._check_quotes_closed(stream.raw)
                if held is not None:
                    yield from _slices(held, batch_rows)
            except DataInputError as exc:
                if exc.row is None:
                    exc.row = self._row_of_line(exc.line) if exc.line else None
                raise
            except (pa.ArrowException, UnicodeError, OSError, ValueError, MemoryError) as exc:
                raise self._error(exc, start, types) from exc

    def _check_quotes_closed(self, raw: Any) -> None:
        """pyarrow reads a quote that is never closed as one last cell holding the rest of the
        file, and no error: the rows after it vanish into that cell. An odd count of quote bytes
        (or an encoding where bytes cannot be counted) is confirmed by Python's csv module in
        strict mode, which fails at the end of data inside a quoted field; stray quotes inside
        unquoted fields (5'10") are literal to both readers and pass."""
        if not getattr(raw, "ended", False):
            return
        if raw.count_byte is not None and raw.counted % 2 == 0:
            return
        opened = self._unclosed_quote_line()
        if opened is None:
            return
        row, line = opened
        raise DataInputError(
            f"{self.name}: the quote opened on line {line:,} (data row {row:,}) is never "
            "closed: the rest of the file would be read as one cell",
            kind="unclosed-quote",
            row=row,
            line=line,
        )

    def _unclosed_quote_line(self) -> tuple[int, int] | None:
        """(data row, line) where the quoted field still open at the end of the file starts,
        by Python's csv module in strict mode; None when the file's quotes are all closed."""
        csv.field_size_limit(self.options.max_line)
        stream = self._open()
        try:
            text = io.TextIOWrapper(
                stream, encoding=self.layout.encoding, errors="surrogateescape", newline=""
            )
            reader = csv.reader(
                text,
                delimiter=self.layout.delimiter,
                quotechar=self.layout.quotechar,
                doublequote=self.layout.doublequote,
                escapechar=self.layout.escapechar,
                strict=True,
            )
            rows = -1 if self.layout.header else 0
            ended = 0  # the line the last complete row ended on
            try:
                for cells in reader:
                    if cells:
                        rows += 1
                    ended = reader.line_num
            except csv.Error as exc:
                if "unexpected end of data" in str(exc):
                    return max(rows, 0), ended + 1
                return None  # another irregularity: pyarrow's read stands
            return None
        finally:
            stream.close()

    # -- errors -------------------------------------------------------------------------------
    def _error(self, exc: BaseException, start: int, types: dict[str, Any]) -> DataInputError:
        text = str(exc)
        if isinstance(exc, UnicodeError) or "invalid UTF8" in text:
            match = _CONVERSION.search(text)
            column = self.layout.names[int(match.group(1))] if match else None
            return self._locate_encoding(start, column)
        if isinstance(exc, MemoryError) or ("memory" in text.lower() and "alloc" in text.lower()):
            return DataInputError(
                f"{self.name}: out of memory reading the rows after data row {start:,}",
                kind="memory",
                row=start,
            )
        match = _CONVERSION.search(text)
        if match:
            column = self.layout.names[int(match.group(1))]
            return self._locate_conversion(start, column, match.group(2).strip(), types)
        ragged = _RAGGED.search(text)
        if ragged:
            return self._locate_ragged(start)
        if "straddl" in text or "block size" in text:  # a row (or the header) over one block
            return DataInputError(
                f"{self.name}: a row after data row {start:,} is longer than "
                f"{self.options.max_line:,} bytes",
                kind="line-too-long",
                row=start,
            )
        return DataInputError(
            f"{self.name}: unreadable CSV after data row {start:,} ({type(exc).__name__}: "
            f"{_first_line(text)})",
            kind="malformed",
            row=start,
        )

    def _python_rows(self) -> Iterator[tuple[int, int, list[str]]]:
        """(data row, line, cells) by Python's csv module, with undecodable bytes kept as lone
        surrogates so the row holding them can be named."""
        csv.field_size_limit(self.options.max_line)
        stream = self._open()
        try:
            text = io.TextIOWrapper(
                stream, encoding=self.layout.encoding, errors="surrogateescape", newline=""
            )
            reader = csv.reader(
                text,
                delimiter=self.layout.delimiter,
                quotechar=self.layout.quotechar,
                doublequote=self.layout.doublequote,
                escapechar=self.layout.escapechar,
                strict=False,
            )
            index = -1 if self.layout.header else 0
            for cells in reader:
                if not cells:
                    continue  # pyarrow skips empty lines too
                if index >= 0:
                    yield index, reader.line_num, cells
                index += 1
                if index > MAX_LOCATE_ROWS:
                    return
        finally:
            stream.close()

    def _find(
        self, start: int, predicate: Callable[[list[str]], bool]
    ) -> tuple[int, int, list[str]] | None:
        try:
            for row, line, cells in self._python_rows():
                if row >= start and predicate(cells):
                    return row, line, cells
        except (csv.Error, UnicodeError, DataInputError):
            return None
        return None

    def _row_of_line(self, line: int) -> int | None:
        """The data row that a line of the file belongs to (for a line-length error)."""
        return max(line - (2 if self.layout.header else 1), 0)

    def _locate_ragged(self, start: int) -> DataInputError:
        width = len(self.layout.names)
        hit = self._find(start, lambda cells: len(cells) != width)
        if hit is None:
            return DataInputError(
                f"{self.name}: a row after data row {start:,} does not have {width} fields",
                kind="ragged",
                row=start,
            )
        row, line, cells = hit
        return DataInputError(
            f"{self.name}: data row {row:,} (line {line:,}) has {len(cells)} fields where the "
            f"{'header' if self.layout.header else 'first row'} has {width}",
            kind="ragged",
            row=row,
            line=line,
        )

    def _locate_encoding(self, start: int, column: str | None) -> DataInputError:
        hit = self._find(start, lambda cells: any(_UNDECODED.search(c) for c in cells))
        where = f" in column {column!r}" if column else ""
        if hit is None:
            return DataInputError(
                f"{self.name}: bytes that are not {self.layout.encoding} text{where} after "
                f"data row {start:,}",
                kind="encoding",
                row=start,
                column=column,
            )
        row, line, cells = hit
        index = next(i for i, c in enumerate(cells) if _UNDECODED.search(c))
        if index < len(self.layout.names):
            column = self.layout.names[index]
        return DataInputError(
            f"{self.name}: data row {row:,} (line {line:,}) holds bytes that are not "
            f"{self.layout.encoding} text (the encoding sniffed from the first "
            f"{SAMPLE_BYTES // 1024} KiB) in column {column!r}",
            kind="encoding",
            row=row,
            line=line,
            column=column,
        )

    def _locate_conversion(
        self, start: int, column: str, type_name: str, types: dict[str, Any]
    ) -> DataInputError:
        index = self.layout.names.index(column)
        wanted = types.get(column)
        hit = None
        if wanted is not None:
            try:
                hit = _first_unconverted(self._python_rows(), start, index, _converter(wanted))
            except (csv.Error, UnicodeError, DataInputError):
                hit = None
        if hit is None:
            return DataInputError(
                f"{self.name}: column {column!r} holds a value that is not {type_name} (the type "
                f"of its first rows) after data row {start:,}",
                kind="mixed-types",
                row=start,
                column=column,
            )
        row, line, cell = hit
        return DataInputError(
            f"{self.name}: column {column!r} is {type_name} in its first rows but data row "
            f"{row:,} (line {line:,}) holds {value_shape(cell)}",
            kind="mixed-types",
            row=row,
            line=line,
            column=column,
        )


def _slices(batch: Any, batch_rows: int) -> Iterator[Any]:
    for offset in range(0, max(batch.num_rows, 1), batch_rows):
        part = batch.slice(offset, batch_rows)
        if part.num_rows:
            yield part


def _first_unconverted(
    rows: Iterator[tuple[int, int, list[str]]],
    start: int,
    index: int,
    converts: Callable[[list[str]], bool],
    chunk: int = 4096,
) -> tuple[int, int, str] | None:
    """The first (row, line, cell) at or after `start` whose cell in column `index` does not
    convert: cells are checked a chunk at a time, then the failing chunk is bisected."""
    pending: list[tuple[int, int, str]] = []

    def failing() -> tuple[int, int, str] | None:
        cells = [cell for _r, _l, cell in pending]
        if converts(cells):
            return None
        low, high = 0, len(cells) - 1  # the first i with cells[: i + 1] not converting
        while low < high:
            middle = (low + high) // 2
            if converts(cells[: middle + 1]):
                low = middle + 1
            else:
                high = middle
        return pending[low]

    for row, line, cells in rows:
        if row < start or index >= len(cells):
            continue
        pending.append((row, line, cells[index]))
        if len(pending) >= chunk:
            hit = failing()
            if hit is not None:
                return hit
            pending.clear()
    return failing() if pending else None


def _converter(arrow_type: Any) -> Callable[[list[str]], bool]:
    """Whether pyarrow's CSV conversion takes cells as `arrow_type`: the CSV reader's own
    conversion on a one-column file of those cells, so the rules are pyarrow's (including its
    null spellings)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    options = pcsv.ConvertOptions(column_types={"v": arrow_type})
    read_options = pcsv.ReadOptions(column_names=["v"])
    parse_options = pcsv.ParseOptions(newlines_in_values=True)

    def converts(cells: list[str]) -> bool:
        text = "".join('"' + cell.replace('"', '""') + '"\n' for cell in cells)
        try:
            pcsv.read_csv(
                io.BytesIO(text.encode("utf-8", "surrogateescape")),
                read_options=read_options,
                parse_options=parse_options,
                convert_options=options,
            )
        except (pa.ArrowException, ValueError):
            return False
        return True

    return converts


def _first_line(text: str) -> str:
    return text.splitlines()[0][:160] if text else ""
