"""Row-level evidence of data findings in every report: the JSON report lists every affected row
and id, the text and HTML reports the first few and how many more; ids come from the data and
are escaped like any other hostile value."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from bastion.cli.main import main
from bastion.findings import Confidence, Finding, Location, Severity, Stage
from bastion.report.rows import HTML_ROWS, TEXT_ROWS, rows_line, sample_rows

HOSTILE_ID = "<script>alert(1)</script>\x1b[2J"


def _finding(rows: tuple[int, ...] = (), row_ids: tuple[str, ...] = ()) -> Finding:
    return Finding(
        rule_id="DAT010",
        severity=Severity.MEDIUM,
        confidence=Confidence.HIGH,
        stage=Stage.DATA,
        message="m",
        location=Location(path="d.csv"),
        rows=rows,
        row_ids=row_ids,
    )


def test_rows_line_abbreviates_and_pairs_ids() -> None:
    assert rows_line(_finding()) == ""
    assert rows_line(_finding((7,))) == "row: 7"
    assert rows_line(_finding((3, 9), ("a", "b"))) == "rows (2): 3 (id a), 9 (id b)"
    many = _finding(tuple(range(100, 1100)))
    line = rows_line(many)
    assert line.startswith("rows (1,000): 100, 101, ")
    assert line.endswith(", 109, … (+990 more; every row in the JSON report)")
    # ids without row numbers (rows of a keyed version that are gone), and overlong ids cut
    only_ids = sample_rows(_finding(row_ids=("x" * 500, "y")), TEXT_ROWS)
    assert only_ids is not None and only_ids.total == 2 and only_ids.more == 0
    assert [s.row for s in only_ids.shown] == [None, None]
    assert len(only_ids.shown[0].row_id or "") == 40
    # lists of different lengths are not paired by position
    unpaired = sample_rows(_finding((1, 2, 3), ("a",)), TEXT_ROWS)
    assert unpaired is not None and [s.row_id for s in unpaired.shown] == [None, None, None]


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """`bastion data check --id id` on 400 rows where 60 rows repeat an id (DAT010): the same
    run written as JSON, text and HTML."""
    folder = tmp_path_factory.mktemp("rows")
    ids = [f"C-{i:04d}" for i in range(400)]
    for i in range(30):  # rows 370..399 repeat the ids of rows 0..29
        ids[370 + i] = ids[i]
    ids[5] = ids[375] = HOSTILE_ID
    table = pa.table(
        {
            "id": ids,
            "amount": [100 + (i * 37) % 900 for i in range(400)],
            "purpose": [["car", "education", "furniture"][i % 3] for i in range(400)],
        }
    )
    data = folder / "loans.csv"
    pcsv.write_csv(table, data)
    out = {}
    for fmt in ("json", "text", "html"):
        path = folder / f"report.{fmt}"
        args = ["data", "check", str(data), "--id", "id", "--no-store", "-q"]
        code = main([*args, "-f", fmt, "-o", str(path)])
        assert code in (0, 1)
        out[fmt] = path.read_text("utf-8")
    return out


def test_json_lists_every_row_and_id(reports: dict[str, str]) -> None:
    findings = [f for r in json.loads(reports["json"])["results"] for f in r["findings"]]
    [dup] = [f for f in findings if f["rule_id"] == "DAT010"]
    expected = [*range(30), *range(370, 400)]
    assert dup["rows"] == expected
    assert dup["row_ids"][5] == HOSTILE_ID and len(dup["row_ids"]) == 60


def test_text_shows_the_first_rows_escaped(reports: dict[str, str]) -> None:
    text = reports["text"]
    [line] = [x for x in text.splitlines() if x.strip().startswith("rows (60):")]
    assert "0 (id C-0000), 1 (id C-0001)" in line
    assert f"… (+{60 - TEXT_ROWS} more; every row in the JSON report)" in line
    assert "\x1b" not in text and "\\x1b[2J" in line  # the id's escape code is shown, not run


def test_html_shows_the_first_rows_escaped(reports: dict[str, str]) -> None:
    html = reports["html"]
    assert "<b>Rows (60):</b>" in html
    assert html.count('<code class="row">') == HTML_ROWS
    assert '<code class="row">0 · id C-0000</code>' in html
    assert f"+{60 - HTML_ROWS} more" in html and "every row is listed in the JSON report" in html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
