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


# -- 1. a 16-bit cell-hint collision hid a modified row when the columns changed --------------


def _crc16_twin(value: str, prefix: str) -> str:
    """A value with the same 16-bit hint as `value` in a format-1 manifest (CRC-32 of the
    canonical cell `len:text`, low 16 bits): what the attacker brute-forces in milliseconds."""
    import itertools
    import zlib

    def hint(text: str) -> int:
        return zlib.crc32(f"{len(text.encode())}:{text}".encode()) & 0xFFFF

    target = hint(value)
    letters = "abcdefghijklmnopqrstuvwxyz"
    for size in range(1, 6):
        for tail in itertools.product(letters, repeat=size):
            candidate = prefix + "".join(tail)
            if hint(candidate) == target:
                return candidate
    raise AssertionError("no twin found")


def _loans(path: Path, flip: str | None = None, email: bool = False) -> None:
    lines = ["id,amount,decision" + (",email" if email else "")]
    for i in range(400):
        decision = "approved" if i % 3 else "denied"
        if i == 157 and flip is not None:
            decision = flip
        extra = f",applicant{i}@example.org" if email else ""
        lines.append(f"L{i:04d},{1000 + i * 37 % 5000},{decision}{extra}")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("with_id", [True, False])
def test_a_forged_cell_hint_no_longer_hides_a_label_flip(tmp_path: Path, with_id: bool) -> None:
    from bastion.cli.main import main
    from bastion.datacheck.manifest import diff_indexes, index_dataset
    from bastion.datacheck.rowhash import CRC16, CellSpec

    twin = _crc16_twin("approved", "denied")
    assert twin != "approved"
    old, new = tmp_path / "old.csv", tmp_path / "loans.csv"
    _loans(old)
    _loans(new, flip=twin, email=True)
    id_args = ["--id", "id"] if with_id else []
    # the attack, as format 1 saw it: the hints agree, the flipped row is not reported
    id_column = "id" if with_id else None
    legacy = [
        index_dataset(open_dataset(p, DataOptions()), id_column, cell_spec=CellSpec(CRC16)).rows
        for p in (old, new)
    ]
    assert diff_indexes(legacy[0], legacy[1], "old", "new").modified == []
    # format 2: keyed 64-bit cell digests over the shared columns
    manifest = tmp_path / "loans.manifest.json"
    assert (
        main(["data", "manifest", str(old), *id_args, "-o", str(manifest), "-q", "--no-store"]) == 0
    )
    recorded = json.loads(manifest.read_text())
    assert recorded["schema_version"] == "2"
    row_index = recorded["datasets"][0]["row_index"]
    assert row_index["cell_key"] and row_index["cell_digests"] and row_index["cell_hints"] is None
    code, found = _check_json(new, tmp_path, *id_args, "--baseline-manifest", str(manifest))
    assert code == 1
    assert found["DAT005"]["rows"] == [157]
    assert "decision" in found["DAT005"]["message"]
    assert "added: email" in found["DAT008"]["message"]
    assert "DAT012" not in found
    for old_side in (manifest, old):  # a manifest against data, and two data files
        out = tmp_path / "diff.md"
        code = main(
            ["data", "diff", str(old_side), str(new), *id_args, "-o", str(out), "-q", "--no-store"]
        )
        assert code == 1
        text = out.read_text()
        assert "- modified: 1, inserted: 0, deleted: 0" in text, text
        assert "decision" in text


def test_a_new_manifest_draws_a_new_cell_key(tmp_path: Path) -> None:
    """A collision precomputed against one manifest's key does not carry over to the next."""
    from bastion.cli.main import main

    data = tmp_path / "loans.csv"
    _loans(data)
    keys = []
    for name in ("a.json", "b.json"):
        assert (
            main(["data", "manifest", str(data), "-o", str(tmp_path / name), "-q", "--no-store"])
            == 0
        )
        entry = json.loads((tmp_path / name).read_text())["datasets"][0]
        keys.append(
            (
                entry["row_index"]["cell_key"],
                entry["row_index"]["cell_digests"],
                entry["fingerprint"],
            )
        )
    assert keys[0][0] != keys[1][0] and keys[0][1] != keys[1][1]
    assert keys[0][2] == keys[1][2]  # the row fingerprint does not depend on the key


def test_a_format_1_manifest_is_still_read_and_said_to_be_weaker(tmp_path: Path) -> None:
    import base64

    from bastion.cli.main import main
    from bastion.datacheck.manifest import (
        ColumnEntry,
        DatasetEntry,
        Manifest,
        RowIndexEntry,
        dump_manifest,
        index_dataset,
    )
    from bastion.datacheck.rowhash import CRC16, CellSpec

    old, new = tmp_path / "old.csv", tmp_path / "loans.csv"
    _loans(old)
    _loans(new, flip="denied", email=True)
    index = index_dataset(open_dataset(old, DataOptions()), "id", cell_spec=CellSpec(CRC16)).rows
    assert index.hints is not None and index.keys is not None
    entry = DatasetEntry(
        name="old.csv",
        format="csv",
        columns=tuple(
            ColumnEntry(name=n, type=t) for n, t in zip(index.columns, index.types, strict=True)
        ),
        rows=index.rows,
        fingerprint=index.fingerprint,
        row_index=RowIndexEntry(
            digests=base64.b64encode(index.digests.tobytes()).decode(),
            keys=base64.b64encode(index.keys.tobytes()).decode(),
            cell_hints=base64.b64encode(index.hints.astype("<u2").tobytes()).decode(),
        ),
    )
    legacy = Manifest(schema_version="1", tool="bastion 0.x", id_column="id", datasets=(entry,))
    path = tmp_path / "old.manifest.json"
    path.write_text(dump_manifest(legacy))
    code, found = _check_json(new, tmp_path, "--id", "id", "--baseline-manifest", str(path))
    assert code == 1
    assert found["DAT005"]["rows"] == [157]  # an honest change is still found on the hints
    assert "format 1" in found["DAT012"]["message"]
    out = tmp_path / "diff.md"
    assert (
        main(
            ["data", "diff", str(path), str(new), "--id", "id", "-o", str(out), "-q", "--no-store"]
        )
        == 1
    )
    assert "format 1" in out.read_text()


# -- 2. values rewritten in a form type inference maps to the same value -------------------------


def _codes(path: Path, rewritten: bool) -> None:
    lines = ["branch,rate,label"]
    for i in range(200):
        branch = f"{i % 50:03d}"  # 007: a code, read as the integer 7
        rate = f"{i % 4}.0" if i % 2 else f"{i % 7}.5"
        if rewritten and i == 7:
            branch, rate = str(int(branch)), rate.replace(".0", "")
        lines.append(f"{branch},{rate},{'yes' if i % 5 else 'no'}")
    path.write_text("\n".join(lines) + "\n")


def test_same_values_as_read_with_different_bytes_are_reported(tmp_path: Path) -> None:
    from bastion.cli.main import main

    trusted, current = tmp_path / "trusted" / "codes.csv", tmp_path / "codes.csv"
    trusted.parent.mkdir()
    _codes(trusted, rewritten=False)
    _codes(current, rewritten=True)
    assert trusted.read_bytes() != current.read_bytes()
    manifest = tmp_path / "codes.manifest.json"
    assert main(["data", "manifest", str(trusted), "-o", str(manifest), "-q", "--no-store"]) == 0
    _code, found = _check_json(current, tmp_path, "--baseline-manifest", str(manifest))
    assert found["DAT013"]["severity"] == "medium"
    assert "same values as read, different bytes" in found["DAT013"]["message"]
    assert found["DAT013"]["location"]["path"].endswith("codes.csv")
    assert not {"DAT005", "DAT006", "DAT007", "DAT008"} & set(found)
    for old_side in (manifest, trusted):
        out = tmp_path / "diff.md"
        code = main(
            ["data", "diff", str(old_side), str(current), "-o", str(out), "-q", "--no-store"]
        )
        assert code == 1
        assert "same values as read, different bytes" in out.read_text()
        out = tmp_path / "diff.json"
        main(
            [
                "data",
                "diff",
                str(old_side),
                str(current),
                "-f",
                "json",
                "-o",
                str(out),
                "-q",
                "--no-store",
            ]
        )
        report = json.loads(out.read_text())
        assert {f["rule_id"] for t in report["results"] for f in t["findings"]} == {"DAT013"}


def test_the_same_bytes_again_are_identical_with_no_finding(tmp_path: Path) -> None:
    from bastion.cli.main import main

    data = tmp_path / "codes.csv"
    _codes(data, rewritten=False)
    manifest = tmp_path / "codes.manifest.json"
    assert main(["data", "manifest", str(data), "-o", str(manifest), "-q", "--no-store"]) == 0
    _code, found = _check_json(data, tmp_path, "--baseline-manifest", str(manifest))
    assert not {r for r in found if r.startswith("DAT")}
    out = tmp_path / "diff.md"
    assert main(["data", "diff", str(manifest), str(data), "-o", str(out), "-q", "--no-store"]) == 0
    assert "Identical content (200 rows)." in out.read_text()
