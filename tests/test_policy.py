"""Policy evaluation: thresholds, waivers with expiry, baselines, strict mode, exit codes."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.config import Settings, WaiverSpec, load_settings
from bastion.errors import ConfigError
from bastion.findings import (
    CheckError,
    Confidence,
    Finding,
    Location,
    Report,
    Severity,
    Skip,
    Stage,
    TargetResult,
    ToolInfo,
)
from bastion.policy import Status, baseline_document, evaluate, load_baseline

TODAY = dt.date(2026, 11, 25)


def finding(
    rule: str = "PKL001",
    severity: Severity = Severity.CRITICAL,
    path: str = "models/a.pkl",
    evidence: str = "posix.system",
) -> Finding:
    return Finding(
        rule_id=rule,
        severity=severity,
        confidence=Confidence.HIGH,
        stage=Stage.ARTIFACT,
        message="m",
        location=Location(path=path),
        evidence=evidence,
    )


def report(*results: TargetResult) -> Report:
    return Report(tool=ToolInfo(version="0"), targets=("x",), results=results)


def target(*findings: Finding, path: str = "models/a.pkl", **kw: object) -> TargetResult:
    return TargetResult(path=path, format="pickle", findings=findings, **kw)  # type: ignore[arg-type]


def test_clean_scan_passes() -> None:
    verdict = evaluate(report(target()), Settings(), today=TODAY)
    assert verdict.status is Status.PASSED and verdict.exit_code == 0


def test_finding_at_threshold_fails_and_below_passes() -> None:
    rep = report(target(finding(severity=Severity.MEDIUM)))
    assert evaluate(rep, Settings(fail_on=Severity.MEDIUM), today=TODAY).exit_code == 1
    assert evaluate(rep, Settings(fail_on=Severity.HIGH), today=TODAY).exit_code == 0


def test_active_waiver_accepts_and_expired_waiver_fails() -> None:
    rep = report(target(finding()))
    active = WaiverSpec(
        rule="PKL001",
        path="models/*",
        reason="vendor model, reviewed",
        expires=TODAY + dt.timedelta(days=1),
    )
    verdict = evaluate(rep, Settings(waivers=(active,)), today=TODAY)
    assert verdict.status is Status.PASSED and verdict.waived
    expired = active.model_copy(update={"expires": TODAY - dt.timedelta(days=1)})
    verdict = evaluate(rep, Settings(waivers=(expired,)), today=TODAY)
    assert verdict.status is Status.FAILED
    assert any("expired" in r for r in verdict.reasons)


def test_expired_waiver_fails_even_when_nothing_matches() -> None:
    expired = WaiverSpec(
        rule="X1", path="models/*", reason="old", expires=TODAY - dt.timedelta(days=3)
    )
    assert evaluate(report(target()), Settings(waivers=(expired,)), today=TODAY).exit_code == 1


def test_waiver_for_other_path_does_not_apply() -> None:
    waiver = WaiverSpec(rule="PKL001", path="vendor/*", reason="r", expires=TODAY)
    assert (
        evaluate(report(target(finding())), Settings(waivers=(waiver,)), today=TODAY).exit_code == 1
    )


def test_baseline_accepts_known_findings_only(tmp_path: Path) -> None:
    known = finding()
    base = tmp_path / "baseline.json"
    base.write_text(json.dumps(baseline_document(report(target(known)))))
    prints = load_baseline(base)
    assert evaluate(report(target(known)), Settings(), prints, TODAY).exit_code == 0
    new = finding(evidence="subprocess.Popen")
    assert evaluate(report(target(known, new)), Settings(), prints, TODAY).exit_code == 1


def test_bad_baseline_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "b.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError):
        load_baseline(bad)
    bad.write_text('{"findings": []}')
    with pytest.raises(ConfigError):
        load_baseline(bad)


def test_errors_and_incomplete_are_undecided_not_clean() -> None:
    error = CheckError(location=Location(path="a"), check="scanner", message="boom")
    rep = report(target(errors=(error,), incomplete=True))
    verdict = evaluate(rep, Settings(), today=TODAY)
    assert verdict.status is Status.UNDECIDED and verdict.exit_code == 2


def test_failure_wins_over_undecided() -> None:
    error = CheckError(location=Location(path="b"), check="scanner", message="boom")
    rep = report(target(finding()), TargetResult(path="b", errors=(error,), incomplete=True))
    assert evaluate(rep, Settings(), today=TODAY).exit_code == 1


def test_nothing_scannable_is_undecided() -> None:
    skip = Skip(location=Location(path="README.md"), reason="text", code="out-of-scope")
    rep = report(TargetResult(path="README.md", skips=(skip,)))
    assert evaluate(rep, Settings(), today=TODAY).exit_code == 2
    assert evaluate(report(), Settings(), today=TODAY).exit_code == 2


def test_strict_makes_gaps_fail_but_not_out_of_scope_files() -> None:
    gap = Skip(location=Location(path="m.h5"), reason="needs h5py", code="missing-extra")
    rep = report(target(), TargetResult(path="m.h5", format="hdf5", skips=(gap,)))
    assert evaluate(rep, Settings(), today=TODAY).exit_code == 0
    assert evaluate(rep, Settings(strict=True), today=TODAY).exit_code == 1
    other = Skip(location=Location(path="r.md"), reason="text", code="out-of-scope")
    rep2 = report(target(), TargetResult(path="r.md", skips=(other,)))
    assert evaluate(rep2, Settings(strict=True), today=TODAY).exit_code == 0


def test_settings_precedence(tmp_path: Path) -> None:
    (tmp_path / "bastion.toml").write_text('fail_on = "high"\nstrict = true\n')
    assert load_settings(project_dir=tmp_path, environ={}).fail_on is Severity.HIGH
    env = {"BASTION_FAIL_ON": "critical"}
    assert load_settings(project_dir=tmp_path, environ=env).fail_on is Severity.CRITICAL
    flag = load_settings(project_dir=tmp_path, environ=env, overrides={"fail_on": "low"})
    assert flag.fail_on is Severity.LOW and flag.strict


def test_pyproject_table_and_invalid_config(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.bastion]\nfail_on = "low"\n'
        '[[tool.bastion.waivers]]\nrule = "PKL003"\n'
        'path = "m/*"\n'
        'reason = "ours"\nexpires = 2027-01-01\n'
    )
    settings = load_settings(project_dir=tmp_path, environ={})
    assert settings.fail_on is Severity.LOW and settings.waivers[0].rule == "PKL003"
    (tmp_path / "bastion.toml").write_text('fail_on = "severe"\n')
    with pytest.raises(ConfigError, match="fail_on"):
        load_settings(project_dir=tmp_path, environ={})
    (tmp_path / "bastion.toml").write_text("fail_on = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(project_dir=tmp_path, environ={})
    (tmp_path / "bastion.toml").write_text(
        '[[waivers]]\nrule="A"\npath="m/*"\nreason=" "\nexpires=2027-01-01\n'
    )
    with pytest.raises(ConfigError, match="reason"):
        load_settings(project_dir=tmp_path, environ={})


severities = st.sampled_from(list(Severity))


@given(st.lists(severities, max_size=12), severities)
def test_gate_fails_exactly_when_a_finding_reaches_the_threshold(
    found: list[Severity], threshold: Severity
) -> None:
    rep = report(target(*[finding(severity=s, evidence=str(i)) for i, s in enumerate(found)]))
    verdict = evaluate(rep, Settings(fail_on=threshold), today=TODAY)
    expected = any(s.rank >= threshold.rank for s in found)
    assert (verdict.exit_code == 1) == expected
    assert verdict.exit_code in (0, 1)


@given(st.lists(st.tuples(severities, st.booleans()), max_size=10))
def test_waiving_never_makes_a_verdict_worse(items: list[tuple[Severity, bool]]) -> None:
    findings = [
        finding(severity=s, path=f"{'w' if waive else 'k'}/{i}.pkl", evidence=str(i))
        for i, (s, waive) in enumerate(items)
    ]
    rep = report(target(*findings))
    waiver = WaiverSpec(rule="PKL001", path="w/*", reason="r", expires=TODAY)
    plain = evaluate(rep, Settings(), today=TODAY).exit_code
    waived = evaluate(rep, Settings(waivers=(waiver,)), today=TODAY).exit_code
    assert waived <= plain


def test_fingerprint_ignores_message_but_not_location() -> None:
    a = finding()
    b = a.model_copy(update={"message": "reworded", "fingerprint": ""})
    c = finding(path="models/b.pkl")
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_fingerprint_is_sha256_of_rule_location_and_evidence() -> None:
    import hashlib

    a = finding()
    key = json.dumps(
        [
            a.rule_id,
            a.location.path,
            list(a.location.members),
            a.location.pointer or "",
            a.evidence,
        ],
        separators=(",", ":"),
    )
    assert a.fingerprint == hashlib.sha256(key.encode()).hexdigest()[:32]


def test_pyproject_without_bastion_is_not_parsed_but_a_bastion_table_is(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    # someone else's broken pyproject.toml is not bastion's business...
    (tmp_path / "pyproject.toml").write_text("[project\nname = 'x'\n")
    assert load_settings(project_dir=project, environ={}).source is None
    # ...but one that names bastion is parsed, and a broken one says so
    (tmp_path / "pyproject.toml").write_text("[tool.bastion\nfail_on = 'low'\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(project_dir=project, environ={})
    (tmp_path / "pyproject.toml").write_bytes(b"[tool.bastion]\nfail_on = '\xff'\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(project_dir=project, environ={})
    (tmp_path / "pyproject.toml").write_text("[tool.bastion]\nfail_on = 'low'\n")
    assert load_settings(project_dir=project, environ={}).fail_on is Severity.LOW


@pytest.mark.parametrize("document", ["README.md", "docs/policy.md"])
def test_documented_policy_examples_load(document: str, tmp_path: Path) -> None:
    import re

    text = (Path(__file__).parents[1] / document).read_text("utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", text, flags=re.S)
    assert blocks
    for block in blocks:
        (tmp_path / "bastion.toml").write_text(block)
        load_settings(project_dir=tmp_path, environ={})
