"""`bastion scan PROJECT`: artifacts, code, dependencies and signatures in one report."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from supplychain.keys import write_key_pair

from bastion.cli.main import main
from bastion.config import load_settings
from bastion.policy import evaluate
from bastion.project import scan_project
from bastion.supplychain.signing import Credentials, sign


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "model").mkdir(parents=True)
    (root / "keys").mkdir()
    (root / "model" / "clf.pkl").write_bytes(pickle.dumps({"coef": [0.5]}))
    (root / "train.py").write_text("import pickle\nclf = pickle.load(open('m.pkl', 'rb'))\n")
    (root / "requirements.txt").write_text("torch==2.5.1\nscikit-learn==1.5.2\n")
    private, _public = write_key_pair(root / "keys")
    private.unlink()  # only the public key lives in the project
    key = write_key_pair(tmp_path, "release")
    sign(root / "model", Credentials(key=key[0]))
    (root / "keys" / "release.pub").write_bytes(key[1].read_bytes())
    (root / "bastion.toml").write_text(
        '[signing]\npublic_keys = ["keys/release.pub"]\nrequire = true\n'
    )
    return root


def rules_by_path(report):  # type: ignore[no-untyped-def]
    return {r.path: {f.rule_id for f in r.findings} for r in report.results}


def test_project_scan_runs_every_check(project: Path) -> None:
    settings = load_settings(project_dir=project, environ={})
    report = scan_project([project], settings)
    found = rules_by_path(report)
    assert found["train.py"] == {"COD002"}
    assert found["requirements.txt"] == {"DEP002"}  # torch 2.5.1: weights_only bypass
    assert found["model/model.sig"] == set()  # verified with the trusted key
    assert found["model/clf.pkl"] == set()  # covered by the signature
    assert evaluate(report, settings).exit_code == 1


def test_tampered_signed_model_and_unsigned_model_fail(project: Path) -> None:
    (project / "model" / "clf.pkl").write_bytes(pickle.dumps({"coef": [0.9]}))
    (project / "other.pkl").write_bytes(pickle.dumps([1]))
    (project / "train.py").write_text("x = 1\n")
    (project / "requirements.txt").write_text("scikit-learn==1.5.2\n")
    settings = load_settings(project_dir=project, environ={})
    report = scan_project([project], settings)
    found = rules_by_path(report)
    assert found["model/model.sig"] == {"SIG001"}
    assert found["other.pkl"] == {"SIG002"}
    unsigned = next(f for f in report.findings if f.rule_id == "SIG002")
    assert unsigned.severity.value == "high"


def test_signature_without_trusted_key_is_not_silently_accepted(project: Path) -> None:
    (project / "bastion.toml").write_text("")
    (project / "train.py").write_text("x = 1\n")
    (project / "requirements.txt").unlink()
    settings = load_settings(project_dir=project, environ={})
    report = scan_project([project], settings)
    sig = next(r for r in report.results if r.path == "model/model.sig")
    assert sig.skips and "no trusted key" in sig.skips[0].reason
    assert evaluate(report, settings).exit_code == 0
    assert evaluate(report, settings.model_copy(update={"strict": True})).exit_code == 1


def test_cli_scan_project(project: Path) -> None:
    assert main(["scan", str(project), "--no-store", "-q"]) == 1
