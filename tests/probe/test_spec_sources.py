"""Where a probe spec comes from: a real `bastion data profile` contract (its types, bounds and
categories win over what the probed rows show), and the example project's shipped spec, which
must describe its data and keep the example model's flips valid."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import pandas as pd
from conftest import credit_frame, fitted

from bastion.cli.main import main
from bastion.config import ProbeSettings, Settings
from bastion.datacheck.contract import load_contract
from bastion.findings import Location
from bastion.probe.evasion import run_evasion
from bastion.probe.inputs import read_table, split_table
from bastion.probe.model import load_model
from bastion.probe.spec import check_against, infer, load_spec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "credit-scoring"


def test_spec_from_a_profiled_contract(tmp_path: Path) -> None:
    frame = credit_frame(600)
    train = tmp_path / "train.csv"
    frame.iloc[:400].to_csv(train, index=False)
    contract_path = tmp_path / "contract.json"
    assert main(["data", "profile", str(train), "-o", str(contract_path), "-q"]) == 0
    # the reviewer widens one bound by hand, as a contract is meant to be edited
    document = json.loads(contract_path.read_text())
    document["columns"]["income"]["maximum"] = 9000.0
    contract_path.write_text(json.dumps(document))
    contract = load_contract(contract_path)
    # the probed rows: a slice without 'free' housing, and income read as text-free floats
    probed = frame.iloc[400:]
    probed = probed[probed["housing"] != "free"].drop(columns="outcome")
    probed = probed.astype({"accounts": "float64"})
    spec = infer(probed, contract=contract, name="test.csv", favourable="good")
    housing = spec.feature("housing")
    assert housing.kind == "categorical" and set(housing.categories) == {"free", "own", "rent"}
    income = spec.feature("income")
    assert income.kind == "numeric" and income.upper == 9000.0
    assert income.lower == document["columns"]["income"]["minimum"]
    # the contract says integer: a float column in the probed file stays an integer feature
    accounts = spec.feature("accounts")
    assert accounts.kind == "integer" and (accounts.lower, accounts.upper) == (0.0, 5.0)
    assert spec.source == {"data": "test.csv", "contract": contract.title or "contract"}
    # without the contract the probed rows decide, and 'free' is unknown to the spec
    alone = infer(probed, favourable="good")
    assert "free" not in alone.feature("housing").categories
    assert alone.feature("accounts").kind == "numeric"


def test_the_cli_infers_from_a_contract(tmp_path: Path) -> None:
    frame = credit_frame(300)
    frame.to_csv(tmp_path / "data.csv", index=False)
    contract = tmp_path / "contract.json"
    assert main(["data", "profile", str(tmp_path / "data.csv"), "-o", str(contract), "-q"]) == 0
    out = tmp_path / "spec.json"
    (tmp_path / "policy.toml").write_text("[probe]\nmax_rows = 5\n")
    joblib.dump(fitted(split_table(frame, "outcome", "t"), "lr"), tmp_path / "model.joblib")
    code = main(
        [
            "probe",
            str(tmp_path / "model.joblib"),
            "--data",
            str(tmp_path / "data.csv"),
            "--target",
            "outcome",
            "--contract",
            str(contract),
            "--immutable",
            "sex",
            "--write-spec",
            str(out),
            "--attacks",
            "evasion",
            "--policy",
            str(tmp_path / "policy.toml"),
            "--no-store",
            "-q",
            "-f",
            "json",
            "-o",
            str(tmp_path / "report.json"),
        ]
    )
    assert code in (0, 1)
    spec = load_spec(out)
    assert spec.source["contract"] == "contract of data.csv"
    assert spec.feature("sex").immutable and spec.feature("age").kind == "integer"


def test_example_spec_describes_the_example_data() -> None:
    spec = load_spec(EXAMPLE / "probe-spec.json")
    data = pd.read_csv(EXAMPLE / "data" / "german_credit.csv")
    check_against(spec, list(data.columns), spec.target)
    assert spec.target == "creditability" and spec.favourable == "good"
    assert spec.labels == {"good": "1", "bad": "0"}
    for item in spec.features:
        if item.kind == "categorical":
            assert set(data[item.name].astype(str)) <= set(item.categories), item.name
        else:
            assert item.lower is not None and item.upper is not None
            assert item.lower <= data[item.name].min() and data[item.name].max() <= item.upper
    immutable = {f.name for f in spec.features if f.immutable}
    assert {"age_in_years", "personal_status_and_sex", "foreign_worker"} <= immutable
    assert spec.feature("credit_amount").direction == -1


def test_example_model_probed_with_the_shipped_spec(tmp_path: Path) -> None:
    """The demo's probe: the released model through the scan gate, its flips all valid and
    none touching an immutable feature."""
    spec = load_spec(EXAMPLE / "probe-spec.json")
    model = load_model(EXAMPLE / "model" / "credit_model.joblib", Settings(workers=1))
    data = read_table(EXAMPLE / "data" / "german_credit.csv", "creditability")
    features = data.features.iloc[:300][spec.names]
    out = model.query(features)
    options = ProbeSettings(max_rows=12, budgets=(1.0, 2.0), queries_per_row=500)
    result = run_evasion(
        model, spec, features, None, out.labels, out.scores, "1", options, Location(path="m")
    )
    metrics = result.metrics
    assert metrics["invalid_dropped"] == 0 and metrics["success_rate"] > 0.3
    immutable = {f.name for f in spec.features if f.immutable}
    for flip in metrics["cheapest_flips"]:
        assert not immutable & {c["feature"] for c in flip["changes"]}
