"""Manifests and diffs: the fingerprint ignores row order and catches any edit; diffs name
exactly the modified, inserted and deleted rows and the changed columns, with or without an id,
from data or from a manifest; a hostile manifest is refused."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pytest

from bastion.datacheck.dataset import Dataset
from bastion.datacheck.manifest import (
    build_manifest,
    dataset_entry,
    diff_indexes,
    dump_manifest,
    index_dataset,
    index_of_entry,
    load_manifest,
    manifest_schema,
    summary,
    with_values,
)
from bastion.datacheck.options import DataOptions
from bastion.datacheck.read import open_dataset
from bastion.errors import InputError


def _rows(n: int = 300) -> list[dict[str, object]]:
    rng = random.Random(7)
    return [
        {
            "id": f"c{i:05d}",
            "amount": rng.randint(100, 20_000),
            "rate": round(rng.random(), 4),
            "purpose": rng.choice(["car", "tv", "education", "business"]),
            "email": f"user{i}@example.org",
            "label": rng.choice(["good", "bad"]),
        }
        for i in range(n)
    ]


def _index(rows: list[dict[str, object]], id_column: str | None = None, keep: bool = False):
    dataset = Dataset.from_table(pa.Table.from_pylist(rows), "data.csv")
    return index_dataset(dataset, id_column, keep_key_values=keep).rows


def test_fingerprint_ignores_order_and_catches_any_edit() -> None:
    rows = _rows()
    base = _index(rows)
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert _index(shuffled).fingerprint == base.fingerprint
    edited = [dict(r) for r in rows]
    edited[123]["rate"] = 0.5001
    assert _index(edited).fingerprint != base.fingerprint
    # a null and an empty string, or cells that shift across a separator, are different rows
    a = _index([{"x": "a,b", "y": "c"}])
    b = _index([{"x": "a", "y": "b,c"}])
    c = _index([{"x": None, "y": "c"}])
    d = _index([{"x": "", "y": "c"}])
    assert len({a.fingerprint, b.fingerprint, c.fingerprint, d.fingerprint}) == 4


def test_keyed_diff_names_rows_ids_and_columns() -> None:
    rows = _rows()
    new = [dict(r) for r in rows]
    new[10]["label"] = "good" if new[10]["label"] == "bad" else "bad"
    new[42]["amount"] = 999_999
    new[42]["purpose"] = "yacht"
    del new[100]
    new.append({**rows[5], "id": "c99999"})
    random.Random(3).shuffle(new)
    old_index = _index(rows, "id")
    new_index = _index(new, "id", keep=True)
    diff = diff_indexes(old_index, new_index, "old", "new")
    assert diff.keyed and not diff.identical
    modified = {change.row_id: set(change.columns) for change in diff.modified}
    assert modified == {"c00010": {"label"}, "c00042": {"amount", "purpose"}}
    assert [c.row_id for c in diff.inserted] == ["c99999"]
    assert [c.old_row for c in diff.deleted] == [100]
    # the new row numbers point at the right rows of the shuffled version
    for change in diff.modified:
        assert new[change.new_row]["id"] == change.row_id


def test_unkeyed_diff_survives_a_deletion_and_pairs_edits() -> None:
    rows = _rows()
    new = [dict(r) for r in rows]
    del new[3]  # shifts every later row
    new[200]["amount"] = 1  # old row 201
    new.insert(50, {**rows[0], "id": "zzz", "email": "x@y.org", "label": "bad", "amount": 5})
    diff = diff_indexes(_index(rows), _index(new), "old", "new")
    assert [(c.old_row, c.new_row, c.columns) for c in diff.modified] == [(201, 201, ("amount",))]
    assert [c.new_row for c in diff.inserted] == [50]
    assert [c.old_row for c in diff.deleted] == [3]


def test_identical_versions() -> None:
    rows = _rows(50)
    diff = diff_indexes(_index(rows), _index(list(reversed(rows))), "a", "b")
    assert diff.identical and not (diff.modified or diff.inserted or diff.deleted)
    assert "Identical" in summary(diff)


def test_schema_change_is_reported() -> None:
    rows = _rows(20)
    new = [{**{k: v for k, v in r.items() if k != "rate"}, "score": 1} for r in rows]
    new[6]["amount"] = -1
    diff = diff_indexes(_index(rows, "id"), _index(new, "id"), "a", "b")
    assert diff.added_columns == ["score"] and diff.removed_columns == ["rate"]
    # rows are compared on the columns both versions have: only the edited one changed
    assert [(c.old_row, c.columns) for c in diff.modified] == [(6, ("amount",))]
    unkeyed = diff_indexes(_index(rows), _index(new), "a", "b")
    assert [(c.old_row, c.columns) for c in unkeyed.modified] == [(6, ("amount",))]


def test_values_are_shown_for_plain_columns_and_redacted_for_personal_data() -> None:
    rows = _rows(30)
    new = [dict(r) for r in rows]
    new[7]["amount"] = 123_456
    new[7]["email"] = "someone.else@example.com"
    old_data = Dataset.from_table(pa.Table.from_pylist(rows), "old")
    new_data = Dataset.from_table(pa.Table.from_pylist(new), "new")
    diff = diff_indexes(
        index_dataset(old_data, "id").rows, index_dataset(new_data, "id", True).rows, "o", "n"
    )
    diff, detectors = with_values(diff, old_data, new_data)
    cells = {c.column: c for c in diff.modified[0].cells}
    assert set(cells) == {"amount", "email"}
    assert cells["amount"].new == "123456"
    assert "someone" not in cells["email"].new and "example.com" not in cells["email"].new
    text = summary(diff)
    assert "amount:" in text and "someone.else" not in text
    assert detectors


def test_manifest_round_trip_and_diff_against_data(tmp_path: Path) -> None:
    rows = _rows()
    path = tmp_path / "credit.csv"
    pa_table = pa.Table.from_pylist(rows)
    import pyarrow.csv as pcsv

    pcsv.write_csv(pa_table, path)
    options = DataOptions()
    indexed = index_dataset(open_dataset(path, options, name="credit.csv"), "id")
    manifest = build_manifest([dataset_entry(indexed)], "id", {"created_at": "now"})
    text = dump_manifest(manifest)
    assert text.lstrip().startswith('{\n  "kind": "bastion-data-manifest"')
    assert "user1@example.org" not in text and "c00001" not in text  # digests, never values
    target = tmp_path / "m.json"
    target.write_text(text)
    loaded = load_manifest(target)
    assert loaded == manifest
    entry = loaded.datasets[0]
    assert entry.rows == 300 and entry.file is not None and len(entry.file.sha256) == 64
    old = index_of_entry(entry)
    assert old is not None
    new_rows = [dict(r) for r in rows]
    new_rows[17]["purpose"] = "boat"
    pcsv.write_csv(pa.Table.from_pylist(new_rows), path)
    new = index_dataset(open_dataset(path, options), "id", keep_key_values=True).rows
    diff = diff_indexes(old, new, "manifest", "now")
    assert [(c.row_id, c.columns) for c in diff.modified] == [("c00017", ("purpose",))]
    # the same data gives the same manifest (no timestamps outside metadata)
    again = build_manifest(
        [dataset_entry(index_dataset(open_dataset(path, options), "id"))], "id", {}
    )
    assert again.datasets[0].fingerprint == new.fingerprint


def test_manifest_schema_is_checked_in() -> None:
    checked_in = Path(__file__).parents[2] / "src/bastion/datacheck/schema/manifest-2.json"
    assert json.loads(checked_in.read_text()) == manifest_schema()


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b'{"kind": "something-else"}',
        b'{"kind": "bastion-data-manifest", "schema_version": "9"}',
        b'{"kind": "bastion-data-manifest", "schema_version": "1", "tool": "x", "datasets": '
        b'[{"name": "a", "format": "csv", "columns": [], "rows": 5, "fingerprint": "f", '
        b'"row_index": {"digests": "AAAA"}}]}',
        b'{"kind": "bastion-data-manifest", "schema_version": "1", "tool": "x", "datasets": 7}',
        b"[" * 100_000,
    ],
)
def test_hostile_manifests_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "m.json"
    path.write_bytes(content)
    with pytest.raises(InputError):
        load_manifest(path)
