"""Regressions from the attack review of the data stage's tamper detection: each test builds the
bypass in code and shows it is caught now — and that the honest neighbour of the hostile input
still passes."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from bastion.datacheck.options import DataOptions
from bastion.datacheck.read import open_dataset
from bastion.errors import DataInputError


def _rows(dataset_path: Path) -> int:
    dataset = open_dataset(dataset_path, DataOptions(), name=dataset_path.name)
    return sum(batch.num_rows for _start, batch in dataset.batches())


def _check_json(path: Path, tmp_path: Path, *extra: str) -> tuple[int, dict[str, dict[str, Any]]]:
    from bastion.cli.main import main

    out = tmp_path / "check.json"
    code = main(
        ["data", "check", str(path), *extra, "-f", "json", "-o", str(out), "-q", "--no-store"]
    )
    report = json.loads(out.read_text())
    found = {f["rule_id"]: f for t in report["results"] for f in t["findings"]}
    return code, found


# -- 3. an unclosed quote at the end of a CSV swallowed the rest of the file -----------------------

TAIL = "".join(f"{i},{i * 7 % 13}\n" for i in range(1000))


def test_unclosed_quote_is_malformed_input_naming_the_line_it_opened_on(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text('a,b\n1,"never closed\n2,3\n' + TAIL)
    with pytest.raises(DataInputError) as caught:
        _rows(path)
    assert caught.value.kind == "unclosed-quote"
    assert (caught.value.line, caught.value.row) == (2, 0)
    assert "line 2" in caught.value.message
    # Python's csv module in strict mode agrees the file ends inside a quoted field
    with pytest.raises(csv.Error, match="unexpected end of data"):
        list(csv.reader(io.StringIO(path.read_text(), newline=""), strict=True))
    code, found = _check_json(path, tmp_path)
    assert code == 1
    assert found["DAT001"]["location"]["line"] == 2


def test_unclosed_quote_on_the_last_row_and_in_a_gzip_file(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "tail.csv.gz"
    path.write_bytes(gzip.compress(("a,b\n" + TAIL + '5,"opened at the end\n').encode()))
    with pytest.raises(DataInputError) as caught:
        _rows(path)
    assert (caught.value.row, caught.value.line) == (1000, 1002)


def test_closed_multi_line_quotes_and_stray_quotes_in_unquoted_fields_pass(
    tmp_path: Path,
) -> None:
    """An odd number of quote bytes is not an error by itself: a height written 5'10" in an
    unquoted field is literal to pyarrow and Python's csv alike."""
    path = tmp_path / "ok.csv"
    path.write_text(
        'a,b\n1,5\'10"\n2,"two\nlines, one ""quoted"" word"\n' + TAIL + '3,"last\nrow"\n'
    )
    assert _rows(path) == 1003
    semicolons = tmp_path / "semi.csv"
    semicolons.write_text(
        "a;b\n" + "".join(f'{i};"x\n{i}"\n' for i in range(50)), encoding="utf-16"
    )
    assert _rows(semicolons) == 50
    semicolons.write_text(
        "a;b\n" + "".join(f'{i};"x\n{i}"\n' for i in range(50)) + '9;"open\n', encoding="utf-16"
    )
    with pytest.raises(DataInputError, match="line 102"):
        _rows(semicolons)
