"""`bastion bom`: CycloneDX 1.6 documents that validate against the official schema, with model
cards, datasets, dependencies and bastion findings as vulnerabilities."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest

from bastion.cli.main import main
from bastion.supplychain.bom import build_bom, validate


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    root = tmp_path / "credit"
    (root / "model").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "model" / "clf.pkl").write_bytes(pickle.dumps({"coef": [0.1, 0.2]}))
    (root / "model" / "evil.pkl").write_bytes(
        b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00echo\x85R."
    )
    (root / "data" / "train.csv").write_text("age,amount,label\n31,1200,good\n")
    (root / "requirements.txt").write_text("scikit-learn==1.5.2\nnumpy>=1.26\n")
    (root / "bastion-model.toml").write_text(
        '[model]\ntask = "binary-classification"\narchitecture = "logistic regression"\n'
        'family = "linear"\ninputs = ["tabular"]\noutputs = ["probability"]\n'
        "[metrics]\naccuracy = 0.74\nroc_auc = 0.79\n"
        '[considerations]\nuseCases = ["pre-screening of loan applications"]\n'
        'technicalLimitations = ["trained on 1,000 applicants from 1994"]\n'
        'ethicalConsiderations = ["age and sex are features"]\n'
    )
    return root


def test_bom_contents_and_schema(project: Path) -> None:
    import bastion

    document = build_bom(project, findings=bastion.scan([project]).findings)
    assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.6"
    by_name = {c["name"]: c for c in document["components"]}
    model = by_name["model/clf.pkl"]
    assert model["type"] == "machine-learning-model"
    assert model["hashes"][0]["alg"] == "SHA-256" and len(model["hashes"][0]["content"]) == 64
    parameters = model["modelCard"]["modelParameters"]
    assert parameters["task"] == "binary-classification"
    assert parameters["datasets"] == [{"ref": "data:data/train.csv"}]
    metrics = model["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]
    assert {"type": "accuracy", "value": "0.74"} in metrics
    assert by_name["data/train.csv"]["type"] == "data"
    assert by_name["data/train.csv"]["data"][0]["type"] == "dataset"
    assert by_name["scikit-learn"]["purl"] == "pkg:pypi/scikit-learn@1.5.2"
    vulns = document["vulnerabilities"]
    assert [v["id"] for v in vulns] == ["PKL001"]
    assert vulns[0]["affects"] == [{"ref": "model:model/evil.pkl"}]
    validate(document)


def test_every_requirement_and_lock_file_gives_dependencies(project: Path) -> None:
    # the same names the project audit reads; a requirements-dev.txt is not a dataset
    (project / "requirements-dev.txt").write_text("pytest==8.3.3\n")
    (project / "pylock.dev.toml").write_text(
        'lock-version = "1.0"\n[[packages]]\nname = "hypothesis"\nversion = "6.100.0"\n'
    )
    document = build_bom(project)
    by_name = {c["name"]: c for c in document["components"]}
    assert by_name["pytest"]["purl"] == "pkg:pypi/pytest@8.3.3"
    assert by_name["hypothesis"]["purl"] == "pkg:pypi/hypothesis@6.100.0"
    assert "requirements-dev.txt" not in by_name and "requirements.txt" not in by_name


def test_invalid_documents_are_rejected() -> None:
    from bastion.supplychain.bom import BomError

    with pytest.raises(BomError):
        validate(
            {
                "bomFormat": "CycloneDX",
                "specVersion": "1.6",
                "components": [{"type": "machine-learning-model"}],
            }
        )


def test_cli_writes_a_valid_bom(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "bom.json"
    assert main(["bom", str(project), "-o", str(out), "-q"]) == 0
    document = json.loads(out.read_text())
    validate(document)
    assert main(["bom", str(tmp_path / "missing")]) == 2


def test_model_card_fields_are_typed(tmp_path: Path) -> None:
    from bastion.supplychain.bom import BomError, ModelCard

    card = tmp_path / "bastion-model.toml"
    card.write_text('[model]\ntask = "ranking"\nowner = "ml-team"\n[metrics]\nndcg = 1\n[extra]\n')
    loaded = ModelCard.load(card)  # keys bastion does not use are the file's own business
    assert loaded.task == "ranking" and loaded.metrics == {"ndcg": 1.0}
    for text, key in (
        ('[model]\ninputs = "tabular"\n', "inputs"),
        ('[metrics]\naccuracy = "high"\n', "metrics.accuracy"),
        ("[considerations]\nuseCases = [1]\n", "considerations.useCases[0]"),
        ("model = 3\n", "[model]"),
    ):
        card.write_text(text)
        with pytest.raises(BomError, match=re.escape(key)):
            ModelCard.load(card)
