"""Issue #7, class 1: nothing inside a scanned tree may change the verdict. The policy comes from
the invoking project (working directory, --policy, BASTION_POLICY); the library API uses the
built-in defaults; wildcard waivers are refused; the policy in use is named; a policy file
shipped inside the scanned content is a finding; `require` without trusted signers is a
configuration error and a signature counts only once it verifies."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

import bastion
from bastion.cli.main import main
from bastion.config import Settings, SigningSettings, WaiverSpec, load_settings
from bastion.errors import ConfigError, UnsafeArtifactError
from bastion.findings import (
    Confidence,
    Finding,
    Location,
    Report,
    Severity,
    Stage,
    TargetResult,
    ToolInfo,
)
from bastion.policy import evaluate
from bastion.records import RecordError

EVIL = b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00echo\x85R."
WAIVE_ALL = (
    'fail_on = "critical"\n[[waivers]]\nrule = "PKL001"\npath = "*.pkl"\n'
    'reason = "trust me"\nexpires = 2999-01-01\n'
)
SHIPPED = {
    "bastion.toml": 'fail_on = "critical"\n[[waivers]]\nrule = "PKL001"\npath = "model.pkl"\n'
    'reason = "benign, trust me"\nexpires = 2999-01-01\n',
    "pyproject.toml": '[project]\nname = "m"\n[tool.bastion]\nfail_on = "critical"\n'
    '[[tool.bastion.waivers]]\nrule = "PKL001"\npath = "model.pkl"\n'
    'reason = "benign"\nexpires = 2999-01-01\n',
}


@pytest.fixture()
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no policy of its own (the invoking project)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("BASTION_POLICY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # the project and the download share only home
    return work


def downloaded_model(root: Path, policy_name: str) -> Path:
    folder = root / "downloaded-model"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(EVIL)
    (folder / policy_name).write_text(SHIPPED[policy_name])
    return folder


@pytest.mark.parametrize("policy_name", sorted(SHIPPED))
def test_a_policy_shipped_with_the_model_changes_nothing(
    tmp_path: Path, elsewhere: Path, policy_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = downloaded_model(tmp_path, policy_name)
    assert main(["scan", str(folder / "model.pkl"), "--no-store", "-q"]) == 1
    capsys.readouterr()
    assert main(["scan", str(folder), "--no-store", "-f", "json"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    rules = {f["rule_id"] for r in report["results"] for f in r["findings"]}
    assert {"PKL001", "POL001"} <= rules
    assert report["metadata"]["policy"] == "built-in defaults"
    assert "policy: built-in defaults" in captured.err


@pytest.mark.parametrize("policy_name", sorted(SHIPPED))
def test_cd_into_the_model_and_scan_dot_does_not_use_its_policy(
    tmp_path: Path,
    policy_name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Found by the white-box attack (A1-06): the working directory's policy was the model's."""
    monkeypatch.delenv("BASTION_POLICY", raising=False)
    folder = downloaded_model(tmp_path, policy_name)
    monkeypatch.chdir(folder)
    assert main(["scan", ".", "--no-store", "-q"]) == 2
    assert "in, above or beside the scanned content" in capsys.readouterr().err
    monkeypatch.chdir(folder.parent)
    assert main(["scan", folder.name, "--no-store", "-q"]) == 1
    # named explicitly, it is the user's decision, and it is the policy in use (no POL001)
    monkeypatch.chdir(folder)
    capsys.readouterr()
    assert main(["scan", ".", "--no-store", "--policy", policy_name, "-f", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["metadata"]["policy"].endswith(policy_name)


@pytest.mark.parametrize("policy_name", sorted(SHIPPED))
def test_a_policy_above_the_scanned_folder_is_not_used_implicitly(
    tmp_path: Path,
    policy_name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """White-box attack A1-12, A1-06b, A1-28: the cloned repository ships its policy at its root
    (or in a sibling folder) and the payload in a sub-folder; `cd repo && bastion scan models`,
    `cd repo/models && bastion scan model.pkl` or `cd repo/scripts && bastion scan ../models`
    found the repository's policy from the working directory."""
    monkeypatch.delenv("BASTION_POLICY", raising=False)
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    (repo / "models" / "model.pkl").write_bytes(EVIL)
    (repo / policy_name).write_text(SHIPPED[policy_name])
    (repo / "scripts").mkdir()
    (repo / "scripts" / policy_name).write_text(SHIPPED[policy_name])
    for cwd, target in (
        (repo, "models"),
        (repo / "models", "."),
        (repo, "models/model.pkl"),
        (repo / "models", "model.pkl"),
        (repo / "scripts", "../models"),
    ):
        monkeypatch.chdir(cwd)
        assert main(["scan", target, "--no-store", "-q"]) == 2
        assert "in, above or beside the scanned content" in capsys.readouterr().err
    monkeypatch.chdir(repo)  # named, it is the user's own decision
    assert main(["scan", "models", "--no-store", "-q", "--policy", policy_name]) == 0


def test_a_link_into_a_skipped_folder_is_not_taken_for_scanned_content(
    tmp_path: Path, elsewhere: Path
) -> None:
    """Found by the white-box attack (A1-01): model.pkl -> .git/blob was never scanned."""
    folder = tmp_path / "repo"
    (folder / ".git" / "objects").mkdir(parents=True)
    (folder / ".git" / "objects" / "blob").write_bytes(EVIL)
    (folder / "model.pkl").symlink_to(folder / ".git" / "objects" / "blob")
    (folder / "weights").symlink_to(folder / ".git" / "objects", target_is_directory=True)
    (folder / "ok.pkl").write_bytes(b"\x80\x04K\x01.")
    report = bastion.scan(folder)
    links = {r.path: r for r in report.results if r.format == "symlink"}
    assert set(links) == {"model.pkl", "weights"}
    assert all(r.findings and r.findings[0].rule_id == "ARC002" for r in links.values())
    assert evaluate(report, Settings()).exit_code == 1


@pytest.mark.parametrize("policy_name", sorted(SHIPPED))
def test_library_api_and_safe_load_ignore_a_shipped_policy(
    tmp_path: Path, elsewhere: Path, policy_name: str
) -> None:
    folder = downloaded_model(tmp_path, policy_name)
    report = bastion.scan(folder)
    assert evaluate(report, Settings()).exit_code == 1
    assert report.metadata["policy"] == "built-in defaults"
    with pytest.raises(UnsafeArtifactError):
        bastion.safe_load(folder / "model.pkl")


def test_the_invoking_projects_policy_applies_and_is_named(
    tmp_path: Path, elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "m.pkl"
    model.write_bytes(EVIL)
    (elsewhere / "bastion.toml").write_text(
        f'[[waivers]]\nrule = "PKL001"\npath = "{model}"\nreason = "reviewed in SEC-1"\n'
        "expires = 2999-01-01\n"
    )
    assert main(["scan", str(model), "--no-store", "-f", "json"]) == 0
    captured = capsys.readouterr()
    policy = str((elsewhere / "bastion.toml").resolve())
    assert json.loads(captured.out)["metadata"]["policy"] == policy
    assert f"policy: {policy}" in captured.err


def test_bastion_policy_environment_variable(
    tmp_path: Path, elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "m.pkl"
    model.write_bytes(EVIL)
    policy = tmp_path / "ci-policy.toml"
    policy.write_text(
        f'[[waivers]]\nrule = "PKL001"\npath = "{model}"\nreason = "r"\nexpires = 2999-01-01\n'
    )
    monkeypatch.setenv("BASTION_POLICY", str(policy))
    assert main(["scan", str(model), "--no-store", "-q"]) == 0
    monkeypatch.setenv("BASTION_POLICY", str(tmp_path / "missing.toml"))
    assert main(["scan", str(model), "--no-store", "-q"]) == 2


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ("*", "models/x.pkl"),
        ("PKL*", "models/x.pkl"),
        ("PKL00?", "m"),
        ("", "m"),
        ("PKL001", "*"),
        ("PKL001", "**"),
        ("PKL001", "*/*"),
        ("PKL001", "[!~]*"),
    ],
)
def test_wildcard_waivers_are_refused(rule: str, path: str) -> None:
    with pytest.raises(RecordError):
        WaiverSpec(rule=rule, path=path, reason="r", expires=dt.date(2999, 1, 1))


def test_wildcard_waiver_in_a_policy_file_is_a_clear_config_error(tmp_path: Path) -> None:
    (tmp_path / "bastion.toml").write_text(WAIVE_ALL.replace('"PKL001"', '"*"'))
    with pytest.raises(ConfigError, match="wildcard"):
        load_settings(project_dir=tmp_path, environ={})
    (tmp_path / "bastion.toml").write_text(WAIVE_ALL.replace('"*.pkl"', '"*"'))
    with pytest.raises(ConfigError, match="every path"):
        load_settings(project_dir=tmp_path, environ={})


def test_require_signatures_without_trusted_signers_is_a_config_error(
    tmp_path: Path, elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(RecordError, match="trusted signers"):
        SigningSettings(require=True)
    (elsewhere / "bastion.toml").write_text("[signing]\nrequire = true\n")
    model = tmp_path / "m.pkl"
    model.write_bytes(b"\x80\x04K\x01.")
    assert main(["scan", str(model), "--no-store"]) == 2
    assert "trusted signers" in capsys.readouterr().err


def test_a_signature_that_does_not_verify_covers_nothing(
    tmp_path: Path, elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.supplychain.keys import write_key_pair

    _private, public = write_key_pair(tmp_path)
    (elsewhere / "bastion.toml").write_text(
        f'[signing]\nrequire = true\npublic_keys = ["{public}"]\n'
    )
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.pkl").write_bytes(b"\x80\x04K\x01.")
    (folder / "model.sig").write_text('{"not": "a signature"}')
    assert main(["scan", str(folder), "--no-store", "-f", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    unsigned = [f for r in report["results"] for f in r["findings"] if f["rule_id"] == "SIG002"]
    assert unsigned and unsigned[0]["severity"] == "high"


def test_strict_fails_on_findings_reported_below_the_default_gate() -> None:
    low = Finding(
        rule_id="PKL007",
        severity=Severity.LOW,
        confidence=Confidence.MEDIUM,
        stage=Stage.ARTIFACT,
        message="m",
        location=Location(path="a.pkl"),
        evidence="mypkg.Net",
    )
    report = Report(
        tool=ToolInfo(version="0"),
        targets=("a.pkl",),
        results=(TargetResult(path="a.pkl", format="pickle", findings=(low,)),),
    )
    assert evaluate(report, Settings()).exit_code == 0
    strict = evaluate(report, Settings(strict=True))
    assert strict.exit_code == 1 and "'low'" in strict.reasons[0]
    assert evaluate(report, Settings(strict=True, fail_on=Severity.INFO)).exit_code == 1


def test_two_roots_with_the_same_name_keep_both_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """White-box attack A1-16: `bastion scan upstream/models ours/models` showed both files as
    models/model.pkl and the benign result replaced the malicious one."""
    for owner, data in (("upstream", EVIL), ("ours", b"\x80\x04K\x01." + b"\x00" * 4096)):
        (tmp_path / owner / "models").mkdir(parents=True)
        (tmp_path / owner / "models" / "model.pkl").write_bytes(data)
    monkeypatch.chdir(tmp_path)
    report = bastion.scan([Path("upstream/models"), Path("ours/models"), Path("ours/models")])
    paths = [r.path for r in report.results]
    assert "upstream/models/model.pkl" in paths and "ours/models/model.pkl" in paths
    assert len(paths) == len(set(paths)) == 2
    assert evaluate(report, Settings()).exit_code == 1


def test_a_policy_in_the_home_folder_is_never_implicit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A1-38: a model tarball extracted in ~ drops ~/bastion.toml next to ~/model."""
    monkeypatch.delenv("BASTION_POLICY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.pkl").write_bytes(EVIL)
    (tmp_path / "bastion.toml").write_text(SHIPPED["bastion.toml"])
    monkeypatch.chdir(tmp_path)
    assert main(["scan", "model", "--no-store", "-q"]) == 2
