"""Black-box mode: the same probe through a local HTTP endpoint (127.0.0.1, started here),
with scores or labels only, a query budget, retries and refusals."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pandas as pd
import pytest
from conftest import credit_spec

from bastion.config import ProbeSettings
from bastion.findings import Location
from bastion.probe.endpoint import EndpointRefused, HttpModel
from bastion.probe.evasion import run_evasion
from bastion.probe.inputs import Table
from bastion.probe.model import QueryBudgetExceeded


@pytest.fixture(scope="module")
def server(credit_lr: Any) -> Iterator[dict[str, Any]]:
    state = {"fail_next": 0, "requests": 0}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            state["requests"] += 1
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if state["fail_next"]:
                state["fail_next"] -= 1
                self.send_response(503)
                self.end_headers()
                return
            try:
                frame = pd.DataFrame(body["rows"])
                scores = credit_lr.predict_proba(frame).tolist()
                labels = credit_lr.predict(frame).tolist()
            except Exception:
                self.send_response(422)
                self.end_headers()
                return
            answer = json.dumps({"scores": scores, "labels": labels}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}/predict"
    yield state
    httpd.shutdown()
    httpd.server_close()


def _model(server: dict[str, Any], **kwargs: Any) -> HttpModel:
    return HttpModel(
        server["url"], template={"rows": "$rows"}, classes=["bad", "good"], retries=2, **kwargs
    )


@pytest.mark.parametrize("mode", ["scores", "labels"])
def test_evasion_through_the_endpoint(
    server: dict[str, Any], credit: tuple[Table, Table], mode: str
) -> None:
    _, test = credit
    table = Table(
        "t", test.features.iloc[:80], test.labels[:80] if test.labels is not None else None
    )
    model = _model(server, **({"scores": "/scores"} if mode == "scores" else {"labels": "/labels"}))
    out = model.query(table.features)
    result = run_evasion(
        model,
        credit_spec(test),
        table.features,
        table.labels,
        out.labels,
        out.scores,
        "good",
        ProbeSettings(max_rows=8, queries_per_row=300),
        Location(path=server["url"]),
        budgets=(2.0,),
    )
    metrics = result.metrics
    assert metrics["invalid_dropped"] == 0 and metrics["success_rate"] > 0
    assert metrics["queries"] <= 8 * 300
    assert metrics["scores_used"] is (mode == "scores")


def test_budget_retries_and_refusal(server: dict[str, Any], credit: tuple[Table, Table]) -> None:
    _, test = credit
    model = _model(server, scores="/scores", budget=50)
    model.query(test.features.iloc[:40])
    with pytest.raises(QueryBudgetExceeded):
        model.query(test.features.iloc[:20])
    server["fail_next"] = 2  # two 503s, then an answer: retried
    retrying = _model(server, labels="/labels")
    assert len(retrying.query(test.features.iloc[:3]).labels) == 3 and retrying.retried == 2
    broken = test.features.iloc[:1].astype({"income": object})
    broken.iloc[0, 0] = "lots"
    with pytest.raises(EndpointRefused):
        retrying.query(broken)
