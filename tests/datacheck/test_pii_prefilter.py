"""The vectorised number-detector filter (datacheck/shape_filter.py) that keeps identifier
columns out of detectors.scan: it must cover every pattern detectors._numbers runs, never drop a
text one of them matches, and leave the personal-data check's findings exactly as they are
without it."""

from __future__ import annotations

import inspect
import re

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.datacheck import pii, shape_filter
from bastion.datacheck.dataset import Dataset
from bastion.datacheck.options import DataOptions
from bastion.personal import detectors
from tests.datacheck.test_pii import EMBEDDED


def _filtered(texts: list[str], pattern: str) -> list[bool]:
    return [bool(v) for v in pc.match_substring_regex(pa.array(texts, pa.string()), pattern)]


def test_every_pattern_numbers_runs_is_covered() -> None:
    source = inspect.getsource(detectors._numbers)
    used = re.findall(r"\b(_[A-Z_]+)\.finditer\(", source)
    assert used, "detectors._numbers no longer calls pattern.finditer: update shape_filter"
    assert sorted(set(used)) == sorted(shape_filter.NUMBER_PATTERNS)


@pytest.mark.parametrize("name", shape_filter.NUMBER_PATTERNS)
def test_each_translation_compiles_in_re2(name: str) -> None:
    pattern = shape_filter.superset_pattern(getattr(detectors, name))
    assert _filtered(["", "x"], pattern) is not None  # pyarrow raises on a pattern RE2 rejects


@pytest.mark.parametrize(
    "pattern", [r"^\d{7}", r"\b\d{7}\b", r"(?=\d)\d{7}", r"\d{7}$", r"(?i)\d{7}", r"\S{7}"]
)
def test_what_is_not_understood_is_refused(pattern: str) -> None:
    with pytest.raises(ValueError):
        shape_filter.superset_pattern(re.compile(pattern))


def test_identifiers_are_filtered_and_numbers_kept() -> None:
    pattern = shape_filter.numbers_pattern()
    ids = ["C-0012345", "C-9999999", "ORD-2024-0000001", "id_1234567", "v1.2345678"]
    assert _filtered(ids, pattern) == [False] * len(ids)
    planted = [text for text, kind in EMBEDDED if kind in {k for k in detectors.KINDS}]
    numbers = [t for t in planted if any(getattr(detectors, n).search(t) for n in _names())]
    assert len(numbers) >= 12
    assert all(_filtered(numbers, pattern))


def _names() -> tuple[str, ...]:
    return shape_filter.NUMBER_PATTERNS


# characters the detectors' patterns care about, and Unicode ones where Python's \d, \s and \w
# differ from RE2's
_ALPHABET = (
    "0123456789" * 4
    + " -./,:+()#_xXYZABDLab@\n\t"
    + "\u0663\uff15\u00a0\u2007\u1680\u00e9\u0416\u00b2\u2160\x1c\x85\u3000"
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=_ALPHABET, min_size=0, max_size=40), min_size=1, max_size=40))
def test_no_text_a_detector_matches_is_filtered_out(texts: list[str]) -> None:
    for name in _names():
        python = getattr(detectors, name)
        kept = _filtered(texts, shape_filter.superset_pattern(python))
        for text, keep in zip(texts, kept, strict=True):
            if python.search(text):
                assert keep, (name, text)
    union = _filtered(texts, shape_filter.numbers_pattern())
    for text, keep in zip(texts, union, strict=True):
        if any(getattr(detectors, n).search(text) for n in _names()):
            assert keep, text


def _tricky_table() -> pa.Table:
    rows = 3_000
    notes = []
    for i in range(rows):
        text, _kind = EMBEDDED[i % len(EMBEDDED)]
        notes.append(
            [
                f"ref C-{i:07d} {text}",
                f"plain note {i}",
                f"order ORD-{i:07d}",
                f"call +44 20 7946 {i % 10000:04d}",
                f"\u0663\u0663\u0663-\u0662\u0662-{i:04d} and 12345{i:04d}",
                f"tel\u00a0020\u00a07946\u00a0{i % 10000:04d}",
            ][i % 6]
        )
    return pa.table(
        {
            "id": [f"C-{i:07d}" for i in range(rows)],
            "notes": notes,
            "phone": [f"+44 20 7946 {i:04d}" if i % 3 else f"0{i:09d}" for i in range(rows)],
            "account": [f"DE89 3704 0044 0532 0130 {i % 100:02d}" for i in range(rows)],
            "amount": [10_000_000 + i * 7919 for i in range(rows)],
        }
    )


def test_findings_are_the_same_with_and_without_the_filter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = _tricky_table()
    options = DataOptions(id_column="id", batch_rows=700)

    def run() -> list[dict[str, object]]:
        dataset = Dataset.from_table(table, "tricky.parquet", options=options)
        return [f.model_dump() for f in pii.check(dataset, options)]

    fast = run()
    monkeypatch.setattr(pii, "NUMBER_FILTER", False)
    careful = run()
    assert fast == careful
    assert any(f["rule_id"] == "PII001" for f in fast)  # the planted numbers are found
    assert any(f["rule_id"] == "PII002" for f in fast)
