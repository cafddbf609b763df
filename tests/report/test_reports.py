"""Every report format from a real scan: JSON and SARIF validate against their schemas, HTML is
self-contained and escapes hostile evidence, JUnit parses."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
from corpus import Sample

from bastion.catalogue import rules_by_id
from bastion.config import Settings
from bastion.findings import Report
from bastion.policy import Verdict, evaluate
from bastion.report import render
from bastion.report.json import checked_in_schema, generated_schema
from bastion.scan.engine import run_scan

DATA = Path(__file__).parent.parent / "data"


@pytest.fixture(scope="module")
def scanned(
    malicious: list[Sample],
    benign: list[Sample],
    corpus_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Report, Verdict]:
    folder = tmp_path_factory.mktemp("mixed")
    for name in (
        "archives/nested.zip",
        "pickle/os_system_p2.pkl",
        "gguf/ssti.gguf",
        "torch/evil.pt",
    ):
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((corpus_dir / "malicious" / name).read_bytes())
    (folder / "clean.npy").write_bytes((corpus_dir / "benign/numpy/float.npy").read_bytes())
    (folder / "<img src=x onerror=alert(1)>.pkl").write_bytes(
        b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x08<script>\x8c\x04</b>\x93."
    )
    report = run_scan([folder], Settings(workers=2))
    return report, evaluate(report, Settings())


def test_json_schema_is_current() -> None:
    assert checked_in_schema() == json.loads(json.dumps(generated_schema(), sort_keys=True))


def test_json_report_validates(scanned: tuple[Report, Verdict]) -> None:
    data = json.loads(render(*scanned, "json"))
    jsonschema.Draft202012Validator(checked_in_schema()).validate(data)
    assert data["schema_version"] == "1.0"
    assert data["verdict"]["exit_code"] == 1
    assert Report.model_validate({k: v for k, v in data.items() if k != "verdict"})


def test_sarif_validates_against_official_schema(scanned: tuple[Report, Verdict]) -> None:
    data = json.loads(render(*scanned, "sarif", rules_by_id()))
    schema = json.loads((DATA / "sarif-schema-2.1.0.json").read_text())
    jsonschema.Draft4Validator(schema).validate(data)
    run = data["runs"][0]
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    for result in run["results"]:
        assert run["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["partialFingerprints"]["bastionFingerprint/v1"]
        assert float(result["properties"]["security-severity"]) >= 0
        uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        assert not uri.startswith("/")
    assert "PKL001" in rule_ids
    for rule in run["tool"]["driver"]["rules"]:
        assert rule["properties"]["security-severity"]
        assert any(t.startswith("external/atlas/") for t in rule["properties"]["tags"])
    nested = [r for r in run["results"] if r.get("relatedLocations")]
    assert nested, "archive members must appear as nested locations"
    index = nested[0]["relatedLocations"][0]["physicalLocation"]["artifactLocation"]["index"]
    assert "parentIndex" in run["artifacts"][index]


def test_html_is_self_contained_and_escaped(scanned: tuple[Report, Verdict]) -> None:
    page = render(*scanned, "html")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert not re.search(r"""(src|href)=["']https?://""", page)
    assert "Failed" in page and "What to do" in page and "Critical" in page


def test_junit_parses_and_counts(scanned: tuple[Report, Verdict]) -> None:
    root = ET.fromstring(render(*scanned, "junit").split("\n", 1)[1])
    suite = root.find("testsuite")
    assert suite is not None
    assert int(suite.get("failures", "0")) >= 4
    assert int(suite.get("tests", "0")) == len(scanned[0].results)


def test_text_lists_verdict_and_findings(scanned: tuple[Report, Verdict]) -> None:
    text = render(*scanned, "text")
    assert "verdict: FAILED" in text and "PKL001" in text


def test_output_is_deterministic(malicious: list[Sample], corpus_dir: Path) -> None:
    folder = corpus_dir / "malicious" / "archives"
    first = run_scan([folder], Settings(workers=2))
    second = run_scan([folder], Settings(workers=1))
    strip = ("started_at", "duration_s")

    def stable(report: Report) -> str:
        data = report.model_dump(mode="json")
        data["metadata"] = {k: v for k, v in data["metadata"].items() if k not in strip}
        data["metadata"]["settings"].pop("limits", None)
        for result in data["results"]:
            result["duration_ms"] = 0
        return json.dumps(data, sort_keys=True)

    assert stable(first) == stable(second)


def test_sarif_for_a_rule_the_catalogue_does_not_know(scanned: tuple[Report, Verdict]) -> None:
    """A plugin's rule or a run recorded by another version: a stub entry, never a KeyError."""
    report, verdict = scanned
    target = next(r for r in report.results if r.findings)
    extra = target.findings[0].model_copy(update={"rule_id": "ACME042", "fingerprint": ""})
    changed = report.model_copy(
        update={
            "results": (
                target.model_copy(update={"findings": (*target.findings, extra)}),
                *[r for r in report.results if r is not target],
            )
        }
    )
    data = json.loads(render(changed, verdict, "sarif", rules_by_id()))
    schema = json.loads((DATA / "sarif-schema-2.1.0.json").read_text())
    jsonschema.Draft4Validator(schema).validate(data)
    rules = data["runs"][0]["tool"]["driver"]["rules"]
    stub = next(r for r in rules if r["id"] == "ACME042")
    assert "not in this bastion's rule catalogue" in stub["shortDescription"]["text"]
