"""Readers: every format and compression gives the same table; malformed input is a
DataInputError naming the row (never a traceback, never a silent pass); every bound holds."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from bastion.datacheck.dataset import Dataset
from bastion.datacheck.options import DataOptions
from bastion.datacheck.read import is_data_file, open_dataset, split_of
from bastion.datacheck.streams import open_bytes
from bastion.errors import DataInputError, LimitExceeded, UsageError

ROWS = [
    {"id": f"c{i:04d}", "age": 20 + i % 50, "income": 1000.5 + i, "city": ["Köln", "Lyon"][i % 2]}
    for i in range(500)
]


def _csv(rows: list[dict[str, object]], delimiter: str = ",") -> str:
    lines = [delimiter.join(rows[0])]
    lines += [delimiter.join(str(v) for v in row.values()) for row in rows]
    return "\n".join(lines) + "\n"


def _read(path: Path, **options: int) -> pa.Table:
    return open_dataset(path, DataOptions(**options)).table()


def _error(path: Path, **options: int) -> DataInputError:
    with pytest.raises(DataInputError) as caught:
        dataset = open_dataset(path, DataOptions(**options))
        for _start, _batch in dataset.batches():
            pass
    return caught.value


@pytest.fixture()
def expected() -> pa.Table:
    return pa.Table.from_pylist(ROWS)


@pytest.mark.parametrize(
    ("name", "writer"),
    [
        ("plain.csv", lambda p: p.write_text(_csv(ROWS))),
        ("semi.csv", lambda p: p.write_text(_csv(ROWS, ";"))),
        ("tabs.tsv", lambda p: p.write_text(_csv(ROWS, "\t"))),
        ("pipes.txt.csv", lambda p: p.write_text(_csv(ROWS, "|"))),
        ("latin1.csv", lambda p: p.write_bytes(_csv(ROWS, ";").encode("cp1252"))),
        ("utf16.csv", lambda p: p.write_bytes(_csv(ROWS).encode("utf-16"))),
        ("bom.csv", lambda p: p.write_bytes(b"\xef\xbb\xbf" + _csv(ROWS).encode())),
        ("packed.csv.gz", lambda p: p.write_bytes(gzip.compress(_csv(ROWS).encode()))),
        ("packed.csv.bz2", lambda p: p.write_bytes(bz2.compress(_csv(ROWS).encode()))),
        ("packed.csv.xz", lambda p: p.write_bytes(lzma.compress(_csv(ROWS).encode()))),
        ("rows.jsonl", lambda p: p.write_text("\n".join(json.dumps(r) for r in ROWS))),
        ("rows.json", lambda p: p.write_text(json.dumps(ROWS))),
        ("rows.parquet", lambda p: pq.write_table(pa.Table.from_pylist(ROWS), p)),
        ("rows.feather", lambda p: feather.write_feather(pa.Table.from_pylist(ROWS), p)),
    ],
)
def test_formats_read_the_same_rows(
    tmp_path: Path, expected: pa.Table, name: str, writer: object
) -> None:
    path = tmp_path / name
    writer(path)  # type: ignore[operator]
    table = _read(path, batch_rows=64)
    assert table.column_names == expected.column_names
    assert table.to_pylist() == expected.to_pylist()


def test_zstd_and_arrow_stream(tmp_path: Path, expected: pa.Table) -> None:
    zstandard = pytest.importorskip("zstandard")
    path = tmp_path / "rows.csv.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(_csv(ROWS).encode()))
    assert _read(path).to_pylist() == expected.to_pylist()
    stream = tmp_path / "rows.arrows"
    with pa.OSFile(str(stream), "wb") as sink, pa.ipc.new_stream(sink, expected.schema) as writer:
        writer.write_table(expected, max_chunksize=100)
    dataset = open_dataset(stream, DataOptions(batch_rows=64))
    starts = [start for start, _batch in dataset.batches()]
    assert starts[:3] == [0, 64, 100] and dataset.num_rows == 500


def test_header_is_sniffed(tmp_path: Path) -> None:
    path = tmp_path / "noheader.csv"
    path.write_text("1,2.5,x\n3,4.5,y\n")
    table = _read(path)
    assert table.column_names == ["column_1", "column_2", "column_3"]
    assert table.num_rows == 2
    text_only = tmp_path / "text.csv"
    text_only.write_text("name,city\nalice,paris\nbob,rome\n")
    assert _read(text_only).column_names == ["name", "city"]


def test_repeated_and_empty_header_cells_are_renamed_and_noted(tmp_path: Path) -> None:
    path = tmp_path / "dupes.csv"
    path.write_text("a,a,,b\n1,2,3,4\n")
    dataset = open_dataset(path, DataOptions())
    assert dataset.columns == ["a", "a_2", "column_3", "b"]
    assert any("renamed" in note for note in dataset.notes)


def test_content_decides_the_format_and_a_mismatch_is_noted(
    tmp_path: Path, expected: pa.Table
) -> None:
    path = tmp_path / "disguised.csv"
    pq.write_table(expected, path)
    dataset = open_dataset(path, DataOptions())
    assert dataset.format == "parquet"
    assert dataset.table().num_rows == 500
    assert any("name says csv" in note for note in dataset.notes)


def test_ragged_row_names_its_row_and_line(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_bytes(b"a,b\n" + b"1,2\n" * 100_000 + b"1,2,3\n" + b"4,5\n" * 10)
    error = _error(path, max_line_kb=64)
    assert (error.kind, error.row, error.line) == ("ragged", 100_000, 100_002)
    assert "3 fields" in error.message and "has 2" in error.message


def test_quoted_newlines_keep_row_numbers_right(tmp_path: Path) -> None:
    path = tmp_path / "quoted.csv"
    path.write_bytes(b'a,b\n1,"two\nlines"\n2,x\n3,y,z\n')
    error = _error(path)
    assert (error.kind, error.row, error.line) == ("ragged", 2, 5)


def test_mixed_types_name_the_row_and_never_the_value(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"a,b\n" + b"1,2\n" * 300_000 + b"jane.doe@example.com,2\n")
    error = _error(path, max_line_kb=64)
    assert (error.kind, error.row, error.column) == ("mixed-types", 300_000, "a")
    assert "example" not in error.message and "aaaa.aaa@aaaaaaa.aaa" in error.message


def test_mixed_types_can_be_read_again_as_text(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"a,b\n" + b"1,2\n" * 100_000 + b"x,2\n")
    dataset = open_dataset(path, DataOptions(max_line_kb=64))
    with pytest.raises(DataInputError):
        dataset.table()
    again = dataset.with_text_columns(["a"])
    table = again.table()
    assert table.schema.field("a").type == pa.string()
    assert table.column("a")[-1].as_py() == "x"


def test_bytes_that_are_not_text_name_the_row(tmp_path: Path) -> None:
    path = tmp_path / "encoding.csv"
    path.write_bytes(b"a,b\n" + b"1,abc\n" * 200_000 + b"1,\xff\xfe\n")
    error = _error(path, max_line_kb=64)
    assert (error.kind, error.row, error.column) == ("encoding", 200_000, "b")


def test_a_huge_line_fails_after_its_bound_not_at_the_end(tmp_path: Path) -> None:
    # stands for the 2 GB single line: the bound is lowered so the test writes 1 MiB
    path = tmp_path / "long.csv"
    path.write_bytes(b"a,b\n1,2\n1," + b"x" * (1024 * 1024) + b"\n")
    error = _error(path, max_line_kb=64)
    assert error.kind == "line-too-long" and error.line == 3 and error.row == 1


def test_line_bound_stops_reading_an_endless_line() -> None:
    class Endless(io.RawIOBase):
        served = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            buffer[:] = b"x" * len(buffer)
            Endless.served += len(buffer)
            return len(buffer)

    from bastion.datacheck.streams import BoundedStream

    stream = BoundedStream(
        Endless(),  # type: ignore[arg-type]
        name="endless",
        compression=None,
        counter=None,
        cap=1 << 40,
        max_ratio=500,
        max_line=64 * 1024,
    )
    with pytest.raises(DataInputError) as caught:
        while stream.read(1 << 20):
            pass
    assert caught.value.kind == "line-too-long"
    assert Endless.served <= 2 * 64 * 1024


def test_decompression_bomb_is_an_error_not_an_oom(tmp_path: Path) -> None:
    path = tmp_path / "bomb.csv.gz"
    chunk = b"0,0\n" * (1 << 18)
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb") as writer:
        writer.write(b"a,b\n")
        for _ in range(64):  # 64 MiB of rows in about 64 KiB
            writer.write(chunk)
    path.write_bytes(packed.getvalue())
    error = _error(path)
    assert error.kind == "decompressed-size" and "ratio" in error.message
    capped = _error(path, max_decompressed_mb=8, max_compression_ratio=100_000)
    assert capped.kind == "decompressed-size" and "inflates past" in capped.message


def test_corrupt_compressed_stream(tmp_path: Path) -> None:
    path = tmp_path / "broken.csv.gz"
    data = gzip.compress(_csv(ROWS).encode())
    path.write_bytes(data[: len(data) // 2])
    assert _error(path).kind in ("compression", "malformed")


def test_json_lines_errors_name_the_row(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"a": 1}\n' * 100_000 + b'{"a": "x"}\n')
    error = _error(path, max_line_kb=64)
    assert (error.kind, error.row, error.column) == ("mixed-types", 100_000, "a")
    path.write_bytes(b'{"a": 1}\n' * 10 + b"not json\n")
    error = _error(path)
    assert (error.kind, error.row) == ("malformed", 10)
    array = tmp_path / "rows.json"
    array.write_text('[{"a": 1}, [1, 2]]')
    error = _error(array)
    assert (error.kind, error.row) == ("malformed", 1)


def test_corrupt_parquet_and_arrow_are_errors(tmp_path: Path, expected: pa.Table) -> None:
    path = tmp_path / "rows.parquet"
    pq.write_table(expected, path)
    data = bytearray(path.read_bytes())
    data[200:400] = b"\x00" * 200
    path.write_bytes(bytes(data))
    assert _error(path).kind in ("malformed", "memory")
    truncated = tmp_path / "cut.parquet"
    truncated.write_bytes(b"PAR1" + bytes(data[4:100]))
    assert _error(truncated).kind == "malformed"
    arrow = tmp_path / "rows.arrow"
    arrow.write_bytes(b"ARROW1\x00\x00" + b"\x10" * 64)
    assert _error(arrow).kind == "malformed"


def test_legacy_excel_and_compressed_parquet_are_unsupported(
    tmp_path: Path, expected: pa.Table
) -> None:
    xls = tmp_path / "old.xls"
    xls.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100)
    assert _error(xls).kind == "unsupported"
    sink = io.BytesIO()
    pq.write_table(expected, sink)
    packed = tmp_path / "rows.parquet.gz"
    packed.write_bytes(gzip.compress(sink.getvalue()))
    assert _error(packed).kind == "unsupported"


def test_excel(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["id", "age", "city"])
    for row in ROWS[:50]:
        sheet.append([row["id"], row["age"], row["city"]])
    book.create_sheet("other")
    path = tmp_path / "book.xlsx"
    book.save(path)
    dataset = open_dataset(path, DataOptions(batch_rows=16))
    table = dataset.table()
    assert table.column_names == ["id", "age", "city"] and table.num_rows == 50
    assert table.column("age").to_pylist()[:2] == [20, 21]
    assert any("first worksheet" in note for note in dataset.notes)


def test_excel_without_its_engine_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    from bastion.errors import MissingExtra

    real = builtins.__import__

    def no_openpyxl(name: str, *args: object, **kwargs: object) -> object:
        if name == "openpyxl":
            raise ImportError(name)
        return real(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_openpyxl)
    path = tmp_path / "book.xlsx"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    with pytest.raises(MissingExtra) as caught:
        open_dataset(path, DataOptions())
    assert caught.value.extra == "excel"


def test_in_memory_row_limit(expected: pa.Table) -> None:
    dataset = Dataset.from_table(expected, "rows", options=DataOptions(max_rows_in_memory=100))
    with pytest.raises(LimitExceeded):
        dataset.table()
    assert dataset.table(max_rows=50).num_rows == 50
    with pytest.raises(UsageError):
        dataset.table(columns=["nope"])


def test_file_backed_table_limit_and_sample(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text(_csv(ROWS))
    dataset = open_dataset(path, DataOptions(max_rows_in_memory=100, batch_rows=32))
    with pytest.raises(LimitExceeded):
        dataset.table()
    sample = dataset.table(columns=["age"], max_rows=40)
    assert sample.column_names == ["age"] and sample.num_rows == 40


def test_names_and_splits() -> None:
    assert is_data_file(Path("x.csv.gz")) and is_data_file(Path("x.parquet"))
    assert not is_data_file(Path("model.pkl")) and not is_data_file(Path("notes.txt"))
    cases = {
        "data/train/part-0.parquet": "train",
        "training_set.csv": "train",
        "validation.jsonl": "valid",
        "val.csv": "valid",
        "dev.csv": "valid",
        "test_2024.csv": "test",
        "holdout.csv.gz": "holdout",
        "value.csv": None,
        "device.csv": None,
        "credit.csv": None,
    }
    assert {name: split_of(Path(name)) for name in cases} == cases


def test_open_bytes_passes_plain_files_through(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"a\n1\n")
    with open_bytes(path, name="x", compression=None, cap=10, max_ratio=2, max_line=None) as stream:
        assert stream.read() == b"a\n1\n"


@pytest.mark.parametrize("name", ["rows.json", "rows.jsonl"])
def test_a_lone_surrogate_escape_is_an_error_naming_its_row(tmp_path: Path, name: str) -> None:
    """`"\\ud800"` is valid JSON but no character: the array form became a string column of
    invalid UTF-8 (the personal-data check then failed on it); both forms name the row."""
    path = tmp_path / name
    rows = ['{"a": "x"}', '{"a": "\\ud800"}', '{"a": "y"}']
    path.write_text(("[" + ",".join(rows) + "]") if name.endswith(".json") else "\n".join(rows))
    error = _error(path)
    assert error.row == 1
    assert error.kind in ("encoding", "malformed")
