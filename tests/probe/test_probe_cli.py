"""`bastion probe` end to end: a model file through the scan gate, the policy's [probe]
thresholds, exit codes and the JSON metrics."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import joblib
import pytest
from conftest import credit_frame, fitted

from bastion.cli.main import main
from bastion.probe.inputs import split_table


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("probe")
    frame = credit_frame(500)
    frame.iloc[:300].to_csv(root / "train.csv", index=False)
    frame.iloc[300:].to_csv(root / "test.csv", index=False)
    model = fitted(split_table(frame.iloc[:300], "outcome", "train"), "lr")
    joblib.dump(model, root / "model.joblib")
    return root


def _probe(root: Path, *extra: str, policy: str = "") -> tuple[int, dict[str, Any]]:
    (root / "policy.toml").write_text(policy)
    out = root / "report.json"
    code = main(
        [
            "probe",
            str(root / "model.joblib"),
            "--data",
            str(root / "test.csv"),
            "--target",
            "outcome",
            "--immutable",
            "age",
            "sex",
            "--monotone",
            "debt=-1",
            "--policy",
            str(root / "policy.toml"),
            "--no-store",
            "-q",
            "-f",
            "json",
            "-o",
            str(out),
            *extra,
        ]
    )
    return code, json.loads(out.read_text()) if out.exists() else {}


def test_evasion_fails_the_gate_and_reports_metrics(project: Path) -> None:
    code, report = _probe(
        project, "--attacks", "evasion", "--budget", "0.5,2", policy="[probe]\nmax_rows = 30\n"
    )
    assert code == 1
    assert report["command"] == "probe" and report["verdict"]["status"] == "failed"
    probe = report["metadata"]["probe"]
    evasion = probe["evasion"]
    assert [b["budget"] for b in evasion["budgets"]] == [0.5, 2.0]
    assert evasion["invalid_dropped"] == 0 and evasion["probed"] == 30
    rules = {f["rule_id"] for f in report["results"][0]["findings"]}
    assert "PRB001" in rules
    finding = next(f for f in report["results"][0]["findings"] if f["rule_id"] == "PRB001")
    assert finding["stage"] == "testing" and "AML.T0015" in finding["tags"]["atlas"]
    assert finding["tags"]["eu_ai_act"] == ["Art.15(5)"]
    assert "consistency" in probe and probe["consistency"]["deterministic"] is True
    assert report["metadata"]["spec"]["features"][2]["immutable"] is True  # age


def test_lenient_policy_passes(project: Path) -> None:
    policy = "[probe]\nmax_rows = 20\nmax_flippable_share = 1.0\nmin_robust_accuracy = 0.0\n"
    code, report = _probe(project, "--attacks", "evasion", policy=policy)
    # the pipeline's one-hot encoder ignores unknown categories: a low finding, below the gate
    assert code == 0, report["verdict"]
    assert {f["rule_id"] for f in report["results"][0]["findings"]} == {"PRB033"}


def test_membership_without_train_is_a_skip_not_a_pass(project: Path) -> None:
    policy = "[probe]\nmax_rows = 10\nmax_flippable_share = 1.0\nmin_robust_accuracy = 0.0\n"
    code, report = _probe(project, "--attacks", "evasion,membership", policy=policy)
    skips = report["results"][0]["skips"]
    assert any("membership inference not run: no --train" in s["reason"] for s in skips)
    assert code == 0  # reported, not blocking; --strict makes it fail
    code, _ = _probe(project, "--attacks", "membership", "--strict", policy=policy)
    assert code == 1


def test_bad_policy_values_are_config_errors(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = _probe(project, "--attacks", "evasion", policy="[probe]\nmax_flippable_share = 2\n")
    assert code == 2
    assert "max_flippable_share" in capsys.readouterr().err


def test_a_model_that_fails_the_scan_is_refused(
    tmp_path: Path, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    class Payload:
        def __reduce__(self) -> Any:
            import os

            return (os.system, ("echo bastion-probe-marker",))

    evil = tmp_path / "model.joblib"
    evil.write_bytes(pickle.dumps(Payload()))
    for name in ("test.csv", "train.csv"):
        (tmp_path / name).write_text((project / name).read_text())
    code, _ = _probe(tmp_path, "--attacks", "evasion")
    assert code == 2
    err = capsys.readouterr().err
    assert "refusing to load" in err and "bastion-probe-marker" not in err


def test_unknown_column_and_attack_are_usage_errors(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _probe(project, "--attacks", "evasion", "--immutable", "nope")[0] == 2
    assert "no feature named 'nope'" in capsys.readouterr().err
    assert _probe(project, "--attacks", "poison")[0] == 2
    assert "unknown attack" in capsys.readouterr().err


def test_html_report_has_plots_and_the_cheapest_flips(project: Path) -> None:
    policy = "[probe]\nmax_rows = 15\nqueries = 200\n"
    (project / "policy.toml").write_text(policy)
    out = project / "report.html"
    code = main(
        [
            "probe",
            str(project / "model.joblib"),
            "--data",
            str(project / "test.csv"),
            "--train",
            str(project / "train.csv"),
            "--target",
            "outcome",
            "--immutable",
            "age",
            "sex",
            "--policy",
            str(project / "policy.toml"),
            "--no-store",
            "-q",
            "-f",
            "html",
            "-o",
            str(out),
        ]
    )
    text = out.read_text()
    assert code == 1
    assert text.count("<svg") == 3 and "<script" not in text
    assert "Cheapest flips" in text and "Membership inference (ROC)" in text
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
