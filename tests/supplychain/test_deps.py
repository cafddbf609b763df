"""`bastion deps`: requirement and lock parsing, OSV matching with PEP 440 ranges (folder and zip
databases built in code), bundled ML advisories, the command line."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from bastion.cli.main import main
from bastion.config import Settings
from bastion.supplychain.advisories import AdvisoryDatabase, cvss_base_score, parse_record
from bastion.supplychain.dependencies import run_deps
from bastion.supplychain.requirements import is_dependency_file, read_any

RECORDS = [
    {
        "id": "GHSA-aaaa-0001",
        "aliases": ["CVE-2099-0001"],
        "summary": "RCE in demo-lib.",
        "database_specific": {"severity": "CRITICAL"},
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "Demo_Lib"},
                "ranges": [
                    {
                        "type": "ECOSYSTEM",
                        "events": [
                            {"introduced": "1.0"},
                            {"fixed": "1.4.2"},
                            {"introduced": "2.0.0rc1"},
                            {"fixed": "2.0.1"},
                        ],
                    }
                ],
            }
        ],
    },
    {
        "id": "PYSEC-2099-2",
        "aliases": [],
        "summary": "DoS in other-lib.",
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:L"}],
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "other-lib"},
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"last_affected": "0.9"}]}
                ],
            }
        ],
    },
    {
        "id": "NPM-1",
        "affected": [{"package": {"ecosystem": "npm", "name": "demo-lib"}, "versions": ["1.1"]}],
    },
    {
        "id": "GHSA-withdrawn",
        "withdrawn": "2099-01-01",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "demo-lib"}, "versions": ["1.1"]}],
    },
]


@pytest.fixture()
def osv_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "osv"
    folder.mkdir()
    for index, record in enumerate(RECORDS):
        (folder / f"r{index}.json").write_text(json.dumps(record))
    (folder / "broken.json").write_text("{not json")
    return folder


@pytest.fixture()
def osv_zip(tmp_path: Path) -> Path:
    path = tmp_path / "all.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for index, record in enumerate(RECORDS):
            archive.writestr(f"r{index}.json", json.dumps(record))
    return path


@pytest.mark.parametrize(
    "version,affected",
    [
        ("0.9", False),
        ("1.0", True),
        ("1.4.1", True),
        ("1.4.2", False),
        ("1.5", False),
        ("2.0.0rc1", True),
        ("2.0.0", True),
        ("2.0.1", False),
        ("1.4.2.post1", False),
        ("1.4.1.post1", True),
        ("not-a-version", False),
    ],
)
def test_pep440_range_semantics(version: str, affected: bool) -> None:
    advisory = next(parse_record(RECORDS[0]))
    assert advisory.affects(version) is affected


def test_last_affected_and_withdrawn_and_other_ecosystems(osv_folder: Path) -> None:
    db = AdvisoryDatabase.load(osv_folder)
    assert [a.id for a in db.matches("other_lib", "0.9")] == ["PYSEC-2099-2"]
    assert db.matches("other-lib", "0.9.1") == []
    assert [a.id for a in db.matches("demo-lib", "1.1")] == ["GHSA-aaaa-0001"]


def test_cvss_severity_v3_and_v4() -> None:
    assert cvss_base_score("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:L") == 5.3
    v4 = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"
    assert cvss_base_score("CVSS_V4", v4) == 9.3
    assert cvss_base_score("CVSS_V3", "garbage") is None
    assert cvss_base_score("CVSS_V4", "CVSS:4.0/AV:X") is None
    assert cvss_base_score("UBUNTU", "high") is None


def test_requirements_and_locks(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("other-lib==0.9\n")
    (tmp_path / "requirements.txt").write_text(
        "# training deps\n-r base.txt\nDemo.Lib==1.2 ; python_version >= '3.8'\n"
        "torch>=2.0\nnumpy\n--index-url https://example.org/simple\nnot a valid line ===\n"
    )
    deps, problems = read_any(tmp_path / "requirements.txt")
    by_name = {d.name: d for d in deps}
    assert by_name["demo-lib"].version == "1.2" and by_name["other-lib"].version == "0.9"
    assert by_name["torch"].version is None and by_name["torch"].specifier == ">=2.0"
    assert len(problems) == 1 and "requirements.txt:7" in problems[0]  # the invalid line
    (tmp_path / "poetry.lock").write_text('[[package]]\nname = "Demo-Lib"\nversion = "1.3"\n')
    (tmp_path / "pylock.toml").write_text(
        'lock-version = "1.0"\n[[packages]]\nname = "torch"\nversion = "2.5.1"\n'
    )
    assert read_any(tmp_path / "poetry.lock")[0][0].version == "1.3"
    assert read_any(tmp_path / "pylock.toml")[0][0].name == "torch"


def test_audit_report(tmp_path: Path, osv_zip: Path) -> None:
    (tmp_path / "requirements.txt").write_text(
        "demo-lib==1.2\nother-lib==2.0\ntorch==2.5.1\nkeras>=3.0\n"
    )
    report = run_deps([tmp_path / "requirements.txt"], Settings(), osv_zip)
    found = {(f.rule_id, f.location.pointer): f for f in report.findings}
    assert found[("DEP001", "demo-lib")].severity.value == "critical"
    assert "1.4.2" in found[("DEP001", "demo-lib")].message
    assert ("DEP001", "other-lib") not in found
    assert found[("DEP002", "torch")].severity.value == "critical"
    assert ("DEP003", "keras") in found  # the range admits keras 3.0.0
    assert found[("DEP001", "demo-lib")].location.line == 1


def test_bundled_ml_advisories_need_no_database(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("torch==2.13.0\nkeras==3.11.3\n")
    report = run_deps([tmp_path / "requirements.txt"], Settings())
    assert report.findings == []
    assert any(s.code == "no-advisory-db" for s in report.skips)


def test_cli(tmp_path: Path, osv_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("demo-lib==1.0\n")
    assert (
        main(["deps", str(req), "--advisory-db", str(osv_folder), "--no-store", "-q", "-f", "json"])
        == 1
    )
    assert json.loads(capsys.readouterr().out)["verdict"]["status"] == "failed"
    req.write_text("demo-lib==1.4.2\n")
    assert main(["deps", str(req), "--advisory-db", str(osv_folder), "--no-store", "-q"]) == 0
    assert main(["deps", str(req), "--advisory-db", str(tmp_path / "req.txt"), "--no-store"]) == 2
    bad = tmp_path / "bad.zip"
    bad.write_text("not a zip")
    assert main(["deps", str(req), "--advisory-db", str(bad), "--no-store", "-q"]) == 2
    assert "neither a folder nor a zip" in capsys.readouterr().err


def test_online_mode_reads_pip_audit_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--online hands the files to pip-audit; a stand-in pip-audit on PATH answers offline."""
    fake = tmp_path / "bin" / "pip-audit"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\ncat <<'JSON'\n"
        + json.dumps(
            {
                "dependencies": [
                    {
                        "name": "requests",
                        "version": "2.19.0",
                        "vulns": [
                            {
                                "id": "PYSEC-2018-28",
                                "fix_versions": ["2.20.0"],
                                "aliases": ["CVE-2018-18074"],
                                "description": "credentials leak on redirect",
                            }
                        ],
                    }
                ]
            }
        )
        + "\nJSON\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{__import__('os').environ['PATH']}")
    req = tmp_path / "requirements.txt"
    req.write_text("requests==2.19.0\n")
    report = run_deps([req], Settings(), online=True)
    finding = report.findings[0]
    assert finding.rule_id == "DEP001" and "PYSEC-2018-28" in finding.message
    assert "2.20.0" in finding.message


def test_dependency_file_names() -> None:
    for name in (
        "requirements.txt",
        "requirements-dev.txt",
        "Requirements_GPU.txt",
        "poetry.lock",
        "uv.lock",
        "pylock.toml",
        "pylock.train.toml",
    ):
        assert is_dependency_file(name), name
    for name in (
        "requirements.md",
        "notes.txt",
        "Pipfile",
        "pylock.json",
        "lock.toml",
        "data.lock.csv",
    ):
        assert not is_dependency_file(name), name


def test_requirements_read_the_way_pip_reads_them(tmp_path: Path) -> None:
    """Hash-pinned continuation lines and `-rfile` were never audited (issue #8 item 7)."""
    (tmp_path / "base.txt").write_text("other-lib==0.9\n")
    (tmp_path / "requirements.txt").write_text(
        "demo-lib==1.2 \\\n    --hash=sha256:"
        + "a" * 64
        + " \\\n    --hash=sha256:"
        + "b" * 64
        + "\n-rbase.txt\nhttps://example.org/pkg-1.0-py3-none-any.whl\n-e ./local\n"
        "-r /etc/passwd\n-r ../outside.txt\n"
    )
    (tmp_path.parent / "outside.txt").write_text("secret-line-not-to-leak\n")
    deps, problems = read_any(tmp_path / "requirements.txt")
    by_name = {d.name: d for d in deps}
    assert by_name["demo-lib"].version == "1.2" and by_name["other-lib"].version == "0.9"
    text = "\n".join(problems)
    assert "URL, path or editable" in text and "outside the project folder" in text
    assert "root:" not in text and "secret-line" not in text  # included files were not read
    db = tmp_path / "osv"
    db.mkdir()
    (db / "r0.json").write_text(json.dumps(RECORDS[0]))
    report = run_deps([tmp_path / "requirements.txt"], Settings(), db)
    assert any("GHSA-aaaa-0001" in f.message for f in report.findings)


def test_osv_versions_compare_as_pep440_and_dropped_records_are_reported(tmp_path: Path) -> None:
    db = tmp_path / "osv"
    db.mkdir()
    record = {
        "id": "PYSEC-2099-9",
        "summary": "listed versions only",
        "affected": [
            {"package": {"ecosystem": "PyPI", "name": "listed-lib"}, "versions": ["2.0.0", "2.1"]}
        ],
    }
    (db / "a.json").write_text(json.dumps(record))
    (db / "broken.json").write_text("{not json")
    (db / "foreign.json").write_text('["not", "an", "osv", "record"]')
    odd = {
        "id": "PYSEC-2099-10",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "x"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "not-a-version"}]}],
            }
        ],
    }
    (db / "odd.json").write_text(json.dumps(odd))
    database = AdvisoryDatabase.load(db)
    assert database.dropped == 3
    (tmp_path / "requirements.txt").write_text("listed-lib==2.0\nlisted-lib2==2.1.0\n")
    report = run_deps([tmp_path / "requirements.txt"], Settings(), db)
    assert any("PYSEC-2099-9" in f.message for f in report.findings)  # 2.0 == 2.0.0
    assert report.metadata["advisory_records_dropped"] == 3
    assert any("3 record(s)" in s.reason and s.is_gap for s in report.skips)
