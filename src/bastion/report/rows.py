"""The rows a data finding concerns, abbreviated for people. A finding lists every affected row
(`Finding.rows`, 0-based data-row indexes, and `Finding.row_ids`, the --id column's values);
the JSON and SARIF reports carry them all so that a pipeline can drop exactly those rows. The
text and HTML reports show the first few and how many more, so that a finding about a million
rows stays one readable entry and the report stays small."""

from __future__ import annotations

from typing import NamedTuple

from bastion.findings import Finding

TEXT_ROWS = 10  # rows shown per finding in the text report
HTML_ROWS = 25  # rows shown per finding in the HTML report
MAX_ID_CHARS = 40  # an id value longer than this is cut (ids come from the data: hostile)


class ShownRow(NamedTuple):
    row: int | None  # 0-based data-row index (None when the finding has ids only)
    row_id: str | None  # the id column's value, when the finding has ids


class RowSample(NamedTuple):
    shown: tuple[ShownRow, ...]
    more: int  # affected rows not shown
    total: int


def _cut(value: str) -> str:
    return value if len(value) <= MAX_ID_CHARS else value[: MAX_ID_CHARS - 1] + "…"


def sample_rows(finding: Finding, limit: int) -> RowSample | None:
    """The first `limit` rows of `finding` with their ids; None for a finding about no rows.
    Ids pair with rows by position when the two lists have the same length; otherwise (a
    finding with ids only, say rows deleted from a keyed version) they are shown on their own."""
    rows, ids = finding.rows, finding.row_ids
    if not rows and not ids:
        return None
    if rows and len(ids) == len(rows):
        pairs = [ShownRow(r, _cut(i)) for r, i in zip(rows[:limit], ids[:limit], strict=True)]
        total = len(rows)
    elif rows:
        pairs = [ShownRow(r, None) for r in rows[:limit]]
        total = len(rows)
    else:
        pairs = [ShownRow(None, _cut(i)) for i in ids[:limit]]
        total = len(ids)
    return RowSample(tuple(pairs), total - len(pairs), total)


def rows_line(finding: Finding, limit: int = TEXT_ROWS) -> str:
    """One line naming the first rows: "rows (12): 3, 17 (id C-0017), … (+2 more; every row in
    the JSON report)". Empty for a finding about no rows. Not yet terminal-safe (ids)."""
    sample = sample_rows(finding, limit)
    if sample is None:
        return ""
    parts = []
    for shown in sample.shown:
        if shown.row is None:
            parts.append(f"id {shown.row_id}")
        elif shown.row_id is None:
            parts.append(str(shown.row))
        else:
            parts.append(f"{shown.row} (id {shown.row_id})")
    more = f", … (+{sample.more:,} more; every row in the JSON report)" if sample.more else ""
    label = "row" if sample.total == 1 else f"rows ({sample.total:,})"
    return f"{label}: {', '.join(parts)}{more}"
