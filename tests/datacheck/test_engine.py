"""The data engine and `bastion data`: every dataset gets a result, reader problems are DAT
findings with rows (the file marked incomplete), mixed types are worked around, a baseline
manifest catches tampering, splits get the leakage check, exit codes follow the policy."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from bastion.cli.main import main
from bastion.config import Settings
from bastion.datacheck.engine import data_options, run_data_checks
from bastion.datacheck.options import DataOptions
from bastion.errors import ConfigError


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    pcsv.write_csv(pa.Table.from_pylist(rows), path)
    return path


def _rows(n: int = 120, start: int = 0) -> list[dict[str, object]]:
    return [
        {"id": f"r{i}", "amount": 100 + (i * 37) % 900, "kind": ["a", "b", "c"][i % 3]}
        for i in range(start, start + n)
    ]


def _by_path(results: list) -> dict[str, object]:
    return {r.path: r for r in results}


def test_a_folder_with_good_and_broken_files(tmp_path: Path) -> None:
    _write(tmp_path / "good.csv", _rows())
    (tmp_path / "ragged.csv").write_text("a,b\n1,2\n3,4,5\n")
    # past the first block (the bound is lowered so that the file stays small)
    (tmp_path / "mixed.csv").write_text("a,b\n" + "1,x\n" * 3000 + "oops,y\n")
    (tmp_path / "notes.txt").write_text("not data")
    results = _by_path(run_data_checks([tmp_path], options=DataOptions(max_line_kb=4)))
    names = {Path(p).name for p in results}
    assert names == {"good.csv", "ragged.csv", "mixed.csv"}
    ragged = next(r for p, r in results.items() if p.endswith("ragged.csv"))
    assert ragged.incomplete
    [finding] = [f for f in ragged.findings if f.rule_id == "DAT001"]
    assert finding.rows == (1,) and finding.location.line == 3
    mixed = next(r for p, r in results.items() if p.endswith("mixed.csv"))
    assert not mixed.incomplete
    [finding] = [f for f in mixed.findings if f.rule_id == "DAT003"]
    assert finding.rows == (3000,) and finding.location.pointer == "column:a"
    good = next(r for p, r in results.items() if p.endswith("good.csv"))
    assert not good.incomplete and not good.errors
    assert not [f for f in good.findings if f.rule_id.startswith("DAT")]


def test_duplicate_ids_and_unknown_columns(tmp_path: Path) -> None:
    rows = _rows(30)
    rows[20]["id"] = "r3"
    path = _write(tmp_path / "d.csv", rows)
    [result] = run_data_checks([path], options=DataOptions(id_column="id"))
    [finding] = [f for f in result.findings if f.rule_id == "DAT010"]
    assert finding.rows == (3, 20) and finding.row_ids == ("r3", "r3")
    [result] = run_data_checks([path], options=DataOptions(id_column="nope", target="nah"))
    assert {e.check for e in result.errors} == {"data", "labels"}


def test_splits_run_the_leakage_check(tmp_path: Path) -> None:
    train = _write(tmp_path / "train.csv", _rows(200))
    test_rows = _rows(50, start=1000)
    test_rows[4] = dict(_rows(200)[17])  # a training row leaked into the test split
    test = _write(tmp_path / "test.csv", test_rows)
    results = run_data_checks([train, test], options=DataOptions(id_column="id"))
    leaks = [f for r in results for f in r.findings if f.rule_id.startswith("LEK")]
    assert leaks, "a training row in the test split is leakage"
    assert any(4 in f.rows for f in leaks)


def test_a_missing_package_is_a_skip_and_a_broken_import_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.datacheck import engine

    def needs_cleanlab(dataset: object, options: object) -> list[object]:
        raise ModuleNotFoundError("No module named 'cleanlab'", name="cleanlab")

    def broken(dataset: object, options: object) -> list[object]:
        raise ModuleNotFoundError("No module named 'bastion.nope'", name="bastion.nope")

    monkeypatch.setattr(
        engine,
        "DATASET_CHECKS",
        (("pii", "personal data", needs_cleanlab), ("contract", "data contract", broken)),
    )
    path = _write(tmp_path / "d.csv", _rows(10))
    [result] = run_data_checks([path], options=DataOptions(contract=str(tmp_path / "c.json")))
    [skip] = result.skips
    assert (skip.code, skip.extra) == ("missing-extra", "data") and "cleanlab" in skip.reason
    [error] = result.errors
    assert error.check == "contract" and "bastion.nope" in error.message


def test_nothing_found_is_not_a_pass(tmp_path: Path) -> None:
    (tmp_path / "readme.md").write_text("# nothing")
    [result] = run_data_checks([tmp_path], options=DataOptions())
    assert result.skips and result.skips[0].is_gap


def test_policy_data_table() -> None:
    settings = Settings(data={"max_line_kb": 64, "target": "y"})
    options = data_options(settings, {"id_column": "id", "target": None})
    assert (options.max_line_kb, options.target, options.id_column) == (64, "y", "id")
    with pytest.raises(ConfigError):
        data_options(Settings(data={"max_line_kb": 0}))
    with pytest.raises(ConfigError):
        data_options(Settings(data={"no_such_key": 1}))


def test_cli_check_manifest_and_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "h.sqlite3"
    trusted = _write(tmp_path / "v1.csv", _rows())
    manifest = tmp_path / "m.json"
    assert (
        main(
            [
                "data",
                "manifest",
                str(trusted),
                "--id",
                "id",
                "-o",
                str(manifest),
                "--store",
                str(store),
                "-q",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "data",
                "check",
                str(trusted),
                "--id",
                "id",
                "--baseline-manifest",
                str(manifest),
                "--no-store",
                "-q",
            ]
        )
        == 0
    )
    rows = _rows()
    rows[9]["amount"] = 5
    tampered = _write(tmp_path / "v1.csv", rows)
    report = tmp_path / "r.json"
    code = main(
        [
            "data",
            "check",
            str(tampered),
            "--id",
            "id",
            "--baseline-manifest",
            str(manifest),
            "--no-store",
            "-q",
            "-f",
            "json",
            "-o",
            str(report),
        ]
    )
    assert code == 1
    data = json.loads(report.read_text())
    assert data["command"] == "data"
    [finding] = [f for r in data["results"] for f in r["findings"] if f["rule_id"] == "DAT005"]
    assert finding["rows"] == [9] and finding["row_ids"] == ["r9"]
    capsys.readouterr()
    assert main(["data", "diff", str(manifest), str(tampered), "--id", "id"]) == 1
    out = capsys.readouterr().out
    assert "| 9 | 9 | r9 | amount |" in out
    assert main(["history", "--datasets", "--store", str(store)]) == 0
    assert "v1.csv" in capsys.readouterr().out


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", "--no-store", "-q"]) == 2
    bad = tmp_path / "m.json"
    bad.write_text("{}")
    data = _write(tmp_path / "d.csv", _rows(5))
    assert main(["data", "check", str(data), "--baseline-manifest", str(bad), "--no-store"]) == 2
    assert "not a bastion data manifest" in capsys.readouterr().err
    assert main(["data", "--help"]) == 0
