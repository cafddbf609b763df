"""Refused queries in membership, extraction and consistency (issue 10): an endpoint behind an
input contract (a local HTTP server on 127.0.0.1, started here, answering 422 for a request
holding a row out of its ranges) and an in-process model raising on such rows. Each attack
completes with the refusals counted; a model refusing everything the attacks send leaves
not-run gaps, and one refusing every row is a clear error — never a traceback or a pass."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import credit_spec
from test_attack_review import _send, _serve

from bastion.cli.main import main
from bastion.config import Settings
from bastion.findings import Report
from bastion.policy import evaluate
from bastion.probe.endpoint import HttpModel
from bastion.probe.inputs import Table
from bastion.probe.model import EstimatorModel, Model, Output
from bastion.probe.run import ProbeError, run_probe
from bastion.report import render

INCOME_MAX = 4000.0  # the contract: income and debt within these
DEBT_MAX = 2500.0


def _in_contract(frame: pd.DataFrame) -> bool:
    income = pd.to_numeric(frame["income"], errors="coerce")
    debt = pd.to_numeric(frame["debt"], errors="coerce")
    return bool(((income <= INCOME_MAX) & (debt <= DEBT_MAX)).all())


@pytest.fixture(scope="module")
def guarded(credit_lr: Any) -> Iterator[dict[str, Any]]:
    """A credit endpoint behind an input contract: a request holding a row out of range is
    refused whole with 422 (as `bastion guard` does); `refuse_all` refuses everything."""

    def contract(handler: BaseHTTPRequestHandler, state: dict[str, Any]) -> None:
        frame = pd.DataFrame(state["body"]["rows"])
        if state.get("refuse_all") or not _in_contract(frame):
            _send(handler, b'{"error": "input outside the contract"}', 422)
            return
        _send(handler, json.dumps({"scores": credit_lr.predict_proba(frame).tolist()}).encode())

    state = _serve(contract)
    yield state
    state["httpd"].shutdown()
    state["httpd"].server_close()


class Fussy(EstimatorModel):
    """The credit pipeline in process, raising on any frame holding a row out of the
    contract; with `refuse_after_first`, raising on everything past its first call (the
    probe's baseline query of the data)."""

    def __init__(self, estimator: Any, refuse_after_first: bool = False) -> None:
        super().__init__(estimator, "fussy")
        self.refuse_after_first = refuse_after_first
        self.calls = 0

    def _predict(self, frame: pd.DataFrame) -> Output:
        self.calls += 1
        if self.refuse_after_first:  # the contract aside: answers the baseline only
            if self.calls > 1:
                raise ValueError("service closed")
        elif not _in_contract(frame):
            raise ValueError("input outside the range the service accepts")
        return super()._predict(frame)


def _probe(model: Model, credit: tuple[Table, Table]) -> Report:
    """Every attack (evasion aside) on the test rows, with the training rows."""
    train, test = credit
    return run_probe(
        model,
        test,
        train=train,
        spec=credit_spec(test),
        queries=200,
        attacks=("membership", "extraction"),
    )


def _gaps(report: Report) -> list[str]:
    return [s.reason for s in report.results[0].skips]


def _check_attacks_completed(report: Report) -> dict[str, Any]:
    target = report.results[0]
    assert not target.errors, target.errors
    probe = report.metadata["probe"]
    for attack in ("consistency", "membership", "extraction"):
        assert probe[attack].get("run", True), (attack, probe[attack])
        assert probe[attack]["refused_queries"] > 0, attack
    notes = _gaps(report)
    for attack in ("consistency", "membership", "extraction"):
        count = probe[attack]["refused_queries"]
        assert any(n.startswith(f"{attack}: the model refused {count:,} of") for n in notes)
    return probe


def test_attacks_complete_through_a_guarded_endpoint(
    guarded: dict[str, Any], credit: tuple[Table, Table]
) -> None:
    model = HttpModel(
        guarded["url"], template={"rows": "$rows"}, classes=["bad", "good"], scores="/scores"
    )
    report = _probe(model, credit)
    probe = _check_attacks_completed(report)
    extraction = probe["extraction"]
    shares = extraction["refused_share_by_strategy"]
    # random rows within the data's bounds break the contract far more often than data rows
    assert shares["random"] > 0.3 and shares["random"] > shares["data_like"]
    assert 0 < extraction["refused_share"] < 1
    assert extraction["best_fidelity"] is not None and extraction["hardening"]
    for point in extraction["curves"]["random"]:
        assert point["answered"] < point["queries"]
    membership = probe["membership"]
    assert membership["members"] + membership["non_members"] > 0
    assert 0 <= membership["best_auc"] <= 1
    assert model.queries == guarded["rows"]  # every row sent is counted, re-sends included


def test_attacks_complete_with_an_in_process_model_raising(
    credit_lr: Any, credit: tuple[Table, Table]
) -> None:
    report = _probe(Fussy(credit_lr), credit)
    probe = _check_attacks_completed(report)
    assert probe["extraction"]["refused_share_by_strategy"]["random"] > 0.3
    # accuracy is judged on the rows answered, not counting refusals as wrong decisions
    assert probe["accuracy"] > 0.8


def test_a_model_refusing_every_attack_query_leaves_not_run_gaps(
    credit_lr: Any, credit: tuple[Table, Table]
) -> None:
    report = _probe(Fussy(credit_lr, refuse_after_first=True), credit)
    target = report.results[0]
    assert not target.errors and not target.findings
    probe = report.metadata["probe"]
    notes = _gaps(report)
    for attack in ("consistency", "membership", "extraction"):
        assert probe[attack]["run"] is False
        assert any(n.startswith(f"{attack} not run: ") for n in notes), attack
    assert probe["extraction"]["refused_share"] == 1.0
    assert all(s.is_gap for s in target.skips)
    verdict = evaluate(report, Settings())
    for fmt in ("json", "text", "html"):  # every output renders the not-run attacks
        assert "not run" in render(report, verdict, fmt)
    assert evaluate(report, Settings(strict=True)).exit_code != 0  # a gap, never a pass


def _probe_endpoint(url: str, test: Table, folder: Path, *extra: str) -> int:
    """`bastion probe --endpoint URL --attacks extraction` on the test rows."""
    data = folder / "test.csv"
    test.features.assign(outcome=test.labels).to_csv(data, index=False)
    command = f"probe --endpoint {url} --scores /scores --classes bad,good --data {data} "
    command += "--target outcome --attacks extraction --queries 200 --no-store -q"
    return main([*command.split(), *extra])


def test_a_fully_refusing_endpoint_is_a_clear_error(
    guarded: dict[str, Any], credit: tuple[Table, Table], tmp_path: Path
) -> None:
    _, test = credit
    model = HttpModel(
        guarded["url"], template={"rows": "$rows"}, classes=["bad", "good"], scores="/scores"
    )
    guarded["refuse_all"] = True
    try:
        with pytest.raises(ProbeError, match="refused every row"):
            run_probe(model, test, spec=credit_spec(test), attacks=("extraction",))
        assert _probe_endpoint(guarded["url"], test, tmp_path) == 2
    finally:
        guarded["refuse_all"] = False


def test_extraction_through_a_guarded_endpoint_from_the_command_line(
    guarded: dict[str, Any], credit: tuple[Table, Table], tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    code = _probe_endpoint(guarded["url"], credit[1], tmp_path, "-f", "json", "-o", str(out))
    assert code in (0, 1)
    extraction = json.loads(out.read_text())["metadata"]["probe"]["extraction"]
    assert extraction["refused_queries"] > 0 and extraction["refused_share"] > 0
    assert np.isfinite(extraction["best_fidelity"])
